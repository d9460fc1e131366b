"""What the API and the console read: stored records through a read-only connection, live figures from the snapshot.

:class:`Reader` answers with the response models of :mod:`support_engine.api.models`, filtered and
paged. Queries are SQLAlchemy Core on :mod:`support_engine.schema`'s tables, through a connection
lent by the database's readers' pool (:meth:`~support_engine.database.Database.reader`), the same
on SQLite and PostgreSQL. The fleet's reads are in :mod:`support_engine.api.fleet`, one case in
full in :mod:`support_engine.api.timeline`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql import ColumnElement, Select

from contracts.engine_config import EngineConfig
from support_engine import database
from support_engine import schema as t
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

__all__ = ["OPEN_STATES", "CaseFilter", "Reader", "case_query", "matching"]

OPEN_STATES = ("open", "in_progress")
_PAYLOAD_PREVIEW = 64
_FACETS = {
    ("alerts", "rule"): t.alerts.c.rule,
    ("dead_letters", "reason"): t.dead_letters.c.reason,
    ("work_orders", "technician_id"): t.work_orders.c.technician_id,
}


def case_query() -> Select[Any]:
    """A case's row with its device's product, region, owner and contract (NULL for a device not registered)."""
    c, d = t.cases.c, t.devices.c
    return sa.select(
        c.case_id, c.device_id, c.issue, c.state, c.priority, c.origin, c.opened_s, c.updated_s,
        c.escalation, c.first_response_s, d.product, d.region, d.owner_id, d.contract,
    ).select_from(t.cases.outerjoin(t.devices, d.device_id == c.device_id))  # fmt: skip


def matching(**given: tuple[ColumnElement[Any], object]) -> list[ColumnElement[bool]]:
    """``column = value`` for each (column, value) given whose value is not None."""
    return [column == value for column, value in given.values() if value is not None]


def _counted(query: Select[Any]) -> Select[Any]:
    """How many rows ``query`` gives (its filters and joins, none of its order or paging)."""
    return sa.select(sa.func.count()).select_from(query.order_by(None).subquery())


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

    def where(self) -> list[ColumnElement[bool]]:
        c, d = t.cases.c, t.devices.c
        found = matching(
            device=(c.device_id, self.device),
            issue=(c.issue, self.issue),
            product=(d.product, self.product),
            region=(d.region, self.region),
            origin=(c.origin, self.origin),
            priority=(c.priority, self.priority),
        )
        return [c.state.in_(self.states), *found] if self.states else found


class Reader:
    """The reads of one engine's API: its database (``store``), live figures (``metrics``), clock and configuration."""

    def __init__(
        self, store: database.Database, metrics: EngineMetrics, time: TimeBase, config: EngineConfig | None
    ) -> None:
        self.store, self.metrics, self.time, self.config = store, metrics, time, config

    @contextlib.contextmanager
    def connect(self) -> Iterator[database.Reader]:
        """A read-only connection from the database's pool, given back on leaving."""
        with self.store.reader() as db:
            yield db

    # -- clock and counters ---------------------------------------------------------------------
    def now_s(self, db: database.Reader | None = None) -> float | None:
        """Engine time now: the wall clock, or in event time the last step's t (else the latest stored time)."""
        if self.time.clock == "wall":
            return self.time.wall_now_s()
        if self.metrics.snapshot.engine_now_s is not None:
            return self.metrics.snapshot.engine_now_s
        if db is None:
            with contextlib.suppress(StorageError), self.connect() as conn:
                return self.now_s(conn)
            return None
        latest = [
            db.scalar(sa.select(sa.func.max(t.cases.c.updated_s))),
            db.scalar(sa.select(sa.func.max(t.outbox.c.ts))),
        ]
        found = [float(t) for t in latest if t is not None]
        return max(found, default=None)

    def counters(self) -> dict[str, int]:
        """The engine's counters: live, or as last stored when the engine has published none."""
        live = self.metrics.snapshot.counters
        if live:
            return dict(live)
        with contextlib.suppress(StorageError), self.connect() as db:
            return {str(k): int(v) for k, v in db.rows(sa.select(t.counters.c.name, t.counters.c.value))}
        return {}

    def kpis(self) -> Kpis:
        c = self.counters()
        open_cases = len(self.metrics.snapshot.open_case_of)
        if not open_cases:
            with contextlib.suppress(StorageError), self.connect() as db:
                open_cases = int(db.scalar(_counted(sa.select(t.cases).where(t.cases.c.state.in_(OPEN_STATES)))))
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
        c = t.cases.c
        query = case_query().where(*wanted.where())
        order = (c.priority, c.opened_s, c.case_id) if sort == "priority" else (c.opened_s.desc(), c.case_id.desc())
        with self.connect() as db:
            total = int(db.scalar(_counted(query)))
            rows = db.dicts(query.order_by(*order).limit(limit).offset(offset))
        return page([self.case_record(r) for r in rows], total, offset, limit)

    def facets(self) -> dict[str, list[str]]:
        """The values the case filters can take in this database: issues, products, regions, origins."""
        c, d = t.cases.c, t.devices.c
        with self.connect() as db:
            return {
                name: _values(db, column)
                for name, column in (
                    ("issue", c.issue),
                    ("origin", c.origin),
                    ("product", d.product),
                    ("region", d.region),
                )
            }

    def distinct(self, table: str, column: str) -> list[str]:
        """The values ``column`` of ``table`` holds (names the caller controls), sorted."""
        found = _FACETS.get((table, column))
        if found is None:
            raise ValueError(f"no facet {table}.{column}")
        with self.connect() as db:
            return _values(db, found)

    # -- work orders and technicians ---------------------------------------------------------------
    def work_order(self, row: Mapping[str, Any]) -> WorkOrderRecord:
        return WorkOrderRecord(**stamped(row, self.time))

    def work_orders(
        self, state: str | None, technician: str | None, case: str | None, offset: int, limit: int
    ) -> Page[WorkOrderRecord]:
        w = t.work_orders.c
        query = sa.select(t.work_orders).where(
            *matching(state=(w.state, state), technician=(w.technician_id, technician), case=(w.case_id, case))
        )
        with self.connect() as db:
            total = int(db.scalar(_counted(query)))
            rows = db.dicts(query.order_by(w.updated_s.desc(), w.work_order_id.desc()).limit(limit).offset(offset))
        return page([self.work_order(r) for r in rows], total, offset, limit)

    def technicians(self, offset: int, limit: int) -> Page[TechnicianRecord]:
        """The configured technicians, then others named by work orders, then the orders left to the field."""
        with self.connect() as db:
            w = t.work_orders.c
            rows = db.rows(sa.select(w.technician_id, w.state, sa.func.count()).group_by(w.technician_id, w.state))
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
        a = t.alerts.c
        where = matching(device=(a.device_id, device), rule=(a.rule, rule))
        if active is not None:
            where.append(a.cleared_s.is_(None) if active else a.cleared_s.is_not(None))
        if flapping is not None:
            where.append(a.flapping != 0 if flapping else a.flapping == 0)
        query = sa.select(t.alerts).where(*where)
        with self.connect() as db:
            total = int(db.scalar(_counted(query)))
            rows = db.dicts(query.order_by(a.raised_s.desc(), a.alert_id.desc()).limit(limit).offset(offset))
        return page([self.alert(r) for r in rows], total, offset, limit)

    def campaigns(self, offset: int, limit: int) -> Page[FleetCampaignRecord]:
        rules = {r.name: r for r in self.config.campaigns} if self.config is not None else {}
        with self.connect() as db:
            k = t.campaigns.c
            total = int(db.scalar(_counted(sa.select(t.campaigns))))
            rows = db.dicts(sa.select(t.campaigns).order_by(k.opened_s, k.campaign_id).limit(limit).offset(offset))
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
            total = int(db.scalar(_counted(sa.select(t.quarantine))))
            rows = db.dicts(sa.select(t.quarantine).order_by(t.quarantine.c.device_id).limit(limit).offset(offset))
        return page([QuarantineRecord(**stamped(r, self.time)) for r in rows], total, offset, limit)

    def dead_letters(self, reason: str | None, offset: int, limit: int) -> Page[DeadLetterRecord]:
        x = t.dead_letters.c
        where = matching(reason=(x.reason, reason))
        query = sa.select(
            x.id, x.topic, x.reason, x.detail, sa.func.length(x.payload), sa.func.substr(x.payload, 1, _PAYLOAD_PREVIEW)
        ).where(*where)
        with self.connect() as db:
            total = int(db.scalar(_counted(sa.select(t.dead_letters).where(*where))))
            rows = db.rows(query.order_by(x.id.desc()).limit(limit).offset(offset))
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
            x = t.dead_letters.c
            stored = {str(r): int(n) for r, n in db.rows(sa.select(x.reason, sa.func.count()).group_by(x.reason))}
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


def _values(db: database.Reader, column: sa.Column[Any]) -> list[str]:
    """The values ``column`` holds, sorted, without NULL."""
    return [str(r[0]) for r in db.rows(sa.select(column).distinct().where(column.is_not(None)).order_by(column))]
