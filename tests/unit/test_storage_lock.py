"""One engine per SQLite database: a second process's writer is refused, with a one-line error that
names the file and the process holding it (``sot engine`` exits 2 with it); a killed holder leaves
no stale lock; readers are never refused; the writers of one process share the lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from support_engine import database
from support_engine.database import DatabaseInUse
from support_engine.schema import counters
from support_engine.storage import Storage

ROOT = Path(__file__).resolve().parents[2]
OPEN = """
import sys
from support_engine.database import DatabaseInUse
from support_engine.schema import counters
from support_engine.storage import Storage
try:
    storage = Storage(sys.argv[1])
except DatabaseInUse as exc:
    print(f"refused: {exc}", flush=True)
    raise SystemExit(3)
storage.set_counters({"holder": 1})
storage.commit()
print("opened", flush=True)
if sys.argv[2:] == ["hold"]:
    sys.stdin.read()  # until the test kills us
storage.close()
"""


def other_process(db: Path, *, hold: bool = False) -> subprocess.Popen[str]:
    """Another process opening ``db`` for writing (and holding it, if ``hold``); its first line says how it went."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(OPEN), str(db), *(["hold"] if hold else [])],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def opens(db: Path) -> str:
    """What another process got opening ``db``: ``opened``, or ``refused: <the error>``."""
    proc = other_process(db)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode in (0, 3), err
    return out.strip()


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process that has opened ``tmp_path / 'engine.sqlite'`` and holds it until killed."""
    proc = other_process(tmp_path / "engine.sqlite", hold=True)
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline().strip() == "opened"
        yield proc
    finally:
        proc.kill()
        proc.communicate(timeout=60)


def test_a_second_engine_on_the_same_file_exits_2_with_one_line_naming_the_file_and_the_holder(
    tmp_path: Path,
) -> None:
    db = tmp_path / "engine.sqlite"
    storage = Storage(db)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "support_engine", "--db", str(db), "--broker", "mqtt://127.0.0.1:1"],
            cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    finally:
        storage.close()
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith(f"sot engine: database {str(db)!r} is in use by process {os.getpid()}")
    assert f"{db}.lock" in done.stderr and "one engine per database" in done.stderr


def test_the_lock_dies_with_the_process_that_held_it(tmp_path: Path, holder: subprocess.Popen[str]) -> None:
    db = tmp_path / "engine.sqlite"
    with pytest.raises(DatabaseInUse) as refused:
        Storage(db)
    assert (refused.value.database, refused.value.pid) == (str(db), holder.pid)
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=60)
    storage = Storage(db)  # no stale lock, and what the killed holder had committed is there
    assert storage.counters() == {"holder": 1}
    storage.close()


def test_readers_are_not_refused_while_a_writer_holds_the_file(tmp_path: Path, holder: subprocess.Popen[str]) -> None:
    with database.Database.at(tmp_path / "engine.sqlite").reader() as db:
        assert db.rows(sa.select(counters.c.name, counters.c.value)) == [("holder", 1)]


def test_the_writers_of_one_process_share_the_lock_until_the_last_lets_go(tmp_path: Path) -> None:
    db = tmp_path / "engine.sqlite"
    first, second = Storage(db), Storage(db)  # a test restarting an engine within its own process
    first.close()
    assert opens(db).startswith(f"refused: database {str(db)!r} is in use by process {os.getpid()}")
    second.close()
    assert opens(db) == "opened"
    assert opens(db) == "opened"  # a writer that closed let go too


def test_a_database_in_memory_takes_no_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    first, second = Storage(":memory:"), Storage(":memory:")
    first.close()
    second.close()
    assert list(tmp_path.iterdir()) == []
