"""A database another process holds locked costs the engine time, never data: the writer waits and
retries (with :attr:`waiting` set, for the health check), acknowledges nothing meanwhile, and goes
on once the lock is gone; only a lock held past the retry limit gives up, with a clear error."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from support_engine.errors import StorageError
from support_engine.service import EngineService
from support_engine.storage import Storage
from support_engine.transport import MemoryTransport
from tests.unit.test_engine_hold import CONFIG, TOPICS, batch, clock


def hold_lock(path: Path, seconds: float, started: threading.Event) -> threading.Thread:
    """Another process's writer: an exclusive transaction on ``path`` for ``seconds``."""

    def run() -> None:
        other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        other.execute("BEGIN EXCLUSIVE")
        started.set()
        time.sleep(seconds)
        other.execute("COMMIT")
        other.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    started.wait(5)
    return thread


def test_a_commit_held_up_by_another_writer_waits_and_then_lands(tmp_path: Path) -> None:
    db = tmp_path / "e.sqlite"
    storage = Storage(db)
    started = threading.Event()
    seen_waiting: list[float | None] = []
    locker = hold_lock(db, 2.5, started)
    watcher = threading.Thread(target=lambda: (time.sleep(1.5), seen_waiting.append(storage.waiting)), daemon=True)
    watcher.start()
    t0 = time.monotonic()
    storage.set_counters({"msg_ingested": 7})  # SQLite alone would give up after its 1 s busy timeout
    storage.commit()
    waited = time.monotonic() - t0
    locker.join()
    watcher.join()
    assert waited >= 2.0
    assert seen_waiting and seen_waiting[0] is not None  # the health check could see it meanwhile
    assert storage.waiting is None
    storage.close()
    with sqlite3.connect(db) as check:
        assert check.execute("SELECT value FROM counters WHERE name = 'msg_ingested'").fetchone() == (7,)


def test_a_lock_held_past_the_retry_limit_is_a_clear_error(tmp_path: Path) -> None:
    db = tmp_path / "e.sqlite"
    storage = Storage(db)
    storage._db.retry_s = 0.5  # type: ignore[attr-defined]
    started = threading.Event()
    locker = hold_lock(db, 3.0, started)
    with pytest.raises(StorageError, match="database is locked"):
        storage.set_counters({"msg_ingested": 1})
    locker.join()


def test_the_engine_acknowledges_nothing_while_its_database_is_locked_and_loses_nothing(tmp_path: Path) -> None:
    db = tmp_path / "e.sqlite"
    transport = MemoryTransport()
    engine = EngineService(CONFIG, transport, Storage(db), topics=TOPICS, clock="event")
    engine.start()
    started = threading.Event()
    locker = hold_lock(db, 1.5, started)
    for g in range(3):
        transport.offer(*batch(g, 1))
    transport.offer(*clock(1, 3))
    acked_while_locked: list[int] = []
    watcher = threading.Thread(target=lambda: (time.sleep(0.8), acked_while_locked.append(len(transport.acked))))
    watcher.start()
    for _ in range(50):
        engine.poll(timeout_s=0)
        if any(t == TOPICS.clock_ack for t, _, _ in transport.published):
            break
    watcher.join()
    locker.join()
    assert acked_while_locked == [0]  # nothing acknowledged before the commit could land
    assert len(transport.acked) == 4 and transport.unacked == 0
    assert engine.counters["msg_ingested"] == 3
    engine.storage.close()
    with sqlite3.connect(db) as check:
        assert check.execute("SELECT value FROM counters WHERE name = 'msg_ingested'").fetchone() == (3,)
