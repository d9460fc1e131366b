"""The engine's hand-written SQLite layer as it was before SQLAlchemy (main at ad05e72): the baseline
that ``bench/engine_ingest.py`` measures the SQLAlchemy storage against, in the same run.

Copied from ``support_engine/database.py`` and ``support_engine/sql_dialect.py`` of that commit,
SQLite half only (the benchmark writes a SQLite file), with the statement path unchanged: SQLite
SQL checked once (cached) for a PostgreSQL translation, ``?`` placeholders, tuples to
``cursor.executemany``, busy retries. Not part of the engine: importable only from ``bench/``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from support_engine.errors import StorageError
from support_engine.writer_lock import WriterLock

__all__ = ["Connection", "Location", "connect", "locate", "portable", "statements"]

_BUSY_TIMEOUT_S = 1.0
BUSY_RETRY_S = 600.0
_BACKOFF_S = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
log = logging.getLogger("sot.engine")


class DialectError(StorageError, ValueError):
    """A statement uses SQLite SQL that has no faithful PostgreSQL translation."""

    def __init__(self, sql: str, reason: str) -> None:
        super().__init__(f"{reason}: {' '.join(sql.split())[:200]!r}")
        self.sql, self.reason = sql, reason


@dataclass(frozen=True, slots=True)
class Location:
    """Where a SQLite database is."""

    backend: Literal["sqlite"]
    target: str
    shown: str


def locate(where: str | Path) -> Location:
    """A SQLite file path (or ``:memory:``)."""
    return Location("sqlite", str(where), str(where))


# -- the statement check (sql_dialect.portable) ----------------------------------------------------
_TOKEN = re.compile(
    r"""
      (?P<space>\s+)
    | (?P<comment>--[^\n]*|/\*.*?\*/)
    | (?P<string>'(?:[^']|'')*')
    | (?P<quoted>"(?:[^"]|"")*")
    | (?P<number>0[xX][0-9A-Fa-f]+|(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)
    | (?P<param>\?\d*|[:@$][A-Za-z_]\w*)
    | (?P<word>[A-Za-z_][\w$]*)
    | (?P<bad>[`'"]|/\*)
    | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)


@dataclass(slots=True)
class _Token:
    kind: str
    text: str

    @property
    def word(self) -> str:
        """The keyword this token is (upper case), or ``""``."""
        return self.text.upper() if self.kind == "word" else ""


def _tokens(sql: str) -> list[_Token]:
    out = []
    for m in _TOKEN.finditer(sql):
        kind = m.lastgroup
        assert kind is not None
        if kind == "bad":
            what = "a backquoted name (use double quotes)" if m.group() == "`" else "an unterminated literal or comment"
            raise DialectError(sql, f"{what} at offset {m.start()}")
        out.append(_Token(kind, m.group()))
    return out


def _significant(tokens: list[_Token]) -> list[int]:
    """Indexes of the tokens that are neither space nor comment."""
    return [i for i, t in enumerate(tokens) if t.kind not in ("space", "comment")]


def _check(sql: str, tokens: list[_Token]) -> None:
    """Refuse what has no faithful translation, on either backend."""
    sig = [tokens[i] for i in _significant(tokens)]
    for n, t in enumerate(sig):
        if t.kind == "param" and t.text != "?":
            raise DialectError(sql, f"parameter {t.text!r}: use plain ? placeholders (pass a value twice if needed)")
        first = n == 0 or sig[n - 1].text == ";"
        if t.word == "INSERT" and n + 1 < len(sig) and sig[n + 1].word == "OR":
            raise DialectError(sql, "INSERT OR ... is SQLite's own: write INSERT ... ON CONFLICT ... DO NOTHING/UPDATE")
        if first and t.word in ("REPLACE", "PRAGMA"):
            raise DialectError(sql, f"{t.word} is SQLite's own: write portable SQL (INSERT ... ON CONFLICT ...)")


@functools.lru_cache(maxsize=1024)
def portable(sql: str) -> str:
    """``sql`` unchanged, once checked to have a PostgreSQL translation (what SQLite runs)."""
    _check(sql, _tokens(sql))
    return sql


def statements(script: str) -> list[str]:
    """The statements of ``script`` (split at semicolons outside literals), without empty ones."""
    out: list[str] = []
    current: list[str] = []
    for t in _tokens(script):
        if t.kind == "other" and t.text == ";":
            out.append("".join(current).strip())
            current = []
        else:
            current.append(t.text)
    out.append("".join(current).strip())
    return [s for s in out if s]


# -- connections (database.Connection, SQLite) ------------------------------------------------------
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
            f"cannot open database {location.shown!r}: {_one_line(exc)}; check that the file's directory is writable"
        ) from exc
