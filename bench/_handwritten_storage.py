"""The engine's hand-written storage as it was before SQLAlchemy (main at ad05e72): the named baseline
of ``bench/engine_ingest.py``, which measures :class:`support_engine.storage.Storage` against it in
the same run.

Copied from ``support_engine/storage.py`` of that commit: the same schema (SQLite DDL strings) and
the same statements, grouped by ``itertools.groupby`` over consecutive actions, on
:mod:`_handwritten_database`; only what opening an older database did (column patching, folding
the oldest ledger) is left out, as the benchmark opens a new file. Not part of the engine.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import operator
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import _handwritten_database as database  # bench/ is on the path of its scripts
import msgspec
from _handwritten_database import statements

from contracts.messages import DeviceRecord
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

__all__ = ["Storage"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS ingest_ledger (
    kind TEXT NOT NULL, source TEXT NOT NULL, boot_id INTEGER NOT NULL, high INTEGER NOT NULL,
    missing BLOB NOT NULL, ts REAL NOT NULL, PRIMARY KEY (kind, source, boot_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cases (
    case_id TEXT PRIMARY KEY, device_id TEXT NOT NULL, issue TEXT NOT NULL, state TEXT NOT NULL,
    priority INTEGER NOT NULL, origin TEXT NOT NULL, opened_s REAL NOT NULL, updated_s REAL NOT NULL,
    escalation INTEGER NOT NULL DEFAULT 0, first_response_s REAL, symptom TEXT);
CREATE INDEX IF NOT EXISTS cases_by_device ON cases (device_id);
CREATE TABLE IF NOT EXISTS work_orders (
    work_order_id TEXT PRIMARY KEY, case_id TEXT NOT NULL REFERENCES cases(case_id),
    device_id TEXT NOT NULL, state TEXT NOT NULL, visit INTEGER NOT NULL, updated_s REAL NOT NULL,
    technician_id TEXT);
CREATE INDEX IF NOT EXISTS work_orders_by_case ON work_orders (case_id);
CREATE TABLE IF NOT EXISTS alerts (
    alert_id TEXT PRIMARY KEY, device_id TEXT NOT NULL, rule TEXT NOT NULL, case_id TEXT,
    value REAL, raised_s REAL NOT NULL, cleared_s REAL, flapping INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS alerts_by_device ON alerts (device_id);
CREATE INDEX IF NOT EXISTS alerts_by_case ON alerts (case_id);
CREATE TABLE IF NOT EXISTS sla_breaches (
    case_id TEXT NOT NULL, clock TEXT NOT NULL, ts REAL NOT NULL, PRIMARY KEY (case_id, clock));
CREATE TABLE IF NOT EXISTS sla_warnings (
    case_id TEXT NOT NULL, clock TEXT NOT NULL, ts REAL NOT NULL, PRIMARY KEY (case_id, clock));
CREATE TABLE IF NOT EXISTS devices (
    device_id TEXT PRIMARY KEY, product TEXT, owner_id TEXT, region TEXT, contract TEXT,
    warranty_until_s REAL, record TEXT, reported TEXT NOT NULL DEFAULT '{}', desired TEXT NOT NULL DEFAULT '{}',
    offline INTEGER NOT NULL DEFAULT 0, updated_s REAL NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS quarantine (
    device_id TEXT PRIMARY KEY, first_s REAL NOT NULL, last_s REAL NOT NULL, messages INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS campaigns (
    campaign_id TEXT PRIMARY KEY, rule TEXT NOT NULL, action TEXT NOT NULL, cohort TEXT NOT NULL,
    state TEXT NOT NULL, stage INTEGER NOT NULL, targets INTEGER NOT NULL, sent INTEGER NOT NULL,
    failed INTEGER NOT NULL, opened_s REAL NOT NULL, updated_s REAL NOT NULL, reason TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY, ts REAL NOT NULL, kind TEXT NOT NULL, device_id TEXT NOT NULL,
    ref TEXT NOT NULL, payload TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS outbox_by_device ON outbox (device_id);
CREATE TABLE IF NOT EXISTS state_changes (
    id INTEGER PRIMARY KEY, case_id TEXT NOT NULL, kind TEXT NOT NULL, ref TEXT NOT NULL, state TEXT NOT NULL,
    ts REAL NOT NULL, priority INTEGER, visit INTEGER, technician_id TEXT);
CREATE INDEX IF NOT EXISTS state_changes_by_case ON state_changes (case_id);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY, topic TEXT NOT NULL, reason TEXT NOT NULL, detail TEXT NOT NULL,
    payload BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS inbox (arrival INTEGER PRIMARY KEY, topic TEXT NOT NULL, payload BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS engine_state (id INTEGER PRIMARY KEY CHECK (id = 1), state BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS ingest_audit (
    kind TEXT NOT NULL, source TEXT NOT NULL, boot_id INTEGER NOT NULL, seq INTEGER NOT NULL);
"""


class Storage:
    """One database holding everything the engine must not forget: SQLite (WAL) or PostgreSQL.

    ``where`` is a file path, ``sqlite:///PATH``, ``:memory:``, or ``postgresql://user@host:port/db``
    (also ``postgres://``). ``path`` names it: the file, or the URL without its password. Used by
    one thread; writes go in one open transaction that :meth:`commit` makes durable.
    :class:`~support_engine.database.DatabaseInUse` if another process writes the same SQLite file.
    """

    def __init__(self, where: str | Path) -> None:
        location = database.locate(where)
        self._db = database.connect(location)
        try:
            for statement in statements(_SCHEMA):
                self._db.execute(statement)
            self._db.commit()
        except BaseException:
            with contextlib.suppress(EngineError):
                self._db.rollback()  # half a schema upgrade is not committed on the way out
            self._db.close()
            raise
        self.path = location.shown

    # -- reads ----------------------------------------------------------------------------------
    def ledger(self) -> list[StreamRow]:
        """The de-duplication ledger: per stream, its highest seq and the seqs below it not seen yet."""
        rows = self._db.rows("SELECT kind, source, boot_id, high, missing FROM ingest_ledger")
        return [
            (str(kind), str(source), int(boot), int(high), int.from_bytes(bytes(missing), "little"))
            for kind, source, boot, high, missing in rows
        ]

    def counters(self) -> dict[str, int]:
        return {str(name): int(value) for name, value in self._db.rows("SELECT name, value FROM counters")}

    def state(self) -> bytes | None:
        """The engine core's last saved snapshot (JSON), if any."""
        rows = self._db.rows("SELECT state FROM engine_state WHERE id = 1")
        return bytes(rows[0][0]) if rows else None

    def inbox(self) -> list[tuple[str, bytes]]:
        """Messages received and acknowledged but not yet handled (event time), in arrival order."""
        rows = self._db.rows("SELECT topic, payload FROM inbox ORDER BY arrival")
        return [(str(t), bytes(p)) for t, p in rows]

    def devices(self) -> list[tuple[str, DeviceRecord | None, dict[str, str], dict[str, str], bool]]:
        """Every device row: id, registry record (None: not registered), reported and desired state, offline."""
        rows = self._db.rows("SELECT device_id, record, reported, desired, offline FROM devices ORDER BY device_id")
        return [
            (
                str(device),
                msgspec.json.decode(record, type=DeviceRecord) if record else None,
                msgspec.json.decode(reported, type=dict[str, str]),
                msgspec.json.decode(desired, type=dict[str, str]),
                bool(offline),
            )
            for device, record, reported, desired, offline in rows
        ]

    def count(self, table: str) -> int:
        if table not in {
            "ingest_ledger",
            "cases",
            "work_orders",
            "alerts",
            "outbox",
            "dead_letters",
            "sla_breaches",
            "sla_warnings",
            "inbox",
            "devices",
            "quarantine",
            "campaigns",
        }:
            raise ValueError(f"no table {table!r}")
        return int(self._db.rows(f"SELECT count(*) FROM {table}")[0][0])

    # -- writes (inside the open transaction) ---------------------------------------------------
    def record_ledger(self, rows: Iterable[tuple[str, str, int, int, int, float]]) -> None:
        """Write streams of the ledger (:meth:`Ledger.drain`'s rows): highest seq, missing seqs, latest ts."""
        self._db.executemany(
            "INSERT INTO ingest_ledger VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(kind, source, boot_id) DO UPDATE SET"
            " high=excluded.high, missing=excluded.missing,"
            " ts=CASE WHEN excluded.ts > ingest_ledger.ts THEN excluded.ts ELSE ingest_ledger.ts END",
            [
                (kind, source, boot_id, high, missing.to_bytes((missing.bit_length() + 7) // 8, "little"), ts)
                for kind, source, boot_id, high, missing, ts in rows
            ],
        )

    def audit(self, keys: Iterable[tuple[str, str, int, int]]) -> None:
        """Record the key of every message taken in, once per effect (``sot engine --audit``): no key
        is unique here, so a message that took effect twice shows twice. Fault tests read it back."""
        self._db.executemany("INSERT INTO ingest_audit (kind, source, boot_id, seq) VALUES (?, ?, ?, ?)", list(keys))

    def hold(self, rows: Iterable[tuple[str, bytes]]) -> None:
        """Keep received messages until they are handled (so that they can be acknowledged now)."""
        self._db.executemany("INSERT INTO inbox (topic, payload) VALUES (?, ?)", list(rows))

    def save_state(self, state: bytes) -> None:
        """Replace the engine core's snapshot (in the open transaction, with the changes it reflects)."""
        self._db.execute(
            "INSERT INTO engine_state VALUES (1, ?) ON CONFLICT(id) DO UPDATE SET state=excluded.state", (state,)
        )

    def release(self) -> None:
        """Forget the held messages: they have been handled in this transaction."""
        self._db.execute("DELETE FROM inbox")

    def dead_letter(self, topic: str, reason: str, detail: str, payload: bytes) -> None:
        self._db.execute(
            "INSERT INTO dead_letters (topic, reason, detail, payload) VALUES (?, ?, ?, ?)",
            (topic, reason, detail, payload),
        )

    def apply(self, actions: Iterable[Action]) -> None:
        """Write what ``actions`` changed (in order; a run of writes by the same statement as one ``executemany``),
        and log each case's and work order's change of state (a case's timeline reads the log)."""
        actions = list(actions)
        for sql, rows in itertools.groupby(_writes(actions), key=operator.itemgetter(0)):
            self._db.executemany(sql, [args for _, args in rows])
        changes = list(_state_changes(actions))
        if changes:
            self._db.executemany(
                "INSERT INTO state_changes (case_id, kind, ref, state, ts, priority, visit, technician_id)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                changes,
            )

    def set_counters(self, counters: Mapping[str, int]) -> None:
        self._db.executemany(
            "INSERT INTO counters VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value=excluded.value",
            sorted(counters.items()),
        )

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
        self._db.close()

    def dump_json(self, table: str) -> str:
        """A table as JSON rows (for inspection and tests); binary values as hex."""
        return json.dumps(self._db.dicts(f"SELECT * FROM {table}"), default=_hex)


def _hex(value: object) -> str:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _state_changes(actions: Iterable[Action]) -> Iterator[tuple[object, ...]]:
    """A row of the ``state_changes`` log per case or work-order change, in order."""
    for a in actions:
        if isinstance(a, CaseChanged):
            yield (a.case_id, "case", a.case_id, a.state, a.ts, a.priority, None, None)
        elif isinstance(a, WorkOrderChanged):
            yield (a.case_id, "work_order", a.work_order_id, a.state, a.ts, None, a.visit, a.technician_id)


def _writes(actions: Iterable[Action]) -> Iterator[tuple[str, tuple[object, ...]]]:
    """The (statement, arguments) that write what ``actions`` changed, in order."""
    for a in actions:
        if isinstance(a, CaseChanged):
            yield (
                "INSERT INTO cases VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(case_id) DO UPDATE SET"
                " state=excluded.state, priority=excluded.priority, updated_s=excluded.updated_s,"
                " escalation=excluded.escalation, first_response_s=excluded.first_response_s,"
                " symptom=excluded.symptom",
                (
                    a.case_id,
                    a.device_id,
                    a.issue,
                    a.state,
                    a.priority,
                    a.origin,
                    a.opened_s,
                    a.ts,
                    a.escalation,
                    a.first_response_s,
                    a.symptom,
                ),
            )
        elif isinstance(a, WorkOrderChanged):
            yield (
                "INSERT INTO work_orders VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(work_order_id) DO UPDATE SET"
                " state=excluded.state, visit=excluded.visit, updated_s=excluded.updated_s",
                (a.work_order_id, a.case_id, a.device_id, a.state, a.visit, a.ts, a.technician_id),
            )
        elif isinstance(a, RaiseAlert):
            yield (
                "INSERT INTO alerts VALUES (?, ?, ?, ?, ?, ?, NULL, 0)",
                (a.alert_id, a.device_id, a.rule, a.case_id, a.value, a.ts),
            )
        elif isinstance(a, AlertFlapping):
            yield ("UPDATE alerts SET flapping = ? WHERE alert_id = ?", (int(a.flapping), a.alert_id))
        elif isinstance(a, SlaWarned):
            yield ("INSERT INTO sla_warnings VALUES (?, ?, ?) ON CONFLICT DO NOTHING", (a.case_id, a.clock, a.ts))
        elif isinstance(a, Provisioned):
            r = a.record
            yield (
                "INSERT INTO devices (device_id, product, owner_id, region, contract, warranty_until_s, record)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(device_id) DO UPDATE SET product=excluded.product,"
                " owner_id=excluded.owner_id, region=excluded.region, contract=excluded.contract,"
                " warranty_until_s=excluded.warranty_until_s, record=excluded.record",
                (
                    r.device_id,
                    r.product,
                    r.owner_id,
                    r.region,
                    r.contract,
                    r.warranty_until_s,
                    msgspec.json.encode(r).decode(),
                ),
            )
        elif isinstance(a, DeviceChanged):
            yield (
                "INSERT INTO devices (device_id, reported, desired, offline, updated_s) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT(device_id) DO UPDATE SET reported=excluded.reported, desired=excluded.desired,"
                " offline=excluded.offline, updated_s=excluded.updated_s",
                (
                    a.device_id,
                    msgspec.json.encode(a.reported).decode(),
                    msgspec.json.encode(a.desired).decode(),
                    int(a.offline),
                    a.ts,
                ),
            )
        elif isinstance(a, Quarantined):
            yield (
                "INSERT INTO quarantine VALUES (?, ?, ?, 1) ON CONFLICT(device_id) DO UPDATE SET"
                " last_s=excluded.last_s, messages=quarantine.messages + 1",
                (a.device_id, a.ts, a.ts),
            )
        elif isinstance(a, CampaignChanged):
            yield (
                "INSERT INTO campaigns VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(campaign_id) DO UPDATE"
                " SET state=excluded.state, stage=excluded.stage, sent=excluded.sent, failed=excluded.failed,"
                " updated_s=excluded.updated_s, reason=excluded.reason",
                (
                    a.campaign_id,
                    a.rule,
                    a.action,
                    a.cohort,
                    a.state,
                    a.stage,
                    a.targets,
                    a.sent,
                    a.failed,
                    a.opened_s,
                    a.ts,
                    a.reason,
                ),
            )
        elif isinstance(a, ClearAlert):
            yield ("UPDATE alerts SET cleared_s = ? WHERE alert_id = ?", (a.ts, a.alert_id))
        elif isinstance(a, SlaBreached):
            yield ("INSERT INTO sla_breaches VALUES (?, ?, ?) ON CONFLICT DO NOTHING", (a.case_id, a.clock, a.ts))
        elif isinstance(a, (CreateWorkOrder, Notify, SendCommand, OrderConsumable)):
            m = a.message
            ref = (
                getattr(m, "work_order_id", None)
                or getattr(m, "notification_id", None)
                or getattr(m, "command_id", None)
                or getattr(m, "order_id", "")
            )
            yield (
                "INSERT INTO outbox (ts, kind, device_id, ref, payload) VALUES (?, ?, ?, ?, ?)",
                (m.ts, type(a).__name__, m.device_id, ref, msgspec.json.encode(m).decode()),
            )
