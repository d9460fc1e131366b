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
    "ContactStream",
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
    "Service",
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


def _doc(description: str, *examples: object) -> msgspec.Meta:
    """A field's description and examples for its JSON Schema (``sot schema``: an editor's hover help)."""
    return msgspec.Meta(description=description, examples=list(examples))


class _Spec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class Sensor(_Spec, frozen=True, kw_only=True):
    """A sensor every device of the fleet reports: its healthy level and measurement noise.

    ``rises_per_day`` makes it a counter the device keeps (running hours, cycles, pages): it rises
    by that much a day times the device's usage, from ``baseline`` when the unit was new (an
    installed unit reads its age's worth already). Usage-based maintenance plans read counters.
    """

    name: Annotated[
        Name,
        _doc(
            "Sensor name: the key in telemetry and in engine rules; unique in the fleet, consumables' sensors included.",
            "cabinet_temp_c",
        ),
    ]
    unit: Annotated[str, _doc("Unit of the readings (descriptive only).", "degC")] = ""
    baseline: Annotated[
        float, _doc("Healthy level: what a working device reads, before noise, drift and effects.", -18.0)
    ]
    noise_sd: Annotated[NonNegative, _doc("Standard deviation of the Gaussian noise added to each reading.", 0.4)] = 0.0
    rises_per_day: Annotated[
        NonNegative,
        _doc(
            "A counter (running hours, cycles, pages) rises by this much a day times the device's usage; 0: not a counter.",
            24.0,
        ),
    ] = 0.0


class Precursor(_Spec, frozen=True, kw_only=True):
    """A drift in ``sensor`` that starts ``lead_time_days`` before the failure and reaches ``delta``.

    ``path: linear`` rises steadily; ``path: wiener`` wanders like a Wiener process pinned to reach
    ``delta`` at the failure (a Brownian bridge), its spread set by ``volatility`` (a fraction of ``delta``).
    """

    sensor: Annotated[Name, _doc("The sensor that drifts: one of the same fleet's.", "compressor_duty")]
    lead_time_days: Annotated[Positive, _doc("Days before the failure that the drift starts.", 10.0)]
    delta: Annotated[float, _doc("The drift reached at the failure, added to the sensor's baseline.", 0.45)]
    path: Annotated[
        Literal["linear", "wiener"],
        _doc("`linear` rises steadily; `wiener` wanders like a Brownian bridge pinned at 0 and at `delta`.", "linear"),
    ] = "linear"
    volatility: Annotated[NonNegative, _doc("`wiener` only: the spread, as a fraction of `delta`.", 0.3)] = 0.3


class Effect(_Spec, frozen=True, kw_only=True):
    """How a sensor reads while the failure is present: ``delta`` added to its baseline."""

    sensor: Annotated[Name, _doc("A sensor of the same fleet.", "cabinet_temp_c")]
    delta: Annotated[float, _doc("Added to the sensor's reading while the mode is failed.", 25.0)]


class Repair(_Spec, frozen=True, kw_only=True):
    """What a technician needs to fix the mode: skill, part (if any) and hands-on time."""

    skill: Annotated[Name, _doc("The skill a technician needs to fix the mode.", "refrigeration")] = "general"
    part: Annotated[
        Name | None, _doc("The part the fix needs (from the work order's kit or the van); none: no part.", "compressor")
    ] = None
    duration_h: Annotated[
        Distribution, _doc("Hands-on repair time, hours.", {"dist": "lognormal", "mean": 3.0, "sd": 1.0})
    ] = Fixed(value=1.0)


class Service(_Spec, frozen=True, kw_only=True):
    """What a preventive service of the mode takes and does, when a maintenance visit names it.

    The technician needs the repair's skill, fits ``part`` (none: nothing is replaced) and works
    about ``duration_h``; the mode's age then goes back by ``restores`` of itself (1: as good as
    new, a fresh life; 0.5: half as old, its remaining life drawn again at that age). A mode
    without ``service`` is serviced by its repair done ahead of time (its part, its time, as good
    as new). A service changes nothing for a mode with random (exponential) lives but the draw.
    """

    part: Annotated[
        Name | None, _doc("The part a preventive service fits; none: nothing is replaced.", "door_seal")
    ] = None
    duration_h: Annotated[
        Distribution, _doc("Hands-on time of the service, hours.", {"dist": "fixed", "value": 0.5})
    ] = Fixed(value=1.0)
    restores: Annotated[
        float,
        msgspec.Meta(gt=0.0, le=1.0),
        _doc("The share of the mode's age the service takes away: 1 renews it, 0.5 halves its age.", 1.0),
    ] = 1.0


class RemoteFix(_Spec, frozen=True, kw_only=True):
    """A command that fixes the mode without a visit: a reset, or an over-the-air update."""

    action: Annotated[
        Literal["reset", "ota"],
        _doc("The command that clears the failure: `reset`, or an over-the-air update (`ota`).", "reset"),
    ]
    success: Annotated[Probability, _doc("Chance that one such command clears it.", 0.5)] = 1.0


class FailureMode(_Spec, frozen=True, kw_only=True):
    """One way a device fails. Lives are drawn per (device, mode): competing risks.

    ``firmware`` limits the mode to devices running those versions (an OTA to another version
    removes it; an update to a listed version brings it). ``usage_driven`` lives shorten with the
    device's usage intensity. ``self_restore_h`` ends the failure on its own (power comes back).
    """

    name: Annotated[
        Name,
        _doc(
            "Mode name (ground truth, and a device's answer to a diagnostic); unique among the fleet's modes and consumables.",
            "compressor_wear",
        ),
    ]
    life_days: Annotated[
        Distribution,
        _doc(
            "Time to failure, days, one life per device and mode: `exponential` for random failures, `weibull` with shape > 1 for wear-out.",
            {"dist": "weibull", "shape": 2.5, "scale": 1800},
        ),
    ]
    severity: Annotated[
        Severity, _doc("`down` stops the device (downtime); `degraded` counts degraded hours.", "down")
    ] = "down"
    symptom: Annotated[
        Name,
        _doc(
            "What the owner reports: a key of `engine.symptoms` (else the engine's `default_issue` answers it).",
            "not_cooling",
        ),
    ]
    precursor: Annotated[
        Precursor | None,
        _doc(
            "The warning before the failure: a sensor's drift over its lead time; none: no warning.",
            {"sensor": "compressor_duty", "lead_time_days": 10, "delta": 0.45},
        ),
    ] = None
    effects: Annotated[
        list[Effect],
        _doc(
            "How sensors read while the mode is failed (added to their baseline).",
            [{"sensor": "cabinet_temp_c", "delta": 25.0}],
        ),
    ] = []
    repair: Annotated[
        Repair,
        _doc(
            "What a technician needs to fix it: skill, part and time.", {"skill": "refrigeration", "part": "compressor"}
        ),
    ] = Repair()
    remote_fix: Annotated[
        RemoteFix | None,
        _doc(
            "A command that clears it without a visit; none: only a technician can.",
            {"action": "reset", "success": 0.5},
        ),
    ] = None
    firmware: Annotated[
        list[Name],
        _doc(
            "The mode exists only on devices running one of these versions (a firmware mix's, or an OTA's); empty: on every version.",
            ["2.1"],
        ),
    ] = []
    usage_driven: Annotated[bool, _doc("Lives shorten with the device's usage intensity (divided by it).", True)] = (
        False
    )
    self_restore_h: Annotated[
        Distribution | None,
        _doc(
            "The failure ends on its own after this many hours (a power cut); none: it needs a fix.",
            {"dist": "lognormal", "mean": 3.0, "sd": 2.5},
        ),
    ] = None
    fault_code: Annotated[
        Name | None,
        _doc(
            "The code the device reports in a `fault` event when the mode fails; map it in `engine.fault_codes`.",
            "P0606",
        ),
    ] = None
    service: Annotated[
        Service | None,
        _doc(
            "What a preventive maintenance visit that names the mode does; none: its repair, done ahead of time.",
            {"part": "door_seal", "restores": 1.0},
        ),
    ] = None


class Consumable(_Spec, frozen=True, kw_only=True):
    """Something a device uses up (ink, toner, stock, helium): drained by usage, refilled by deliveries.

    Its level is reported as sensor ``sensor``; the device reports ``consumable_low`` when the level
    falls below ``low_fraction`` of ``capacity``, and fails with ``symptom`` when it is empty.
    """

    name: Annotated[
        Name,
        _doc(
            "Consumable name, the code of its `consumable_low` event (map it in `engine.fault_codes`); unique among the fleet's modes and consumables.",
            "toner_black",
        ),
    ]
    sensor: Annotated[
        Name, _doc("The sensor that reports its level; unique among the fleet's sensors.", "toner_black_pct")
    ]
    unit: Annotated[str, _doc("Unit of the level (descriptive only).", "%")] = ""
    capacity: Annotated[Positive, _doc("The full level.", 100.0)] = 100.0
    drain_per_day: Annotated[
        Distribution,
        _doc(
            "Capacity units used a day at usage 1, drawn once per device.",
            {"dist": "lognormal", "mean": 2.0, "sd": 1.0},
        ),
    ]
    start_fraction: Annotated[
        Distribution,
        _doc("The level at the start, as a fraction of `capacity`.", {"dist": "uniform", "low": 0.2, "high": 1.0}),
    ] = Uniform(low=0.2, high=1.0)
    low_fraction: Annotated[
        Probability, _doc("Below this fraction of `capacity` the device reports `consumable_low`.", 0.15)
    ] = 0.15
    noise_sd: Annotated[NonNegative, _doc("Standard deviation of the noise on the level reading.", 0.0)] = 0.0
    severity: Annotated[Severity, _doc("Severity of running empty: `down` or `degraded`.", "down")] = "down"
    symptom: Annotated[Name, _doc("What the owner reports when it is empty (mapped like a mode's).", "out_of_toner")]
    delivery_h: Annotated[
        Distribution,
        _doc(
            "Hours from the engine's replenishment order to the refill.",
            {"dist": "lognormal", "mean": 48.0, "sd": 24.0},
        ),
    ] = Lognormal(mean_=48.0, sd=24.0)


class Cohort(_Spec, frozen=True, kw_only=True):
    """One value of a cohort dimension (a manufacturing batch, a climate): its share and its effects.

    ``life_factor`` multiplies the lives of the named modes (0.5: they fail twice as early);
    ``usage_factor`` multiplies the usage intensity of its devices.
    """

    share: Annotated[NonNegative, _doc("Weight of this value among the dimension's values.", 0.3)]
    life_factor: Annotated[
        dict[Name, Positive],
        _doc("Multiplies the lives of the named modes (0.5: they fail twice as early).", {"compressor_wear": 0.8}),
    ] = {}
    usage_factor: Annotated[Positive, _doc("Multiplies the usage intensity of its devices.", 1.2)] = 1.0


class Connectivity(_Spec, frozen=True, kw_only=True):
    """How the fleet's link to the cloud misbehaves. Everything is off unless set.

    Devices go offline every ``offline_every_days`` for ``offline_h`` and, with ``buffer``, send what
    they measured meanwhile when they return (at most ``buffer_max_readings`` each). A share of
    readings arrives ``late_s`` late; device clocks are off by up to ``clock_skew_s``; a share of
    gateway batches is sent twice.
    """

    offline_every_days: Annotated[
        Distribution | None,
        _doc("Days between a device's offline spells; none: never offline.", {"dist": "exponential", "mean": 30}),
    ] = None
    offline_h: Annotated[
        Distribution, _doc("Length of an offline spell, hours.", {"dist": "lognormal", "mean": 2.0, "sd": 2.0})
    ] = Lognormal(mean_=2.0, sd=2.0)
    buffer: Annotated[
        bool, _doc("Offline devices keep their readings and send them when back; false: they are lost.", True)
    ] = True
    buffer_max_readings: Annotated[
        int, msgspec.Meta(ge=0), _doc("Readings a device keeps while offline; beyond them they are lost.", 1000)
    ] = 1000
    late_share: Annotated[Probability, _doc("Share of readings that arrive late.", 0.01)] = 0.0
    late_s: Annotated[
        Distribution, _doc("How late a late reading arrives, seconds.", {"dist": "exponential", "mean": 600})
    ] = Exponential(mean_=600.0)
    clock_skew_s: Annotated[
        NonNegative,
        _doc(
            "Each device's clock is off by a fixed amount drawn uniformly within plus or minus this many seconds.", 30.0
        ),
    ] = 0.0
    duplicate_share: Annotated[Probability, _doc("Share of gateway batches published twice.", 0.001)] = 0.0


class Owners(_Spec, frozen=True, kw_only=True):
    """How owners notice failures and reach support, how long they wait, and when they leave."""

    notice_delay_h: Annotated[
        dict[Severity, Distribution],
        _doc(
            "Hours from a failure's onset until the owner notices, by severity (`down` and `degraded` both needed).",
            {
                "down": {"dist": "lognormal", "mean": 6.0, "sd": 4.0},
                "degraded": {"dist": "lognormal", "mean": 72.0, "sd": 36.0},
            },
        ),
    ] = msgspec.field(
        default_factory=lambda: {"down": Lognormal(mean_=6.0, sd=4.0), "degraded": Lognormal(mean_=72.0, sd=36.0)}
    )
    channels: Annotated[
        dict[Channel, NonNegative],
        _doc(
            "Relative weights of the contact channels (`app`, `phone`, `chat`, `self_service`).",
            {"app": 0.3, "phone": 0.5, "chat": 0.2},
        ),
    ] = msgspec.field(default_factory=lambda: {"app": 0.3, "phone": 0.5, "chat": 0.2})
    patience_s: Annotated[
        Distribution | None,
        _doc(
            "How long a caller waits in the queue before hanging up, seconds; null: never hangs up.",
            {"dist": "exponential", "mean": 600},
        ),
    ] = Exponential(mean_=600.0)
    recontact_h: Annotated[
        Distribution,
        _doc(
            "Hours before an owner gets in touch again while the problem persists.", {"dist": "exponential", "mean": 24}
        ),
    ] = Exponential(mean_=24.0)
    churn_per_downtime_day: Annotated[Probability, _doc("Chance that an owner leaves, per day of downtime.", 0.01)] = (
        0.01
    )
    churn_per_effort_step: Annotated[
        Probability, _doc("Chance that an owner leaves, per effort step (a contact, an abandoned call, a visit).", 0.02)
    ] = 0.02

    def __post_init__(self) -> None:
        missing = {"down", "degraded"} - set(self.notice_delay_h)
        if missing:
            raise ValueError(f"`notice_delay_h` needs an entry for {', '.join(sorted(missing))}")
        if sum(self.channels.values()) <= 0:
            raise ValueError("`channels` weights must add up to more than 0")


class ContactStream(_Spec, frozen=True, kw_only=True):
    """Contacts for one reason other than a fault (how-to, billing, set-up help): demand of its own.

    Owners get in touch at ``per_device_day`` contacts per device and day on average, as a Poisson
    process over the whole fleet, whatever their devices do. ``daily_profile`` (24 hourly weights,
    from midnight) and ``weekly_profile`` (7 daily weights, Monday first; time 0 is a Monday 00:00)
    shape the rate; each is relative, scaled to average 1, so ``per_device_day`` stays the mean.
    A contact goes through ``channels`` (empty: the owners' own) to the queue of ``skill`` (none:
    the product's ``contact_centre.routing``) and takes ``handle_time_s`` of an agent (none: the
    centre's). It settles the matter with probability ``first_contact_resolution``; otherwise, or
    when the owner gave up waiting, the owner gets in touch again after ``owners.recontact_h``.
    """

    per_device_day: Annotated[
        NonNegative, _doc("Mean contacts per device and day: a Poisson process over the whole fleet; 0: none.", 0.004)
    ]
    daily_profile: Annotated[
        Annotated[list[NonNegative], msgspec.Meta(min_length=24, max_length=24)] | None,
        _doc(
            "24 relative rates by hour from midnight (scaled to average 1); none: flat.",
            [0, 0, 0, 0, 0, 0, 0.5, 1, 2, 2, 2, 2, 1.5, 1.5, 2, 2, 2, 1.5, 1, 1, 0.5, 0.5, 0, 0],
        ),
    ] = None
    weekly_profile: Annotated[
        Annotated[list[NonNegative], msgspec.Meta(min_length=7, max_length=7)] | None,
        _doc("7 relative rates by day, Monday first (scaled to average 1); none: flat.", [1, 1, 1, 1, 1, 0.6, 0.4]),
    ] = None
    channels: Annotated[
        dict[Channel, NonNegative],
        _doc("Relative weights of these contacts' channels; empty: the owners' own.", {"phone": 0.6, "chat": 0.4}),
    ] = {}
    skill: Annotated[
        Name | None,
        _doc("The agent queue they join; none: the product's `contact_centre.routing` (else `general`).", "billing"),
    ] = None
    handle_time_s: Annotated[
        Distribution | None,
        _doc(
            "Agent time per contact, seconds; none: the contact centre's.",
            {"dist": "lognormal", "mean": 360, "sd": 200},
        ),
    ] = None
    first_contact_resolution: Annotated[
        Probability, _doc("Chance that a contact settles the matter; otherwise the owner gets in touch again.", 0.85)
    ] = 1.0

    def __post_init__(self) -> None:
        for key in ("daily_profile", "weekly_profile"):
            weights = getattr(self, key)
            if weights is not None and sum(weights) <= 0:
                raise ValueError(f"`{key}` weights must add up to more than 0")
        if self.channels and sum(self.channels.values()) <= 0:
            raise ValueError("`channels` weights must add up to more than 0")


class Fleet(_Spec, frozen=True, kw_only=True):
    """A population of connected products of one kind.

    ``product`` names a catalogue entry (``sot products``) or one of the scenario's ``products``;
    its sensors, modes and consumables are the defaults and anything given here overrides them
    (lists of named items merge by ``name``).
    """

    name: Annotated[Name, _doc("Fleet name, unique: the prefix of its device and gateway ids.", "freezer")]
    product: Annotated[
        Name,
        _doc(
            "A catalogue entry (`sot products`) or one of the scenario's `products`, which the fleet starts from; any other name is only a label.",
            "freezer",
        ),
    ]
    count: Annotated[int, msgspec.Meta(gt=0, le=10_000_000), _doc("Number of devices.", 2000)]
    telemetry_interval_s: Annotated[
        Positive, _doc("Seconds between two readings of every sensor; at most `sync_interval_s`.", 900.0)
    ] = 900.0
    # At most 10,000: the engine takes rosters of 10,000 devices at most (its limits' max_roster).
    devices_per_gateway: Annotated[
        int,
        msgspec.Meta(gt=0, le=10_000),
        _doc("Devices per gateway batch (one MQTT message per gateway and tick).", 500),
    ] = 500
    age_days: Annotated[
        Distribution, _doc("Age of each unit when the run starts, days.", {"dist": "uniform", "low": 0, "high": 2000})
    ] = Fixed(value=0.0)
    sensors: Annotated[
        list[Sensor],
        _doc(
            "Sensors every device reports; merged by `name` with the product's.",
            [{"name": "cabinet_temp_c", "baseline": -18.0, "noise_sd": 0.4}],
        ),
    ] = []
    failure_modes: Annotated[
        list[FailureMode],
        _doc(
            "Ways a device fails; merged by `name` with the product's.",
            [{"name": "power_loss", "life_days": {"dist": "exponential", "mean": 1500}}],
        ),
    ] = []
    consumables: Annotated[
        list[Consumable],
        _doc("What devices use up; merged by `name` with the product's.", [{"name": "toner_black", "capacity": 200.0}]),
    ] = []
    usage: Annotated[
        Distribution,
        _doc(
            "Each device's usage intensity (1: nominal): multiplies consumables' drain, divides the lives of usage-driven modes.",
            {"dist": "lognormal", "mean": 1.0, "sd": 0.3},
        ),
    ] = Fixed(value=1.0)
    cohorts: Annotated[
        dict[Name, dict[Name, Cohort]],
        _doc(
            "Cohort dimensions (a batch, a climate), each a map of values; every device gets one value per dimension, drawn by `share`.",
            {"climate": {"temperate": {"share": 0.7}, "hot": {"share": 0.3, "usage_factor": 1.2}}},
        ),
    ] = {}
    firmware: Annotated[
        dict[Name, NonNegative],
        _doc(
            "The firmware mix at the start, version to share (quote versions); empty: no version.",
            {"2.3": 0.6, "2.4": 0.4},
        ),
    ] = {}
    regions: Annotated[
        dict[Name, NonNegative],
        _doc("Where devices are, region to share; empty: no region.", {"north": 0.5, "south": 0.5}),
    ] = {}
    connectivity: Annotated[
        Connectivity,
        _doc(
            "How the fleet's link misbehaves: offline spells, late data, clock skew, duplicates.",
            {"offline_every_days": {"dist": "exponential", "mean": 30}},
        ),
    ] = Connectivity()
    owners: Annotated[
        Owners,
        _doc("How owners notice failures, reach support, wait and leave.", {"channels": {"app": 0.3, "phone": 0.7}}),
    ] = Owners()
    contact_streams: Annotated[
        dict[Name, ContactStream],
        _doc(
            "Contacts not about a fault, by reason (how-to, billing): demand of their own.",
            {"how_to": {"per_device_day": 0.004}},
        ),
    ] = {}
    downtime_per_hour: Annotated[
        NonNegative | None,
        _doc("Price of an hour down of this fleet's incidents; none: `costs.downtime_per_hour`.", 25.0),
    ] = None
    degraded_per_hour: Annotated[
        NonNegative | None,
        _doc("Price of a degraded hour of this fleet's incidents; none: `costs.degraded_per_hour`.", 3.0),
    ] = None
    without: Annotated[
        list[Name],
        _doc("Sensors, failure modes or consumables of the product that this fleet does not have.", ["defrost_fault"]),
    ] = []


class ProductEngine(_Spec, frozen=True, kw_only=True):
    """The engine rules and issue handling that suit a product; merged into the scenario's ``engine``."""

    rules: Annotated[
        list[ThresholdRule],
        _doc(
            "Threshold rules for the product's devices (each watches this product only, unless it names `products`).",
            [
                {
                    "name": "freezer_cabinet_hot",
                    "sensor": "cabinet_temp_c",
                    "above": -5.0,
                    "for_s": 3600,
                    "issue": "freezer_cooling",
                }
            ],
        ),
    ] = []
    trends: Annotated[
        list[TrendRule],
        _doc(
            "Trend rules for the product's devices: remaining useful life, rate of change.",
            [
                {
                    "name": "toner_runout",
                    "sensor": "toner_black_pct",
                    "issue": "toner",
                    "reaches": 0.0,
                    "within_s": 259200,
                }
            ],
        ),
    ] = []
    anomalies: Annotated[
        list[AnomalyRule],
        _doc(
            "Anomaly rules for the product's devices: a CUSUM against each device's own normal.",
            [{"name": "vibration_odd", "sensor": "vibration_mm_s", "issue": "bearing"}],
        ),
    ] = []
    issues: Annotated[
        dict[Name, IssueType],
        _doc(
            "Issue types by name: how the engine answers each kind of fault.",
            {"freezer_cooling": {"skill": "refrigeration", "parts": ["compressor"]}},
        ),
    ] = {}
    symptoms: Annotated[
        dict[Name, Name],
        _doc("What owners say, mapped to the issue that answers it.", {"not_cooling": "freezer_cooling"}),
    ] = {}
    fault_codes: Annotated[
        dict[Name, Name],
        _doc(
            "A mode's `fault_code`, or a consumable's name (its `consumable_low`), mapped to the issue that answers it.",
            {"P0606": "car_ecu"},
        ),
    ] = {}
    diagnoses: Annotated[
        dict[Name, Name],
        _doc(
            "A device's answer to a diagnostic (the name of what failed), mapped to the issue the visit brings.",
            {"compressor_wear": "freezer_compressor"},
        ),
    ] = {}


class Product(_Spec, frozen=True, kw_only=True):
    """A catalogue entry: what every fleet of this product has unless the fleet says otherwise.

    ``base`` starts from another catalogue entry (``base: freezer``) and changes what is given here.
    """

    base: Annotated[
        Name | None, _doc("A built-in catalogue entry to start from; the keys given here change it.", "car")
    ] = None
    description: Annotated[str, _doc("Free text: what the product is.", "Connected -18 degC commercial freezer")] = ""
    telemetry_interval_s: Annotated[
        Positive | None, _doc("As in a fleet; none: the fleet's default (900 s).", 900.0)
    ] = None
    devices_per_gateway: Annotated[
        Annotated[int, msgspec.Meta(gt=0, le=10_000)] | None,
        _doc("As in a fleet; none: the fleet's default (500).", 500),
    ] = None
    age_days: Annotated[
        Distribution | None, _doc("As in a fleet; none: new units.", {"dist": "uniform", "low": 0, "high": 1500})
    ] = None
    sensors: Annotated[
        list[Sensor],
        _doc(
            "Sensors every device of the product reports.",
            [{"name": "boiler_temp_c", "unit": "degC", "baseline": 95.0, "noise_sd": 0.8}],
        ),
    ] = []
    failure_modes: Annotated[
        list[FailureMode],
        _doc(
            "Ways the product fails.",
            [{"name": "pump_failure", "life_days": {"dist": "exponential", "mean": 4000}, "symptom": "no_coffee"}],
        ),
    ] = []
    consumables: Annotated[
        list[Consumable],
        _doc(
            "What the product uses up.",
            [
                {
                    "name": "coffee_beans",
                    "sensor": "beans_g",
                    "drain_per_day": {"dist": "lognormal", "mean": 300, "sd": 120},
                    "symptom": "coffee_out_of_beans",
                }
            ],
        ),
    ] = []
    usage: Annotated[
        Distribution | None, _doc("As in a fleet; none: usage 1.", {"dist": "lognormal", "mean": 1.0, "sd": 0.4})
    ] = None
    cohorts: Annotated[
        dict[Name, dict[Name, Cohort]],
        _doc(
            "As in a fleet.",
            {"water": {"soft": {"share": 0.6}, "hard": {"share": 0.4, "life_factor": {"pump_wear": 0.7}}}},
        ),
    ] = {}
    firmware: Annotated[
        dict[Name, NonNegative], _doc("As in a fleet: the firmware mix.", {"2.0": 0.3, "2.1": 0.5, "2.2": 0.2})
    ] = {}
    regions: Annotated[dict[Name, NonNegative], _doc("As in a fleet.", {"north": 0.5, "south": 0.5})] = {}
    connectivity: Annotated[Connectivity | None, _doc("As in a fleet; none: a perfect link.", {"late_share": 0.01})] = (
        None
    )
    owners: Annotated[Owners | None, _doc("As in a fleet; none: the defaults.", {"patience_s": None})] = None
    contact_streams: Annotated[
        dict[Name, ContactStream], _doc("As in a fleet.", {"how_to": {"per_device_day": 0.004}})
    ] = {}
    downtime_per_hour: Annotated[NonNegative | None, _doc("Price of an hour down for fleets of the product.", 6.0)] = (
        None
    )
    degraded_per_hour: Annotated[
        NonNegative | None, _doc("Price of a degraded hour for fleets of the product.", 1.0)
    ] = None
    parts: Annotated[
        dict[Name, NonNegative],
        _doc("Part prices, added to `costs.parts` (the scenario's own prices win).", {"coffee_pump": 85.0}),
    ] = {}
    engine: Annotated[
        ProductEngine,
        _doc(
            "The engine rules and issue handling that suit the product, merged into the scenario's `engine`.",
            {"symptoms": {"coffee_no_pressure": "coffee_pump"}},
        ),
    ] = ProductEngine()


class Shift(_Spec, frozen=True, kw_only=True):
    """Working hours, daily from ``start_h`` to ``end_h`` (past midnight when ``end_h`` is smaller),
    on ``days`` (0 = Monday; simulated time 0 is a Monday 00:00)."""

    start_h: Annotated[float, msgspec.Meta(ge=0.0, lt=24.0), _doc("Hour of the day the shift starts.", 8.0)]
    end_h: Annotated[
        float,
        msgspec.Meta(gt=0.0, le=24.0),
        _doc("Hour of the day it ends; past midnight when not after `start_h`.", 18.0),
    ]
    days: Annotated[
        list[Annotated[int, msgspec.Meta(ge=0, le=6)]],
        _doc("Days the shift starts on, 0 = Monday (time 0 is a Monday 00:00).", [0, 1, 2, 3, 4]),
    ] = msgspec.field(default_factory=lambda: list(range(7)))


class AgentGroup(_Spec, frozen=True, kw_only=True):
    """Agents with the same skills and shift; no ``skills`` means every skill, no ``shifts`` always on."""

    name: Annotated[Name, _doc("Group name, unique; agent ids are `{group}-{i:03d}`.", "helpdesk")]
    agents: Annotated[int, msgspec.Meta(gt=0), _doc("Agents in the group.", 3)]
    skills: Annotated[list[Name], _doc("Skills (queues) the group serves; empty: every skill.", ["general"])] = []
    shifts: Annotated[
        list[Shift], _doc("Working hours; empty: always on.", [{"start_h": 8, "end_h": 18, "days": [0, 1, 2, 3, 4]}])
    ] = []


class ContactCentre(_Spec, frozen=True, kw_only=True):
    """Agents answering owners: one queue per skill, agents by group with skills and shifts.

    ``agents: N`` alone is one always-on group that serves every skill. A contact joins the queue
    of its product's skill (``routing``, default ``general``); self-service contacts need no agent.
    An agent resolves a remotely fixable problem on the call with probability ``first_contact_resolution``.
    """

    agents: Annotated[
        int, msgspec.Meta(ge=0), _doc("One always-on group of this many agents that serves every skill.", 4)
    ] = 0
    groups: Annotated[
        list[AgentGroup],
        _doc("Agent groups with skills and shifts.", [{"name": "helpdesk", "agents": 3, "skills": ["general"]}]),
    ] = []
    handle_time_s: Annotated[
        Distribution, _doc("Time an agent is busy with one contact, seconds.", {"dist": "exponential", "mean": 240})
    ] = Exponential(mean_=240.0)
    handle_time_by_channel: Annotated[
        dict[Channel, Distribution],
        _doc(
            "Handle time for these channels instead of `handle_time_s`.", {"chat": {"dist": "exponential", "mean": 480}}
        ),
    ] = {}
    routing: Annotated[
        dict[Name, Name],
        _doc(
            "The skill (queue) a fleet's contacts join, by the fleet's product; unlisted products: `general`.",
            {"printer": "office"},
        ),
    ] = {}
    first_contact_resolution: Annotated[
        Probability, _doc("Chance that an answered or self-service contact fixes a remotely fixable problem.", 0.5)
    ] = 0.0
    service_level_s: Annotated[
        Positive, _doc("Threshold of the service-level figure: the share of calls answered within it, seconds.", 20.0)
    ] = 20.0

    def __post_init__(self) -> None:
        if self.agents == 0 and not self.groups:
            raise ValueError("give `agents` (one group with every skill) or `groups`")


class Crew(_Spec, frozen=True, kw_only=True):
    """Technicians with the same skills, home region, shift and van stock."""

    name: Annotated[Name, _doc("Crew name, unique; technician ids are `{crew}-{i:02d}`.", "north-mobile")]
    count: Annotated[int, msgspec.Meta(gt=0), _doc("Technicians in the crew.", 4)]
    skills: Annotated[list[Name], _doc("Skills; empty: every skill.", ["refrigeration", "general"])] = []
    region: Annotated[
        Name | None, _doc("Home region: preferred for its devices; its depot restocks the vans.", "north")
    ] = None
    shifts: Annotated[list[Shift], _doc("Working hours; empty: always on duty.", [{"start_h": 7, "end_h": 19}])] = []
    van_stock: Annotated[
        dict[Name, Annotated[int, msgspec.Meta(ge=0)]],
        _doc(
            "Parts each technician carries, part to count (a part used is re-ordered from the depot).", {"door_seal": 2}
        ),
    ] = {}


class Technicians(_Spec, frozen=True, kw_only=True):
    """Field technicians dispatched by work order; ``count: N`` alone is one crew with every skill.

    ``count: 0`` without ``crews`` is a service with no field crews: work orders wait and are never
    attended. ``travel_h`` is the drive within a region, ``travel_h_other_region`` to another one. A
    part that no depot stocks, or a depot part once picked, reaches the site after ``part_lead_time_h``.
    """

    count: Annotated[
        int,
        msgspec.Meta(ge=0),
        _doc(
            "One always-on crew of this many technicians with every skill, used without `crews`; 0 without crews: no field service.",
            3,
        ),
    ] = 0
    crews: Annotated[
        list[Crew],
        _doc(
            "Crews with skills, regions, shifts and vans (then `count` is not used).",
            [{"name": "north", "count": 2, "skills": ["general"], "region": "north"}],
        ),
    ] = []
    travel_h: Annotated[
        Distribution,
        _doc("Drive to a device in the technician's region, hours.", {"dist": "lognormal", "mean": 1.0, "sd": 0.5}),
    ] = Lognormal(mean_=1.0, sd=0.5)
    travel_h_other_region: Annotated[
        Distribution, _doc("Drive to a device in another region, hours.", {"dist": "lognormal", "mean": 3.0, "sd": 1.0})
    ] = Lognormal(mean_=3.0, sd=1.0)
    part_lead_time_h: Annotated[
        Distribution,
        _doc(
            "Carrier time for a missing part to reach the site, hours.", {"dist": "lognormal", "mean": 48.0, "sd": 24.0}
        ),
    ] = Lognormal(mean_=48.0, sd=24.0)


class Depot(_Spec, frozen=True, kw_only=True):
    """A parts depot run as (S-1, S) base stock: each part taken is re-ordered at once and arrives
    after ``replenish_h``; demand beyond the stock waits as a backorder."""

    name: Annotated[Name, _doc("Depot name, unique.", "central-depot")]
    region: Annotated[Name | None, _doc("The region it serves first; none: none first.", "north")] = None
    stock: Annotated[
        dict[Name, Annotated[int, msgspec.Meta(ge=0)]],
        _doc("Base-stock level of each part, part to count.", {"compressor": 6, "door_seal": 20}),
    ]
    replenish_h: Annotated[
        Distribution, _doc("Resupply time of one unit, hours.", {"dist": "lognormal", "mean": 72.0, "sd": 24.0})
    ] = Lognormal(mean_=72.0, sd=24.0)


class Outage(_Spec, frozen=True, kw_only=True):
    """A regional outage: a share of the region's devices lose their link (and with ``power``, their
    power) at ``start_day`` for ``duration_h``, then reconnect together."""

    name: Annotated[Name, _doc("Outage name, unique.", "east-storm")]
    start_day: Annotated[NonNegative, _doc("Day it starts.", 5.0)]
    duration_h: Annotated[Positive, _doc("How long it lasts, hours.", 12.0)]
    region: Annotated[Name | None, _doc("The region hit; none: everywhere.", "east")] = None
    share: Annotated[Probability, _doc("Chance that each device of the region is hit.", 1.0)] = 1.0
    power: Annotated[bool, _doc("The hit devices lose power too (their owners report `no_power`).", True)] = False


class Costs(_Spec, frozen=True, kw_only=True):
    """Money: what an hour down, a truck roll, an hour of labour, a contact and each part cost.

    The cost ledger (:mod:`experiments.ledger`) also prices an agent's hour, a breached SLA clock,
    an owner who churned, the proactive service per device-year, and the margin on each refill
    delivered; ``kpis.cost`` uses none of those.
    """

    currency: Annotated[str, _doc("Currency of every price (descriptive).", "USD")] = "USD"
    downtime_per_hour: Annotated[
        NonNegative, _doc("Price of an hour down, for fleets with no price of their own.", 25.0)
    ] = 0.0
    degraded_per_hour: Annotated[
        NonNegative, _doc("Price of a degraded hour, for fleets with no price of their own.", 3.0)
    ] = 0.0
    truck_roll: Annotated[NonNegative, _doc("Price of a technician's visit (a truck roll).", 250.0)] = 0.0
    labour_per_hour: Annotated[NonNegative, _doc("Price of a technician's hour, travel and work.", 80.0)] = 0.0
    contact: Annotated[NonNegative, _doc("Price of one contact with the contact centre.", 8.0)] = 0.0
    parts: Annotated[
        dict[Name, NonNegative], _doc("Part prices (a product's are added; these win).", {"compressor": 320.0})
    ] = {}
    agent_per_hour: Annotated[
        NonNegative, _doc("An agent's hour on a call, on top of `contact`, per contact (cost ledger only).", 30.0)
    ] = 0.0
    sla_penalty: Annotated[
        NonNegative, _doc("Per breached SLA clock (first response or resolution) of a case (cost ledger only).", 50.0)
    ] = 0.0
    churned_owner: Annotated[
        NonNegative, _doc("Revenue lost with each owner who leaves (cost ledger only).", 3000.0)
    ] = 0.0
    monitoring_per_device_year: Annotated[
        NonNegative,
        _doc("Running the proactive service, per device-year; not charged when reactive (cost ledger only).", 6.0),
    ] = 0.0
    refill_margin: Annotated[
        dict[Name, NonNegative],
        _doc("Margin earned per refill delivered, by consumable name (cost ledger only).", {"toner_black": 12.0}),
    ] = {}


class Scenario(_Spec, frozen=True, kw_only=True):
    """A whole run: fleets, people, costs and the engine's policy."""

    schema_version: Annotated[
        int, msgspec.Meta(ge=1, le=SCENARIO_SCHEMA_VERSION), _doc("Scenario format version (only 1 exists).", 1)
    ] = SCENARIO_SCHEMA_VERSION
    name: Annotated[Name, _doc("Scenario name, copied to result.json.", "freezers")]
    description: Annotated[
        str, _doc("Free text: what the scenario models.", "2,000 connected freezers for 90 days")
    ] = ""
    seed: Annotated[int, msgspec.Meta(ge=0, le=MAX_SEED), _doc("Random seed (`sot run --seed` overrides it).", 7)] = 0
    duration_days: Annotated[
        float, msgspec.Meta(gt=0.0, le=MAX_DAYS), _doc("Simulated length, days (`sot run --days` overrides it).", 90.0)
    ]  # a century at most
    # KPIs and scores count only what begins after the warm-up; it is shorter than duration_days.
    warmup_days: Annotated[
        float,
        msgspec.Meta(ge=0.0, le=MAX_DAYS),
        _doc("Warm-up, days: KPIs and the scorecard count only what begins after it.", 7.0),
    ] = 0.0
    sync_interval_s: Annotated[
        Positive,
        _doc(
            "The clock and acknowledgement barrier step, seconds; engine outputs take effect at step boundaries.",
            3600.0,
        ),
    ] = 3600.0
    products: Annotated[
        dict[Name, Product],
        _doc(
            "The scenario's own product entries by name (they win over the catalogue's).",
            {"taxi": {"base": "car", "usage": {"dist": "lognormal", "mean": 4.0, "sd": 1.0}}},
        ),
    ] = {}
    fleets: Annotated[
        list[Fleet],
        msgspec.Meta(min_length=1),
        _doc("The fleets of connected products.", [{"name": "freezer", "product": "freezer", "count": 2000}]),
    ]
    contact_centre: Annotated[ContactCentre, _doc("The agents answering owners.", {"agents": 4})]
    technicians: Annotated[Technicians, _doc("The field technicians.", {"count": 3})]
    depots: Annotated[
        list[Depot], _doc("Parts depots, each run as base stock.", [{"name": "central", "stock": {"compressor": 6}}])
    ] = []
    outages: Annotated[
        list[Outage],
        _doc(
            "Regional outages of link (and power).",
            [{"name": "storm", "start_day": 5, "duration_h": 12, "region": "east", "power": True}],
        ),
    ] = []
    costs: Annotated[
        Costs, _doc("Prices for the KPIs' cost and the cost ledger.", {"truck_roll": 250.0, "labour_per_hour": 80.0})
    ] = Costs()
    engine: Annotated[
        EngineConfig,
        _doc(
            "The support engine's policy, rules and issue types (merged with those of every fleet's product).",
            {"policy": "proactive"},
        ),
    ] = EngineConfig()

    @property
    def duration_s(self) -> float:
        return self.duration_days * 86400.0

    @property
    def warmup_s(self) -> float:
        return self.warmup_days * 86400.0

    @property
    def device_count(self) -> int:
        return sum(f.count for f in self.fleets)
