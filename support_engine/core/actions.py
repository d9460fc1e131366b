"""What the engine core asks its shell to do: frozen records, executed as publishes and writes."""

from __future__ import annotations

from dataclasses import dataclass

from contracts.messages import Command, ConsumableOrder, Notification, WorkOrder

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
    origin: str  # "telemetry" or "contact"


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


@dataclass(frozen=True, slots=True)
class SlaBreached:
    case_id: str
    device_id: str
    clock: str  # "first_response" or "resolution"
    ts: float


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

Action = CaseChanged | RaiseAlert | ClearAlert | WorkOrderChanged | SlaBreached | Outbound
