"""Read-only connections to a SQLite database change nothing: a file at rest is read alone (no
``-wal`` or ``-shm`` made beside it), a WAL left by a writer is read with it and left as it was,
a missing file is not created, and a writer's commits are seen beside it, also by a pooled
connection opened while the file was at rest."""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

from support_engine import database
from support_engine.errors import StorageError
from support_engine.storage import Storage


def files(directory: Path) -> dict[str, str]:
    """Every file of ``directory`` and its sha256."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


def reader(db: Path) -> database.Database:
    return database.Database.at(db)


def written(db: Path, counters: dict[str, int]) -> None:
    storage = Storage(db)
    storage.set_counters(counters)
    storage.commit()
    storage.close()


def test_a_database_at_rest_is_read_without_a_file_made_or_changed(tmp_path: Path) -> None:
    db = tmp_path / "engine.sqlite"
    written(db, {"msg_ingested": 3})
    before = files(tmp_path)
    assert database.at_rest(db) and f"{db.name}-wal" not in before
    with reader(db).reader() as conn:
        assert conn.rows(sa.text("SELECT name, value FROM counters")) == [("msg_ingested", 3)]
    assert files(tmp_path) == before


def test_a_wal_left_behind_is_read_with_it_and_left_as_it_was(tmp_path: Path) -> None:
    live, copy = tmp_path / "live", tmp_path / "copy"
    live.mkdir()
    copy.mkdir()
    writer = sqlite3.connect(live / "engine.sqlite", isolation_level=None)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("PRAGMA wal_autocheckpoint=0")  # every commit stays in the WAL
    writer.execute("CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)")
    writer.execute("INSERT INTO counters VALUES ('msg_ingested', 5)")
    for name in ("engine.sqlite", "engine.sqlite-wal"):  # what a crashed writer leaves
        shutil.copy(live / name, copy / name)
    writer.close()
    before = files(copy)
    assert not database.at_rest(copy / "engine.sqlite")
    with reader(copy / "engine.sqlite").reader() as conn:
        assert conn.rows(sa.text("SELECT value FROM counters")) == [(5,)]  # only in the WAL
    after = files(copy)
    assert {k: after[k] for k in before} == before  # the database and its WAL; the -shm index is SQLite's own


def test_a_missing_database_is_not_created(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="cannot open"), reader(tmp_path / "none.sqlite").reader():
        pass
    assert list(tmp_path.iterdir()) == []


def test_a_reader_beside_a_writer_sees_its_commits(tmp_path: Path) -> None:
    db = tmp_path / "engine.sqlite"
    storage = Storage(db)
    assert not database.at_rest(db)  # the writer has its WAL open
    storage.set_counters({"msg_ingested": 1})
    storage.commit()
    with reader(db).reader() as conn:
        assert conn.rows(sa.text("SELECT value FROM counters")) == [(1,)]
    storage.set_counters({"msg_ingested": 2})
    storage.commit()
    with reader(db).reader() as conn:
        assert conn.rows(sa.text("SELECT value FROM counters")) == [(2,)]
        with pytest.raises(StorageError, match="readonly"):
            conn.execute(sa.text("DELETE FROM counters"))
    storage.close()


def test_a_pooled_reader_of_a_file_at_rest_sees_a_writer_that_opens_it_later(tmp_path: Path) -> None:
    db = tmp_path / "engine.sqlite"
    written(db, {"msg_ingested": 1})
    pool = reader(db)
    with pool.reader() as conn:  # opened immutable: the file is at rest
        assert conn.rows(sa.text("SELECT value FROM counters")) == [(1,)]
    storage = Storage(db)  # a writer opens it: its WAL appears
    storage.set_counters({"msg_ingested": 2})
    storage.commit()
    with pool.reader() as conn:  # the immutable connection is not lent again; a new one sees the commit
        assert conn.rows(sa.text("SELECT value FROM counters")) == [(2,)]
    storage.close()
    pool.dispose()


def test_a_pooled_reader_of_a_file_at_rest_sees_a_writer_that_came_and_went_between_two_reads(tmp_path: Path) -> None:
    db = tmp_path / "engine.sqlite"
    written(db, {"msg_ingested": 1})
    pool = reader(db)
    with pool.reader() as conn:  # opened immutable; back in the pool after this
        assert conn.rows(sa.text("SELECT value FROM counters")) == [(1,)]
    written(db, {f"c{i}": i for i in range(500)})  # a whole engine run between two requests: at rest again after it
    assert database.at_rest(db)
    with pool.reader() as conn:  # not the stale immutable connection: the file has changed since it opened
        assert conn.rows(sa.text("SELECT count(*) FROM counters")) == [(501,)]
    pool.dispose()


def test_readers_leave_one_connection_of_the_pool_and_say_so_when_all_are_busy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "engine.sqlite"
    written(db, {"msg_ingested": 1})
    monkeypatch.setattr(database, "_READER_TIMEOUT_S", 0.05)
    pool = reader(db)
    with contextlib.ExitStack() as held:
        for _ in range(database._READER_SLOTS):
            held.enter_context(pool.reader())
        busy = rf"all {database._READER_SLOTS} read connections .* are busy"
        with pytest.raises(StorageError, match=busy), pool.reader():
            pass
    with pool.reader() as conn:  # given back: lent again
        assert conn.rows(sa.text("SELECT value FROM counters")) == [(1,)]
    pool.dispose()
    pool_size, overflow = database._READERS["pool_size"], database._READERS["max_overflow"]
    slots = database._READER_SLOTS
    assert slots == pool_size + overflow - 1
