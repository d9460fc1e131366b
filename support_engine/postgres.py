"""The engine's PostgreSQL connections (psycopg 3 under SQLAlchemy), and how its writer survives a lost connection.

The PostgreSQL half of :mod:`support_engine.database`, imported only when a PostgreSQL URL is used.
:func:`engine` makes the one SQLAlchemy engine of a database: the writer's connection and the
readers' pool. When the writer's connection is lost (the server restarted, the backend
terminated, the network down: :func:`connection_lost`), it opens another and sends the open
transaction again, whole; a transaction in which a statement failed is never committed.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import psycopg
import sqlalchemy as sa
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.pq import TransactionStatus
from sqlalchemy import exc as sa_exc
from sqlalchemy.schema import CreateTable
from sqlalchemy.sql import Executable

from support_engine.database import (
    BACKOFF_S,
    RECONNECT_RETRY_S,
    REPLAY_ROWS,
    Location,
    Params,
    Writer,
    _dicts,
    _rows,
    describe,
    executemany,
    guard,
    log,
    one_line,
)
from support_engine.errors import StorageError

__all__ = ["Error", "PostgresWriter", "connection_lost", "engine", "fence"]

Error = psycopg.Error
"""What psycopg raises."""
_CONNECT_TIMEOUT_S = 10
_IDLE_IN_TRANSACTION_S = 300  # the server ends a session left idle in a transaction (a lost client's)
_KEEPALIVE = {"keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3, "tcp_user_timeout": 30_000}
_NOTE_EVERY_S = 60.0
T = TypeVar("T")

fence = sa.Table(
    "writer_fence",
    sa.MetaData(),
    sa.Column("writer", sa.Text, primary_key=True),
    sa.Column("commits", sa.BigInteger, nullable=False),
    sa.Column("prior", sa.BigInteger, nullable=False),
    sa.Column("touched", sa.TIMESTAMP(timezone=True), nullable=False, server_default=sa.func.current_timestamp()),
    sa.CheckConstraint("commits = prior + 1"),
)
"""One row per writer: its commit count, which a commit moves by exactly one (see :class:`PostgresWriter`).
Not one of the engine's tables (:mod:`support_engine.schema`): the writer makes it, and migrations leave it be."""


def engine(location: Location, **pool: Any) -> sa.Engine:
    """The SQLAlchemy engine of a PostgreSQL database: connections from :func:`_connect`, pooled
    (``pool``: ``pool_size``, ``max_overflow``), each checked before it is lent again."""
    return sa.create_engine(
        "postgresql+psycopg://",
        creator=lambda: _connect(location),
        pool_pre_ping=True,
        pool_reset_on_return="rollback",
        **pool,
    )


def _connect(location: Location) -> psycopg.Connection[Any]:
    """A psycopg connection with TCP keepalives (a dead server found within about 30 s) and an idle
    transaction timeout (the session of a client cut off by the network ends); psycopg's errors."""
    params = conninfo_to_dict(location.target)
    params.setdefault("connect_timeout", _CONNECT_TIMEOUT_S)
    for key, value in _KEEPALIVE.items():
        params.setdefault(key, value)
    options = [str(params.get("options") or ""), "-c client_min_messages=warning"]
    options.append(f"-c idle_in_transaction_session_timeout={_IDLE_IN_TRANSACTION_S * 1000}")
    params["options"] = " ".join(o for o in options if o)
    return psycopg.connect(make_conninfo("", **params))


_LOST_SQLSTATES = frozenset({"57P01", "57P02", "57P03"})  # admin shutdown, crash shutdown, cannot connect now


def connection_lost(exc: BaseException | None, raw: Any) -> bool:
    """Whether ``exc`` says that the psycopg connection ``raw`` is gone, not that a statement failed.

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
    """A write of the open transaction (a Core statement and its rows), kept to be sent again."""

    statement: Executable
    params: Params | Sequence[Params] | None
    rows: int


class PostgresWriter(Writer):
    """The engine's writer on PostgreSQL: SQLAlchemy opens a transaction with the first statement after a commit.

    It keeps the open transaction's writes. When its connection is lost (:func:`connection_lost`),
    it opens another, with backoff, for up to :attr:`retry_s`, sends those writes again and then
    the statement that failed, so that the caller sees one transaction that went through;
    meanwhile :attr:`waiting` says since when, and one warning is logged when the connection is
    lost, one a minute while it stays lost, and one when it is back. Any other error dooms the
    transaction: whatever comes next fails until :meth:`commit` rolls it back, so that no part of
    it is ever committed, not even after a lost connection.

    A connection lost during COMMIT leaves it unknown whether the commit landed. Each commit of
    writes therefore also moves this writer's row of :data:`fence` from ``commits = n - 1`` to
    ``n`` (``CHECK (commits = prior + 1)``): the new connection reads the row (``FOR UPDATE``, so it
    waits for a backend of the old connection still at work) and sends the writes again only if
    the commit did not land; and an old backend that receives the COMMIT late cannot commit after
    the new one, as its own move of the row then breaks the CHECK. The server ends a session left
    idle in a transaction after ``_IDLE_IN_TRANSACTION_S`` (the old connection's, cut off by the
    network), and TCP keepalives find a dead server within about 30 s.
    """

    dialect = "postgresql"

    def __init__(self, engine: sa.Engine, location: Location) -> None:
        self._engine = engine
        self.location = location
        self.retry_s = RECONNECT_RETRY_S
        self.replay_rows = REPLAY_ROWS
        self._closed = False
        self._journal: list[_Write] = []  # the open transaction's writes, in order
        self._journal_rows = 0
        self._replayable = True  # False once the open transaction outgrew replay_rows, or holds a migration
        self._migrated = False  # the open transaction holds a schema migration (wrote_directly)
        self._wrote = False
        self._doomed: str | None = None  # why the open transaction cannot commit
        self._name = uuid.uuid4().hex  # this writer's row of the fence
        self._commits = 0
        self._committing: int | None = None  # the commit in flight, if any
        self._landed = False  # a reconnect found the commit in flight committed
        self._unsure = False  # gave up on a commit in flight: whether it landed is to be read back
        self._conn = engine.connect()
        self._raw: Any = self._conn.connection.dbapi_connection
        self._lost_conn = False  # the connection was let go and no other could be opened yet
        try:
            with guard(location, lambda: "creating writer_fence"):
                if not sa.inspect(self._conn).has_table(fence.name):  # a user who may not create finds it made
                    self._conn.execute(CreateTable(fence, if_not_exists=True))
                old = fence.c.touched < sa.func.current_timestamp() - sa.literal(timedelta(days=1), sa.Interval())
                self._conn.execute(sa.delete(fence).where(old))
                self._conn.execute(sa.insert(fence).values(writer=self._name, commits=0, prior=-1))
                self._conn.commit()
        except BaseException:
            with contextlib.suppress(sa_exc.SQLAlchemyError):
                self._conn.close()
            raise

    @property
    def connection(self) -> sa.Connection:
        return self._conn

    # -- statements ------------------------------------------------------------------------------------
    def execute(self, statement: Executable, params: Params | None = None) -> None:
        self._write(_Write(statement, params, 1))

    def executemany(self, statement: Executable, rows: Sequence[Params]) -> None:
        if rows:
            self._write(_Write(statement, list(rows), len(rows)))

    def rows(self, statement: Executable, params: Params | None = None) -> list[tuple[Any, ...]]:
        return self._attempt(lambda: self._guarded(statement, lambda: _rows(self._conn, statement, params)))

    def dicts(self, statement: Executable, params: Params | None = None) -> list[dict[str, Any]]:
        return self._attempt(lambda: self._guarded(statement, lambda: _dicts(self._conn, statement, params)))

    def _guarded(self, statement: Executable, call: Callable[[], T]) -> T:
        with guard(self.location, lambda: describe(statement)):
            return call()

    def _write(self, write: _Write) -> None:
        self._attempt(lambda: self._send(write))
        self._wrote = True
        if self._replayable:
            self._journal_rows += write.rows
            if self._journal_rows <= self.replay_rows:
                self._journal.append(write)
            else:
                self._replayable, self._journal = False, []

    def _send(self, write: _Write) -> None:
        if isinstance(write.params, list):
            rows = write.params
            self._guarded(write.statement, lambda: executemany(self._conn, write.statement, rows))
        else:
            self._guarded(write.statement, lambda: self._conn.execute(write.statement, write.params))

    # -- transactions ----------------------------------------------------------------------------------
    def commit(self) -> None:
        if self._doomed is not None or self._in_error():
            why = self._doomed or "an earlier statement failed"
            self._forget()
            with contextlib.suppress(sa_exc.SQLAlchemyError):
                self._conn.rollback()  # COMMIT would roll back, quietly
            raise StorageError(f"commit failed on {self.location.shown!r}: {why}; the transaction is rolled back")
        if not self._wrote:
            self._attempt(self._plain_commit)
            return
        if self._unsure:
            self._commits = self._attempt(self._commits_known)
            self._unsure = False
        commits = self._commits + 1
        self._committing, self._landed = commits, False
        try:
            self._attempt(lambda: None if self._landed else self._fenced_commit(commits))
        finally:
            self._committing = None
        self._commits = commits
        self._forget()

    def _in_error(self) -> bool:
        with contextlib.suppress(Exception):
            return bool(self._raw.info.transaction_status == TransactionStatus.INERROR)
        return False

    def _plain_commit(self) -> None:
        with guard(self.location, lambda: "commit"):
            self._conn.commit()

    def _commits_done(self, *, lock: bool = False) -> int | None:
        """This writer's commit count, as the fence has it (None: its row is gone)."""
        query = sa.select(fence.c.commits).where(fence.c.writer == self._name)
        rows = self._guarded(query, lambda: _rows(self._conn, query.with_for_update() if lock else query, None))
        return int(rows[0][0]) if rows else None

    def _commits_known(self) -> int:
        done = self._commits_done()
        if done is None:
            raise StorageError(f"commit failed on {self.location.shown!r}: this writer's row of writer_fence is gone")
        return done

    def _fenced_commit(self, commits: int) -> None:
        move = (
            sa.update(fence)
            .where(fence.c.writer == self._name)
            .values(prior=fence.c.commits, commits=commits, touched=sa.func.current_timestamp())
            .returning(fence.c.commits)
        )
        moved = self._guarded(move, lambda: _rows(self._conn, move, None))
        if moved != [(commits,)]:
            raise StorageError(f"commit failed on {self.location.shown!r}: this writer's row of writer_fence is gone")
        self._plain_commit()

    def rollback(self) -> None:
        self._forget()
        with contextlib.suppress(sa_exc.SQLAlchemyError):
            self._conn.rollback()

    def wrote_directly(self) -> None:
        self._wrote, self._replayable, self._journal, self._migrated = True, False, [], True

    def _forget(self) -> None:
        """Start afresh: no writes kept, nothing doomed."""
        self._journal, self._journal_rows, self._replayable = [], 0, True
        self._wrote, self._doomed, self._migrated = False, None, False

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(sa_exc.SQLAlchemyError):
            if self._doomed is not None or self._lost_conn or self._conn.invalidated:
                self._conn.rollback()
            else:
                self._conn.commit()
        with contextlib.suppress(sa_exc.SQLAlchemyError):
            self._conn.close()

    # -- a lost connection -----------------------------------------------------------------------------
    def _attempt(self, call: Callable[[], T]) -> T:
        """``call()``; when it loses the connection, reconnect, catch up, and call it again."""
        if self._doomed is not None:
            raise StorageError(
                f"statement refused on {self.location.shown!r}: the open transaction failed ({self._doomed}); "
                "commit() rolls it back"
            )
        since: float | None = None
        caught_up = ""
        try:
            while True:
                try:
                    if self._lost_conn or self._conn.invalidated:  # given up on earlier: rolled back since
                        self._reconnect()
                    result = call()
                    break
                except StorageError as exc:
                    cause = exc.__cause__
                    if not (isinstance(cause, sa_exc.DBAPIError) and isinstance(cause.orig, psycopg.Error)):
                        raise  # ours: nothing was sent
                    if self._closed or not connection_lost(cause.orig, self._raw):
                        self._doom(one_line(exc))  # the server has aborted the transaction
                        raise
                    if since is None:
                        since = self.waiting = time.monotonic()
                        self.waiting_for = "connection to PostgreSQL lost, reconnecting"
                        log.warning(
                            "lost the connection to database %s (%s): reconnecting, for up to %.0f s; "
                            "nothing is acknowledged meanwhile", self.location.shown, one_line(cause), self.retry_s,
                        )  # fmt: skip
                    caught_up = self._recover(since, one_line(cause))
        finally:
            self.waiting = None
        if since is not None:
            log.warning(
                "database %s is back after %.1f s: %s", self.location.shown, time.monotonic() - since, caught_up
            )
        return result

    def _doom(self, why: str) -> None:
        self._doomed, self._journal = why, []

    def _reconnect(self) -> None:
        """Let the connection go (its DBAPI connection closed, not pooled) and open another;
        :class:`StorageError` caused by the driver's error when none can be opened."""
        self._lost_conn = True  # until another is open
        with contextlib.suppress(sa_exc.SQLAlchemyError, psycopg.Error):
            self._conn.invalidate()
        with contextlib.suppress(sa_exc.SQLAlchemyError, psycopg.Error):
            self._conn.close()
        try:
            with guard(self.location, lambda: "connect"):
                self._conn = self._engine.connect()
        except sa_exc.TimeoutError as exc:  # the pool lent every connection (readers keep one for us)
            raise StorageError(f"connect failed on {self.location.shown!r}: {one_line(exc)}") from exc
        self._raw = self._conn.connection.dbapi_connection
        self._lost_conn = False

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
            time.sleep(BACKOFF_S[min(tries, len(BACKOFF_S) - 1)])
            tries += 1
            try:
                self._reconnect()
            except StorageError as exc:  # no connection (yet)
                why = one_line(exc.__cause__ or exc)
                continue
            try:
                return self._catch_up()
            except StorageError as exc:
                cause = exc.__cause__
                if not (isinstance(cause, sa_exc.DBAPIError) and connection_lost(cause.orig, self._raw)):
                    self._doom(one_line(exc))
                    raise
                why = one_line(cause)

    def _catch_up(self) -> str:
        """On a new connection: find out whether the commit in flight landed, or send the writes again."""
        if self._committing is not None:
            done = self._commits_done(lock=True)  # waits for the old connection's backend, if it still holds the row
            if done == self._committing:
                self._plain_commit()
                self._landed = True
                return "the commit in flight had landed"
            if done != self._committing - 1:
                raise StorageError(
                    f"cannot tell whether the last commit landed on {self.location.shown!r}: this writer's row "
                    f"of writer_fence is {'gone' if done is None else f'at {done}, not {self._committing - 1}'}"
                )
        if not self._replayable:
            what = "a schema migration" if self._migrated else f"more than {self.replay_rows} rows, too big"
            raise StorageError(
                f"lost the connection to database {self.location.shown!r} in a transaction of {what} to send "
                "again; it is rolled back"
                + ("; start the engine again to run the migration afresh" if self._migrated else "")
            )
        for write in self._journal:
            self._send(write)
        return f"reconnected, and sent the open transaction's {len(self._journal)} writes again"
