"""The API's response models: frozen pydantic records, the paging envelope, and ISO time fields.

Every time in engine seconds (``*_s``, or ``ts``) comes with its ISO 8601 reading (``*_at``, or
``at``), filled by :func:`stamped` from the app's :class:`~support_engine.api.timebase.TimeBase`.
Durations (``duration_s``, ``last_step_age_s``) have none.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict

from support_engine.api.timebase import TimeBase

__all__ = [
    "ORIGINS",
    "AlertRecord",
    "CampaignRecord",
    "CaseDetail",
    "CaseRecord",
    "CaseState",
    "ClockInfo",
    "CommandRecord",
    "DeadLetterRecord",
    "DeviceSummary",
    "DeviceTwin",
    "FleetCampaignRecord",
    "FleetRow",
    "FleetSummary",
    "Health",
    "Kpis",
    "MessageFigures",
    "NotificationRecord",
    "Origin",
    "Page",
    "QuarantineRecord",
    "ReasonCount",
    "Registration",
    "SlaBreachRecord",
    "TechnicianRecord",
    "TimelineEntry",
    "WorkOrderRecord",
    "WorkOrderState",
    "page",
    "stamped",
]

CaseState = Literal["open", "in_progress", "resolved", "closed"]
WorkOrderState = Literal["created", "accepted", "on_site", "awaiting_part", "done", "closed", "cancelled"]
Origin = Literal["telemetry", "contact", "device", "offline", "campaign"]
ORIGINS: tuple[str, ...] = ("telemetry", "contact", "device", "offline", "campaign")
DeviceState = Literal["ok", "case", "offline", "quarantined"]
T = TypeVar("T")

_TIMES = frozenset(
    {
        "last_seen_s",
        "opened_s",
        "updated_s",
        "first_response_s",
        "first_response_due_s",
        "resolution_due_s",
        "raised_s",
        "cleared_s",
        "first_s",
        "last_s",
        "warranty_until_s",
        "started_s",
        "last_step_engine_s",
        "now_s",
    }
)


def stamped(row: Mapping[str, Any], time: TimeBase) -> dict[str, Any]:
    """``row`` with the ISO reading of each of its times: ``opened_s`` gains ``opened_at``, ``ts`` gains ``at``."""
    out = dict(row)
    for name, value in row.items():
        if name in _TIMES:
            out[name.removesuffix("_s") + "_at"] = time.at(value)
        elif name == "ts":
            out["at"] = time.at(value)
    return out


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class Page(_Model, Generic[T]):
    """One page of a list: ``items`` from ``offset`` on, of ``total`` matching; ``next_offset`` None on the last."""

    items: list[T]
    total: int
    offset: int
    limit: int
    next_offset: int | None


def page(items: Sequence[T], total: int, offset: int, limit: int) -> Page[T]:
    return Page[T](
        items=list(items),
        total=total,
        offset=offset,
        limit=limit,
        next_offset=offset + limit if offset + limit < total else None,
    )


class Health(_Model):
    """Whether the engine is connected to its broker, whether something holds it up (``degraded``:
    its database locked by another process, say), and when it last committed handled messages."""

    status: Literal["ok", "disconnected", "degraded", "inspect"]  # inspect: a database read, no engine running
    connected: bool
    degraded: str | None = None  # what holds the engine up, if anything
    inspecting: str | None = None  # ``sot engine --inspect``: the database read (nothing runs, nothing is written)
    clock: Literal["event", "wall"]
    sim_epoch: str | None  # event clock: the simulated calendar time of t = 0
    last_step_engine_s: float | None  # engine time (event clock: the step's t) of the last commit
    last_step_engine_at: str | None
    last_step_at: datetime | None  # wall time of that commit (UTC)
    last_step_age_s: float | None


class ClockInfo(_Model):
    """How engine times read: ``simulated`` (event clock: from ``sim_epoch``) or wall-clock UTC."""

    clock: Literal["event", "wall"]
    simulated: bool
    sim_epoch: str | None  # event clock: t = 0
    time_origin_s: float | None  # wall clock: the Unix time of engine time 0
    speed: float  # wall clock: engine seconds per real second
    now_s: float | None  # engine time now (event clock: the last step's t, or the latest stored time)
    now_at: str | None


class DeviceSummary(_Model):
    device_id: str
    last_seen_s: float | None  # latest reading or event, engine time
    last_seen_at: str | None
    open_case: str | None
    product: str | None
    region: str | None
    owner_id: str | None
    registered: bool  # in the device registry
    offline: bool
    quarantined: bool  # unregistered, its messages set aside (registered-only provisioning)
    in_sync: bool | None  # every desired firmware/setting reported; None: no twin state stored
    state: DeviceState  # quarantined, else offline, else case (one open), else ok


class FleetRow(_Model):
    product: str | None  # None: unregistered devices
    devices: int
    ok: int
    case: int
    offline: int
    quarantined: int
    in_sync: int
    out_of_sync: int
    firmware: dict[str, int]  # reported firmware version -> devices


class FleetSummary(_Model):
    """Devices by product and state, and firmware in and out of sync."""

    devices: int
    by_product: list[FleetRow]


class CaseRecord(_Model):
    case_id: str
    device_id: str
    issue: str
    state: str  # a CaseState
    priority: int
    origin: str  # an Origin
    opened_s: float
    opened_at: str | None
    updated_s: float
    updated_at: str | None
    escalation: int  # SLA warnings and breaches so far (each raised the priority)
    first_response_s: float | None
    first_response_at: str | None
    product: str | None  # from the device registry
    region: str | None
    owner_id: str | None
    # SLA clocks still running (known when the app has the engine's configuration)
    first_response_due_s: float | None = None
    first_response_due_at: str | None = None
    resolution_due_s: float | None = None
    resolution_due_at: str | None = None


class WorkOrderRecord(_Model):
    work_order_id: str
    case_id: str
    device_id: str
    state: str  # a WorkOrderState
    visit: int
    updated_s: float
    updated_at: str | None
    technician_id: str | None  # None: the engine left the choice to the field


class AlertRecord(_Model):
    alert_id: str
    device_id: str
    rule: str
    case_id: str | None
    value: float | None
    raised_s: float
    raised_at: str | None
    cleared_s: float | None
    cleared_at: str | None
    flapping: bool


class SlaBreachRecord(_Model):
    clock: str
    ts: float
    at: str | None


class NotificationRecord(_Model):
    notification_id: str
    ts: float
    at: str | None
    kind: str  # case_opened, visit_scheduled, resolved, outreach, outage
    text: str


class CommandRecord(_Model):
    command_id: str
    ts: float
    at: str | None
    action: str
    version: str | None
    outcome: str | None  # what the owner was told next, or "awaiting the device's answer"


class TimelineEntry(_Model):
    ts: float
    at: str | None
    kind: Literal[
        "case",
        "alert_raised",
        "alert_cleared",
        "command",
        "notification",
        "work_order",
        "consumable_order",
        "sla_warning",
        "sla_breach",
    ]
    ref: str  # the case, alert, command, notification, work order or order it is about
    text: str


class CaseDetail(CaseRecord):
    symptom: str | None  # what opened the case (see docs/console.md)
    contract: str | None
    work_orders: list[WorkOrderRecord]
    alerts: list[AlertRecord]
    commands: list[CommandRecord]
    notifications: list[NotificationRecord]  # sent to the owner about this case
    sla_breaches: list[SlaBreachRecord]
    sla_warnings: list[SlaBreachRecord]
    timeline: list[TimelineEntry]  # in time order


class Registration(_Model):
    """What the registry says about a device, and its twin's reported/desired state."""

    product: str | None
    owner_id: str | None
    region: str | None
    contract: str | None
    warranty_until_s: float | None
    warranty_until_at: str | None
    cohorts: dict[str, str]
    reported: dict[str, str]  # firmware and settings the device reports
    desired: dict[str, str]  # what it should run
    in_sync: bool  # every desired value reported
    offline: bool


class QuarantineRecord(_Model):
    device_id: str
    first_s: float
    first_at: str | None
    last_s: float
    last_at: str | None
    messages: int


class FleetCampaignRecord(_Model):
    campaign_id: str
    rule: str
    action: str  # ota | recall
    cohort: str  # "by=value"
    state: str  # running | completed | aborted
    stage: int
    targets: int
    sent: int  # devices reached
    failed: int
    opened_s: float
    opened_at: str | None
    updated_s: float
    updated_at: str | None
    reason: str
    failure_rate: float | None  # failed / sent
    stages: list[float] | None = None  # cumulative shares of the cohort (from the engine's configuration)
    abort_failure_rate: float | None = None


class DeviceTwin(_Model):
    device_id: str
    last_seen_s: float | None
    last_seen_at: str | None
    values: dict[str, float]  # latest value of each sensor
    open_case: str | None
    alerts: list[AlertRecord]
    cases: list[CaseRecord]
    registration: Registration | None  # None: never registered nor reported firmware/settings


class CampaignRecord(_Model):
    issue: str
    version: str | None
    devices_targeted: int | None  # None: started before this engine process
    started_s: float | None
    started_at: str | None


class TechnicianRecord(_Model):
    technician_id: str | None  # None: work orders the engine left to the field to assign
    region: str | None
    skills: list[str]
    max_open: int | None
    available: bool | None
    open: int  # work orders not done, closed or cancelled
    work_orders: dict[str, int]  # by state


class DeadLetterRecord(_Model):
    id: int
    topic: str
    reason: str
    detail: str
    payload_bytes: int
    payload_hex: str  # the first 64 bytes


class ReasonCount(_Model):
    reason: str
    dead_letters: int  # rows in the dead-letter table
    rejected: int  # the engine's counter (msg_rejected_REASON)


class MessageFigures(_Model):
    ingested: int
    rejected: int
    duplicates: int
    emitted: int


class Kpis(_Model):
    """The engine's counters and figures derived from them (since the database was created)."""

    messages: MessageFigures
    open_cases: int
    cases_opened: int
    cases_resolved: int
    resolved_within_sla_share: float | None  # of the resolved cases; None before the first
    sla_breaches: int
    remote_fixes: int
    second_visits: int
    work_orders: int
    counters: dict[str, int]
