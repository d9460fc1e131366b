"""Engine configuration: the policy and rules a run hands to the support engine.

It lives in the contracts because the harness writes it and the engine reads it; neither imports
the other. A scenario's ``engine`` section is made of these types.
"""

from __future__ import annotations

import itertools
from typing import Annotated, Literal

import msgspec

from contracts.codec import MAX_PAYLOAD_BYTES
from contracts.messages import MAX_SENSORS, SCHEMA_VERSION

__all__ = [
    "POLICIES",
    "Alerting",
    "AnomalyRule",
    "CampaignRule",
    "EngineConfig",
    "IssueType",
    "Limits",
    "MaintenancePlan",
    "Offline",
    "Policy",
    "RateLimit",
    "Sla",
    "Technician",
    "ThresholdRule",
    "TrendRule",
]

Policy = Literal["reactive", "proactive"]
POLICIES: tuple[Policy, ...] = ("reactive", "proactive")
Name = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.:-]{1,64}(?!\n)$")]
PositiveSeconds = Annotated[float, msgspec.Meta(gt=0.0)]
Positive = Annotated[float, msgspec.Meta(gt=0.0)]
Fraction = Annotated[float, msgspec.Meta(gt=0.0, le=1.0)]
Products = list[Name]  # the products a rule applies to (the device registry says which is which); empty: all


def _doc(description: str, *examples: object) -> msgspec.Meta:
    """A field's description and examples for its JSON Schema (``sot schema``: an editor's hover help)."""
    return msgspec.Meta(description=description, examples=list(examples))


class _Frozen(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class ThresholdRule(_Frozen, frozen=True, kw_only=True):
    """Raise an alert of ``issue`` when ``sensor`` stays above/below a level for ``for_s`` seconds."""

    name: Annotated[Name, _doc("Rule name, unique across rules, trends and anomalies.", "freezer_cabinet_hot")]
    sensor: Annotated[Name, _doc("The sensor it watches.", "cabinet_temp_c")]
    issue: Annotated[Name, _doc("The issue type of its alerts (a key of `issues`).", "freezer_cooling")]
    above: Annotated[
        float | None, _doc("Fires when the sensor stays above this level (give `above` or `below`).", -5.0)
    ] = None
    below: Annotated[float | None, _doc("Fires when the sensor stays below this level.", 7.5)] = None
    for_s: Annotated[float, msgspec.Meta(ge=0.0), _doc("For at least this many seconds.", 3600.0)] = 0.0
    products: Annotated[
        Products,
        _doc(
            "The products it applies to (by the device registry); empty: every device that reports the sensor.",
            ["freezer"],
        ),
    ] = []

    def __post_init__(self) -> None:
        if (self.above is None) == (self.below is None):
            raise ValueError("give exactly one of `above` or `below`")


class TrendRule(_Frozen, frozen=True, kw_only=True):
    """Raise an alert of ``issue`` from the trend of ``sensor`` (an exponentially weighted line fit
    over about ``window_s``): when it will reach ``reaches`` within ``within_s`` (remaining useful
    life; a consumable's run-out with ``reaches: 0``), or when it changes faster than ``slope_above``
    / slower than ``slope_below`` per hour (rate of change). Give ``reaches`` with ``within_s``, or a slope."""

    name: Annotated[Name, _doc("Rule name, unique across rules, trends and anomalies.", "freezer_cabinet_hot")]
    sensor: Annotated[Name, _doc("The sensor it watches.", "cabinet_temp_c")]
    issue: Annotated[Name, _doc("The issue type of its alerts (a key of `issues`).", "freezer_cooling")]
    window_s: Annotated[
        PositiveSeconds, _doc("About how many seconds of readings the line fit weighs (exponentially).", 86400.0)
    ] = 86400.0
    reaches: Annotated[
        float | None, _doc("Remaining useful life: fires when the trend will reach this level within `within_s`.", 0.0)
    ] = None
    within_s: Annotated[PositiveSeconds | None, _doc("How far ahead `reaches` looks, seconds.", 259200.0)] = None
    slope_above: Annotated[
        float | None, _doc("Rate of change: fires when the sensor rises faster than this per hour.", 0.5)
    ] = None
    slope_below: Annotated[
        float | None,
        _doc("Fires when the sensor changes slower than this per hour (falls faster, when negative).", -0.5),
    ] = None
    min_readings: Annotated[int, msgspec.Meta(ge=2), _doc("Readings needed before the fit is trusted.", 8)] = 8
    products: Annotated[
        Products,
        _doc(
            "The products it applies to (by the device registry); empty: every device that reports the sensor.",
            ["freezer"],
        ),
    ] = []

    def __post_init__(self) -> None:
        forecast = self.reaches is not None or self.within_s is not None
        if forecast and (self.reaches is None or self.within_s is None):
            raise ValueError("`reaches` and `within_s` go together")
        if forecast == (self.slope_above is not None or self.slope_below is not None):
            raise ValueError("give either `reaches` with `within_s`, or `slope_above` / `slope_below`")


class AnomalyRule(_Frozen, frozen=True, kw_only=True):
    """Raise an alert of ``issue`` when ``sensor`` departs from its own normal: each reading is scored
    against the device's exponentially weighted mean and variance (weight ``alpha``) and a two-sided
    CUSUM of the scores (allowance ``k``, decision level ``h``, in standard deviations) crosses ``h``."""

    name: Annotated[Name, _doc("Rule name, unique across rules, trends and anomalies.", "freezer_cabinet_hot")]
    sensor: Annotated[Name, _doc("The sensor it watches.", "cabinet_temp_c")]
    issue: Annotated[Name, _doc("The issue type of its alerts (a key of `issues`).", "freezer_cooling")]
    alpha: Annotated[
        float,
        msgspec.Meta(gt=0.0, lt=1.0),
        _doc("Weight of the newest reading in the device's moving mean and variance.", 0.05),
    ] = 0.05
    k: Annotated[float, msgspec.Meta(ge=0.0), _doc("CUSUM allowance, in standard deviations.", 0.5)] = 0.5
    h: Annotated[float, msgspec.Meta(gt=0.0), _doc("CUSUM decision level, in standard deviations.", 8.0)] = 8.0
    warm_up: Annotated[int, msgspec.Meta(ge=2), _doc("Readings a device needs before it is scored.", 30)] = 30
    products: Annotated[
        Products,
        _doc(
            "The products it applies to (by the device registry); empty: every device that reports the sensor.",
            ["freezer"],
        ),
    ] = []


class IssueType(_Frozen, frozen=True, kw_only=True):
    """How the engine answers a kind of fault.

    ``remote`` tries a command first (a reset, or an OTA to ``ota_version``) and sends a technician
    only when it fails; ``consumable`` answers with a replenishment order instead of a visit;
    ``advice`` answers with that message to the owner and closes the case (an outage: nothing to
    fix on the device). A visit needs ``skill``, brings the predicted ``parts`` and takes about
    ``duration_s``. ``rollout_after: N``: at the N-th case of this issue the OTA goes to every
    device that reports the sensors of this issue's rules, not only to the ones with a case (a
    fleet-wide update, once; proactive policy only). ``diagnose``: before a visit, ask the device
    for a diagnosis; the engine's ``diagnoses`` map its answer to the issue (skill, parts) the
    visit brings (the lever on first-time fix); no answer within ``diagnosis_wait_s``: visit as is.
    ``repeat_window_s``: a case of a ``remote`` issue opened on a device within this time of a
    remote attempt on that device and issue that claimed a fix or found no fault gets no second
    remote attempt (the trouble came back): it goes to a diagnosis (with ``diagnose``) or a visit.
    """

    skill: Annotated[Name, _doc("The skill a visit needs.", "refrigeration")]
    parts: Annotated[
        list[Name], _doc("The parts a visit brings: the prediction behind first-time fix.", ["compressor"])
    ] = []
    duration_s: Annotated[PositiveSeconds, _doc("About how long a visit takes, seconds.", 3600.0)] = 3600.0
    priority: Annotated[int, msgspec.Meta(ge=1, le=5), _doc("1 = most urgent, to 5.", 2)] = 3
    remote: Annotated[
        Literal["reset", "ota"] | None,
        _doc("Try this command first (`reset`, or `ota` to `ota_version`); a technician only if it fails.", "reset"),
    ] = None
    ota_version: Annotated[Name | None, _doc("The version an `ota` installs.", "7.2")] = None
    consumable: Annotated[
        Name | None, _doc("Answer with a replenishment order of this consumable instead of a visit.", "toner_black")
    ] = None
    quantity: Annotated[float, msgspec.Meta(gt=0.0, le=1e9), _doc("The quantity an order asks for.", 1.0)] = (
        1.0  # an order's quantity on the wire: at most 1e9
    )
    advice: Annotated[
        Annotated[str, msgspec.Meta(max_length=1000)] | None,
        _doc(
            "Answer with this message to the owner and close the case: nothing to fix on the device.",
            "Check the plug and the breaker.",
        ),
    ] = None
    rollout_after: Annotated[
        Annotated[int, msgspec.Meta(ge=1)] | None,
        _doc(
            "At the N-th case, send the OTA to every device that reports this issue's rules' sensors (once; proactive only).",
            10,
        ),
    ] = None
    diagnose: Annotated[
        bool,
        _doc(
            "Ask the device for a diagnosis before a visit; `diagnoses` map its answer to the issue the visit brings.",
            True,
        ),
    ] = False
    repeat_window_s: Annotated[
        PositiveSeconds,
        _doc(
            "A case within this time of a remote attempt that claimed a fix or found no fault gets no second remote attempt, seconds.",
            259200.0,
        ),
    ] = 3 * 86400.0

    def __post_init__(self) -> None:
        if self.remote == "ota" and self.ota_version is None:
            raise ValueError("`remote: ota` needs `ota_version`")
        if self.rollout_after is not None and self.remote != "ota":
            raise ValueError("`rollout_after` needs `remote: ota` (it rolls that update out fleet-wide)")
        if sum(x is not None for x in (self.remote, self.consumable, self.advice)) > 1:
            raise ValueError("give at most one of `remote`, `consumable` and `advice`")
        if self.diagnose and (self.consumable, self.advice) != (None, None):
            raise ValueError("`diagnose` is for issues answered with a visit (no `consumable` or `advice`)")


class Sla(_Frozen, frozen=True, kw_only=True):
    """Service-level targets, measured from case opening.

    First response: the first remedy under way (a remote command, a refill ordered, advice given,
    a technician accepting the work order, or a fix during the owner's contact). A clock that
    reaches ``warn_at`` of its target warns and escalates the case (its priority goes up by one);
    a breach escalates it again.
    """

    first_response_s: Annotated[
        PositiveSeconds, _doc("Target from opening to the first remedy under way, seconds.", 14400.0)
    ] = 4 * 3600.0
    resolution_s: Annotated[PositiveSeconds, _doc("Target from opening to resolution, seconds.", 86400.0)] = 24 * 3600.0
    warn_at: Annotated[
        float,
        msgspec.Meta(gt=0.0, lt=1.0),
        _doc("The share of a target at which its clock warns and escalates the case.", 0.8),
    ] = 0.8


class Offline(_Frozen, frozen=True, kw_only=True):
    """A device is offline once silent for ``after_intervals`` of its usual reporting interval
    (learned from its readings; the registry's ``interval_s`` when given), and never before
    ``min_s``. With ``issue``, going offline opens a case of that issue (proactive policy only)."""

    after_intervals: Annotated[
        float,
        msgspec.Meta(ge=1.0),
        _doc("A device is offline once silent for this many of its usual reporting intervals.", 3.0),
    ] = 3.0
    min_s: Annotated[PositiveSeconds, _doc("And never before this many seconds.", 300.0)] = 300.0
    issue: Annotated[
        Name | None, _doc("Going offline opens a case of this issue (proactive only); none: no case.", "connectivity")
    ] = None


class Alerting(_Frozen, frozen=True, kw_only=True):
    """An alert that changes state ``flap_changes`` times within ``flap_window_s`` is flapping: it
    stays raised (no further clears or notifications) until its rule has been quiet for the window."""

    flap_changes: Annotated[
        int, msgspec.Meta(ge=2), _doc("State changes within `flap_window_s` that make an alert flapping.", 6)
    ] = 6
    flap_window_s: Annotated[
        PositiveSeconds,
        _doc("The window, seconds: a flapping alert stays raised until its rule is quiet that long.", 21600.0),
    ] = 6 * 3600.0


class RateLimit(_Frozen, frozen=True, kw_only=True):
    """Per-source token bucket: ``per_s`` messages a second on average, bursts of ``burst``.
    Messages over it are rejected (``rate_limited``) and dead-lettered."""

    per_s: Annotated[PositiveSeconds, _doc("Messages a second a source may send on average.", 50.0)]
    burst: Annotated[int, msgspec.Meta(ge=1), _doc("Messages a source may send at once.", 20)] = 20


class Limits(_Frozen, frozen=True, kw_only=True):
    """What the engine takes in at most, so that hostile input cannot grow its memory without bound.

    Per message: ``max_payload_bytes`` (refused before decoding: ``too_large``); ``max_sensors`` sensor
    names in one telemetry message or batch (``too_many_sensors``); ``max_roster`` devices named in
    one gateway batch (``roster_too_large``). Ids and names are at most 64 characters anyway (the
    wire's pattern), and every number on the wire has a range (``schema``).

    Per engine: ``max_sensor_names`` distinct sensor names (each is a column of every twin): a message
    naming a sensor beyond them is refused whole as ``unknown_sensor`` (its known sensors too, so
    that what is stored is what was sent), while the names of the configured rules are always
    known; ``max_unregistered_devices`` devices heard from without a registry entry (each gets a
    twin): a reading or batch that would take in more is refused as ``device_budget``. Both are
    taken up in arrival order and, as twins are, relearned after a restart.

    Wall clock only: a device message stamped more than ``max_future_s`` after the engine's clock is
    refused as ``future_ts`` (None: no check; in event time the world's clock orders messages).
    Every refusal is counted (``msg_rejected_{reason}``) and dead-lettered."""

    max_payload_bytes: Annotated[
        int,
        msgspec.Meta(ge=1, le=MAX_PAYLOAD_BYTES),
        _doc("Largest message taken, bytes (larger: `too_large`).", 1048576),
    ] = 2**20
    max_sensors: Annotated[
        int, msgspec.Meta(ge=1, le=MAX_SENSORS), _doc("Sensor names in one telemetry message or batch.", 64)
    ] = 64
    max_roster: Annotated[int, msgspec.Meta(ge=1, le=2**32), _doc("Devices named in one gateway batch.", 10000)] = (
        10_000
    )
    max_sensor_names: Annotated[
        int,
        msgspec.Meta(ge=1, le=2**20),
        _doc("Distinct sensor names the engine keeps (the configured rules' are always known).", 256),
    ] = 256
    max_unregistered_devices: Annotated[
        int, msgspec.Meta(ge=0, le=2**32), _doc("Devices heard from without a registry entry.", 1000000)
    ] = 1_000_000
    max_future_s: Annotated[
        PositiveSeconds | None,
        _doc(
            "Wall clock only: a message stamped more than this after the engine's clock is refused; none: no check.",
            86400.0,
        ),
    ] = 86400.0


class Technician(_Frozen, frozen=True, kw_only=True):
    """A technician the engine may assign: ``skills`` (none: every skill), home ``region``, and at
    most ``max_open`` work orders at a time (availability)."""

    id: Annotated[Name, _doc("Technician id.", "north-01")]
    skills: Annotated[list[Name], _doc("Skills; empty: every skill.", ["refrigeration"])] = []
    region: Annotated[Name | None, _doc("Home region.", "north")] = None
    max_open: Annotated[int, msgspec.Meta(ge=1), _doc("Work orders at a time, at most.", 3)] = 3
    available: Annotated[bool, _doc("Whether the engine may assign work to them.", True)] = True


class CampaignRule(_Frozen, frozen=True, kw_only=True):
    """Compare failure rates by cohort with the rest of the fleet and act on a significant excess.

    Every ``check_every_s`` the cases of ``issues`` (all issues when empty) opened within
    ``window_s`` are counted per value of the cohort ``by`` (``firmware``: the device's reported
    firmware; any other name: the registry's cohort of that name, such as a manufacturing batch).
    A cohort with at least ``min_cases`` whose excess over the rest of the fleet has a one-sided
    binomial p-value below ``alpha`` (Bonferroni-corrected over the cohorts compared) opens a
    campaign: ``ota`` sends ``ota_version`` to the cohort in ``stages`` (cumulative fractions),
    ``recall`` opens a ``recall_issue`` case (a visit) per device, also in stages. A stage runs
    ``stage_wait_s``; if more than ``abort_failure_rate`` of its devices failed (an update that did
    not take, or a new case after it), the campaign aborts.
    """

    name: Annotated[Name, _doc("Campaign name, unique.", "charger_firmware")]
    by: Annotated[
        Name,
        _doc("The cohort compared: `firmware`, or a registry cohort dimension (a manufacturing batch).", "firmware"),
    ] = "firmware"
    issues: Annotated[list[Name], _doc("Issues whose cases are counted; empty: all.", ["charger_overheat"])] = []
    window_s: Annotated[PositiveSeconds, _doc("Cases opened within this many seconds are counted.", 2592000.0)] = (
        30 * 86400.0
    )
    check_every_s: Annotated[PositiveSeconds, _doc("Seconds between two comparisons.", 3600.0)] = 3600.0
    min_cases: Annotated[int, msgspec.Meta(ge=1), _doc("Cases a cohort needs before it is compared.", 5)] = 5
    alpha: Annotated[
        float,
        msgspec.Meta(gt=0.0, lt=1.0),
        _doc("Significance level of a cohort's excess (Bonferroni-corrected over the cohorts).", 0.001),
    ] = 0.001
    action: Annotated[
        Literal["ota", "recall"],
        _doc("`ota` sends `ota_version` to the cohort; `recall` opens a `recall_issue` case per device.", "ota"),
    ] = "ota"
    ota_version: Annotated[Name | None, _doc("The version an `ota` campaign installs.", "8.1")] = None
    recall_issue: Annotated[Name | None, _doc("The issue type of a `recall`'s visits.", "charger_recall")] = None
    stages: Annotated[list[Fraction], _doc("Cumulative fractions of the cohort, rising to 1.0.", [0.05, 0.25, 1.0])] = (
        msgspec.field(default_factory=lambda: [0.05, 0.25, 1.0])
    )
    stage_wait_s: Annotated[PositiveSeconds, _doc("Seconds each stage runs before the next.", 86400.0)] = 86400.0
    abort_failure_rate: Annotated[
        float, msgspec.Meta(ge=0.0, le=1.0), _doc("Abort when more than this share of a stage's devices failed.", 0.05)
    ] = 0.05

    def __post_init__(self) -> None:
        if self.action == "ota" and self.ota_version is None:
            raise ValueError("`action: ota` needs `ota_version`")
        if self.action == "recall" and self.recall_issue is None:
            raise ValueError("`action: recall` needs `recall_issue` (the visit's issue type)")
        if not self.stages or self.stages[-1] != 1.0 or any(b <= a for a, b in itertools.pairwise(self.stages)):
            raise ValueError("`stages` must rise strictly and end at 1.0 (cumulative fractions of the cohort)")


class MaintenancePlan(_Frozen, frozen=True, kw_only=True):
    """Preventive maintenance: a visit to every device in scope at a fixed interval, whatever its state.

    Scope: the devices whose registry entry names one of ``products`` (none: every product) and
    whose ``cohorts`` hold one of the listed values for every dimension given (``{climate: [hot]}``);
    the engine maintains the devices its registry knows. Interval: ``every_days`` of calendar time,
    or ``every_usage`` units of the counter sensor ``usage_sensor`` the devices report (running
    hours, cycles, pages: usage-based). Either way each device's visits fall on a grid of its own,
    offset by a hash of the plan and the device id, so that the first visits spread over the first
    interval after the plan starts and the devices are not all visited at once.

    A due visit is a preventive work order (``maintenance`` on the wire, no case) with ``skill``,
    ``parts``, ``duration_s`` and ``priority`` (5 by default: corrective work goes first); the
    technician services the failure modes named in ``services`` (what that does to each is the
    product's: its ``service``) and repairs whatever else is failed or wearing out. A device whose
    previous visit of the plan is still open is not sent another.
    """

    name: Annotated[Name, _doc("Plan name, unique.", "quarterly_service")]
    products: Annotated[Products, _doc("Products in scope; empty: every product.", ["freezer"])] = []
    cohorts: Annotated[
        dict[Name, list[Name]],
        _doc(
            "Cohort dimension to the values in scope (a device must match every dimension given).", {"climate": ["hot"]}
        ),
    ] = {}
    every_days: Annotated[
        Positive | None, _doc("Calendar interval, days (give this, or `usage_sensor` with `every_usage`).", 90.0)
    ] = None
    usage_sensor: Annotated[Name | None, _doc("The counter sensor a usage-based plan reads.", "run_hours")] = None
    every_usage: Annotated[Positive | None, _doc("Usage interval, in the counter's units.", 2000.0)] = None
    services: Annotated[list[Name], _doc("Failure modes a visit services.", ["door_seal_leak"])] = []
    skill: Annotated[Name, _doc("The skill a visit needs.", "refrigeration")]
    parts: Annotated[list[Name], _doc("Parts a visit brings.", ["door_seal"])] = []
    duration_s: Annotated[PositiveSeconds, _doc("About how long a visit takes, seconds.", 3600.0)] = 3600.0
    priority: Annotated[
        int, msgspec.Meta(ge=1, le=5), _doc("Work order priority, 1 = most urgent (5: corrective work goes first).", 5)
    ] = 5

    def __post_init__(self) -> None:
        usage = self.usage_sensor is not None or self.every_usage is not None
        if usage and (self.usage_sensor is None or self.every_usage is None):
            raise ValueError("`usage_sensor` and `every_usage` go together")
        if usage == (self.every_days is not None):
            raise ValueError("give either `every_days` (calendar) or `usage_sensor` with `every_usage` (usage)")
        if len(set(self.services)) != len(self.services):
            raise ValueError("`services` names a failure mode twice")

    @property
    def calendar(self) -> bool:
        """Whether the interval is calendar time (else the usage counter's units)."""
        return self.every_days is not None

    @property
    def interval(self) -> float:
        """The interval on the plan's own scale: seconds of calendar time, or units of usage."""
        if self.every_days is not None:
            return self.every_days * 86400.0
        assert self.every_usage is not None
        return self.every_usage


class EngineConfig(_Frozen, frozen=True, kw_only=True):
    """Everything the engine needs to know about a deployment's policy."""

    schema_version: Annotated[
        int, msgspec.Meta(ge=1, le=SCHEMA_VERSION), _doc("Engine configuration format version.", 1)
    ] = SCHEMA_VERSION
    policy: Annotated[
        Policy,
        _doc("`proactive` acts on telemetry and device events too; `reactive` only on owners' contacts.", "proactive"),
    ] = "proactive"
    rules: Annotated[
        list[ThresholdRule],
        _doc(
            "Threshold rules; a scenario's merge by `name` over its products' rules.",
            [{"name": "freezer_cabinet_hot", "above": -4.0}],
        ),
    ] = []
    trends: Annotated[
        list[TrendRule],
        _doc(
            "Trend rules; a scenario's merge by `name` over its products' rules.",
            [{"name": "toner_runout", "within_s": 172800}],
        ),
    ] = []
    anomalies: Annotated[
        list[AnomalyRule],
        _doc(
            "Anomaly rules; a scenario's merge by `name` over its products' rules.",
            [{"name": "vibration_odd", "h": 10.0}],
        ),
    ] = []
    issues: Annotated[
        dict[Name, IssueType],
        _doc(
            "Issue types by name; a scenario's replace its products' of the same name.",
            {"no_coffee": {"skill": "mechanical", "parts": ["grinder", "pump"]}},
        ),
    ] = {}
    symptoms: Annotated[
        dict[Name, Name],
        _doc(
            "What owners say, mapped to an issue (`other`: a call while nothing has failed).",
            {"not_cooling": "freezer_cooling"},
        ),
    ] = {}
    fault_codes: Annotated[
        dict[Name, Name],
        _doc(
            "A mode's fault code, or a consumable's name, mapped to an issue.", {"toner_black": "printer_toner_black"}
        ),
    ] = {}
    diagnoses: Annotated[
        dict[Name, Name],
        _doc(
            "A device's diagnosis code (its answer to a `diagnostic` command), mapped to the issue it names.",
            {"compressor_wear": "freezer_compressor"},
        ),
    ] = {}
    diagnosis_wait_s: Annotated[
        PositiveSeconds, _doc("Seconds to wait for a diagnosis before the visit goes as it is.", 1800.0)
    ] = 1800.0
    default_issue: Annotated[
        Name | None,
        _doc(
            "The issue for a symptom `symptoms` does not map; none: the engine's fallback `unknown` (skill `general`).",
            "no_coffee",
        ),
    ] = None
    recontact_window_s: Annotated[
        PositiveSeconds,
        _doc(
            "A fault contact this soon after the device's last case was resolved, with no alert active on the device, is answered from that case (the owner is told it was resolved) instead of opening a new one; a second such contact opens a case, seconds.",
            86400.0,
        ),
    ] = 86400.0
    sla: Annotated[
        Sla,
        _doc(
            "Service-level targets, unless a device's contract has its own.",
            {"first_response_s": 14400, "resolution_s": 86400},
        ),
    ] = Sla()
    contracts: Annotated[
        dict[Name, Sla],
        _doc(
            "Service-level targets by contract (a device's registry entry names its contract).",
            {"gold": {"resolution_s": 14400}},
        ),
    ] = {}
    provisioning: Annotated[
        Literal["open", "registered"],
        _doc("`open` takes any device; `registered` only the devices in its registry.", "open"),
    ] = "open"
    offline: Annotated[
        Offline | None, _doc("When a silent device counts as offline; none: not watched.", {"after_intervals": 3.0})
    ] = None
    alerting: Annotated[Alerting, _doc("How flapping alerts are damped.", {"flap_changes": 6})] = Alerting()
    rate_limit: Annotated[RateLimit | None, _doc("Per-source token bucket; none: no limit.", {"per_s": 50.0})] = None
    limits: Annotated[Limits, _doc("What the engine takes in at most.", {"max_sensors": 64})] = Limits()
    technicians: Annotated[
        list[Technician],
        _doc(
            "Technicians the engine assigns work to itself; empty: the field assigns it.",
            [{"id": "north-01", "skills": ["general"]}],
        ),
    ] = []
    campaigns: Annotated[
        list[CampaignRule],
        _doc(
            "Cohort campaigns: a significant excess of failures opens a staged OTA or recall.",
            [{"name": "fw", "ota_version": "8.1"}],
        ),
    ] = []
    settings: Annotated[
        dict[Name, dict[Name, Annotated[str, msgspec.Meta(max_length=200)]]],
        _doc(
            "The configuration each product's devices should run (their desired state), product to setting to value; a device that reports another value gets a `configure` command.",
            {"printer": {"sleep_min": "15"}},
        ),
    ] = {}
    maintenance: Annotated[
        list[MaintenancePlan],
        _doc(
            "Preventive maintenance plans: visits the engine schedules per device, by calendar or usage.",
            [{"name": "quarterly", "every_days": 90.0, "skill": "general"}],
        ),
    ] = []

    @property
    def all_rules(self) -> list[ThresholdRule | TrendRule | AnomalyRule]:
        """Threshold, trend and anomaly rules, in that order (the order the engine evaluates them)."""
        return [*self.rules, *self.trends, *self.anomalies]

    def __post_init__(self) -> None:
        known = set(self.issues)
        names = [r.name for r in self.all_rules]
        if len(set(names)) != len(names):
            raise ValueError("rule names must be unique across rules, trends and anomalies")
        for rule in self.all_rules:
            if rule.issue not in known:
                raise ValueError(f"rule {rule.name!r} names unknown issue {rule.issue!r}")
        for symptom, issue in self.symptoms.items():
            if issue not in known:
                raise ValueError(f"symptom {symptom!r} maps to unknown issue {issue!r}")
        for code, issue in self.fault_codes.items():
            if issue not in known:
                raise ValueError(f"fault code {code!r} maps to unknown issue {issue!r}")
        for code, issue in self.diagnoses.items():
            if issue not in known:
                raise ValueError(f"diagnosis {code!r} maps to unknown issue {issue!r}")
        for campaign in self.campaigns:
            if campaign.recall_issue is not None and campaign.recall_issue not in known:
                raise ValueError(f"campaign {campaign.name!r} names unknown recall_issue {campaign.recall_issue!r}")
            for issue in campaign.issues:
                if issue not in known:
                    raise ValueError(f"campaign {campaign.name!r} counts unknown issue {issue!r}")
        if len({c.name for c in self.campaigns}) != len(self.campaigns):
            raise ValueError("campaign names must be unique")
        if self.offline is not None and self.offline.issue is not None and self.offline.issue not in known:
            raise ValueError(f"offline names unknown issue {self.offline.issue!r}")
        if len({p.name for p in self.maintenance}) != len(self.maintenance):
            raise ValueError("maintenance plan names must be unique")
        if len({t.id for t in self.technicians}) != len(self.technicians):
            raise ValueError("technician ids must be unique")
        if self.default_issue is not None and self.default_issue not in known:
            raise ValueError(f"default_issue {self.default_issue!r} is not a known issue")
