"""What the engine core asks its shell to do: frozen records, executed as publishes and writes."""

from __future__ import annotations

from dataclasses import dataclass

from contracts.messages import Command, ConsumableOrder, DeviceRecord, Notification, WorkOrder

__all__ = [
    "Action",
    "CaseChanged",
    "CreateWorkOrder",
    "Notify",
    "OrderConsumable",
    "RaiseAlert",
    "ClearAlert",
    "SendCommand",
    "SlaBreached",
    "WorkOrderChanged",
    "Outbound",
    "AlertFlapping",
    "CampaignChanged",
    "DeviceChanged",
    "Provisioned",
    "Quarantined",
    "SlaWarned",
]


@dataclass(frozen=True, slots=True)
class CaseChanged:
    case_id: str
    device_id: str
    issue: str
    state: str
    priority: int
    opened_s: float
    ts: float
    origin: str  # "telemetry", "contact", "device", "offline" or "campaign"
    escalation: int = 0
    first_response_s: float | None = None
    symptom: str | None = None  # what opened it: an owner's symptom, a device's fault code


@dataclass(frozen=True, slots=True)
class RaiseAlert:
    alert_id: str
    device_id: str
    rule: str
    ts: float
    value: float
    case_id: str


@dataclass(frozen=True, slots=True)
class ClearAlert:
    alert_id: str
    device_id: str
    rule: str
    ts: float


@dataclass(frozen=True, slots=True)
class WorkOrderChanged:
    work_order_id: str
    case_id: str
    device_id: str
    state: str
    ts: float
    visit: int
    technician_id: str | None = None


@dataclass(frozen=True, slots=True)
class SlaBreached:
    case_id: str
    device_id: str
    clock: str  # "first_response" or "resolution"
    ts: float


@dataclass(frozen=True, slots=True)
class SlaWarned:
    case_id: str
    device_id: str
    clock: str  # "first_response" or "resolution"
    ts: float


@dataclass(frozen=True, slots=True)
class AlertFlapping:
    alert_id: str
    device_id: str
    rule: str
    ts: float
    flapping: bool  # True: it began; False: it ended


@dataclass(frozen=True, slots=True)
class Provisioned:
    record: DeviceRecord


@dataclass(frozen=True, slots=True)
class DeviceChanged:
    """A twin's reported/desired state or its connectivity changed (the whole current state)."""

    device_id: str
    ts: float
    reported: dict[str, str]
    desired: dict[str, str]
    offline: bool


@dataclass(frozen=True, slots=True)
class Quarantined:
    """A message from a device the registry does not know was set aside."""

    device_id: str
    ts: float


@dataclass(frozen=True, slots=True)
class CampaignChanged:
    campaign_id: str
    rule: str
    action: str
    cohort: str
    state: str
    stage: int
    targets: int
    sent: int
    failed: int
    opened_s: float
    ts: float
    reason: str


@dataclass(frozen=True, slots=True)
class CreateWorkOrder:
    message: WorkOrder


@dataclass(frozen=True, slots=True)
class Notify:
    message: Notification


@dataclass(frozen=True, slots=True)
class SendCommand:
    message: Command


@dataclass(frozen=True, slots=True)
class OrderConsumable:
    message: ConsumableOrder


Outbound = CreateWorkOrder | Notify | SendCommand | OrderConsumable
"""Actions that publish a message to the world (and are stored)."""

Action = (
    CaseChanged
    | RaiseAlert
    | ClearAlert
    | WorkOrderChanged
    | SlaBreached
    | SlaWarned
    | AlertFlapping
    | Provisioned
    | DeviceChanged
    | Quarantined
    | CampaignChanged
    | Outbound
)
