"""Engine configuration: the policy and rules a run hands to the support engine.

It lives in the contracts because the harness writes it and the engine reads it; neither imports
the other. A scenario's ``engine`` section is made of these types.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from contracts.messages import SCHEMA_VERSION

__all__ = ["POLICIES", "AnomalyRule", "EngineConfig", "IssueType", "Policy", "Sla", "ThresholdRule", "TrendRule"]

Policy = Literal["reactive", "proactive"]
POLICIES: tuple[Policy, ...] = ("reactive", "proactive")
Name = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.:-]{1,64}(?!\n)$")]
PositiveSeconds = Annotated[float, msgspec.Meta(gt=0.0)]


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


class IssueType(_Frozen, frozen=True, kw_only=True):
    """How the engine answers a kind of fault.

    ``remote`` tries a command first (a reset, or an OTA to ``ota_version``) and sends a technician
    only when it fails; ``consumable`` answers with a replenishment order instead of a visit;
    ``advice`` answers with that message to the owner and closes the case (an outage: nothing to
    fix on the device). A visit needs ``skill``, brings the predicted ``parts`` and takes about
    ``duration_s``. ``rollout_after: N``: at the N-th case of this issue the OTA goes to every
    device that reports the sensors of this issue's rules, not only to the ones with a case (a
    fleet-wide update, once; proactive policy only).
    """

    skill: Name
    parts: list[Name] = []
    duration_s: PositiveSeconds = 3600.0
    priority: Annotated[int, msgspec.Meta(ge=1, le=5)] = 3
    remote: Literal["reset", "ota"] | None = None
    ota_version: Name | None = None
    consumable: Name | None = None
    quantity: Annotated[float, msgspec.Meta(gt=0.0)] = 1.0
    advice: Annotated[str, msgspec.Meta(max_length=1000)] | None = None
    rollout_after: Annotated[int, msgspec.Meta(ge=1)] | None = None

    def __post_init__(self) -> None:
        if self.remote == "ota" and self.ota_version is None:
            raise ValueError("`remote: ota` needs `ota_version`")
        if self.rollout_after is not None and self.remote != "ota":
            raise ValueError("`rollout_after` needs `remote: ota` (it rolls that update out fleet-wide)")
        if sum(x is not None for x in (self.remote, self.consumable, self.advice)) > 1:
            raise ValueError("give at most one of `remote`, `consumable` and `advice`")


class Sla(_Frozen, frozen=True, kw_only=True):
    """Service-level targets, measured from case opening."""

    first_response_s: PositiveSeconds = 4 * 3600.0
    resolution_s: PositiveSeconds = 24 * 3600.0


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
    default_issue: Name | None = None
    sla: Sla = Sla()

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
        if self.default_issue is not None and self.default_issue not in known:
            raise ValueError(f"default_issue {self.default_issue!r} is not a known issue")
