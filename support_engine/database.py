"""Connections to the engine's database, SQLite or PostgreSQL, that speak one dialect (SQLite's).

:func:`locate` reads where the database is: a file path, ``sqlite:///PATH``, ``:memory:``, or a
``postgresql://`` (``postgres://``) URL. :func:`connect` opens the engine's writer, in an open
transaction; :class:`ReadOnly` opens read-only connections (the HTTP API's, one per request).
Statements go through :mod:`support_engine.sql_dialect` on both backends, so that SQL which would
not run on PostgreSQL fails on SQLite too; driver errors come out as :class:`StorageError`.
PostgreSQL's connections are in :mod:`support_engine.postgres`, imported (with psycopg) only when
a PostgreSQL URL is used.

The writer waits out what would otherwise stop the engine: a SQLite file that another process
holds locked (for up to :data:`BUSY_RETRY_S`), a PostgreSQL connection lost (it reconnects and
sends the open transaction again, for up to :data:`RECONNECT_RETRY_S`); meanwhile its ``waiting``
says since when. One process at a time writes a SQLite file: the writer holds an exclusive lock on
``<file>.lock`` (:mod:`support_engine.writer_lock`), and another process's writer is refused with
:class:`DatabaseInUse`; readers take no lock.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from support_engine.errors import StorageError
from support_engine.sql_dialect import portable
from support_engine.writer_lock import DatabaseInUse, WriterLock

__all__ = ["Connection", "DatabaseInUse", "Location", "ReadOnly", "at_rest", "connect", "locate"]

Backend = Literal["sqlite", "postgresql"]
_CONNECT_TIMEOUT_S = 10
_BUSY_TIMEOUT_S = 1.0  # SQLite waits this long for a lock itself, then the writer's own retries take over
BUSY_RETRY_S = 600.0
"""How long the writer keeps retrying a statement that another process's lock holds up before it
gives up (its messages are still unacknowledged then: the broker delivers them again)."""
RECONNECT_RETRY_S = 600.0
"""How long the PostgreSQL writer keeps trying to get a lost connection back, and the open
transaction with it, before it gives up (the messages of that transaction are still unacknowledged
then: the broker delivers them again)."""
REPLAY_ROWS = 1_000_000
"""The most rows the PostgreSQL writer keeps of an open transaction to send again after a lost
connection; a bigger transaction (a huge registry provisioned at start) is not replayed: losing
its connection is an error, as it was before replaying."""
_BACKOFF_S = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
log = logging.getLogger("sot.engine")
_MANGLED = re.compile(r"(?i)(postgres|postgresql|sqlite):/(?!/)")
_HINT = {
    "sqlite": "check that the file's directory is writable, or pass another --db",
    "postgresql": "check that PostgreSQL is running and accepts the URL's host, port, user, password and database "
    "(create it first: createdb NAME), or pass a SQLite file",
}


@dataclass(frozen=True, slots=True)
class Location:
    """Where a database is: ``target`` opens it, ``shown`` names it (a URL without its password)."""

    backend: Backend
    target: str  # a file path or ``:memory:`` (SQLite), a URL (PostgreSQL)
    shown: str


def locate(where: str | Path) -> Location:
    """Read a database location: a file path, ``sqlite:///PATH``, ``:memory:`` or a PostgreSQL URL."""
    text = str(where)
    scheme = text.partition("://")[0].lower() if "://" in text else ""
    if scheme in ("postgresql", "postgres"):
        return Location("postgresql", text, _without_password(text))
    if _MANGLED.match(text):  # what pathlib makes of a URL: a file named like a URL would be a surprise
        raise StorageError(
            f"{_without_password(text.replace(':/', '://', 1))!r} looks like a URL that lost a slash of '://' "
            "(was it passed through a file path?): give the URL as it is"
        )
    if text.startswith("sqlite:///") and len(text) > len("sqlite:///"):
        text = text.removeprefix("sqlite:///")
    elif scheme:
        raise StorageError(
            f"unsupported database URL {_without_password(text)!r}: "
            "use a file path, sqlite:///PATH or postgresql://user@host:port/database"
        )
    return Location("sqlite", text, text)


def _without_password(url: str) -> str:
    """``url`` without a password in its user part or its query."""
    parts = urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    netloc = f"{userinfo.partition(':')[0]}{at}{hosts}"
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "password"])
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


# -- connections ---------------------------------------------------------------------------------------
class Connection:
    """One DB-API connection that takes SQLite SQL with ``?`` placeholders and gives rows back.

    Every driver error is raised as :class:`StorageError` naming the database and the statement's
    first words.
    """

    def __init__(self, raw: Any, location: Location, sql: Callable[[str], str], errors: type[Exception]) -> None:
        self._raw = raw
        self.location = location
        self._sql = sql
        self._errors = errors
        self.waiting: float | None = None  # time.monotonic() since something holds the writer up
        self.waiting_for = ""  # what holds it up, while it does

    @contextlib.contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        try:
            yield
        except self._errors as exc:
            raise StorageError(f"{what} failed on {self.location.shown!r}: {_one_line(exc)}") from exc

    def execute(self, sql: str, args: Sequence[object] = ()) -> None:
        text = self._sql(sql)
        with self._guard(_first_words(sql)):
            self._raw.execute(text, tuple(args))

    def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        text = self._sql(sql)
        with self._guard(_first_words(sql)):
            cursor = self._raw.cursor()
            try:
                cursor.executemany(text, [tuple(r) for r in rows])
            finally:
                cursor.close()

    def rows(self, sql: str, args: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """The rows of a query, as tuples."""
        text = self._sql(sql)
        with self._guard(_first_words(sql)):
            return [tuple(r) for r in self._raw.execute(text, tuple(args)).fetchall()]

    def dicts(self, sql: str, args: Sequence[object] = ()) -> list[dict[str, Any]]:
        """The rows of a query, as dicts by column name (in the query's order)."""
        text = self._sql(sql)
        with self._guard(_first_words(sql)):
            cursor = self._raw.execute(text, tuple(args))
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def columns(self, table: str) -> list[str]:
        """The column names of ``table`` (an identifier the caller controls, not user input)."""
        with self._guard(f"SELECT FROM {table}"):
            cursor = self._raw.execute(self._sql(f"SELECT * FROM {table} LIMIT 0"))
            names = [str(d[0]) for d in cursor.description]
            cursor.fetchall()
            return names

    def tables(self) -> set[str]:
        """The names of the tables there are (in the database's current schema)."""
        raise NotImplementedError

    def commit(self) -> None:
        """Commit the open transaction and open the next one."""
        with self._guard("commit"):
            self._raw.commit()

    def rollback(self) -> None:
        """Forget the open transaction's writes and open the next one."""
        with self._guard("rollback"):
            self._raw.rollback()

    def close(self) -> None:
        """Commit what is open (quietly: the caller is leaving) and close."""
        with contextlib.suppress(self._errors):
            self._raw.commit()
        with contextlib.suppress(self._errors):
            self._raw.close()


class _SqliteConnection(Connection):
    """SQLite in autocommit mode with explicit BEGIN/COMMIT (so that reads are in the transaction too).

    The writer retries a statement that another process's lock holds up ("database is locked"),
    backing off to 2 s between tries, for up to :data:`BUSY_RETRY_S`; meanwhile :attr:`waiting`
    says since when (the engine's health reports it degraded) and one warning a minute is logged.
    SQLite keeps the open transaction across a busy statement, so trying it again is safe.
    """

    def __init__(
        self, raw: sqlite3.Connection, location: Location, *, transaction: bool, lock: WriterLock | None = None
    ) -> None:
        super().__init__(raw, location, portable, sqlite3.Error)
        self._transaction = transaction
        self._lock = lock
        self.retry_s = BUSY_RETRY_S
        if transaction:
            self.execute("BEGIN")

    def execute(self, sql: str, args: Sequence[object] = ()) -> None:
        self._retrying(lambda: super(_SqliteConnection, self).execute(sql, args))

    def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        batch = [tuple(r) for r in rows]
        self._retrying(lambda: super(_SqliteConnection, self).executemany(sql, batch))

    def _retrying(self, statement: Callable[[], None]) -> None:
        if not self._transaction:
            statement()
            return
        tries, warned = 0, 0.0
        while True:
            try:
                statement()
            except StorageError as exc:
                cause = exc.__cause__
                busy = isinstance(cause, sqlite3.OperationalError) and _is_busy(cause)
                now = time.monotonic()
                if not busy or (self.waiting is not None and now - self.waiting > self.retry_s):
                    self.waiting = None
                    raise
                if self.waiting is None:
                    self.waiting, self.waiting_for = now, "database locked by another process"
                if now - warned >= 60.0:
                    warned = now
                    log.warning(
                        "database %s is locked by another process: waiting (held for %.0f s so far; "
                        "messages stay unacknowledged)", self.location.shown, now - self.waiting,
                    )  # fmt: skip
                time.sleep(_BACKOFF_S[min(tries, len(_BACKOFF_S) - 1)])
                tries += 1
                continue
            if self.waiting is not None:
                log.warning(
                    "database %s is free again after %.1f s", self.location.shown, time.monotonic() - self.waiting
                )
                self.waiting = None
            return

    def tables(self) -> set[str]:
        return {str(name) for (name,) in self.rows("SELECT name FROM sqlite_master WHERE type = 'table'")}

    def commit(self) -> None:
        if not self._transaction:
            return
        self.execute("COMMIT")
        self.execute("BEGIN")

    def rollback(self) -> None:
        if not self._transaction:
            return
        self.execute("ROLLBACK")
        self.execute("BEGIN")

    def close(self) -> None:
        try:
            if self._transaction:
                with contextlib.suppress(sqlite3.Error):
                    self._raw.execute("COMMIT")
            self._raw.close()
        finally:
            if self._lock is not None:
                self._lock.release()
                self._lock = None


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "database is locked" in text or "database is busy" in text or "database table is locked" in text


def _first_words(sql: str) -> str:
    return " ".join(sql.split()[:3])


def connect(location: Location) -> Connection:
    """The writer connection of ``location``, in an open transaction; :class:`StorageError` if it cannot
    open, :class:`DatabaseInUse` if another process writes the same SQLite file."""
    lock: WriterLock | None = None
    try:
        if location.backend == "postgresql":
            from support_engine import postgres

            try:
                return postgres.writer(location)
            except (postgres.Error, StorageError) as exc:
                raise StorageError(
                    f"cannot open database {location.shown!r}: {_one_line(exc)}; {_HINT[location.backend]}"
                ) from exc
        if location.target != ":memory:":
            Path(location.target).parent.mkdir(parents=True, exist_ok=True)
            lock = WriterLock.take(location.target, location.shown)
        db = sqlite3.connect(location.target, isolation_level=None, check_same_thread=False, timeout=_BUSY_TIMEOUT_S)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        return _SqliteConnection(db, location, transaction=True, lock=lock)
    except (OSError, sqlite3.Error, StorageError) as exc:
        if lock is not None:
            lock.release()
        if isinstance(exc, StorageError):
            raise
        raise StorageError(
            f"cannot open database {location.shown!r}: {_one_line(exc)}; {_HINT[location.backend]}"
        ) from exc


class ReadOnly:
    """Open read-only connections to one database, one per use (the HTTP API's: one per request).

    SQLite: a ``mode=ro`` URI (WAL lets it read beside the writer), which never creates the file
    nor writes to it; ``immutable=1`` besides for a file :func:`at_rest` (see there). PostgreSQL:
    autocommit with ``default_transaction_read_only=on``, so that each query sees the latest commit
    and none writes.
    """

    def __init__(self, location: Location) -> None:
        if location.target == ":memory:":
            raise ValueError("a read-only connection needs a database file or server, not ':memory:'")
        self.location = location
        self._path = None if location.backend == "postgresql" else Path(location.target).resolve()

    @contextlib.contextmanager
    def connect(self) -> Iterator[Connection]:
        """A read-only connection, closed on leaving; :class:`StorageError` if it cannot open."""
        conn: Connection
        if self._path is None:
            from support_engine import postgres

            try:
                conn = postgres.reader(self.location)
            except postgres.Error as exc:
                raise StorageError(f"cannot open database {self.location.shown!r}: {_one_line(exc)}") from exc
        else:
            uri = f"file:{quote(str(self._path))}?mode=ro" + ("&immutable=1" if at_rest(self._path) else "")
            try:
                db = sqlite3.connect(uri, uri=True, timeout=5.0, check_same_thread=False)
            except sqlite3.Error as exc:
                raise StorageError(f"cannot open database {self.location.shown!r}: {_one_line(exc)}") from exc
            conn = _SqliteConnection(db, self.location, transaction=False)
        try:
            yield conn
        finally:
            conn.close()


def at_rest(path: Path) -> bool:
    """Whether the SQLite file ``path`` is in WAL mode with no WAL file beside it: nobody has it open.

    Such a file holds every commit itself, and no writer can change it without creating the WAL
    file first (a writer in WAL mode opens it with the database; a checkpoint copies from it).
    A ``mode=ro`` reader of it would create the ``-wal`` and ``-shm`` files, and leave them; an
    ``immutable=1`` one reads the file alone and writes nothing. A file with a WAL file (a writer
    beside us, or one that crashed) is read with ``mode=ro``, WAL included: ``immutable`` would miss it.
    """
    try:
        with open(path, "rb") as file:
            header = file.read(20)
    except OSError:
        return False
    in_wal_mode = header[:16] == b"SQLite format 3\x00" and len(header) == 20 and header[18] == 2
    return in_wal_mode and not os.path.lexists(f"{path}-wal")
