"""One finished run as the experiments see it: the world's records and the engine's own records.

The world's records are the ground truth (what really failed, when, who fixed it). The engine's
records are what the engine believed and did, read back from its database after the run: these are
the claims that the scorecard checks against the truth.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sim.records import Records
from sim.scenario import Scenario

__all__ = [
    "AlertRow",
    "CaseRow",
    "EngineLog",
    "OutboxRow",
    "engine_databases",
    "read_engine_logs",
    "RunData",
    "SlaBreachRow",
    "WorkOrderRow",
    "owner_contacts",
    "read_engine_log",
    "resolved_times",
]


@dataclass(frozen=True)
class AlertRow:
    """An alert the engine raised: a rule that fired for a device."""

    alert_id: str
    device_id: str
    rule: str
    case_id: str | None
    raised_s: float
    cleared_s: float | None


@dataclass(frozen=True)
class CaseRow:
    """A case the engine opened, with the issue it believed it was and where it came from."""

    case_id: str
    device_id: str
    issue: str
    state: str
    priority: int
    origin: str  # telemetry, device, contact, campaign, offline, ...
    opened_s: float
    updated_s: float
    first_response_s: float | None


@dataclass(frozen=True)
class WorkOrderRow:
    """A work order the engine created, as it last knew it."""

    work_order_id: str
    case_id: str
    device_id: str
    state: str
    visit: int
    updated_s: float
    technician_id: str | None


@dataclass(frozen=True)
class OutboxRow:
    """One message the engine sent: a command, a notification, a work order or an order (JSON payload)."""

    ts: float
    kind: str  # SendCommand, Notify, CreateWorkOrder, OrderConsumable
    device_id: str
    ref: str
    payload: str


@dataclass(frozen=True)
class SlaBreachRow:
    """One SLA clock of one case the engine recorded as breached, at the time the clock passed its target."""

    case_id: str
    clock: str  # first_response or resolution
    ts: float


@dataclass(frozen=True)
class EngineLog:
    """The engine's own records of a run."""

    alerts: list[AlertRow] = field(default_factory=list)
    cases: list[CaseRow] = field(default_factory=list)
    work_orders: list[WorkOrderRow] = field(default_factory=list)
    outbox: list[OutboxRow] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    sla_breaches: list[SlaBreachRow] = field(default_factory=list)


def engine_databases(workdir: Path) -> list[Path]:
    """A run's engine databases: ``engine.sqlite``, or one ``engine-pK.sqlite`` per partition."""
    single = workdir / "engine.sqlite"
    if single.exists():
        return [single]
    return sorted(workdir.glob("engine-p*.sqlite"), key=lambda p: int(p.stem.removeprefix("engine-p") or 0))


def read_engine_logs(paths: list[Path]) -> EngineLog:
    """The engine's records of one run, from one database or from each partition's.

    Partitions own disjoint devices, so their records merge by concatenation: rows in each table's
    order (time, then device, then id, so that ties do not hang on a partition's ids), counters summed."""
    if len(paths) == 1:
        return read_engine_log(paths[0])
    if not paths:
        raise FileNotFoundError("no engine database (engine.sqlite or engine-pK.sqlite) in the run's directory")
    logs = [read_engine_log(path) for path in paths]
    counters: dict[str, int] = {}
    for log in logs:
        for name, value in log.counters.items():
            counters[name] = counters.get(name, 0) + value
    return EngineLog(
        alerts=sorted((r for log in logs for r in log.alerts), key=lambda r: (r.raised_s, r.device_id, r.alert_id)),
        cases=sorted((r for log in logs for r in log.cases), key=lambda r: (r.opened_s, r.device_id, r.case_id)),
        work_orders=sorted((r for log in logs for r in log.work_orders), key=lambda r: (r.device_id, r.work_order_id)),
        outbox=sorted((r for log in logs for r in log.outbox), key=lambda r: (r.ts, r.device_id)),
        counters=counters,
        sla_breaches=sorted((r for log in logs for r in log.sla_breaches), key=lambda r: (r.ts, r.case_id, r.clock)),
    )


def read_engine_log(db_path: Path) -> EngineLog:
    """Read the engine's records back from its SQLite database (read-only; the engine has stopped)."""
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return EngineLog(
            alerts=[
                AlertRow(*row)
                for row in db.execute(
                    "SELECT alert_id, device_id, rule, case_id, raised_s, cleared_s FROM alerts ORDER BY raised_s, alert_id"
                )
            ],
            cases=[
                CaseRow(*row)
                for row in db.execute(
                    "SELECT case_id, device_id, issue, state, priority, origin, opened_s, updated_s, first_response_s "
                    "FROM cases ORDER BY opened_s, case_id"
                )
            ],
            work_orders=[
                WorkOrderRow(*row)
                for row in db.execute(
                    "SELECT work_order_id, case_id, device_id, state, visit, updated_s, technician_id "
                    "FROM work_orders ORDER BY work_order_id"
                )
            ],
            outbox=[
                OutboxRow(*row)
                for row in db.execute("SELECT ts, kind, device_id, ref, payload FROM outbox ORDER BY id")
            ],
            counters={name: int(value) for name, value in db.execute("SELECT name, value FROM counters")},
            sla_breaches=[
                SlaBreachRow(*row)
                for row in db.execute("SELECT case_id, clock, ts FROM sla_breaches ORDER BY ts, case_id, clock")
            ],
        )
    finally:
        db.close()


@dataclass(frozen=True)
class RunData:
    """Everything one run leaves for scoring: scenario, policy, ground truth and the engine's records.

    ``start_s`` is the end of the warm-up (0 without one): figures count only what begins after it.
    """

    scenario: Scenario
    policy: str
    records: Records
    engine: EngineLog
    stats: Mapping[str, int]
    end_s: float
    start_s: float = 0.0


def owner_contacts(run: RunData) -> list[tuple[float, str, str]]:
    """(time, device, channel) of every owner contact that reached support after the warm-up."""
    return [
        (t, device, detail.split(":", 1)[0])
        for t, actor, kind, device, _, detail in run.records.events
        if actor == "owner" and kind == "contact" and t >= run.start_s
    ]


def resolved_times(engine: EngineLog) -> dict[str, float]:
    """When the engine resolved each case, by case id: its last ``resolved`` notification, else (a case
    resolved without one, such as advice) the case's last update, which for a resolved case is its
    resolution (the engine changes a case no more once it is resolved). Cases not resolved are left out."""
    notified: dict[str, float] = {}
    for row in engine.outbox:
        if row.kind != "Notify" or '"resolved"' not in row.payload:
            continue
        note = json.loads(row.payload)
        case_id = note.get("case_id")
        if note.get("kind") == "resolved" and case_id:
            notified[case_id] = max(row.ts, notified.get(case_id, row.ts))
    return {c.case_id: notified.get(c.case_id, c.updated_s) for c in engine.cases if c.state in ("resolved", "closed")}
