"""Scenario types: a fleet of connected products, the people around them, and the engine's policy.

Frozen msgspec Structs, read once at the boundary by :mod:`sim.scenario_file`. Durations carry their
unit in the name (``*_s``, ``*_h``, ``*_days``); distributions take the unit of the field.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from contracts.engine_config import EngineConfig
from contracts.messages import Channel
from sim.distributions import Distribution, Exponential, Fixed, Lognormal

__all__ = [
    "SCENARIO_SCHEMA_VERSION",
    "ContactCentre",
    "Costs",
    "Effect",
    "FailureMode",
    "Fleet",
    "Owners",
    "Precursor",
    "Repair",
    "Scenario",
    "Sensor",
    "Severity",
    "Technicians",
]

SCENARIO_SCHEMA_VERSION = 1

Name = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.:-]{1,64}(?!\n)$")]
Positive = Annotated[float, msgspec.Meta(gt=0.0)]
NonNegative = Annotated[float, msgspec.Meta(ge=0.0)]
Probability = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
Severity = Literal["degraded", "down"]


class _Spec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class Sensor(_Spec, frozen=True, kw_only=True):
    """A sensor every device of the fleet reports: its healthy level and measurement noise."""

    name: Name
    unit: str = ""
    baseline: float
    noise_sd: NonNegative = 0.0


class Precursor(_Spec, frozen=True, kw_only=True):
    """A drift in ``sensor`` that starts ``lead_time_days`` before the failure and reaches ``delta``."""

    sensor: Name
    lead_time_days: Positive
    delta: float


class Effect(_Spec, frozen=True, kw_only=True):
    """How a sensor reads while the failure is present: ``delta`` added to its baseline."""

    sensor: Name
    delta: float


class Repair(_Spec, frozen=True, kw_only=True):
    """What a technician needs to fix the mode: skill, part (if any) and hands-on time."""

    skill: Name
    part: Name | None = None
    duration_h: Distribution = Fixed(value=1.0)


class FailureMode(_Spec, frozen=True, kw_only=True):
    """One way a device fails. Lives are drawn per (device, mode): competing risks."""

    name: Name
    life_days: Distribution
    severity: Severity = "down"
    symptom: Name
    precursor: Precursor | None = None
    effects: list[Effect] = []
    repair: Repair


class Owners(_Spec, frozen=True, kw_only=True):
    """How owners notice failures and reach support."""

    notice_delay_h: dict[Severity, Distribution] = msgspec.field(
        default_factory=lambda: {"down": Lognormal(mean_=6.0, sd=4.0), "degraded": Lognormal(mean_=72.0, sd=36.0)}
    )
    channels: dict[Channel, NonNegative] = msgspec.field(
        default_factory=lambda: {"app": 0.3, "phone": 0.5, "chat": 0.2}
    )
    recontact_h: Distribution = Exponential(mean_=24.0)
    churn_per_downtime_day: Probability = 0.01
    churn_per_effort_step: Probability = 0.02

    def __post_init__(self) -> None:
        missing = {"down", "degraded"} - set(self.notice_delay_h)
        if missing:
            raise ValueError(f"`notice_delay_h` needs an entry for {', '.join(sorted(missing))}")
        if sum(self.channels.values()) <= 0:
            raise ValueError("`channels` weights must add up to more than 0")


class Fleet(_Spec, frozen=True, kw_only=True):
    """A population of identical connected products."""

    name: Name
    product: Name
    count: Annotated[int, msgspec.Meta(gt=0, le=10_000_000)]
    telemetry_interval_s: Positive
    devices_per_gateway: Annotated[int, msgspec.Meta(gt=0)] = 500
    age_days: Distribution = Fixed(value=0.0)
    sensors: Annotated[list[Sensor], msgspec.Meta(min_length=1)]
    failure_modes: list[FailureMode] = []
    owners: Owners = Owners()


class ContactCentre(_Spec, frozen=True, kw_only=True):
    """Agents answering owners: a pool with one queue."""

    agents: Annotated[int, msgspec.Meta(gt=0)]
    handle_time_s: Distribution = Exponential(mean_=240.0)


class Technicians(_Spec, frozen=True, kw_only=True):
    """Field technicians: a pool dispatched by work order."""

    count: Annotated[int, msgspec.Meta(gt=0)]
    travel_h: Distribution = Lognormal(mean_=1.0, sd=0.5)
    part_lead_time_h: Distribution = Lognormal(mean_=48.0, sd=24.0)


class Costs(_Spec, frozen=True, kw_only=True):
    """Money: what an hour down, a truck roll, an hour of labour, a contact and each part cost."""

    currency: str = "USD"
    downtime_per_hour: NonNegative = 0.0
    degraded_per_hour: NonNegative = 0.0
    truck_roll: NonNegative = 0.0
    labour_per_hour: NonNegative = 0.0
    contact: NonNegative = 0.0
    parts: dict[Name, NonNegative] = {}


class Scenario(_Spec, frozen=True, kw_only=True):
    """A whole run: fleets, people, costs and the engine's policy."""

    schema_version: Annotated[int, msgspec.Meta(ge=1, le=SCENARIO_SCHEMA_VERSION)] = SCENARIO_SCHEMA_VERSION
    name: Name
    description: str = ""
    seed: Annotated[int, msgspec.Meta(ge=0)] = 0
    duration_days: Positive
    sync_interval_s: Positive = 3600.0
    fleets: Annotated[list[Fleet], msgspec.Meta(min_length=1)]
    contact_centre: ContactCentre
    technicians: Technicians
    costs: Costs = Costs()
    engine: EngineConfig = EngineConfig()

    @property
    def duration_s(self) -> float:
        return self.duration_days * 86400.0

    @property
    def device_count(self) -> int:
        return sum(f.count for f in self.fleets)
