"""PostgreSQL's connection lost under the engine's writer costs time, never data: the writer
reconnects and sends the open transaction again, whole, so that every unit of work is committed
exactly once, whether the backend was terminated between two writes, during COMMIT (whose answer
then never came), or the whole server was stopped and started again; meanwhile ``waiting`` is set
and ``/healthz`` answers 503 "degraded". A statement that fails for any other reason is not
retried, and its transaction is never committed, not even in part after a reconnect."""

from __future__ import annotations

import json
import logging
import os
import random
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest
from psycopg import errors as pg_errors

from contracts.messages import Notification
from support_engine import migrations, postgres
from support_engine.__main__ import _held_up
from support_engine.core.actions import Notify, Quarantined, RaiseAlert
from support_engine.database import Database
from support_engine.errors import StorageError
from support_engine.http_api import HttpApi, create_app
from support_engine.metrics import EngineMetrics
from support_engine.postgres import connection_lost
from support_engine.storage import Storage
from tests.postgres import INSTALL, fresh_database, pg_bin, private_cluster

LOST = "lost the connection to database"
BACK = "is back after"


# -- telling a lost connection from a failed statement (no server needed) -------------------------------
UP = SimpleNamespace(closed=False, broken=False)
GONE = SimpleNamespace(closed=True, broken=True)


def during(exc: Exception, context: BaseException) -> Exception:
    """``exc`` as raised while ``context`` was being handled."""
    exc.__context__ = context
    return exc


@pytest.mark.parametrize(
    ("exc", "conn", "lost"),
    [
        (pg_errors.AdminShutdown("terminating connection due to administrator command"), GONE, True),
        (pg_errors.AdminShutdown("terminating connection due to administrator command"), UP, True),  # 57P01
        (pg_errors.CrashShutdown("terminating connection because of crash of another server process"), UP, True),
        (pg_errors.CannotConnectNow("the database system is starting up"), UP, True),
        (pg_errors.ConnectionFailure("connection failure"), UP, True),  # class 08
        (psycopg.OperationalError("consuming input failed: server closed the connection unexpectedly"), GONE, True),
        (psycopg.InterfaceError("the connection is closed"), GONE, True),
        (
            during(psycopg.OperationalError("cannot exit pipeline mode while busy"), pg_errors.AdminShutdown()),
            UP,  # psycopg has not marked the connection broken yet
            True,
        ),
        (pg_errors.QueryCanceled("canceling statement due to statement timeout"), UP, False),
        (pg_errors.LockNotAvailable("could not obtain lock"), UP, False),
        (pg_errors.DeadlockDetected("deadlock detected"), UP, False),
        (psycopg.OperationalError("cannot exit pipeline mode while busy"), UP, False),
        (during(psycopg.OperationalError("busy"), pg_errors.QueryCanceled()), UP, False),
        (during(psycopg.OperationalError("busy"), StorageError("ours, from an earlier loss")), UP, False),
        (psycopg.InterfaceError("the cursor is closed"), UP, False),
        (pg_errors.UniqueViolation("duplicate key value violates unique constraint"), GONE, False),
        (pg_errors.UndefinedTable('relation "missing" does not exist'), GONE, False),
        (pg_errors.InFailedSqlTransaction("current transaction is aborted"), UP, False),
        (pg_errors.NumericValueOutOfRange("bigint out of range"), UP, False),
        (StorageError("ours"), GONE, False),
    ],
)
def test_a_lost_connection_is_told_from_a_failed_statement(exc: Exception, conn: Any, lost: bool) -> None:
    assert connection_lost(exc, conn) is lost


# -- units of work and what they leave ------------------------------------------------------------------
def unit(storage: Storage, i: int) -> None:
    """One unit of work, committed: the writes of a step, most of them plain inserts that a second
    commit would duplicate, one an upsert that counts (``quarantine.messages``)."""
    storage.apply(
        [
            RaiseAlert(alert_id=f"alert-{i}", device_id=f"d-{i % 7}", rule="hot", ts=float(i), value=1.0, case_id=None),
            Notify(Notification(notification_id=f"n-{i}", device_id=f"d-{i % 7}", ts=float(i), kind="case_opened")),
            Quarantined(device_id="stray", ts=float(i)),
        ]
    )
    for k in range(3):
        storage.dead_letter("t/x", "schema", f"{i}.{k}", b"x")
    storage.hold([("t/held", str(i).encode())])
    storage.set_counters({"units": i + 1})
    storage.commit()


def assert_exactly_once(url: str, units: int) -> None:
    """Every unit of work ``0 .. units - 1`` is in the database once, and nothing else is."""
    with psycopg.connect(url) as db:
        refs = Counter(r for (r,) in db.execute("SELECT ref FROM outbox"))
        alerts = Counter(a for (a,) in db.execute("SELECT alert_id FROM alerts"))
        letters = Counter(d for (d,) in db.execute("SELECT detail FROM dead_letters"))
        held = Counter(bytes(p).decode() for (p,) in db.execute("SELECT payload FROM inbox"))
        quarantined = db.execute("SELECT coalesce(sum(messages), 0) FROM quarantine").fetchone()
        counted = db.execute("SELECT value FROM counters WHERE name = 'units'").fetchone()
    assert refs == Counter(f"n-{i}" for i in range(units))
    assert alerts == Counter(f"alert-{i}" for i in range(units))
    assert letters == Counter(f"{i}.{k}" for i in range(units) for k in range(3))
    assert held == Counter(str(i) for i in range(units))
    assert quarantined == (units,)
    assert counted == ((units,) if units else None)


def terminate(admin: psycopg.Connection[Any], url: str) -> int:
    """Terminate every backend of ``url``'s database (the engine's), waiting until each has gone; how
    many (the wait needs PostgreSQL 14 or later)."""
    name = url.rsplit("/", 1)[1]
    rows = admin.execute(
        "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
        (name,),
    ).fetchall()
    return sum(1 for (done,) in rows if done)


def get(base: str, path: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(base + path, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def messages(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "sot.engine" and text in r.getMessage()]


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    """Poll ``condition`` (a fail-safe bound, not a timing assertion)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@pytest.fixture
def admin(postgres_server: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        yield conn


# -- a backend terminated ------------------------------------------------------------------------------
@pytest.mark.integration
def test_a_backend_terminated_in_the_middle_of_a_transaction_costs_none_of_it(
    postgres_url: str, admin: psycopg.Connection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="sot.engine")
    storage = Storage(postgres_url)
    unit(storage, 0)
    storage.apply([Quarantined(device_id="stray", ts=1.0)])
    storage.dead_letter("t/x", "schema", "1.0", b"x")
    assert terminate(admin, postgres_url) == 1  # between two writes of unit 1
    for k in (1, 2):
        storage.dead_letter("t/x", "schema", f"1.{k}", b"x")
    storage.apply(
        [
            RaiseAlert(alert_id="alert-1", device_id="d-1", rule="hot", ts=1.0, value=1.0, case_id=None),
            Notify(Notification(notification_id="n-1", device_id="d-1", ts=1.0, kind="case_opened")),
        ]
    )
    storage.hold([("t/held", b"1")])
    storage.set_counters({"units": 2})
    storage.commit()
    assert storage.waiting is None
    storage.close()
    assert_exactly_once(postgres_url, 2)
    (lost,) = messages(caplog, LOST)
    assert "terminating connection due to administrator command" in lost
    (back,) = messages(caplog, BACK)
    assert "sent the open transaction's 2 writes again" in back  # the quarantine upsert and the first letter


@pytest.mark.integration
def test_backends_terminated_at_random_through_a_run_of_commits_lose_nothing_and_double_nothing(
    postgres_server: str, postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="sot.engine")
    storage = Storage(postgres_url)
    rng = random.Random(20240601)
    stop = threading.Event()
    kills: list[int] = []

    def killer() -> None:
        with psycopg.connect(postgres_server, autocommit=True) as admin:
            while not stop.wait(rng.uniform(0.002, 0.03)):
                kills.append(terminate(admin, postgres_url))

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    done = 0
    try:
        deadline = time.monotonic() + 120  # a fail-safe bound
        while done < 200 or len(messages(caplog, LOST)) < 10:  # 10 losses at least, some during a reconnect
            assert time.monotonic() < deadline, f"{done} units and {sum(kills)} kills by the deadline"
            unit(storage, done)
            done += 1
    finally:
        stop.set()
        thread.join()
    storage.close()
    assert_exactly_once(postgres_url, done)
    lost, back = messages(caplog, LOST), messages(caplog, BACK)
    assert len(lost) == len(back) and sum(kills) >= len(lost)  # each loss was got over, nothing raised


# -- a connection lost during COMMIT --------------------------------------------------------------------
class _SeveredCursor:
    """A cursor of a :class:`Severed` connection: fails once the connection is cut, and cuts it at the fence."""

    def __init__(self, link: Severed, raw: Any) -> None:
        self._link, self._raw = link, raw

    def _check(self, query: Any) -> None:
        if self._link.cut:
            raise psycopg.OperationalError("the connection is lost")
        if self._link.at == "fence" and str(query).startswith("UPDATE writer_fence"):
            self._link.sever()  # the client's last word before COMMIT never reaches the server (yet)

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        self._check(query)
        return self._raw.execute(query, params, **kwargs)

    def executemany(self, query: Any, params: Any, **kwargs: Any) -> Any:
        self._check(query)
        return self._raw.executemany(query, params, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


@dataclass
class Severed:
    """The engine's psycopg connection, cut off at a chosen moment: the client sees the connection
    lost while its backend may live on (the network went, not the server)."""

    raw: psycopg.Connection[Any]
    at: str  # "commit-landed", "commit-lost" or "fence"
    cut: bool = field(default=False)

    @property
    def closed(self) -> bool:
        return self.cut or self.raw.closed

    @property
    def broken(self) -> bool:
        return self.cut or self.raw.broken

    def sever(self) -> None:
        self.cut = True
        raise psycopg.OperationalError("server closed the connection unexpectedly")

    def cursor(self, *args: Any, **kwargs: Any) -> _SeveredCursor:
        return _SeveredCursor(self, self.raw.cursor(*args, **kwargs))

    def commit(self) -> None:
        if self.cut:
            raise psycopg.OperationalError("the connection is lost")
        if self.at == "commit-landed":
            self.raw.commit()  # the server commits; its answer is lost
        self.sever()

    def rollback(self) -> None:
        if self.cut:
            raise psycopg.OperationalError("the connection is lost")
        self.raw.rollback()

    def close(self) -> None:
        self.cut = True
        if self.at != "fence":  # the fence case keeps its backend: the old connection's late COMMIT
            self.raw.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)


def sever(storage: Storage, at: str, monkeypatch: pytest.MonkeyPatch) -> Severed:
    """Put the writer on a connection that will be cut off ``at`` a moment (it reconnects as after a
    loss, between two transactions); the connections after that one are plain."""
    made: list[Severed] = []
    plain = postgres._connect

    def once(location: Any) -> Any:
        monkeypatch.setattr(postgres, "_connect", plain)
        made.append(Severed(plain(location), at))
        return made[-1]

    monkeypatch.setattr(postgres, "_connect", once)
    storage._db._reconnect()  # type: ignore[attr-defined]
    assert len(made) == 1
    return made[0]


@pytest.mark.integration
@pytest.mark.parametrize(("at", "said"), [("commit-landed", "had landed"), ("commit-lost", "writes again")])
def test_a_commit_whose_answer_is_lost_lands_once(
    postgres_url: str, at: str, said: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.WARNING, logger="sot.engine")
    storage = Storage(postgres_url)
    unit(storage, 0)
    sever(storage, at, monkeypatch)
    unit(storage, 1)  # a landed commit sent again would duplicate it, and fail on alert-1's key
    unit(storage, 2)
    storage.close()
    assert_exactly_once(postgres_url, 3)
    (back,) = messages(caplog, BACK)
    assert said in back


@pytest.mark.integration
@pytest.mark.parametrize(("at", "landed"), [("commit-landed", True), ("commit-lost", False)])
def test_a_migration_whose_commit_answer_is_lost_is_never_taken_for_done(
    postgres_url: str, at: str, landed: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = Database.at(postgres_url)
    writer = base.writer()  # a new, empty database: the migration creates every table
    sever(SimpleNamespace(_db=writer), at, monkeypatch)  # type: ignore[arg-type]
    assert migrations.upgrade(writer) == ["upgraded from an empty database to 0001"]
    if landed:
        writer.commit()  # the fence says it landed: done
    else:
        with pytest.raises(StorageError, match="a schema migration to send again; it is rolled back"):
            writer.commit()  # nothing to send again: the migration's statements went on the connection itself
    writer.close()
    base.dispose()
    with psycopg.connect(postgres_url) as db:
        tables = {r[0] for r in db.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert ("cases" in tables and "alembic_version" in tables) is landed
    storage = Storage(postgres_url)  # the next start migrates afresh, or finds it done
    assert storage.count("cases") == 0
    storage.close()


@pytest.mark.integration
def test_the_old_connections_late_commit_cannot_land_after_the_new_ones(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = Storage(postgres_url)
    unit(storage, 0)
    severed = sever(storage, "fence", monkeypatch)
    storage.dead_letter("t/x", "schema", "late", b"x")  # on the old connection, uncommitted
    storage.commit()  # cut off before COMMIT: the new connection sends the transaction again and commits
    old = severed.raw  # still up, its transaction open: what it was sent arrives after all
    writer, commits = storage._db._name, storage._db._commits  # type: ignore[attr-defined]
    with pytest.raises(pg_errors.CheckViolation):
        old.execute(
            "UPDATE writer_fence SET prior = commits, commits = %s, touched = CURRENT_TIMESTAMP WHERE writer = %s",
            (commits, writer),
        )
    old.rollback()
    old.close()
    storage.close()
    with psycopg.connect(postgres_url) as db:
        assert db.execute("SELECT count(*) FROM dead_letters WHERE detail = 'late'").fetchone() == (1,)


# -- what is not retried -------------------------------------------------------------------------------
@pytest.mark.integration
def test_a_failed_statement_is_not_retried_and_its_transaction_never_lands_even_after_a_reconnect(
    postgres_url: str, admin: psycopg.Connection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="sot.engine")
    storage = Storage(postgres_url)
    unit(storage, 0)
    storage.dead_letter("t/x", "schema", "half", b"x")
    with pytest.raises(StorageError, match="duplicate key"):
        storage.apply([RaiseAlert(alert_id="alert-0", device_id="d-0", rule="hot", ts=1.0, value=1.0, case_id=None)])
    assert storage.waiting is None and not messages(caplog, LOST)
    with pytest.raises(StorageError, match="the open transaction failed"):
        storage.dead_letter("t/x", "schema", "after", b"x")  # refused, not sent on a new connection
    terminate(admin, postgres_url)
    with pytest.raises(StorageError, match="rolled back"):
        storage.commit()
    unit(storage, 1)  # the next unit reconnects, and lands alone
    storage.close()
    assert_exactly_once(postgres_url, 2)


@pytest.mark.integration
def test_a_transaction_too_big_to_keep_is_rolled_back_when_its_connection_is_lost(
    postgres_url: str, admin: psycopg.Connection[Any]
) -> None:
    storage = Storage(postgres_url)
    storage._db.replay_rows = 2  # type: ignore[attr-defined]
    for k in range(3):
        storage.dead_letter("t/x", "schema", f"big.{k}", b"x")
    terminate(admin, postgres_url)
    with pytest.raises(StorageError, match="too big to send again"):
        storage.set_counters({"units": 1})
    with pytest.raises(StorageError, match="rolled back"):
        storage.commit()
    unit(storage, 0)
    storage.close()
    assert_exactly_once(postgres_url, 1)


# -- the server stopped and started again ---------------------------------------------------------------
@dataclass
class Server:
    """A private cluster that a test may stop (as a crash would) and start again, on the same port."""

    url: str
    data: str = ""
    options: str = ""

    def __post_init__(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as admin:
            self.data = str(admin.execute("SHOW data_directory").fetchone()[0])  # type: ignore[index]
            names = ("port", "unix_socket_directories", "listen_addresses", "max_connections", "fsync")
            self.options = " ".join(f"-c {n}={admin.execute(f'SHOW {n}').fetchone()[0]}" for n in names)  # type: ignore[index]

    def _pg_ctl(self, *args: str) -> None:
        owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        done = subprocess.run(
            [*owner, pg_bin("pg_ctl"), "-D", self.data, *args], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr or done.stdout

    def stop(self) -> None:
        self._pg_ctl("-m", "immediate", "-w", "stop")

    def start(self) -> None:
        log = str(Path(self.data).parent / "restarted.log")
        self._pg_ctl("-l", log, "-o", self.options, "-w", "-t", "60", "start")


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    """A cluster of this module's own (stopping the session's would stop every other test's)."""
    try:
        pg_bin("initdb")
    except FileNotFoundError:
        pytest.fail(INSTALL, pytrace=False)
    with private_cluster() as url:
        yield Server(url)


@pytest.mark.integration
def test_the_server_stopped_and_started_again_mid_run_costs_time_not_data(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="sot.engine")
    with fresh_database(server.url) as url:
        storage = Storage(url)
        api = HttpApi(create_app(url, EngineMetrics(), connected=lambda: True, degraded=lambda: _held_up(storage)))
        api.start()
        done: list[int] = []
        failed: list[BaseException] = []
        finish = threading.Event()

        def writer() -> None:
            try:
                while not finish.is_set():
                    unit(storage, len(done))
                    done.append(len(done))
            except BaseException as exc:
                failed.append(exc)

        thread = threading.Thread(target=writer, daemon=True)
        thread.start()
        try:
            wait_until(lambda: len(done) >= 20, "the first commits")
            server.stop()
            wait_until(lambda: storage.waiting is not None, "the writer to notice")
            status, health = get(api.url, "/healthz")
            assert (status, health["status"]) == (503, "degraded") and health["degraded"]
            before = len(done)
            server.start()
            wait_until(lambda: len(done) >= before + 20 or bool(failed), "commits after the restart")
        finally:
            finish.set()
            thread.join(60)
            api.stop()
        assert not failed
        assert storage.waiting is None
        storage.close()
        assert_exactly_once(url, len(done))
    assert len(messages(caplog, LOST)) == len(messages(caplog, BACK)) >= 1


@pytest.mark.integration
def test_a_server_that_stays_away_past_the_retry_limit_is_a_clear_error(server: Server) -> None:
    with fresh_database(server.url) as url:
        storage = Storage(url)
        unit(storage, 0)
        storage._db.retry_s = 1.0  # type: ignore[attr-defined]
        server.stop()
        try:
            with pytest.raises(StorageError, match="could not get it back in 1 s"):
                unit(storage, 1)
            assert storage.waiting is None
        finally:
            server.start()
        with pytest.raises(StorageError, match="rolled back"):
            storage.commit()  # what unit 1 had written before it failed is not committed
        unit(storage, 1)
        storage.close()
        assert_exactly_once(url, 2)
