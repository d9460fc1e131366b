"""Where the engine's database is, and its connections, SQLite or PostgreSQL, through SQLAlchemy.

:func:`locate` reads a location: a file path, ``:memory:``, a SQLAlchemy URL (``sqlite:///PATH``,
``postgresql+psycopg://user@host:port/database``) or a libpq URL (``postgresql://``,
``postgres://``: psycopg 3 either way). :class:`Database` holds the SQLAlchemy engines of one
location: :meth:`Database.writer` opens the engine's writer, one connection in an open transaction;
:meth:`Database.reader` lends a read-only connection from a pool (the HTTP API's, one a request).
On PostgreSQL the writer and the readers are connections of one :class:`sqlalchemy.engine.Engine`
(the readers' transactions ``READ ONLY``); on SQLite the readers' pool opens the file read-only
(``mode=ro``: WAL lets them read beside the writer), which needs connections of its own, and
every SQLite writer of the process is a connection of one engine (its compiled statements shared).

Statements are SQLAlchemy Core constructs (:mod:`support_engine.schema`); driver errors come out
as :class:`StorageError` naming the database and the statement. The writer waits out what would
otherwise stop the engine: a SQLite file that another process holds locked (for up to
:data:`BUSY_RETRY_S`), a PostgreSQL connection lost (:mod:`support_engine.postgres` reconnects
and sends the open transaction again, for up to :data:`RECONNECT_RETRY_S`); meanwhile its
``waiting`` says since when. One process at a time writes a SQLite file: the writer holds an
exclusive lock on ``<file>.lock`` (:mod:`support_engine.writer_lock`), and another process's
writer is refused with :class:`DatabaseInUse`; readers take no lock.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.pool import NullPool, QueuePool
from sqlalchemy.sql import ClauseElement, Executable
from sqlalchemy.sql.compiler import SQLCompiler

from support_engine.errors import StorageError
from support_engine.writer_lock import DatabaseInUse, WriterLock

__all__ = ["Database", "DatabaseInUse", "Location", "Reader", "Writer", "at_rest", "locate"]

Backend = Literal["sqlite", "postgresql"]
Params = Mapping[str, Any]
T = TypeVar("T")
_BUSY_TIMEOUT_S = 1.0  # SQLite waits this long for a lock itself, then the writer's own retries take over
_READER_TIMEOUT_S = 5.0
_READERS = {"pool_size": 4, "max_overflow": 8}  # the HTTP API's threads; more wait for one
_READER_SLOTS = _READERS["pool_size"] + _READERS["max_overflow"] - 1  # one left for the writer
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
BACKOFF_S = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
log = logging.getLogger("sot.engine")
_MANGLED = re.compile(r"(?i)(postgres|postgresql|sqlite)(\+\w+)?:/(?!/)")
_SQLITE = ("sqlite", "sqlite+pysqlite")
_POSTGRES = ("postgresql", "postgres", "postgresql+psycopg")
_HINT = {
    "sqlite": "check that the file's directory is writable, or pass another --db",
    "postgresql": "check that PostgreSQL is running and accepts the URL's host, port, user, password and database "
    "(create it first: createdb NAME), or pass a SQLite file",
}


@dataclass(frozen=True, slots=True)
class Location:
    """Where a database is: ``target`` opens it, ``shown`` names it (a URL without its password)."""

    backend: Backend
    target: str  # a file path or ``:memory:`` (SQLite), a libpq URL (PostgreSQL)
    shown: str

    @property
    def url(self) -> str:
        """The SQLAlchemy URL, without a password: ``sqlite:///PATH`` or ``postgresql+psycopg://…``."""
        if self.backend == "sqlite":
            return f"sqlite:///{self.target}"
        return "postgresql+psycopg://" + _without_password(self.target).partition("://")[2]


def locate(where: str | Path) -> Location:
    """Read a database location: a file path, ``:memory:``, ``sqlite:///PATH`` or a PostgreSQL URL."""
    text = str(where)
    scheme = text.partition("://")[0].lower() if "://" in text else ""
    if scheme in _POSTGRES:
        target = "postgresql://" + text.partition("://")[2]  # what libpq reads (it knows no +driver)
        return Location("postgresql", target, _without_password(text))
    if _MANGLED.match(text):  # what pathlib makes of a URL: a file named like a URL would be a surprise
        raise StorageError(
            f"{_without_password(text.replace(':/', '://', 1))!r} looks like a URL that lost a slash of '://' "
            "(was it passed through a file path?): give the URL as it is"
        )
    if scheme in _SQLITE and text.partition("://")[2].startswith("/") and len(text.partition("://")[2]) > 1:
        text = text.partition("://")[2][1:]  # sqlite:///engine.sqlite, sqlite:////var/lib/sot/engine.sqlite
    elif scheme.startswith("postgres"):
        raise StorageError(
            f"unsupported database URL {_without_password(text)!r}: the engine talks to PostgreSQL through "
            "psycopg 3: use postgresql+psycopg://user@host:port/database (or postgresql://)"
        )
    elif scheme:
        raise StorageError(
            f"unsupported database URL {_without_password(text)!r}: "
            "use a file path, sqlite:///PATH or postgresql+psycopg://user@host:port/database"
        )
    return Location("sqlite", text, text)


def _without_password(url: str) -> str:
    """``url`` without a password in its user part or its query."""
    parts = urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    netloc = f"{userinfo.partition(':')[0]}{at}{hosts}"
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "password"])
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def one_line(exc: BaseException) -> str:
    """The driver's own message of ``exc`` (SQLAlchemy's wrapper adds the statement and a link), on one line."""
    inner = exc.orig if isinstance(exc, sa_exc.DBAPIError) else exc
    return " ".join(str(inner).split()) or type(inner).__name__


def describe(statement: Executable) -> str:
    """What ``statement`` does, in a few words (``INSERT INTO cases``), for an error message."""
    table = getattr(statement, "table", None)
    kind = type(statement).__name__.upper()
    if isinstance(statement, sa.Insert):
        return f"INSERT INTO {getattr(table, 'name', table)}"
    if isinstance(statement, (sa.Update, sa.Delete)):
        return f"{kind} {getattr(table, 'name', table)}"
    if isinstance(statement, sa.Select):
        return "SELECT FROM " + ", ".join(str(getattr(f, "name", "…")) for f in statement.get_final_froms())
    return " ".join(str(statement).split()[:3])


@contextlib.contextmanager
def guard(location: Location, what: Callable[[], str]) -> Iterator[None]:
    """Translate a driver error into :class:`StorageError` naming the database and ``what()``."""
    try:
        yield
    except sa_exc.DBAPIError as exc:
        raise StorageError(f"{what()} failed on {location.shown!r}: {one_line(exc)}") from exc


# -- rows --------------------------------------------------------------------------------------------
def _rows(conn: sa.Connection, statement: Executable, params: Params | None) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in conn.execute(statement, params)]


def executemany(conn: sa.Connection, statement: Executable, rows: Sequence[Params]) -> None:
    """Run ``statement`` once for each of ``rows`` (dicts with the same keys), as Core's executemany
    would, without its work a row: the statement is compiled once for these keys (:func:`_bulk`)
    and the rows go to the driver's ``executemany`` as they are, through
    :meth:`~sqlalchemy.engine.Connection.exec_driver_sql` (errors wrapped by SQLAlchemy as ever).
    Statements whose columns' types convert values on the way in take Core's path instead."""
    sql, constants = _bulk(conn.dialect, statement, tuple(rows[0]))
    if sql is None:
        conn.execute(statement, rows)
    else:
        conn.exec_driver_sql(sql, [{**constants, **row} for row in rows] if constants else list(rows))


@functools.lru_cache(maxsize=512)
def _bulk(dialect: sa.Dialect, statement: Executable, keys: tuple[str, ...]) -> tuple[str | None, Params]:
    """``statement`` compiled by ``dialect`` for rows of ``keys``, and the values of its other bound
    parameters (constants such as the ``1`` of ``messages + 1``); None for the SQL when the rows
    cannot go to the driver unchanged: a bound value a type processes, a value computed at run
    time, placeholders by position, or rows whose keys are not the statement's parameters (Core
    then says what is wrong with them)."""
    if dialect.paramstyle not in ("named", "pyformat") or not isinstance(statement, ClauseElement):
        return None, {}
    compiled = statement.compile(dialect=dialect, column_keys=list(keys), for_executemany=True)
    if not isinstance(compiled, SQLCompiler):
        return None, {}
    binds = compiled.binds.values()
    if any(b.callable is not None or b.type.dialect_impl(dialect).bind_processor(dialect) for b in binds):
        return None, {}
    constants = {k: v for k, v in compiled.params.items() if k not in keys}
    if set(compiled.params) != set(keys) | set(constants) or any(v is None for v in constants.values()):
        return None, {}
    return str(compiled), constants


def _dicts(conn: sa.Connection, statement: Executable, params: Params | None) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(statement, params).mappings()]


class Reader:
    """A read-only connection lent from the readers' pool; driver errors as :class:`StorageError`."""

    def __init__(self, conn: sa.Connection, location: Location) -> None:
        self.connection = conn
        self.location = location

    def rows(self, statement: Executable, params: Params | None = None) -> list[tuple[Any, ...]]:
        """The rows of a query, as tuples."""
        with guard(self.location, lambda: describe(statement)):
            return _rows(self.connection, statement, params)

    def dicts(self, statement: Executable, params: Params | None = None) -> list[dict[str, Any]]:
        """The rows of a query, as dicts by column name (in the query's order)."""
        with guard(self.location, lambda: describe(statement)):
            return _dicts(self.connection, statement, params)

    def scalar(self, statement: Executable, params: Params | None = None) -> Any:
        """The first column of the first row (None without one)."""
        with guard(self.location, lambda: describe(statement)):
            return self.connection.execute(statement, params).scalar()

    def execute(self, statement: Executable, params: Params | None = None) -> None:
        """Run a statement (a write fails: the connection is read-only)."""
        with guard(self.location, lambda: describe(statement)):
            self.connection.execute(statement, params)

    def tables(self) -> set[str]:
        """The names of the tables there are (in the database's current schema)."""
        with guard(self.location, lambda: "reading the table names"):
            return set(sa.inspect(self.connection).get_table_names())

    def columns(self, table: str) -> set[str]:
        """The names of the columns of ``table`` (none if there is no such table)."""
        with guard(self.location, lambda: f"reading the columns of {table}"):
            inspector = sa.inspect(self.connection)
            return {c["name"] for c in inspector.get_columns(table)} if inspector.has_table(table) else set()


# -- the writer ------------------------------------------------------------------------------------------
class Writer:
    """The engine's one writing connection, in an open transaction that :meth:`commit` ends and reopens.

    ``connection`` is the SQLAlchemy connection (the migrations run on it); statements go through
    :meth:`execute`, :meth:`executemany` (one statement, many rows: :func:`executemany`),
    :meth:`rows` and :meth:`dicts`.
    """

    location: Location
    dialect: str  # "sqlite" or "postgresql"
    waiting: float | None = None  # time.monotonic() since something holds the writer up
    waiting_for: str = ""  # what holds it up, while it does

    @property
    def connection(self) -> sa.Connection:
        raise NotImplementedError

    def execute(self, statement: Executable, params: Params | None = None) -> None:
        raise NotImplementedError

    def executemany(self, statement: Executable, rows: Sequence[Params]) -> None:
        raise NotImplementedError

    def rows(self, statement: Executable, params: Params | None = None) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def dicts(self, statement: Executable, params: Params | None = None) -> list[dict[str, Any]]:
        raise NotImplementedError

    def commit(self) -> None:
        raise NotImplementedError

    def wrote_directly(self) -> None:
        """Say that the open transaction holds writes made on :attr:`connection` itself (the
        migrations'), which the writer cannot send again: a commit whose outcome is lost must then
        fail rather than be taken for done."""

    def rollback(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Commit what is open (quietly: the caller is leaving) and close."""
        raise NotImplementedError


class SqliteWriter(Writer):
    """SQLite in the driver's autocommit mode with explicit BEGIN/COMMIT (so that reads are in the
    transaction too, and a COMMIT held up by a lock can be tried again: SQLAlchemy's own commit
    would end its transaction either way).

    The writer retries a statement that another process's lock holds up ("database is locked"),
    backing off to 2 s between tries, for up to :data:`BUSY_RETRY_S`; meanwhile :attr:`waiting`
    says since when (the engine's health reports it degraded) and one warning a minute is logged.
    SQLite keeps the open transaction across a busy statement, so trying it again is safe.
    """

    dialect = "sqlite"

    def __init__(self, conn: sa.Connection, location: Location, lock: WriterLock | None) -> None:
        self._conn = conn
        self.location = location
        self._lock = lock
        self.retry_s = BUSY_RETRY_S
        self._control("BEGIN")

    @property
    def connection(self) -> sa.Connection:
        return self._conn

    def execute(self, statement: Executable, params: Params | None = None) -> None:
        self._retrying(lambda: self._conn.execute(statement, params), statement)

    def executemany(self, statement: Executable, rows: Sequence[Params]) -> None:
        if rows:
            self._retrying(lambda: executemany(self._conn, statement, rows), statement)

    def rows(self, statement: Executable, params: Params | None = None) -> list[tuple[Any, ...]]:
        return self._retrying(lambda: _rows(self._conn, statement, params), statement)

    def dicts(self, statement: Executable, params: Params | None = None) -> list[dict[str, Any]]:
        return self._retrying(lambda: _dicts(self._conn, statement, params), statement)

    def _control(self, word: str) -> None:
        self._retrying(lambda: self._conn.exec_driver_sql(word), word)

    def _retrying(self, call: Callable[[], T], what: Executable | str) -> T:
        tries, warned = 0, 0.0
        while True:
            try:
                result = call()
            except sa_exc.DBAPIError as cause:  # translated here, not by guard(): this is every statement's path
                exc = StorageError(
                    f"{what if isinstance(what, str) else describe(what)} failed on {self.location.shown!r}: "
                    f"{one_line(cause)}"
                )
                busy = isinstance(cause, sa_exc.OperationalError) and _is_busy(cause.orig)
                now = time.monotonic()
                if not busy or (self.waiting is not None and now - self.waiting > self.retry_s):
                    self.waiting = None
                    raise exc from cause
                if self.waiting is None:
                    self.waiting, self.waiting_for = now, "database locked by another process"
                if now - warned >= 60.0:
                    warned = now
                    log.warning(
                        "database %s is locked by another process: waiting (held for %.0f s so far; "
                        "messages stay unacknowledged)", self.location.shown, now - self.waiting,
                    )  # fmt: skip
                time.sleep(BACKOFF_S[min(tries, len(BACKOFF_S) - 1)])
                tries += 1
                continue
            if self.waiting is not None:
                log.warning(
                    "database %s is free again after %.1f s", self.location.shown, time.monotonic() - self.waiting
                )
                self.waiting = None
            return result

    def commit(self) -> None:
        self._control("COMMIT")
        self._control("BEGIN")

    def rollback(self) -> None:
        self._control("ROLLBACK")
        self._control("BEGIN")

    def close(self) -> None:
        try:
            with contextlib.suppress(sa_exc.DBAPIError):
                self._conn.exec_driver_sql("COMMIT")
            with contextlib.suppress(sa_exc.DBAPIError):
                self._conn.close()
        finally:
            if self._lock is not None:
                self._lock.release()
                self._lock = None


def _is_busy(exc: BaseException | None) -> bool:
    text = str(exc).lower()
    return isinstance(exc, sqlite3.OperationalError) and (
        "database is locked" in text or "database is busy" in text or "database table is locked" in text
    )


def _sqlite_writer_connection(target: str) -> sqlite3.Connection:
    db = sqlite3.connect(target, isolation_level=None, check_same_thread=False, timeout=_BUSY_TIMEOUT_S)
    try:  # outside any transaction: foreign_keys is a no-op inside one
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
    except sqlite3.Error:
        db.close()
        raise
    return db


_OPENING: contextvars.ContextVar[str] = contextvars.ContextVar("sqlite_writer_opening")


@functools.cache
def _sqlite_writers() -> sa.Engine:
    """The one SQLAlchemy engine of every SQLite writer in the process (no pool: each writer's
    connection is opened for it, from the file :data:`_OPENING` names, and closed with it).

    Shared so that its dialect and compiled statements are too: each statement is compiled once a
    process, not once a database opened (an engine restarted within a test, a benchmark's runs)."""
    return sa.create_engine(
        "sqlite+pysqlite://",
        creator=lambda: _sqlite_writer_connection(_OPENING.get()),
        poolclass=NullPool,
        paramstyle="named",  # rows as dicts, straight to sqlite3 (see executemany)
    )


def _sqlite_readers(path: Path) -> sa.Engine:
    """A pool of read-only connections to the SQLite file ``path``: ``mode=ro``, and ``immutable=1``
    besides while the file is :func:`at_rest`.

    A connection opened ``immutable`` trusts what it has read; it is lent only while the file is
    still at rest and still the file it opened (the same inode, size and modification time: a
    writer that opened it, committed and closed it since changes them). Otherwise the pool opens
    another in its place, which sees the writer's commits.
    """

    def connect() -> sqlite3.Connection:
        immutable = at_rest(path)
        uri = f"file:{quote(str(path))}?mode=ro" + ("&immutable=1" if immutable else "")
        conn = sqlite3.connect(
            uri, uri=True, isolation_level=None, timeout=_READER_TIMEOUT_S, check_same_thread=False, factory=_Reading
        )
        conn.immutable = _signature(path) if immutable else None
        return conn

    engine = sa.create_engine("sqlite+pysqlite://", creator=connect, poolclass=QueuePool, **_READERS)

    @sa.event.listens_for(engine, "checkout")
    def _still_at_rest(dbapi_conn: Any, record: Any, proxy: Any) -> None:
        opened = getattr(dbapi_conn, "immutable", None)
        if opened is not None and not (at_rest(path) and _signature(path) == opened):
            raise sa_exc.DisconnectionError(f"{path} has changed since it was opened immutable")

    return engine


class _Reading(sqlite3.Connection):
    """A pooled reader's SQLite connection, which knows whether it was opened ``immutable``, and on
    which file (:func:`_signature`)."""

    immutable: tuple[int, int, int] | None = None


def _signature(path: Path) -> tuple[int, int, int] | None:
    """The file's inode, size and modification time (ns), None if it cannot be read."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


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


# -- a database --------------------------------------------------------------------------------------------
class Database:
    """The SQLAlchemy engines of one location: the writer's and the readers' pool (one engine on
    PostgreSQL; on SQLite the readers' own, and the writers' of the process, :func:`_sqlite_writers`);
    created on first use, closed by :meth:`dispose`."""

    def __init__(self, location: Location) -> None:
        self.location = location
        self._engines: dict[str, sa.Engine] = {}
        self._made = threading.Lock()
        # Readers take one of the pool's connections less than it has, so that on PostgreSQL (one
        # pool) the writer always finds one to reconnect with, however busy the HTTP API is.
        self._reader_slots = threading.BoundedSemaphore(_READER_SLOTS)

    @classmethod
    def at(cls, where: str | Path | Database) -> Database:
        """``where`` itself if it is a :class:`Database`, else the database at that location."""
        return where if isinstance(where, Database) else cls(locate(where))

    def _engine(self, role: Literal["writer", "readers"]) -> sa.Engine:
        location = self.location
        if location.backend == "sqlite" and role == "writer":
            return _sqlite_writers()
        key = "both" if location.backend == "postgresql" else role
        with self._made:
            if key not in self._engines:
                if location.backend == "postgresql":
                    from support_engine import postgres

                    self._engines[key] = postgres.engine(location, **_READERS)
                else:
                    self._engines[key] = _sqlite_readers(Path(location.target).resolve())
            return self._engines[key]

    def writer(self) -> Writer:
        """The engine's writer connection, in an open transaction; :class:`StorageError` if it cannot
        open, :class:`DatabaseInUse` if another process writes the same SQLite file."""
        location = self.location
        lock: WriterLock | None = None
        try:
            if location.backend == "postgresql":
                from support_engine import postgres

                return postgres.PostgresWriter(self._engine("writer"), location)
            if location.target != ":memory:":
                Path(location.target).parent.mkdir(parents=True, exist_ok=True)
                lock = WriterLock.take(location.target, location.shown)
            opening = _OPENING.set(location.target)
            try:
                conn = self._engine("writer").connect()
            finally:
                _OPENING.reset(opening)
            try:
                return SqliteWriter(conn, location, lock)
            except BaseException:
                with contextlib.suppress(sa_exc.SQLAlchemyError):
                    conn.close()
                raise
        except (OSError, sa_exc.DBAPIError, StorageError) as exc:
            if lock is not None:
                lock.release()
            if isinstance(exc, DatabaseInUse):
                raise
            raise StorageError(
                f"cannot open database {location.shown!r}: {one_line(exc)}; {_HINT[location.backend]}"
            ) from exc

    @contextlib.contextmanager
    def reader(self) -> Iterator[Reader]:
        """A read-only connection from the pool, given back on leaving; :class:`StorageError` if
        none can be opened. PostgreSQL: its transaction is ``READ ONLY`` and each query sees the
        latest commit; SQLite: the file opened with ``mode=ro`` (and ``immutable=1`` while it is
        :func:`at_rest`, so that reading it leaves no file beside it)."""
        if self.location.target == ":memory:":
            raise ValueError("a read-only connection needs a database file or server, not ':memory:'")
        if not self._reader_slots.acquire(timeout=_READER_TIMEOUT_S):
            raise StorageError(f"all {_READER_SLOTS} read connections to {self.location.shown!r} are busy; try again")
        try:
            conn = self._engine("readers").connect()
        except (sa_exc.DBAPIError, sa_exc.TimeoutError) as exc:
            self._reader_slots.release()
            raise StorageError(f"cannot open database {self.location.shown!r}: {one_line(exc)}") from exc
        try:
            if self.location.backend == "postgresql":
                conn.execution_options(postgresql_readonly=True)
            yield Reader(conn, self.location)
        finally:
            try:
                with contextlib.suppress(sa_exc.DBAPIError):
                    conn.close()
            finally:
                self._reader_slots.release()

    def dispose(self) -> None:
        """Close every pooled connection (the writer closes its own)."""
        with self._made:
            for engine in self._engines.values():
                engine.dispose()
            self._engines.clear()
