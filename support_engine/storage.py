"""Storage of the engine: the de-duplication ledger, cases, work orders and their changes, alerts, the outbox.

One SQLite database (WAL) or one PostgreSQL database, through the same class: the tables are
:mod:`support_engine.schema`'s, every statement a SQLAlchemy Core construct built once per
dialect (:class:`_Statements`), upserts the dialects' ``INSERT … ON CONFLICT``. Opening a
database brings its schema to the revision this engine runs on (:func:`support_engine.migrations.prepare`),
and refuses one that a newer engine has upgraded.

Writes are grouped: the shell calls :meth:`Storage.commit` once per batch of messages, and only
then acknowledges them to the broker, so an acknowledged message is always a committed one. A
transaction is that unit of work, whole or not at all: when PostgreSQL's connection is lost in
the middle of one (or during its COMMIT), the writer reconnects and sends all of its writes again
(unless the COMMIT had landed), and :attr:`Storage.waiting` says since when meanwhile; a
transaction in which a statement failed is rolled back, never committed in part.

One engine per database: a second process's :class:`Storage` on the same SQLite file is refused
(:class:`~support_engine.database.DatabaseInUse`); read-only connections are not.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import logging
import operator
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql import Executable

from support_engine import database, inspection, migrations
from support_engine.core.actions import (
    Action,
    AlertFlapping,
    CampaignChanged,
    CaseChanged,
    ClearAlert,
    CreateWorkOrder,
    DeviceChanged,
    Notify,
    OrderConsumable,
    Provisioned,
    Quarantined,
    RaiseAlert,
    SendCommand,
    SlaBreached,
    SlaWarned,
    WorkOrderChanged,
)
from support_engine.core.ledger import StreamRow
from support_engine.errors import EngineError
from support_engine.schema import (
    TABLES,
    alerts,
    campaigns,
    cases,
    counters,
    dead_letters,
    devices,
    engine_state,
    inbox,
    ingest_audit,
    ingest_ledger,
    outbox,
    quarantine,
    sla_breaches,
    sla_warnings,
    state_changes,
    work_orders,
)

__all__ = ["Storage"]

log = logging.getLogger("sot.engine")
_COUNTED = frozenset(
    {
        "ingest_ledger", "cases", "work_orders", "alerts", "outbox", "dead_letters", "sla_breaches",
        "sla_warnings", "inbox", "devices", "quarantine", "campaigns", "state_changes",
    }
)  # fmt: skip


def _upsert(
    table: sa.Table, dialect: str, keys: Iterable[str], update: Iterable[str], **computed: Callable[[Any], Any]
) -> Executable:
    """``INSERT … ON CONFLICT (keys) DO UPDATE``: ``update`` from the row offered, ``computed`` from
    ``excluded`` (the row offered) and the stored row."""
    insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
    set_: dict[str, Any] = {name: insert.excluded[name] for name in update}
    set_ |= {name: make(insert.excluded) for name, make in computed.items()}
    return insert.on_conflict_do_update(index_elements=[table.c[k] for k in keys], set_=set_)


def _once(table: sa.Table, dialect: str) -> Executable:
    """``INSERT … ON CONFLICT DO NOTHING``: the first row of a key stays."""
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table).on_conflict_do_nothing()


def _set_where(table: sa.Table, key: str, column: str) -> Executable:
    """``UPDATE table SET column = :column_ WHERE key = :key_`` (rows of ``{key_: …, column_: …}``)."""
    return sa.update(table).where(table.c[key] == sa.bindparam(f"{key}_")).values({column: sa.bindparam(f"{column}_")})


@dataclass(frozen=True, slots=True)
class _Statements:
    """Every statement the storage writes with, built once per dialect (SQLAlchemy caches each compiled)."""

    ledger: Executable
    counters: Executable
    state: Executable
    audit: Executable
    hold: Executable
    release: Executable
    dead_letter: Executable
    by_name: Mapping[str, Executable]  # what :func:`_writes` names


@functools.cache
def _statements(dialect: str) -> _Statements:
    newer_ts = lambda x: sa.case((x.ts > ingest_ledger.c.ts, x.ts), else_=ingest_ledger.c.ts)  # noqa: E731
    registry = ("product", "owner_id", "region", "contract", "warranty_until_s", "record")
    by_name: dict[str, Executable] = {
        "provisioned": _upsert(devices, dialect, ["device_id"], registry),
        "device": _upsert(devices, dialect, ["device_id"], ["reported", "desired", "offline", "updated_s"]),
        "case": _upsert(
            cases, dialect, ["case_id"], ["state", "priority", "updated_s", "escalation", "first_response_s", "symptom"]
        ),
        "work_order": _upsert(work_orders, dialect, ["work_order_id"], ["state", "visit", "updated_s"]),
        "alert": sa.insert(alerts),
        "alert_flapping": _set_where(alerts, "alert_id", "flapping"),
        "alert_cleared": _set_where(alerts, "alert_id", "cleared_s"),
        "sla_warning": _once(sla_warnings, dialect),
        "sla_breach": _once(sla_breaches, dialect),
        "quarantined": _upsert(
            quarantine, dialect, ["device_id"], ["last_s"], messages=lambda x: quarantine.c.messages + 1
        ),
        "campaign": _upsert(
            campaigns, dialect, ["campaign_id"], ["state", "stage", "sent", "failed", "updated_s", "reason"]
        ),
        "outbox": sa.insert(outbox),
        "state_change": sa.insert(state_changes),
    }
    return _Statements(
        ledger=_upsert(ingest_ledger, dialect, ["kind", "source", "boot_id"], ["high", "missing"], ts=newer_ts),
        counters=_upsert(counters, dialect, ["name"], ["value"]),
        state=_upsert(engine_state, dialect, ["id"], ["state"]),
        audit=sa.insert(ingest_audit),
        hold=sa.insert(inbox),
        release=sa.delete(inbox),
        dead_letter=sa.insert(dead_letters),
        by_name=by_name,
    )


_ORDER = {
    name: rank
    for rank, names in enumerate(
        [
            ("provisioned", "device"),
            ("case",),
            ("work_order",),  # after the cases they reference
            ("alert", "alert_flapping", "alert_cleared"),
            ("sla_warning",),
            ("sla_breach",),
            ("quarantined",),
            ("campaign",),
            ("outbox",),
            ("state_change",),
        ]
    )
    for name in names
}
"""Writes of :meth:`Storage.apply` by table: each table's in the order they came, the tables in this order."""


class Storage:
    """One database holding everything the engine must not forget: SQLite (WAL) or PostgreSQL.

    ``where`` is a file path, ``:memory:``, a URL (``sqlite:///PATH``,
    ``postgresql+psycopg://user@host:port/db``, also ``postgresql://`` and ``postgres://``) or a
    :class:`~support_engine.database.Database` (the HTTP API then reads through its pool).
    ``path`` names it: the file, or the URL without its password. Used by one thread; writes go in
    one open transaction that :meth:`commit` makes durable.
    :class:`~support_engine.database.DatabaseInUse` if another process writes the same SQLite file;
    :class:`~support_engine.errors.DatabaseTooNew` if a newer engine has upgraded its schema.
    """

    def __init__(self, where: str | Path | database.Database) -> None:
        self._owns = not isinstance(where, database.Database)
        self.database = database.Database.at(where)
        location = self.database.location
        self._db = self.database.writer()
        try:
            with database.guard(location, lambda: "upgrading the schema"):
                done = migrations.prepare(self._db)
            self._db.commit()
        except BaseException:
            with contextlib.suppress(EngineError):
                self._db.rollback()  # half a schema upgrade is not committed on the way out
            self._db.close()
            if self._owns:
                self.database.dispose()
            raise
        for step in done:
            log.info("database %s: %s", location.shown, step)
        self._sql = _statements(self._db.dialect)
        self.path = location.shown

    # -- reads ----------------------------------------------------------------------------------
    def ledger(self) -> list[StreamRow]:
        """The de-duplication ledger: per stream, its highest seq and the seqs below it not seen yet."""
        t = ingest_ledger.c
        rows = self._db.rows(sa.select(t.kind, t.source, t.boot_id, t.high, t.missing))
        return [
            (str(kind), str(source), int(boot), int(high), int.from_bytes(bytes(missing), "little"))
            for kind, source, boot, high, missing in rows
        ]

    def counters(self) -> dict[str, int]:
        return inspection.counters(self._db)

    def state(self) -> bytes | None:
        """The engine core's last saved snapshot (JSON), if any."""
        return inspection.state(self._db)

    def inbox(self) -> list[tuple[str, bytes]]:
        """Messages received and acknowledged but not yet handled (event time), in arrival order."""
        rows = self._db.rows(sa.select(inbox.c.topic, inbox.c.payload).order_by(inbox.c.arrival))
        return [(str(t), bytes(p)) for t, p in rows]

    def devices(self) -> list[inspection.DeviceRow]:
        """Every device row: id, registry record (None: not registered), reported and desired state, offline."""
        return inspection.devices(self._db)

    def count(self, table: str) -> int:
        if table not in _COUNTED:
            raise ValueError(f"no table {table!r}")
        return int(self._db.rows(sa.select(sa.func.count()).select_from(TABLES[table]))[0][0])

    # -- writes (inside the open transaction) ---------------------------------------------------
    def record_ledger(self, rows: Iterable[tuple[str, str, int, int, int, float]]) -> None:
        """Write streams of the ledger (:meth:`Ledger.drain`'s rows): highest seq, missing seqs, latest ts."""
        self._db.executemany(
            self._sql.ledger,
            [
                {
                    "kind": kind,
                    "source": source,
                    "boot_id": boot_id,
                    "high": high,
                    "missing": missing.to_bytes((missing.bit_length() + 7) // 8, "little"),
                    "ts": ts,
                }
                for kind, source, boot_id, high, missing, ts in rows
            ],
        )

    def audit(self, keys: Iterable[tuple[str, str, int, int]]) -> None:
        """Record the key of every message taken in, once per effect (``sot engine --audit``): no key
        is unique here, so a message that took effect twice shows twice. Fault tests read it back."""
        self._db.executemany(self._sql.audit, [{"kind": k, "source": s, "boot_id": b, "seq": q} for k, s, b, q in keys])

    def hold(self, rows: Iterable[tuple[str, bytes]]) -> None:
        """Keep received messages until they are handled (so that they can be acknowledged now)."""
        self._db.executemany(self._sql.hold, [{"topic": t, "payload": p} for t, p in rows])

    def save_state(self, state: bytes) -> None:
        """Replace the engine core's snapshot (in the open transaction, with the changes it reflects)."""
        self._db.execute(self._sql.state, {"id": 1, "state": state})

    def release(self) -> None:
        """Forget the held messages: they have been handled in this transaction."""
        self._db.execute(self._sql.release)

    def dead_letter(self, topic: str, reason: str, detail: str, payload: bytes) -> None:
        self._db.execute(
            self._sql.dead_letter, {"topic": topic, "reason": reason, "detail": detail, "payload": payload}
        )

    def apply(self, actions: Iterable[Action]) -> None:
        """Write what ``actions`` changed, and log each case's and work order's change of state in
        ``state_changes`` (a case's timeline reads the log): table by table (:data:`_ORDER`), each table's writes in
        order, a run of writes by the same statement as one ``executemany``. Tables do not depend
        on one another's rows but for a work order's case, which comes first, so the rows come
        out as they would written one by one; the runs are longer (one a table and step, not one
        an action)."""
        writes = sorted(_writes(actions), key=operator.itemgetter(0))  # stable: each table's order kept
        by_name = self._sql.by_name
        for name, run in itertools.groupby(writes, key=operator.itemgetter(1)):
            self._db.executemany(by_name[name], [row for _, _, row in run])

    def set_counters(self, values: Mapping[str, int]) -> None:
        self._db.executemany(self._sql.counters, [{"name": k, "value": v} for k, v in sorted(values.items())])

    def commit(self) -> None:
        """Make every write since the last commit durable, then open the next transaction."""
        self._db.commit()

    @property
    def waiting(self) -> float | None:
        """Since when (``time.monotonic()``) the writer is held up, None when it is not: another
        process's lock on the SQLite file, or PostgreSQL's connection lost (while it reconnects)."""
        return self._db.waiting

    @property
    def held_up(self) -> str | None:
        """What holds the writer up and for how long (for ``/healthz``), None when nothing does."""
        since = self._db.waiting
        return None if since is None else f"{self._db.waiting_for} for {time.monotonic() - since:.0f} s"

    def close(self) -> None:
        """Close the writer, and the readers' pool when it is ours. On SQLite the pool goes first:
        SQLite checkpoints the WAL into the file and removes it only as its last connection closes,
        which leaves the file at rest. On PostgreSQL the writer goes first: its connection is one of
        the pool's, closed with it."""
        sqlite_ = self.database.location.backend == "sqlite"
        if self._owns and sqlite_:
            self.database.dispose()
        self._db.close()
        if self._owns and not sqlite_:
            self.database.dispose()

    def dump_json(self, table: str) -> str:
        """A table as JSON rows (for inspection and tests); binary values as hex."""
        if table not in TABLES:
            raise ValueError(f"no table {table!r}")
        return json.dumps(self._db.dicts(sa.select(TABLES[table])), default=_hex)


def _hex(value: object) -> str:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _writes(actions: Iterable[Action]) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """(table rank, statement name, row) of each write of what ``actions`` changed, in order."""
    order = _ORDER
    for a in actions:
        if isinstance(a, CaseChanged):
            yield order["case"], "case", {
                "case_id": a.case_id, "device_id": a.device_id, "issue": a.issue, "state": a.state,
                "priority": a.priority, "origin": a.origin, "opened_s": a.opened_s, "updated_s": a.ts,
                "escalation": a.escalation, "first_response_s": a.first_response_s, "symptom": a.symptom,
            }  # fmt: skip
            yield order["state_change"], "state_change", {
                "case_id": a.case_id, "kind": "case", "ref": a.case_id, "state": a.state, "ts": a.ts,
                "priority": a.priority, "visit": None, "technician_id": None,
            }  # fmt: skip
        elif isinstance(a, WorkOrderChanged):
            yield order["work_order"], "work_order", {
                "work_order_id": a.work_order_id, "case_id": a.case_id, "device_id": a.device_id, "state": a.state,
                "visit": a.visit, "updated_s": a.ts, "technician_id": a.technician_id,
            }  # fmt: skip
            yield order["state_change"], "state_change", {
                "case_id": a.case_id, "kind": "work_order", "ref": a.work_order_id, "state": a.state, "ts": a.ts,
                "priority": None, "visit": a.visit, "technician_id": a.technician_id,
            }  # fmt: skip
        elif isinstance(a, RaiseAlert):
            yield order["alert"], "alert", {
                "alert_id": a.alert_id, "device_id": a.device_id, "rule": a.rule, "case_id": a.case_id,
                "value": a.value, "raised_s": a.ts, "cleared_s": None, "flapping": 0,
            }  # fmt: skip
        elif isinstance(a, AlertFlapping):
            yield order["alert_flapping"], "alert_flapping", {"alert_id_": a.alert_id, "flapping_": int(a.flapping)}
        elif isinstance(a, SlaWarned):
            yield order["sla_warning"], "sla_warning", {"case_id": a.case_id, "clock": a.clock, "ts": a.ts}
        elif isinstance(a, Provisioned):
            r = a.record
            yield order["provisioned"], "provisioned", {
                "device_id": r.device_id, "product": r.product, "owner_id": r.owner_id, "region": r.region,
                "contract": r.contract, "warranty_until_s": r.warranty_until_s,
                "record": msgspec.json.encode(r).decode(),
            }  # fmt: skip
        elif isinstance(a, DeviceChanged):
            yield order["device"], "device", {
                "device_id": a.device_id, "reported": msgspec.json.encode(a.reported).decode(),
                "desired": msgspec.json.encode(a.desired).decode(), "offline": int(a.offline), "updated_s": a.ts,
            }  # fmt: skip
        elif isinstance(a, Quarantined):
            yield (
                order["quarantined"],
                "quarantined",
                {"device_id": a.device_id, "first_s": a.ts, "last_s": a.ts, "messages": 1},
            )
        elif isinstance(a, CampaignChanged):
            yield order["campaign"], "campaign", {
                "campaign_id": a.campaign_id, "rule": a.rule, "action": a.action, "cohort": a.cohort,
                "state": a.state, "stage": a.stage, "targets": a.targets, "sent": a.sent, "failed": a.failed,
                "opened_s": a.opened_s, "updated_s": a.ts, "reason": a.reason,
            }  # fmt: skip
        elif isinstance(a, ClearAlert):
            yield order["alert_cleared"], "alert_cleared", {"alert_id_": a.alert_id, "cleared_s_": a.ts}
        elif isinstance(a, SlaBreached):
            yield order["sla_breach"], "sla_breach", {"case_id": a.case_id, "clock": a.clock, "ts": a.ts}
        elif isinstance(a, (CreateWorkOrder, Notify, SendCommand, OrderConsumable)):
            m = a.message
            ref = (
                getattr(m, "work_order_id", None)
                or getattr(m, "notification_id", None)
                or getattr(m, "command_id", None)
                or getattr(m, "order_id", "")
            )
            yield order["outbox"], "outbox", {
                "ts": m.ts, "kind": type(a).__name__, "device_id": m.device_id, "ref": ref,
                "payload": msgspec.json.encode(m).decode(),
            }  # fmt: skip
