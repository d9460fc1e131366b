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
Fraction = Annotated[float, msgspec.Meta(gt=0.0, le=1.0)]
Products = list[Name]  # the products a rule applies to (the device registry says which is which); empty: all


class _Frozen(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class ThresholdRule(_Frozen, frozen=True, kw_only=True):
    """Raise an alert of ``issue`` when ``sensor`` stays above/below a level for ``for_s`` seconds."""

    name: Name
    sensor: Name
    issue: Name
    above: float | None = None
    below: float | None = None
    for_s: Annotated[float, msgspec.Meta(ge=0.0)] = 0.0
    products: Products = []

    def __post_init__(self) -> None:
        if (self.above is None) == (self.below is None):
            raise ValueError("give exactly one of `above` or `below`")


class TrendRule(_Frozen, frozen=True, kw_only=True):
    """Raise an alert of ``issue`` from the trend of ``sensor`` (an exponentially weighted line fit
    over about ``window_s``): when it will reach ``reaches`` within ``within_s`` (remaining useful
    life; a consumable's run-out with ``reaches: 0``), or when it changes faster than ``slope_above``
    / slower than ``slope_below`` per hour (rate of change). Give ``reaches`` with ``within_s``, or a slope."""

    name: Name
    sensor: Name
    issue: Name
    window_s: PositiveSeconds = 86400.0
    reaches: float | None = None
    within_s: PositiveSeconds | None = None
    slope_above: float | None = None
    slope_below: float | None = None
    min_readings: Annotated[int, msgspec.Meta(ge=2)] = 8
    products: Products = []

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

    name: Name
    sensor: Name
    issue: Name
    alpha: Annotated[float, msgspec.Meta(gt=0.0, lt=1.0)] = 0.05
    k: Annotated[float, msgspec.Meta(ge=0.0)] = 0.5
    h: Annotated[float, msgspec.Meta(gt=0.0)] = 8.0
    warm_up: Annotated[int, msgspec.Meta(ge=2)] = 30
    products: Products = []


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

    skill: Name
    parts: list[Name] = []
    duration_s: PositiveSeconds = 3600.0
    priority: Annotated[int, msgspec.Meta(ge=1, le=5)] = 3
    remote: Literal["reset", "ota"] | None = None
    ota_version: Name | None = None
    consumable: Name | None = None
    quantity: Annotated[float, msgspec.Meta(gt=0.0, le=1e9)] = 1.0  # an order's quantity on the wire: at most 1e9
    advice: Annotated[str, msgspec.Meta(max_length=1000)] | None = None
    rollout_after: Annotated[int, msgspec.Meta(ge=1)] | None = None
    diagnose: bool = False
    repeat_window_s: PositiveSeconds = 3 * 86400.0

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

    first_response_s: PositiveSeconds = 4 * 3600.0
    resolution_s: PositiveSeconds = 24 * 3600.0
    warn_at: Annotated[float, msgspec.Meta(gt=0.0, lt=1.0)] = 0.8


class Offline(_Frozen, frozen=True, kw_only=True):
    """A device is offline once silent for ``after_intervals`` of its usual reporting interval
    (learned from its readings; the registry's ``interval_s`` when given), and never before
    ``min_s``. With ``issue``, going offline opens a case of that issue (proactive policy only)."""

    after_intervals: Annotated[float, msgspec.Meta(ge=1.0)] = 3.0
    min_s: PositiveSeconds = 300.0
    issue: Name | None = None


class Alerting(_Frozen, frozen=True, kw_only=True):
    """An alert that changes state ``flap_changes`` times within ``flap_window_s`` is flapping: it
    stays raised (no further clears or notifications) until its rule has been quiet for the window."""

    flap_changes: Annotated[int, msgspec.Meta(ge=2)] = 6
    flap_window_s: PositiveSeconds = 6 * 3600.0


class RateLimit(_Frozen, frozen=True, kw_only=True):
    """Per-source token bucket: ``per_s`` messages a second on average, bursts of ``burst``.
    Messages over it are rejected (``rate_limited``) and dead-lettered."""

    per_s: PositiveSeconds
    burst: Annotated[int, msgspec.Meta(ge=1)] = 20


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

    max_payload_bytes: Annotated[int, msgspec.Meta(ge=1, le=MAX_PAYLOAD_BYTES)] = 2**20
    max_sensors: Annotated[int, msgspec.Meta(ge=1, le=MAX_SENSORS)] = 64
    max_roster: Annotated[int, msgspec.Meta(ge=1, le=2**32)] = 10_000
    max_sensor_names: Annotated[int, msgspec.Meta(ge=1, le=2**20)] = 256
    max_unregistered_devices: Annotated[int, msgspec.Meta(ge=0, le=2**32)] = 1_000_000
    max_future_s: PositiveSeconds | None = 86400.0


class Technician(_Frozen, frozen=True, kw_only=True):
    """A technician the engine may assign: ``skills`` (none: every skill), home ``region``, and at
    most ``max_open`` work orders at a time (availability)."""

    id: Name
    skills: list[Name] = []
    region: Name | None = None
    max_open: Annotated[int, msgspec.Meta(ge=1)] = 3
    available: bool = True


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

    name: Name
    by: Name = "firmware"
    issues: list[Name] = []
    window_s: PositiveSeconds = 30 * 86400.0
    check_every_s: PositiveSeconds = 3600.0
    min_cases: Annotated[int, msgspec.Meta(ge=1)] = 5
    alpha: Annotated[float, msgspec.Meta(gt=0.0, lt=1.0)] = 0.001
    action: Literal["ota", "recall"] = "ota"
    ota_version: Name | None = None
    recall_issue: Name | None = None
    stages: list[Fraction] = msgspec.field(default_factory=lambda: [0.05, 0.25, 1.0])
    stage_wait_s: PositiveSeconds = 86400.0
    abort_failure_rate: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = 0.05

    def __post_init__(self) -> None:
        if self.action == "ota" and self.ota_version is None:
            raise ValueError("`action: ota` needs `ota_version`")
        if self.action == "recall" and self.recall_issue is None:
            raise ValueError("`action: recall` needs `recall_issue` (the visit's issue type)")
        if not self.stages or self.stages[-1] != 1.0 or any(b <= a for a, b in itertools.pairwise(self.stages)):
            raise ValueError("`stages` must rise strictly and end at 1.0 (cumulative fractions of the cohort)")


class EngineConfig(_Frozen, frozen=True, kw_only=True):
    """Everything the engine needs to know about a deployment's policy."""

    schema_version: Annotated[int, msgspec.Meta(ge=1, le=SCHEMA_VERSION)] = SCHEMA_VERSION
    policy: Policy = "proactive"
    rules: list[ThresholdRule] = []
    trends: list[TrendRule] = []
    anomalies: list[AnomalyRule] = []
    issues: dict[Name, IssueType] = {}
    symptoms: dict[Name, Name] = {}
    fault_codes: dict[Name, Name] = {}
    diagnoses: dict[Name, Name] = {}
    """A device's diagnosis code (its answer to a ``diagnostic`` command) -> the issue it names."""
    diagnosis_wait_s: PositiveSeconds = 1800.0
    default_issue: Name | None = None
    sla: Sla = Sla()
    contracts: dict[Name, Sla] = {}
    provisioning: Literal["open", "registered"] = "open"
    offline: Offline | None = None
    alerting: Alerting = Alerting()
    rate_limit: RateLimit | None = None
    limits: Limits = Limits()
    technicians: list[Technician] = []
    campaigns: list[CampaignRule] = []
    settings: dict[Name, dict[Name, Annotated[str, msgspec.Meta(max_length=200)]]] = {}
    """The configuration each product's devices should run (their desired state): a device that
    reports another value for a setting gets a ``configure`` command."""

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
        if len({t.id for t in self.technicians}) != len(self.technicians):
            raise ValueError("technician ids must be unique")
        if self.default_issue is not None and self.default_issue not in known:
            raise ValueError(f"default_issue {self.default_issue!r} is not a known issue")
