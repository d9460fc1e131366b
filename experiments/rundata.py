"""One finished run as the experiments see it: the world's records and the engine's own records.

The world's records are the ground truth (what really failed, when, who fixed it). The engine's
records are what the engine believed and did, read back from its database after the run: these are
the claims that the scorecard checks against the truth.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sim.records import Records
from sim.scenario import Scenario

__all__ = ["AlertRow", "CaseRow", "EngineLog", "OutboxRow", "RunData", "WorkOrderRow", "read_engine_log"]


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
class EngineLog:
    """The engine's own records of a run."""

    alerts: list[AlertRow] = field(default_factory=list)
    cases: list[CaseRow] = field(default_factory=list)
    work_orders: list[WorkOrderRow] = field(default_factory=list)
    outbox: list[OutboxRow] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)


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
