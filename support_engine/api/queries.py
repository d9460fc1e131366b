"""What the API and the console read: stored records through a read-only connection, live figures from the snapshot.

:class:`Reader` answers with the response models of :mod:`support_engine.api.models`, filtered and
paged. SQL is SQLite's with ``?`` placeholders, portable to PostgreSQL (``LIMIT ? OFFSET ?``,
no dialect functions). The fleet's reads are in :mod:`support_engine.api.fleet`, one case in full
in :mod:`support_engine.api.timeline`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from contracts.engine_config import EngineConfig
from support_engine import database
from support_engine.api.models import (
    AlertRecord,
    CampaignRecord,
    CaseRecord,
    DeadLetterRecord,
    FleetCampaignRecord,
    Kpis,
    MessageFigures,
    Page,
    QuarantineRecord,
    ReasonCount,
    TechnicianRecord,
    WorkOrderRecord,
    page,
    stamped,
)
from support_engine.api.timebase import TimeBase
from support_engine.errors import StorageError
from support_engine.metrics import EngineMetrics

__all__ = ["CASE_FROM", "CASE_SELECT", "OPEN_STATES", "CaseFilter", "Reader"]

OPEN_STATES = ("open", "in_progress")
_PAYLOAD_PREVIEW = 64
CASE_SELECT = (
    "SELECT c.case_id, c.device_id, c.issue, c.state, c.priority, c.origin, c.opened_s, c.updated_s,"
    " c.escalation, c.first_response_s, d.product, d.region, d.owner_id, d.contract"
)
CASE_FROM = " FROM cases c LEFT JOIN devices d ON d.device_id = c.device_id"


class _Where:
    """A WHERE clause built from the filters given, and its arguments."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.args: list[object] = []

    def add(self, sql: str, *args: object) -> None:
        self.parts.append(sql)
        self.args.extend(args)

    def equal(self, column: str, value: object) -> None:
        if value is not None:
            self.add(f"{column} = ?", value)

    def among(self, column: str, values: Sequence[str]) -> None:
        if values:
            self.add(f"{column} IN ({', '.join('?' * len(values))})", *values)

    def flag(self, column_sql_true: str, column_sql_false: str, value: bool | None) -> None:
        if value is not None:
            self.add(column_sql_true if value else column_sql_false)

    @property
    def sql(self) -> str:
        return f" WHERE {' AND '.join(self.parts)}" if self.parts else ""


@dataclass(frozen=True, slots=True)
class CaseFilter:
    """Which cases: every given field must match (``states``: any of them)."""

    states: tuple[str, ...] = ()
    device: str | None = None
    issue: str | None = None
    product: str | None = None
    region: str | None = None
    origin: str | None = None
    priority: int | None = None

    def where(self) -> _Where:
        w = _Where()
        w.among("c.state", self.states)
        w.equal("c.device_id", self.device)
        w.equal("c.issue", self.issue)
        w.equal("d.product", self.product)
        w.equal("d.region", self.region)
        w.equal("c.origin", self.origin)
        w.equal("c.priority", self.priority)
        return w


class Reader:
    """The reads of one engine's API: its database (``store``), live figures (``metrics``), clock and configuration."""

    def __init__(
        self, store: database.ReadOnly, metrics: EngineMetrics, time: TimeBase, config: EngineConfig | None
    ) -> None:
        self.store, self.metrics, self.time, self.config = store, metrics, time, config

    @contextlib.contextmanager
    def connect(self) -> Iterator[database.Connection]:
        with self.store.connect() as db:
            yield db

    # -- clock and counters ---------------------------------------------------------------------
    def now_s(self, db: database.Connection | None = None) -> float | None:
        """Engine time now: the wall clock, or in event time the last step's t (else the latest stored time)."""
        if self.time.clock == "wall":
            return self.time.wall_now_s()
        if self.metrics.snapshot.engine_now_s is not None:
            return self.metrics.snapshot.engine_now_s
        if db is None:
            with contextlib.suppress(StorageError), self.connect() as conn:
                return self.now_s(conn)
            return None
        latest = [db.rows("SELECT max(updated_s) FROM cases")[0][0], db.rows("SELECT max(ts) FROM outbox")[0][0]]
        found = [float(t) for t in latest if t is not None]
        return max(found, default=None)

    def counters(self) -> dict[str, int]:
        """The engine's counters: live, or as last stored when the engine has published none."""
        live = self.metrics.snapshot.counters
        if live:
            return dict(live)
        with contextlib.suppress(StorageError), self.connect() as db:
            return {str(k): int(v) for k, v in db.rows("SELECT name, value FROM counters")}
        return {}

    def kpis(self) -> Kpis:
        c = self.counters()
        open_cases = len(self.metrics.snapshot.open_case_of)
        if not open_cases:
            with contextlib.suppress(StorageError), self.connect() as db:
                open_cases = int(db.rows("SELECT count(*) FROM cases WHERE state IN ('open', 'in_progress')")[0][0])
        resolved = c.get("cases_resolved", 0)
        within = c.get("cases_resolved_within_sla", 0)
        return Kpis(
            messages=MessageFigures(
                ingested=c.get("msg_ingested", 0),
                rejected=c.get("msg_rejected", 0),
                duplicates=c.get("msg_duplicates", 0),
                emitted=c.get("msg_emitted", 0),
            ),
            open_cases=open_cases,
            cases_opened=c.get("cases_opened", 0),
            cases_resolved=resolved,
            resolved_within_sla_share=within / resolved if resolved else None,
            sla_breaches=c.get("sla_breaches", 0),
            remote_fixes=c.get("remote_fixes", 0),
            second_visits=c.get("second_visits", 0),
            work_orders=c.get("work_orders", 0),
            counters=c,
        )

    # -- cases ------------------------------------------------------------------------------------
    def dues(self, row: Mapping[str, Any]) -> tuple[float | None, float | None]:
        """When a case's running SLA clocks (first response, resolution) reach their targets; None: not running."""
        config = self.config
        if config is None or row["state"] not in OPEN_STATES:
            return None, None
        issue = config.issues.get(row["issue"])
        if issue is not None and issue.consumable is not None:
            return None, None  # a refill on its way runs no clock
        contract = row.get("contract")
        sla = config.contracts.get(contract, config.sla) if contract is not None else config.sla
        opened = float(row["opened_s"])
        first = opened + sla.first_response_s if row["first_response_s"] is None else None
        return first, opened + sla.resolution_s

    def case_record(self, row: Mapping[str, Any]) -> CaseRecord:
        first, resolution = self.dues(row)
        return CaseRecord(**stamped({**row, "first_response_due_s": first, "resolution_due_s": resolution}, self.time))

    def cases(self, wanted: CaseFilter, offset: int, limit: int, *, sort: str = "recent") -> Page[CaseRecord]:
        where = wanted.where()
        order = "c.priority, c.opened_s, c.case_id" if sort == "priority" else "c.opened_s DESC, c.case_id DESC"
        with self.connect() as db:
            total = int(db.rows(f"SELECT count(*){CASE_FROM}{where.sql}", where.args)[0][0])
            rows = db.dicts(
                f"{CASE_SELECT}{CASE_FROM}{where.sql} ORDER BY {order} LIMIT ? OFFSET ?", (*where.args, limit, offset)
            )
        return page([self.case_record(r) for r in rows], total, offset, limit)

    def facets(self) -> dict[str, list[str]]:
        """The values the case filters can take in this database: issues, products, regions, origins."""
        with self.connect() as db:
            return {
                "issue": [str(r[0]) for r in db.rows("SELECT DISTINCT issue FROM cases ORDER BY issue")],
                "origin": [str(r[0]) for r in db.rows("SELECT DISTINCT origin FROM cases ORDER BY origin")],
                "product": [
                    str(r[0])
                    for r in db.rows("SELECT DISTINCT product FROM devices WHERE product IS NOT NULL ORDER BY product")
                ],
                "region": [
                    str(r[0])
                    for r in db.rows("SELECT DISTINCT region FROM devices WHERE region IS NOT NULL ORDER BY region")
                ],
            }

    def distinct(self, table: str, column: str) -> list[str]:
        """The values ``column`` of ``table`` holds (names the caller controls), sorted."""
        if (table, column) not in {("alerts", "rule"), ("dead_letters", "reason"), ("work_orders", "technician_id")}:
            raise ValueError(f"no facet {table}.{column}")
        with self.connect() as db:
            rows = db.rows(f"SELECT DISTINCT {column} FROM {table} WHERE {column} IS NOT NULL ORDER BY {column}")
        return [str(r[0]) for r in rows]

    # -- work orders and technicians ---------------------------------------------------------------
    def work_order(self, row: Mapping[str, Any]) -> WorkOrderRecord:
        return WorkOrderRecord(**stamped(row, self.time))

    def work_orders(
        self, state: str | None, technician: str | None, case: str | None, offset: int, limit: int
    ) -> Page[WorkOrderRecord]:
        where = _Where()
        where.equal("state", state)
        where.equal("technician_id", technician)
        where.equal("case_id", case)
        with self.connect() as db:
            total = int(db.rows(f"SELECT count(*) FROM work_orders{where.sql}", where.args)[0][0])
            rows = db.dicts(
                f"SELECT * FROM work_orders{where.sql} ORDER BY updated_s DESC, work_order_id DESC LIMIT ? OFFSET ?",
                (*where.args, limit, offset),
            )
        return page([self.work_order(r) for r in rows], total, offset, limit)

    def technicians(self, offset: int, limit: int) -> Page[TechnicianRecord]:
        """The configured technicians, then others named by work orders, then the orders left to the field."""
        with self.connect() as db:
            rows = db.rows("SELECT technician_id, state, count(*) FROM work_orders GROUP BY technician_id, state")
        states: dict[str | None, dict[str, int]] = {}
        for technician, state, n in rows:
            states.setdefault(technician, {})[str(state)] = int(n)
        known = {t.id: t for t in self.config.technicians} if self.config is not None else {}
        ids: list[str | None] = [*sorted(known), *sorted(t for t in states if t is not None and t not in known)]
        if None in states:
            ids.append(None)
        out = []
        for technician in ids:
            by_state = dict(sorted(states.get(technician, {}).items()))
            spec = known.get(technician) if technician is not None else None
            out.append(
                TechnicianRecord(
                    technician_id=technician,
                    region=spec.region if spec else None,
                    skills=list(spec.skills) if spec else [],
                    max_open=spec.max_open if spec else None,
                    available=spec.available if spec else None,
                    open=sum(n for s, n in by_state.items() if s not in ("done", "closed", "cancelled")),
                    work_orders=by_state,
                )
            )
        return page(out[offset : offset + limit], len(out), offset, limit)

    # -- alerts, campaigns, quarantine, dead letters ------------------------------------------------
    def alert(self, row: Mapping[str, Any]) -> AlertRecord:
        return AlertRecord(**stamped({**row, "flapping": bool(row["flapping"])}, self.time))

    def alerts(
        self,
        device: str | None,
        rule: str | None,
        active: bool | None,
        flapping: bool | None,
        offset: int,
        limit: int,
    ) -> Page[AlertRecord]:
        where = _Where()
        where.equal("device_id", device)
        where.equal("rule", rule)
        where.flag("cleared_s IS NULL", "cleared_s IS NOT NULL", active)
        where.flag("flapping <> 0", "flapping = 0", flapping)
        with self.connect() as db:
            total = int(db.rows(f"SELECT count(*) FROM alerts{where.sql}", where.args)[0][0])
            rows = db.dicts(
                f"SELECT * FROM alerts{where.sql} ORDER BY raised_s DESC, alert_id DESC LIMIT ? OFFSET ?",
                (*where.args, limit, offset),
            )
        return page([self.alert(r) for r in rows], total, offset, limit)

    def campaigns(self, offset: int, limit: int) -> Page[FleetCampaignRecord]:
        rules = {r.name: r for r in self.config.campaigns} if self.config is not None else {}
        with self.connect() as db:
            total = int(db.rows("SELECT count(*) FROM campaigns")[0][0])
            rows = db.dicts("SELECT * FROM campaigns ORDER BY opened_s, campaign_id LIMIT ? OFFSET ?", (limit, offset))
        items = []
        for r in rows:
            rule = rules.get(r["rule"])
            items.append(
                FleetCampaignRecord(
                    **stamped(r, self.time),
                    failure_rate=r["failed"] / r["sent"] if r["sent"] else None,
                    stages=list(rule.stages) if rule else None,
                    abort_failure_rate=rule.abort_failure_rate if rule else None,
                )
            )
        return page(items, total, offset, limit)

    def rollouts(self, offset: int, limit: int) -> Page[CampaignRecord]:
        found = self.metrics.snapshot.campaigns
        items = [
            CampaignRecord(
                **stamped(
                    {
                        "issue": c.issue,
                        "version": c.version,
                        "devices_targeted": c.devices_targeted,
                        "started_s": c.started_s,
                    },
                    self.time,
                )
            )
            for c in found[offset : offset + limit]
        ]
        return page(items, len(found), offset, limit)

    def quarantine(self, offset: int, limit: int) -> Page[QuarantineRecord]:
        with self.connect() as db:
            total = int(db.rows("SELECT count(*) FROM quarantine")[0][0])
            rows = db.dicts("SELECT * FROM quarantine ORDER BY device_id LIMIT ? OFFSET ?", (limit, offset))
        return page([QuarantineRecord(**stamped(r, self.time)) for r in rows], total, offset, limit)

    def dead_letters(self, reason: str | None, offset: int, limit: int) -> Page[DeadLetterRecord]:
        where = _Where()
        where.equal("reason", reason)
        with self.connect() as db:
            total = int(db.rows(f"SELECT count(*) FROM dead_letters{where.sql}", where.args)[0][0])
            rows = db.rows(
                f"SELECT id, topic, reason, detail, length(payload), substr(payload, 1, {_PAYLOAD_PREVIEW})"
                f" FROM dead_letters{where.sql} ORDER BY id DESC LIMIT ? OFFSET ?",
                (*where.args, limit, offset),
            )
        items = [
            DeadLetterRecord(
                id=int(i),
                topic=str(topic),
                reason=str(why),
                detail=str(detail),
                payload_bytes=int(size or 0),
                payload_hex=bytes(head or b"").hex(),
            )
            for i, topic, why, detail, size, head in rows
        ]
        return page(items, total, offset, limit)

    def reasons(self, offset: int, limit: int) -> Page[ReasonCount]:
        """Rejections by reason: rows of the dead-letter table and the engine's counters, most first."""
        with self.connect() as db:
            stored = {str(r): int(n) for r, n in db.rows("SELECT reason, count(*) FROM dead_letters GROUP BY reason")}
        counted = {
            name.removeprefix("msg_rejected_"): n
            for name, n in self.counters().items()
            if name.startswith("msg_rejected_")
        }
        found = sorted(
            (
                ReasonCount(reason=r, dead_letters=stored.get(r, 0), rejected=counted.get(r, 0))
                for r in {*stored, *counted}
            ),
            key=lambda c: (-max(c.dead_letters, c.rejected), c.reason),
        )
        return page(found[offset : offset + limit], len(found), offset, limit)
