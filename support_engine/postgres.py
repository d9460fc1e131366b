"""The engine's PostgreSQL connections (psycopg 3), and how its writer survives a lost connection.

The PostgreSQL half of :mod:`support_engine.database`, imported only when a PostgreSQL URL is used.
:func:`writer` opens the engine's writer, :func:`reader` a read-only connection (autocommit, with
``default_transaction_read_only=on``). When the writer's connection is lost (the server restarted,
the backend terminated, the network down: :func:`connection_lost`), it opens another and sends
the open transaction again, whole; a transaction in which a statement failed is never committed.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.pq import TransactionStatus

from support_engine.database import (
    _BACKOFF_S,
    _CONNECT_TIMEOUT_S,
    RECONNECT_RETRY_S,
    REPLAY_ROWS,
    Connection,
    Location,
    _first_words,
    _one_line,
    log,
)
from support_engine.errors import StorageError
from support_engine.sql_dialect import to_postgres

__all__ = ["Error", "PostgresConnection", "connection_lost", "reader", "writer"]

Error = psycopg.Error
"""What psycopg raises (an error opening a connection comes out as this)."""
_IDLE_IN_TRANSACTION_S = 300  # the server ends a writer session left idle in a transaction (a lost client's)
_KEEPALIVE = {"keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3, "tcp_user_timeout": 30_000}
_NOTE_EVERY_S = 60.0
T = TypeVar("T")


def writer(location: Location) -> PostgresConnection:
    """The engine's writer connection (it registers in ``writer_fence``); psycopg's or our errors."""
    return PostgresConnection(_connect(location, read_only=False), location, writer=True)


def reader(location: Location) -> PostgresConnection:
    """A read-only connection: each query sees the latest commit, and none writes."""
    return PostgresConnection(_connect(location, read_only=True), location)


_LOST_SQLSTATES = frozenset({"57P01", "57P02", "57P03"})  # admin shutdown, crash shutdown, cannot connect now


def connection_lost(exc: BaseException, raw: psycopg.Connection[Any]) -> bool:
    """Whether ``exc`` says that the connection ``raw`` is gone, not that a statement failed.

    A lost connection is an ``OperationalError`` or ``InterfaceError`` that left ``raw`` closed or
    broken, or that carries a connection SQLSTATE (class 08, or the server shutting down or not up
    yet), or that psycopg raised while handling such an error (leaving a pipeline after the server
    went: ``raw`` does not know yet). Constraint, data and SQL errors are not, nor a statement
    cancelled or timed out on a connection still up: sending the transaction again would fail the
    same way.
    """
    if not isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)):
        return False
    if raw.closed or raw.broken:
        return True
    seen: BaseException | None = exc
    while isinstance(seen, (psycopg.OperationalError, psycopg.InterfaceError)):
        state = seen.sqlstate or ""
        if state.startswith("08") or state in _LOST_SQLSTATES:
            return True
        seen = seen.__context__
    return False


@dataclass(frozen=True, slots=True)
class _Write:
    """A write of the open transaction (SQLite SQL and its rows), kept to be sent again."""

    sql: str
    rows: list[tuple[object, ...]]
    many: bool


_FENCE = (
    "CREATE TABLE IF NOT EXISTS writer_fence (writer TEXT PRIMARY KEY, commits INTEGER NOT NULL,"
    " prior INTEGER NOT NULL, touched TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP, CHECK (commits = prior + 1))"
)


class PostgresConnection(Connection):
    """psycopg 3: a transaction opens with the first statement after a commit.

    The writer (``writer=True``) keeps the open transaction's writes. When its connection is lost
    (:func:`connection_lost`), it opens another, with backoff, for up to :attr:`retry_s`, sends those
    writes again and then the statement that failed, so that the caller sees one transaction that
    went through; meanwhile :attr:`waiting` says since when, and one warning is logged when the
    connection is lost, one a minute while it stays lost, and one when it is back. Any other error
    dooms the transaction: whatever comes next fails until :meth:`commit` rolls it back, so that
    no part of it is ever committed, not even after a lost connection.

    A connection lost during COMMIT leaves it unknown whether the commit landed. Each commit of
    writes therefore also moves this writer's row of ``writer_fence`` from ``commits = n - 1`` to
    ``n`` (``CHECK (commits = prior + 1)``): the new connection reads the row (``FOR UPDATE``, so it
    waits for a backend of the old connection still at work) and sends the writes again only if
    the commit did not land; and an old backend that receives the COMMIT late cannot commit after
    the new one, as its own move of the row then breaks the CHECK. The server ends a writer session
    left idle in a transaction after ``_IDLE_IN_TRANSACTION_S`` (the old connection's, cut off by
    the network), and TCP keepalives find a dead server within about 30 s.
    """

    def __init__(self, raw: psycopg.Connection[Any], location: Location, *, writer: bool = False) -> None:
        super().__init__(raw, location, to_postgres, psycopg.Error)
        self.retry_s = RECONNECT_RETRY_S
        self.replay_rows = REPLAY_ROWS
        self._writer = writer
        self._closed = False
        self._journal: list[_Write] = []  # the open transaction's writes, in order
        self._journal_rows = 0
        self._replayable = True  # False once the open transaction outgrew replay_rows
        self._wrote = False
        self._doomed: str | None = None  # why the open transaction cannot commit
        self._name = uuid.uuid4().hex  # this writer's row of writer_fence
        self._commits = 0
        self._committing: int | None = None  # the commit in flight, if any
        self._landed = False  # a reconnect found the commit in flight committed
        self._unsure = False  # gave up on a commit in flight: whether it landed is to be read back
        if writer:
            Connection.execute(self, _FENCE)
            Connection.execute(self, "DELETE FROM writer_fence WHERE touched < CURRENT_TIMESTAMP - INTERVAL '1 day'")
            Connection.execute(
                self, "INSERT INTO writer_fence (writer, commits, prior) VALUES (?, 0, -1)", (self._name,)
            )
            Connection.commit(self)

    # -- statements ------------------------------------------------------------------------------------
    def execute(self, sql: str, args: Sequence[object] = ()) -> None:
        self._write(_Write(sql, [tuple(args)], many=False))

    def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        self._write(_Write(sql, [tuple(r) for r in rows], many=True))

    def rows(self, sql: str, args: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        return self._attempt(lambda: Connection.rows(self, sql, args))

    def dicts(self, sql: str, args: Sequence[object] = ()) -> list[dict[str, Any]]:
        return self._attempt(lambda: Connection.dicts(self, sql, args))

    def columns(self, table: str) -> list[str]:
        return self._attempt(lambda: Connection.columns(self, table))

    def tables(self) -> set[str]:
        rows = self.rows("SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")
        return {str(name) for (name,) in rows}

    def _write(self, write: _Write) -> None:
        if write.many and not write.rows:
            return
        self._attempt(lambda: self._send(write))
        if not self._writer:
            return
        self._wrote = True
        if self._replayable:
            self._journal_rows += len(write.rows)
            if self._journal_rows <= self.replay_rows:
                self._journal.append(write)
            else:
                self._replayable, self._journal = False, []

    def _send(self, write: _Write) -> None:
        text = self._sql(write.sql)
        with self._guard(_first_words(write.sql)):
            if write.many:
                with self._raw.cursor() as cursor:
                    cursor.executemany(text, write.rows)
            else:
                self._raw.execute(text, write.rows[0])

    # -- transactions ----------------------------------------------------------------------------------
    def commit(self) -> None:
        if self._doomed is not None or self._raw.info.transaction_status == TransactionStatus.INERROR:
            why = self._doomed or "an earlier statement failed"
            self._forget()
            with contextlib.suppress(self._errors):
                self._raw.rollback()  # COMMIT would roll back, quietly
            raise StorageError(f"commit failed on {self.location.shown!r}: {why}; the transaction is rolled back")
        if not (self._writer and self._wrote):
            self._attempt(lambda: Connection.commit(self))
            return
        if self._unsure:
            self._commits = self._attempt(self._commits_done)
            self._unsure = False
        commits = self._commits + 1
        self._committing, self._landed = commits, False
        try:
            self._attempt(lambda: None if self._landed else self._fenced_commit(commits))
        finally:
            self._committing = None
        self._commits = commits
        self._forget()

    def _commits_done(self) -> int:
        rows = Connection.rows(self, "SELECT commits FROM writer_fence WHERE writer = ?", (self._name,))
        if not rows:
            raise StorageError(f"commit failed on {self.location.shown!r}: this writer's row of writer_fence is gone")
        return int(rows[0][0])

    def _fenced_commit(self, commits: int) -> None:
        moved = Connection.rows(
            self,
            "UPDATE writer_fence SET prior = commits, commits = ?, touched = CURRENT_TIMESTAMP WHERE writer = ?"
            " RETURNING commits",
            (commits, self._name),
        )
        if moved != [(commits,)]:
            raise StorageError(f"commit failed on {self.location.shown!r}: this writer's row of writer_fence is gone")
        Connection.commit(self)

    def rollback(self) -> None:
        self._forget()
        if self._writer:
            with contextlib.suppress(self._errors):
                self._raw.rollback()
            return
        super().rollback()

    def _forget(self) -> None:
        """Start afresh: no writes kept, nothing doomed."""
        self._journal, self._journal_rows, self._replayable = [], 0, True
        self._wrote, self._doomed = False, None

    def close(self) -> None:
        self._closed = True
        if self._doomed is not None:
            with contextlib.suppress(self._errors):
                self._raw.rollback()
        super().close()

    # -- a lost connection -----------------------------------------------------------------------------
    def _attempt(self, call: Callable[[], T]) -> T:
        """``call()``; when it loses the connection, reconnect, catch up, and call it again."""
        if self._doomed is not None:
            raise StorageError(
                f"statement refused on {self.location.shown!r}: the open transaction failed ({self._doomed}); "
                "commit() rolls it back"
            )
        if not self._writer:
            return call()
        since: float | None = None
        caught_up = ""
        try:
            while True:
                try:
                    result = call()
                    break
                except StorageError as exc:
                    cause = exc.__cause__
                    if not isinstance(cause, psycopg.Error):  # ours (a dialect error): nothing was sent
                        raise
                    if self._closed or not connection_lost(cause, self._raw):
                        self._doom(_one_line(exc))  # the server has aborted the transaction
                        raise
                    if since is None:
                        since = self.waiting = time.monotonic()
                        self.waiting_for = "connection to PostgreSQL lost, reconnecting"
                        log.warning(
                            "lost the connection to database %s (%s): reconnecting, for up to %.0f s; "
                            "nothing is acknowledged meanwhile", self.location.shown, _one_line(cause), self.retry_s,
                        )  # fmt: skip
                    caught_up = self._recover(since, _one_line(cause))
        finally:
            self.waiting = None
        if since is not None:
            log.warning(
                "database %s is back after %.1f s: %s", self.location.shown, time.monotonic() - since, caught_up
            )
        return result

    def _doom(self, why: str) -> None:
        self._doomed, self._journal = why, []

    def _recover(self, since: float, why: str) -> str:
        """Open a new connection and bring it to where the lost one was (say how); :class:`StorageError`
        when the connection stays lost past :attr:`retry_s`, or the transaction cannot be sent again."""
        tries, noted = 0, since
        while True:
            now = time.monotonic()
            if now - since > self.retry_s:
                self._doom(f"connection lost for {now - since:.0f} s")
                self._unsure = self._unsure or self._committing is not None
                raise StorageError(
                    f"lost the connection to database {self.location.shown!r} and could not get it back in "
                    f"{self.retry_s:.0f} s ({why}); nothing of the open transaction was acknowledged"
                )
            if now - noted >= _NOTE_EVERY_S:
                noted = now
                log.warning("database %s still unreachable after %.0f s (%s)", self.location.shown, now - since, why)
            time.sleep(_BACKOFF_S[min(tries, len(_BACKOFF_S) - 1)])
            tries += 1
            with contextlib.suppress(psycopg.Error):
                self._raw.close()
            try:
                self._raw = _connect(self.location, read_only=False)
                return self._catch_up()
            except psycopg.Error as exc:  # no connection (yet)
                why = _one_line(exc)
            except StorageError as exc:
                cause = exc.__cause__
                if not (isinstance(cause, psycopg.Error) and connection_lost(cause, self._raw)):
                    self._doom(_one_line(exc))
                    raise
                why = _one_line(cause)

    def _catch_up(self) -> str:
        """On a new connection: find out whether the commit in flight landed, or send the writes again."""
        if self._committing is not None:
            rows = Connection.rows(
                self, "SELECT commits FROM writer_fence WHERE writer = ? FOR UPDATE", (self._name,)
            )  # waits for the old connection's backend, if it still holds the row
            done = int(rows[0][0]) if rows else None
            if done == self._committing:
                Connection.commit(self)
                self._landed = True
                return "the commit in flight had landed"
            if done != self._committing - 1:
                raise StorageError(
                    f"cannot tell whether the last commit landed on {self.location.shown!r}: this writer's row "
                    f"of writer_fence is {'gone' if done is None else f'at {done}, not {self._committing - 1}'}"
                )
        if not self._replayable:
            raise StorageError(
                f"lost the connection to database {self.location.shown!r} in a transaction of more than "
                f"{self.replay_rows} rows, too big to send again; it is rolled back"
            )
        for write in self._journal:
            self._send(write)
        return f"reconnected, and sent the open transaction's {len(self._journal)} writes again"


def _connect(location: Location, *, read_only: bool) -> psycopg.Connection[Any]:
    """A psycopg connection (autocommit when read-only); its errors are psycopg's."""
    params = conninfo_to_dict(location.target)
    params.setdefault("connect_timeout", _CONNECT_TIMEOUT_S)
    options = [str(params.get("options") or ""), "-c client_min_messages=warning"]
    if read_only:
        options.append("-c default_transaction_read_only=on")
    else:
        for key, value in _KEEPALIVE.items():
            params.setdefault(key, value)
        options.append(f"-c idle_in_transaction_session_timeout={_IDLE_IN_TRANSACTION_S * 1000}")
    params["options"] = " ".join(o for o in options if o)
    return psycopg.connect(make_conninfo("", **params), autocommit=read_only)
