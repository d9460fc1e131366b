"""Engine configuration: the policy and rules a run hands to the support engine.

It lives in the contracts because the harness writes it and the engine reads it; neither imports
the other. A scenario's ``engine`` section is made of these types.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from contracts.messages import SCHEMA_VERSION

__all__ = ["POLICIES", "EngineConfig", "IssueType", "Policy", "Sla", "ThresholdRule"]

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
    issues: dict[Name, IssueType] = {}
    symptoms: dict[Name, Name] = {}
    fault_codes: dict[Name, Name] = {}
    default_issue: Name | None = None
    sla: Sla = Sla()

    def __post_init__(self) -> None:
        known = set(self.issues)
        for rule in self.rules:
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
