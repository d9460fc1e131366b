"""Scenario types: a fleet of connected products, the people around them, and the engine's policy.

Frozen msgspec Structs, read once at the boundary by :mod:`sim.scenario_file`. Durations carry their
unit in the name (``*_s``, ``*_h``, ``*_days``); distributions take the unit of the field.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from contracts.engine_config import AnomalyRule, EngineConfig, IssueType, ThresholdRule, TrendRule
from contracts.messages import Channel
from sim.distributions import Distribution, Exponential, Fixed, Lognormal, Uniform

__all__ = [
    "SCENARIO_SCHEMA_VERSION",
    "AgentGroup",
    "Cohort",
    "Connectivity",
    "Consumable",
    "ContactCentre",
    "Costs",
    "Crew",
    "Depot",
    "Effect",
    "FailureMode",
    "Fleet",
    "Outage",
    "Owners",
    "Precursor",
    "Product",
    "ProductEngine",
    "RemoteFix",
    "Repair",
    "Scenario",
    "Sensor",
    "Severity",
    "Shift",
    "Technicians",
]

SCENARIO_SCHEMA_VERSION = 1

Name = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.:-]{1,64}(?!\n)$")]
Positive = Annotated[float, msgspec.Meta(gt=0.0)]
NonNegative = Annotated[float, msgspec.Meta(ge=0.0)]
Probability = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
MAX_DAYS = 36_525.0  # a run's horizon: a century of simulated time at most
MAX_SEED = 2**63 - 1
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
    """A drift in ``sensor`` that starts ``lead_time_days`` before the failure and reaches ``delta``.

    ``path: linear`` rises steadily; ``path: wiener`` wanders like a Wiener process pinned to reach
    ``delta`` at the failure (a Brownian bridge), its spread set by ``volatility`` (a fraction of ``delta``).
    """

    sensor: Name
    lead_time_days: Positive
    delta: float
    path: Literal["linear", "wiener"] = "linear"
    volatility: NonNegative = 0.3


class Effect(_Spec, frozen=True, kw_only=True):
    """How a sensor reads while the failure is present: ``delta`` added to its baseline."""

    sensor: Name
    delta: float


class Repair(_Spec, frozen=True, kw_only=True):
    """What a technician needs to fix the mode: skill, part (if any) and hands-on time."""

    skill: Name = "general"
    part: Name | None = None
    duration_h: Distribution = Fixed(value=1.0)


class RemoteFix(_Spec, frozen=True, kw_only=True):
    """A command that fixes the mode without a visit: a reset, or an over-the-air update."""

    action: Literal["reset", "ota"]
    success: Probability = 1.0


class FailureMode(_Spec, frozen=True, kw_only=True):
    """One way a device fails. Lives are drawn per (device, mode): competing risks.

    ``firmware`` limits the mode to devices running those versions (an OTA to another version
    removes it; an update to a listed version brings it). ``usage_driven`` lives shorten with the
    device's usage intensity. ``self_restore_h`` ends the failure on its own (power comes back).
    """

    name: Name
    life_days: Distribution
    severity: Severity = "down"
    symptom: Name
    precursor: Precursor | None = None
    effects: list[Effect] = []
    repair: Repair = Repair()
    remote_fix: RemoteFix | None = None
    firmware: list[Name] = []
    usage_driven: bool = False
    self_restore_h: Distribution | None = None
    fault_code: Name | None = None  # reported by the device itself as a `fault` event when it fails


class Consumable(_Spec, frozen=True, kw_only=True):
    """Something a device uses up (ink, toner, stock, helium): drained by usage, refilled by deliveries.

    Its level is reported as sensor ``sensor``; the device reports ``consumable_low`` when the level
    falls below ``low_fraction`` of ``capacity``, and fails with ``symptom`` when it is empty.
    """

    name: Name
    sensor: Name
    unit: str = ""
    capacity: Positive = 100.0
    drain_per_day: Distribution
    start_fraction: Distribution = Uniform(low=0.2, high=1.0)
    low_fraction: Probability = 0.15
    noise_sd: NonNegative = 0.0
    severity: Severity = "down"
    symptom: Name
    delivery_h: Distribution = Lognormal(mean_=48.0, sd=24.0)


class Cohort(_Spec, frozen=True, kw_only=True):
    """One value of a cohort dimension (a manufacturing batch, a climate): its share and its effects.

    ``life_factor`` multiplies the lives of the named modes (0.5: they fail twice as early);
    ``usage_factor`` multiplies the usage intensity of its devices.
    """

    share: NonNegative
    life_factor: dict[Name, Positive] = {}
    usage_factor: Positive = 1.0


class Connectivity(_Spec, frozen=True, kw_only=True):
    """How the fleet's link to the cloud misbehaves. Everything is off unless set.

    Devices go offline every ``offline_every_days`` for ``offline_h`` and, with ``buffer``, send what
    they measured meanwhile when they return (at most ``buffer_max_readings`` each). A share of
    readings arrives ``late_s`` late; device clocks are off by up to ``clock_skew_s``; a share of
    gateway batches is sent twice.
    """

    offline_every_days: Distribution | None = None
    offline_h: Distribution = Lognormal(mean_=2.0, sd=2.0)
    buffer: bool = True
    buffer_max_readings: Annotated[int, msgspec.Meta(ge=0)] = 1000
    late_share: Probability = 0.0
    late_s: Distribution = Exponential(mean_=600.0)
    clock_skew_s: NonNegative = 0.0
    duplicate_share: Probability = 0.0


class Owners(_Spec, frozen=True, kw_only=True):
    """How owners notice failures and reach support, how long they wait, and when they leave."""

    notice_delay_h: dict[Severity, Distribution] = msgspec.field(
        default_factory=lambda: {"down": Lognormal(mean_=6.0, sd=4.0), "degraded": Lognormal(mean_=72.0, sd=36.0)}
    )
    channels: dict[Channel, NonNegative] = msgspec.field(
        default_factory=lambda: {"app": 0.3, "phone": 0.5, "chat": 0.2}
    )
    patience_s: Distribution | None = Exponential(mean_=600.0)
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
    """A population of connected products of one kind.

    ``product`` names a catalogue entry (``sot products``) or one of the scenario's ``products``;
    its sensors, modes and consumables are the defaults and anything given here overrides them
    (lists of named items merge by ``name``).
    """

    name: Name
    product: Name
    count: Annotated[int, msgspec.Meta(gt=0, le=10_000_000)]
    telemetry_interval_s: Positive = 900.0
    # At most 10,000: the engine takes rosters of 10,000 devices at most (its limits' max_roster).
    devices_per_gateway: Annotated[int, msgspec.Meta(gt=0, le=10_000)] = 500
    age_days: Distribution = Fixed(value=0.0)
    sensors: list[Sensor] = []
    failure_modes: list[FailureMode] = []
    consumables: list[Consumable] = []
    usage: Distribution = Fixed(value=1.0)
    cohorts: dict[Name, dict[Name, Cohort]] = {}
    firmware: dict[Name, NonNegative] = {}
    regions: dict[Name, NonNegative] = {}
    connectivity: Connectivity = Connectivity()
    owners: Owners = Owners()
    downtime_per_hour: NonNegative | None = None
    degraded_per_hour: NonNegative | None = None
    without: list[Name] = []  # catalogue sensors, modes or consumables this fleet does not have


class ProductEngine(_Spec, frozen=True, kw_only=True):
    """The engine rules and issue handling that suit a product; merged into the scenario's ``engine``."""

    rules: list[ThresholdRule] = []
    trends: list[TrendRule] = []
    anomalies: list[AnomalyRule] = []
    issues: dict[Name, IssueType] = {}
    symptoms: dict[Name, Name] = {}
    fault_codes: dict[Name, Name] = {}
    diagnoses: dict[Name, Name] = {}


class Product(_Spec, frozen=True, kw_only=True):
    """A catalogue entry: what every fleet of this product has unless the fleet says otherwise.

    ``base`` starts from another catalogue entry (``base: freezer``) and changes what is given here.
    """

    base: Name | None = None
    description: str = ""
    telemetry_interval_s: Positive | None = None
    devices_per_gateway: Annotated[int, msgspec.Meta(gt=0, le=10_000)] | None = None
    age_days: Distribution | None = None
    sensors: list[Sensor] = []
    failure_modes: list[FailureMode] = []
    consumables: list[Consumable] = []
    usage: Distribution | None = None
    cohorts: dict[Name, dict[Name, Cohort]] = {}
    firmware: dict[Name, NonNegative] = {}
    regions: dict[Name, NonNegative] = {}
    connectivity: Connectivity | None = None
    owners: Owners | None = None
    downtime_per_hour: NonNegative | None = None
    degraded_per_hour: NonNegative | None = None
    parts: dict[Name, NonNegative] = {}
    engine: ProductEngine = ProductEngine()


class Shift(_Spec, frozen=True, kw_only=True):
    """Working hours, daily from ``start_h`` to ``end_h`` (past midnight when ``end_h`` is smaller),
    on ``days`` (0 = Monday; simulated time 0 is a Monday 00:00)."""

    start_h: Annotated[float, msgspec.Meta(ge=0.0, lt=24.0)]
    end_h: Annotated[float, msgspec.Meta(gt=0.0, le=24.0)]
    days: list[Annotated[int, msgspec.Meta(ge=0, le=6)]] = msgspec.field(default_factory=lambda: list(range(7)))


class AgentGroup(_Spec, frozen=True, kw_only=True):
    """Agents with the same skills and shift; no ``skills`` means every skill, no ``shifts`` always on."""

    name: Name
    agents: Annotated[int, msgspec.Meta(gt=0)]
    skills: list[Name] = []
    shifts: list[Shift] = []


class ContactCentre(_Spec, frozen=True, kw_only=True):
    """Agents answering owners: one queue per skill, agents by group with skills and shifts.

    ``agents: N`` alone is one always-on group that serves every skill. A contact joins the queue
    of its product's skill (``routing``, default ``general``); self-service contacts need no agent.
    An agent resolves a remotely fixable problem on the call with probability ``first_contact_resolution``.
    """

    agents: Annotated[int, msgspec.Meta(ge=0)] = 0
    groups: list[AgentGroup] = []
    handle_time_s: Distribution = Exponential(mean_=240.0)
    handle_time_by_channel: dict[Channel, Distribution] = {}
    routing: dict[Name, Name] = {}
    first_contact_resolution: Probability = 0.0
    service_level_s: Positive = 20.0

    def __post_init__(self) -> None:
        if self.agents == 0 and not self.groups:
            raise ValueError("give `agents` (one group with every skill) or `groups`")


class Crew(_Spec, frozen=True, kw_only=True):
    """Technicians with the same skills, home region, shift and van stock."""

    name: Name
    count: Annotated[int, msgspec.Meta(gt=0)]
    skills: list[Name] = []
    region: Name | None = None
    shifts: list[Shift] = []
    van_stock: dict[Name, Annotated[int, msgspec.Meta(ge=0)]] = {}


class Technicians(_Spec, frozen=True, kw_only=True):
    """Field technicians dispatched by work order; ``count: N`` alone is one crew with every skill.

    ``travel_h`` is the drive within a region, ``travel_h_other_region`` to another one. A part that
    no depot stocks, or a depot part once picked, reaches the site after ``part_lead_time_h``.
    """

    count: Annotated[int, msgspec.Meta(ge=0)] = 0
    crews: list[Crew] = []
    travel_h: Distribution = Lognormal(mean_=1.0, sd=0.5)
    travel_h_other_region: Distribution = Lognormal(mean_=3.0, sd=1.0)
    part_lead_time_h: Distribution = Lognormal(mean_=48.0, sd=24.0)

    def __post_init__(self) -> None:
        if self.count == 0 and not self.crews:
            raise ValueError("give `count` (one crew with every skill) or `crews`")


class Depot(_Spec, frozen=True, kw_only=True):
    """A parts depot run as (S-1, S) base stock: each part taken is re-ordered at once and arrives
    after ``replenish_h``; demand beyond the stock waits as a backorder."""

    name: Name
    region: Name | None = None
    stock: dict[Name, Annotated[int, msgspec.Meta(ge=0)]]
    replenish_h: Distribution = Lognormal(mean_=72.0, sd=24.0)


class Outage(_Spec, frozen=True, kw_only=True):
    """A regional outage: a share of the region's devices lose their link (and with ``power``, their
    power) at ``start_day`` for ``duration_h``, then reconnect together."""

    name: Name
    start_day: NonNegative
    duration_h: Positive
    region: Name | None = None
    share: Probability = 1.0
    power: bool = False


class Costs(_Spec, frozen=True, kw_only=True):
    """Money: what an hour down, a truck roll, an hour of labour, a contact and each part cost.

    The cost ledger (:mod:`experiments.ledger`) also prices an agent's hour, a breached SLA clock,
    an owner who churned, the proactive service per device-year, and the margin on each refill
    delivered; ``kpis.cost`` uses none of those.
    """

    currency: str = "USD"
    downtime_per_hour: NonNegative = 0.0
    degraded_per_hour: NonNegative = 0.0
    truck_roll: NonNegative = 0.0
    labour_per_hour: NonNegative = 0.0
    contact: NonNegative = 0.0
    parts: dict[Name, NonNegative] = {}
    agent_per_hour: NonNegative = 0.0  # an agent's hour on a call (on top of ``contact``, per contact)
    sla_penalty: NonNegative = 0.0  # per breached SLA clock (first response or resolution) of a case
    churned_owner: NonNegative = 0.0  # revenue lost with each owner who leaves
    monitoring_per_device_year: NonNegative = 0.0  # running the proactive service; not charged when reactive
    refill_margin: dict[Name, NonNegative] = {}  # margin earned per refill delivered, by consumable name


class Scenario(_Spec, frozen=True, kw_only=True):
    """A whole run: fleets, people, costs and the engine's policy."""

    schema_version: Annotated[int, msgspec.Meta(ge=1, le=SCENARIO_SCHEMA_VERSION)] = SCENARIO_SCHEMA_VERSION
    name: Name
    description: str = ""
    seed: Annotated[int, msgspec.Meta(ge=0, le=MAX_SEED)] = 0
    duration_days: Annotated[float, msgspec.Meta(gt=0.0, le=MAX_DAYS)]  # a century at most
    # KPIs and scores count only what begins after the warm-up; it is shorter than duration_days.
    warmup_days: Annotated[float, msgspec.Meta(ge=0.0, le=MAX_DAYS)] = 0.0
    sync_interval_s: Positive = 3600.0
    products: dict[Name, Product] = {}
    fleets: Annotated[list[Fleet], msgspec.Meta(min_length=1)]
    contact_centre: ContactCentre
    technicians: Technicians
    depots: list[Depot] = []
    outages: list[Outage] = []
    costs: Costs = Costs()
    engine: EngineConfig = EngineConfig()

    @property
    def duration_s(self) -> float:
        return self.duration_days * 86400.0

    @property
    def warmup_s(self) -> float:
        return self.warmup_days * 86400.0

    @property
    def device_count(self) -> int:
        return sum(f.count for f in self.fleets)
