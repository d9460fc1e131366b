"""The JSON routes: probes, the clock, devices, cases, work orders, alerts, campaigns, dead letters, KPIs, metrics.

Every list answers one :class:`~support_engine.api.models.Page` (``items``, ``total``, ``offset``,
``limit``, ``next_offset``); every filter a route declares narrows it, and a query parameter it does
not declare is refused with 422 (:func:`support_engine.api.app.create_app` checks).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import FastAPI, HTTPException, Query, Response
from prometheus_client import CONTENT_TYPE_LATEST

from support_engine.api import fleet as fleet_reads
from support_engine.api.fleet import DeviceFilter
from support_engine.api.models import (
    AlertRecord,
    CampaignRecord,
    CaseDetail,
    CaseRecord,
    CaseState,
    ClockInfo,
    DeadLetterRecord,
    DeviceSummary,
    DeviceTwin,
    FleetCampaignRecord,
    FleetSummary,
    Health,
    Kpis,
    Origin,
    Page,
    QuarantineRecord,
    ReasonCount,
    TechnicianRecord,
    WorkOrderRecord,
    WorkOrderState,
)
from support_engine.api.queries import CaseFilter, Reader
from support_engine.api.timebase import iso
from support_engine.api.timeline import case_detail

__all__ = ["Limit", "Offset", "add_routes", "clock_info"]

Limit = Annotated[int, Query(ge=1, le=10_000, description="At most this many items.")]
Offset = Annotated[int, Query(ge=0, description="Skip this many items first (paging).")]
Sort = Literal["recent", "priority"]


def clock_info(reader: Reader) -> ClockInfo:
    t = reader.time
    now = reader.now_s()
    return ClockInfo(
        clock=t.clock,
        simulated=t.simulated,
        sim_epoch=iso(t.sim_epoch, "seconds") if t.simulated else None,
        time_origin_s=None if t.simulated else t.time_origin,
        speed=t.speed,
        now_s=now,
        now_at=t.at(now),
    )


def add_routes(
    app: FastAPI,
    reader: Reader,
    *,
    connected: Callable[[], bool],
    degraded: Callable[[], str | None],
    ready: Callable[[], bool] | None,
    inspecting: str | None = None,
) -> None:
    """Add the JSON routes over ``reader`` to ``app`` (``inspecting``: the database a read-only inspection shows)."""
    metrics = reader.metrics

    @app.get(
        "/healthz",
        response_model=Health,
        responses={503: {"model": Health, "description": "Not connected, or held up (an inspection answers 200)."}},
    )
    def healthz(response: Response) -> Health:
        """Connected to the broker and not held up (503 otherwise), clock mode, and the last commit of handled messages."""
        snap = metrics.snapshot
        up = connected()
        held = degraded()
        wall = snap.committed_wall_s
        if inspecting is None and (not up or held):
            response.status_code = 503
        return Health(
            status="inspect" if inspecting is not None else "disconnected" if not up else "degraded" if held else "ok",
            connected=up,
            degraded=held,
            inspecting=inspecting,
            clock=reader.time.clock,
            sim_epoch=iso(reader.time.sim_epoch, "seconds") if reader.time.simulated else None,
            last_step_engine_s=snap.engine_now_s,
            last_step_engine_at=reader.time.at(snap.engine_now_s),
            last_step_at=None if wall is None else datetime.fromtimestamp(wall, UTC),
            last_step_age_s=None if wall is None else max(0.0, time.time() - wall),
        )

    @app.get("/readyz", responses={503: {"description": "Not ready: starting, or not connected."}})
    def readyz(response: Response) -> dict[str, bool]:
        """Ready to serve (200): started, subscribed and connected; a liveness probe uses /healthz."""
        is_ready = connected() if ready is None else ready()
        if not is_ready:
            response.status_code = 503
        return {"ready": is_ready}

    @app.get("/clock", response_model=ClockInfo)
    def clock() -> ClockInfo:
        """How the engine's times read: event clock (simulated, from ``sim_epoch``) or wall clock (UTC), and now."""
        return clock_info(reader)

    @app.get("/devices", response_model=Page[DeviceSummary])
    def devices(
        product: str | None = None,
        offline: bool | None = None,
        quarantined: bool | None = None,
        in_sync: bool | None = None,
        offset: Offset = 0,
        limit: Limit = 1000,
    ) -> Page[DeviceSummary]:
        """Devices the engine knows (registered, heard from, named by a case, or quarantined), by id."""
        return fleet_reads.devices(reader, DeviceFilter(product, offline, quarantined, in_sync), offset, limit)

    @app.get("/fleet", response_model=FleetSummary)
    def fleet() -> FleetSummary:
        """Devices by product and state (ok, open case, offline, quarantined), firmware in and out of sync."""
        return fleet_reads.fleet(reader)

    @app.get("/devices/{device_id}", response_model=DeviceTwin, responses={404: {"description": "Never heard of."}})
    def device(device_id: str) -> DeviceTwin:
        """A device's twin: latest readings, registration, its alerts and cases."""
        found = fleet_reads.device(reader, device_id)
        if found is None:
            raise HTTPException(404, f"no device {device_id!r}")
        return found

    @app.get("/cases", response_model=Page[CaseRecord])
    def cases(
        state: Annotated[list[CaseState] | None, Query(description="Any of these states (repeat it).")] = None,
        device: str | None = None,
        issue: str | None = None,
        product: str | None = None,
        region: str | None = None,
        origin: Origin | None = None,
        priority: Annotated[int | None, Query(ge=1, le=5)] = None,
        sort: Annotated[Sort, Query(description="recent: newest first; priority: most urgent first.")] = "recent",
        offset: Offset = 0,
        limit: Limit = 100,
    ) -> Page[CaseRecord]:
        """Cases, most recently opened first (or by priority); product and region are the device's."""
        wanted = CaseFilter(tuple(state or ()), device, issue, product, region, origin, priority)
        return reader.cases(wanted, offset, limit, sort=sort)

    @app.get("/cases/{case_id}", response_model=CaseDetail, responses={404: {"description": "No such case."}})
    def case(case_id: str) -> CaseDetail:
        """One case: symptom, owner, work orders (with technicians), alerts, commands, notifications, timeline."""
        found = case_detail(reader, case_id)
        if found is None:
            raise HTTPException(404, f"no case {case_id!r}")
        return found

    @app.get("/work-orders", response_model=Page[WorkOrderRecord])
    def work_orders(
        state: WorkOrderState | None = None,
        technician: str | None = None,
        case: str | None = None,
        offset: Offset = 0,
        limit: Limit = 100,
    ) -> Page[WorkOrderRecord]:
        """Work orders, most recently changed first."""
        return reader.work_orders(state, technician, case, offset, limit)

    @app.get("/technicians", response_model=Page[TechnicianRecord])
    def technicians(offset: Offset = 0, limit: Limit = 100) -> Page[TechnicianRecord]:
        """Technicians (configured, or named by work orders) and their work orders by state."""
        return reader.technicians(offset, limit)

    @app.get("/alerts", response_model=Page[AlertRecord])
    def alerts(
        device: str | None = None,
        rule: str | None = None,
        active: Annotated[bool | None, Query(description="true: not cleared; false: cleared.")] = None,
        flapping: bool | None = None,
        offset: Offset = 0,
        limit: Limit = 100,
    ) -> Page[AlertRecord]:
        """Alerts, most recently raised first."""
        return reader.alerts(device, rule, active, flapping, offset, limit)

    @app.get("/campaigns", response_model=Page[FleetCampaignRecord])
    def campaigns(offset: Offset = 0, limit: Limit = 100) -> Page[FleetCampaignRecord]:
        """Campaigns opened by cohort comparison (staged OTA updates and recalls), oldest first."""
        return reader.campaigns(offset, limit)

    @app.get("/rollouts", response_model=Page[CampaignRecord])
    def rollouts(offset: Offset = 0, limit: Limit = 100) -> Page[CampaignRecord]:
        """Fleet-wide updates of issues with ``rollout_after``, in the order they started."""
        return reader.rollouts(offset, limit)

    @app.get("/quarantine", response_model=Page[QuarantineRecord])
    def quarantine(offset: Offset = 0, limit: Limit = 1000) -> Page[QuarantineRecord]:
        """Unregistered devices whose messages were set aside (registered-only provisioning)."""
        return reader.quarantine(offset, limit)

    @app.get("/dead-letters", response_model=Page[DeadLetterRecord])
    def dead_letters(reason: str | None = None, offset: Offset = 0, limit: Limit = 100) -> Page[DeadLetterRecord]:
        """Refused messages as stored, newest first: topic, reason, detail, the payload's size and first bytes."""
        return reader.dead_letters(reason, offset, limit)

    @app.get("/dead-letters/reasons", response_model=Page[ReasonCount])
    def dead_letter_reasons(offset: Offset = 0, limit: Limit = 100) -> Page[ReasonCount]:
        """Rejections by reason: dead letters stored and the engine's counters, most first."""
        return reader.reasons(offset, limit)

    @app.get("/kpis", response_model=Kpis)
    def kpis() -> Kpis:
        """The engine's counters and the figures derived from them."""
        return reader.kpis()

    @app.get(
        "/metrics",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format."}},
    )
    def prometheus() -> Response:
        """Prometheus metrics of this engine (its own registry)."""
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
