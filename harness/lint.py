"""``sot lint``: what a scenario's engine rules will do on its products' own sensor models, before a run.

For every fleet, :func:`harness.dry_run.dry_run` runs the rules that watch it on healthy devices
and through each of its failure modes and consumables, with the world's readings and the engine's
own rule evaluation; this module judges what came out. The findings (codes in :data:`CODES`):

- ``false_alarms``: a rule fires on healthy devices, error at :data:`ERROR_PER_1000` or more
  false alarms per 1,000 device-days, warning at :data:`WARNING_PER_1000`, info below;
- ``never_fires``: a rule fires neither on healthy devices nor on any failure (warning);
- ``missed_precursor``: a mode's precursor trips no rule before the failure (warning);
- ``undetected``: no rule fires on a mode's failure and no fault code reports it, or nothing
  reorders a consumable before it runs empty (warning; info for a mode that ends on its own).

A rule *catches* a mode when it fires, on at least half of the mode's devices, on a sensor the mode
moves in the rule's direction. Each finding names what to change (``engine.rules[name]``,
``fleets[0].failure_modes[name]``) and how. Threshold hints come from the healthy noise model:
readings are independent Gaussian noise about the baseline, so the false-alarm rate of ``above`` or
``below`` with ``for_s`` has a closed form (:mod:`harness.noise`).
"""

from __future__ import annotations

import math
from typing import Literal

import msgspec

from contracts.engine_config import AnomalyRule, ThresholdRule, TrendRule
from harness.dry_run import FAILURES, WATCH_S, DryRun, Rule, applies, dry_run, moved_sensors
from harness.noise import counter, expected_false_alarms, healthy_level, levels, quiet_for_s, quiet_level
from sim.fleet import DAY_S
from sim.scenario import Fleet, Scenario

__all__ = [
    "CODES",
    "DEFAULT_DEVICE_DAYS",
    "ERROR_PER_1000",
    "WARNING_PER_1000",
    "Finding",
    "ModeFigures",
    "Report",
    "RuleFigures",
    "Code",
    "Severity",
    "lint",
]

Severity = Literal["error", "warning", "info"]
Code = Literal["false_alarms", "never_fires", "missed_precursor", "undetected"]
CODES: tuple[Code, ...] = ("false_alarms", "never_fires", "missed_precursor", "undetected")
DEFAULT_DEVICE_DAYS = 1000.0
ERROR_PER_1000 = 10.0
"""False alarms per 1,000 device-days from which a rule's noise is an error (a 1,000-device fleet:
ten needless cases a day)."""
WARNING_PER_1000 = 1.0
CATCH_SHARE = 0.5
"""A rule catches a mode when it fires on at least this share of the mode's devices."""
SUGGESTED_FOR_S = 3600.0
"""The persistence of a rule the hints suggest."""


class Finding(msgspec.Struct, frozen=True, kw_only=True):
    """One thing the lint found: how bad, where in the scenario, what, and how to fix it."""

    severity: Severity
    code: Code
    path: str
    message: str
    hint: str


class RuleFigures(msgspec.Struct, frozen=True, kw_only=True):
    """One rule on one fleet: its false alarms, and the modes it fires on (share of their devices)."""

    rule: str
    kind: Literal["threshold", "trend", "anomaly"]
    fleet: str
    false_alarms_per_1000_device_days: float
    expected_per_1000_device_days: float | None  # a threshold rule's, from the noise model
    fires_on: dict[str, float]


class ModeFigures(msgspec.Struct, frozen=True, kw_only=True):
    """One failure mode or consumable of one fleet: what tells the engine about it."""

    fleet: str
    mode: str
    consumable: bool
    fault_code: str | None  # the code the engine maps (a consumable's own name), if any
    caught_by: list[str]  # rules that catch it, before or after it fails
    caught_early_by: list[str]  # rules that catch its precursor, before it fails
    lead_h: float | None  # the longest median lead before the failure of a rule that catches it early


class Report(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a lint found, and the figures it found it from."""

    scenario: str
    seed: int
    device_days: float
    findings: list[Finding]
    rules: list[RuleFigures]
    modes: list[ModeFigures]

    def count(self, severity: Severity) -> int:
        return sum(f.severity == severity for f in self.findings)


# -- words -------------------------------------------------------------------------------------------


def _num(x: float, sd: float, direction: int = 0) -> str:
    """``x`` to the precision of the noise ``sd``, rounded away from the mean (``direction``) when asked."""
    places = max(0, -math.floor(math.log10(sd))) if sd > 0 else 2
    scaled = x * 10**places
    scaled = (
        math.ceil(scaled - 1e-9) if direction > 0 else math.floor(scaled + 1e-9) if direction < 0 else round(scaled)
    )
    return f"{scaled / 10**places:.{places}f}"


def _duration(s: float) -> str:
    if s >= 2 * DAY_S:
        return f"{s / DAY_S:.3g} d"
    if s >= 3600.0:
        return f"{s / 3600.0:.3g} h"
    return f"{s / 60.0:.3g} min"


def _kind(rule: Rule) -> Literal["threshold", "trend", "anomaly"]:
    return "threshold" if isinstance(rule, ThresholdRule) else "trend" if isinstance(rule, TrendRule) else "anomaly"


def _path(rule: Rule) -> str:
    key = {"threshold": "rules", "trend": "trends", "anomaly": "anomalies"}[_kind(rule)]
    return f"engine.{key}[{rule.name}]"


def _describe(rule: Rule) -> str:
    if isinstance(rule, ThresholdRule):
        side = f"above {rule.above:g}" if rule.above is not None else f"below {rule.below:g}"
        return f"{rule.sensor} {side}" + (f" for {_duration(rule.for_s)}" if rule.for_s else "")
    if isinstance(rule, TrendRule):
        return f"trend of {rule.sensor}"
    return f"anomaly of {rule.sensor}"


# -- judging -----------------------------------------------------------------------------------------


def _counts(rule: Rule, fleet: Fleet, mode: str) -> bool:
    """Whether a firing of ``rule`` on ``mode``'s devices can be the mode's doing (its sensor, its way)."""
    sign = moved_sensors(fleet, mode).get(rule.sensor)
    if sign is None:
        return False
    if isinstance(rule, ThresholdRule) and sign != 0.0:
        return (rule.above is not None) == (sign > 0)
    return True


def _false_alarm_hint(rule: Rule, fleet: Fleet, caught: list[str]) -> str:
    if isinstance(rule, AnomalyRule):
        return f"healthy noise crosses the CUSUM's decision level: raise h (now {rule.h:g}) or k (now {rule.k:g})"
    if isinstance(rule, TrendRule):
        if rule.reaches is not None:
            return (
                f"the line fit over {_duration(rule.window_s)} reads healthy noise as a trend: lengthen window_s "
                f"or min_readings (now {rule.min_readings}), or shorten within_s (now {_duration(rule.within_s or 0)})"
            )
        return f"the slope over {_duration(rule.window_s)} of healthy noise passes the limit: lengthen window_s or widen the slope limit"
    mean, sd = healthy_level(fleet, rule.sensor)
    above = rule.above is not None
    level = rule.above if rule.above is not None else rule.below
    assert level is not None
    dt = fleet.telemetry_interval_s
    away = 1 if above else -1
    quiet = quiet_level(above, mean, sd, dt, 0.0)  # whatever the persistence
    side, verb = ("above", "raise") if above else ("below", "lower")
    if (mean > level) == above or sd == 0:
        head = f"healthy {rule.sensor} reads {mean:g} (sd {sd:g}), already {side} {level:g}"
    else:
        head = f"threshold {level:g} is within {max(1, math.ceil(abs(level - mean) / sd))} sd of the healthy mean {mean:g} (sd {sd:g})"
    if (quiet <= level) == above and (mean > level) != above:  # quiet already: the dry run's few are chance
        expected = expected_false_alarms(rule, mean, sd, dt) or 0.0
        return f"{head}: the noise model expects {expected:.2g} per 1,000 device-days at this level; {verb} it a little"
    hint = f"{head}: {verb} it {side} ~{_num(quiet, sd, away)} for < 1 false alarm per 1,000 device-days"
    if rule.for_s:
        persistent = quiet_level(above, mean, sd, dt, rule.for_s)
        hint += f" (~{_num(persistent, sd, away)} if you count on its for_s of {_duration(rule.for_s)} and on noise as independent as the model's)"
    longer = quiet_for_s(rule, mean, sd, dt)
    if longer is not None and longer <= DAY_S:
        hint += f", or keep it and lengthen for_s to {longer:g} ({_duration(longer)})"
    reach = [lv for label, lv in levels(fleet, rule.sensor) if any(label.startswith(f"{m}'s") for m in caught)]
    if reach and (max(reach) <= quiet if above else min(reach) >= quiet):
        hint += f"; the failures it catches take {rule.sensor} only to {_num(max(reach) if above else min(reach), sd)}"
    return hint


def _never_fires_hint(rule: Rule, fleet: Fleet) -> str:
    reached = levels(fleet, rule.sensor)
    moved = [(label, lv) for label, lv in reached if label != "healthy"]
    if not moved:
        others = sorted({s for m in fleet.failure_modes for s in moved_sensors(fleet, m.name)})
        return f"no failure mode or consumable moves {rule.sensor}: point the rule at one that does ({', '.join(others) or 'none'}), or drop it"
    if not isinstance(rule, ThresholdRule):
        shown = ", ".join(f"{label} {lv:g}" for label, lv in reached)
        return f"no failure trips it ({rule.sensor}: {shown}): check its limits against how the failures move {rule.sensor}"
    mean, sd = healthy_level(fleet, rule.sensor)
    above = rule.above is not None
    level = rule.above if rule.above is not None else rule.below
    assert level is not None
    label, reach = max(moved, key=lambda x: x[1]) if above else min(moved, key=lambda x: x[1])
    quiet = quiet_level(above, mean, sd, fleet.telemetry_interval_s, 0.0)
    side, most = ("above", "at most") if above else ("below", "at least")
    if (reach > level) == above:
        return (
            f"{label} takes {rule.sensor} to {reach:g}, past {level:g}, but not for {_duration(rule.for_s)} "
            f"(a failure is watched for {_duration(WATCH_S)} after it starts): shorten for_s"
        )
    if (quiet < reach) == above:
        between = f"~{_num(quiet, sd, 1 if above else -1)} and {reach:g}"
        return f"{rule.sensor} reads {most} {reach:g} ({label}; healthy {mean:g}, sd {sd:g}): put the threshold between {between}"
    return f"no failure takes {rule.sensor} {side} ~{_num(quiet, sd, 1 if above else -1)}, where healthy noise stays: watch another sensor"


def _suggest(fleet: Fleet, sensor: str, target: float, moved_by: str, lead_s: float | None = None) -> str | None:
    """A threshold rule on ``sensor``, quiet on healthy devices, that a level of ``target`` trips, in words
    (with ``lead_s``, a drift's duration: about how long before its end the rule would fire)."""
    if counter(fleet, sensor):
        return None
    mean, sd = healthy_level(fleet, sensor)
    above = target > mean
    quiet = float(_num(quiet_level(above, mean, sd, fleet.telemetry_interval_s, 0.0), sd, 1 if above else -1))
    if (target > quiet) != above or target == quiet:
        return None
    word = "above" if above else "below"
    ahead = ""
    if lead_s is not None:  # the drift is linear on average: it passes the level this long before its end
        ahead = f", about {_duration(max(lead_s * (1.0 - (quiet - mean) / (target - mean)), 0.0))} before the failure"
    return f"{moved_by} takes {sensor} to {target:g}: a rule `{word}: {quiet:g}, for_s: {SUGGESTED_FOR_S:g}` sees it{ahead}"


def _mode_findings(
    i: int, fleet: Fleet, run: DryRun, rules: list[Rule], fault_codes: dict[str, str]
) -> tuple[list[Finding], list[ModeFigures]]:
    findings: list[Finding] = []
    figures: list[ModeFigures] = []
    by_name = {r.name: r for r in rules}
    for mode in run.modes:
        spec = next((m for m in fleet.failure_modes if m.name == mode.name), None)
        caught = [
            name
            for name, hit in mode.hits.items()
            if hit.share >= CATCH_SHARE and _counts(by_name[name], fleet, mode.name)
        ]
        early = [name for name in caught if mode.hits[name].before_onset >= CATCH_SHARE]
        code = mode.name if spec is None else spec.fault_code
        mapped = code if code is not None and code in fault_codes else None
        leads = [mode.hits[name].median_lead_h for name in early]
        figures.append(
            ModeFigures(
                fleet=fleet.name,
                mode=mode.name,
                consumable=mode.consumable,
                fault_code=mapped,
                caught_by=caught,
                caught_early_by=early,
                lead_h=max((x for x in leads if x is not None), default=None),
            )
        )
        path = f"fleets[{i}].{'consumables' if mode.consumable else 'failure_modes'}[{mode.name}]"
        if spec is not None and spec.precursor is not None and not early:
            p = spec.precursor
            mean, sd = healthy_level(fleet, p.sensor)
            late = f" ({', '.join(caught)} only once it has failed)" if caught else ""
            suggestion = _suggest(fleet, p.sensor, mean + p.delta, "the drift", p.lead_time_days * DAY_S)
            findings.append(
                Finding(
                    severity="warning",
                    code="missed_precursor",
                    path=path,
                    message=f"the precursor of {mode.name} ({p.sensor} {p.delta:+g} over {p.lead_time_days:g} d) "
                    f"trips no rule before the failure{late}",
                    hint=suggestion
                    or f"the drift ends within {p.sensor}'s healthy noise (sd {sd:g}): it cannot be told from noise; "
                    "a larger delta, or an anomaly rule",
                )
            )
        if caught or mapped is not None:
            continue
        if mode.consumable:
            consumable = next(c for c in fleet.consumables if c.name == mode.name)
            findings.append(
                Finding(
                    severity="warning",
                    code="undetected",
                    path=path,
                    message=f"nothing reorders {mode.name} before it runs empty: no engine.fault_codes entry "
                    f"{mode.name!r} for its consumable_low report and no rule on {consumable.sensor} fires",
                    hint=f"add `engine.fault_codes: {{{mode.name}: ISSUE}}` with an issue that has `consumable: {mode.name}`, "
                    f"or a trend rule on {consumable.sensor} with `reaches: 0`",
                )
            )
            continue
        assert spec is not None
        if code is not None:
            hint = f"its fault code {code!r} is not a key of engine.fault_codes: map it to an issue"
        else:
            moves = [
                (label, lv, s)
                for s in moved_sensors(fleet, spec.name)
                for label, lv in levels(fleet, s)
                if label.startswith(f"{spec.name}'s")
            ]
            options = [x for label, lv, s in moves if (x := _suggest(fleet, s, lv, label)) is not None]
            hint = (
                options[0]
                if options
                else "it moves no sensor past healthy noise: give it a fault_code mapped in engine.fault_codes"
            )
        restore = spec.self_restore_h
        ends = "" if restore is None else f"; it ends on its own (in ~{restore.mean:g} h)"
        findings.append(
            Finding(
                severity="warning" if restore is None else "info",
                code="undetected",
                path=path,
                message=f"no rule fires on {mode.name} and no fault code reports it: only the owner's call tells the engine{ends}",
                hint=hint,
            )
        )
    return findings, figures


def _rule_findings(fleet: Fleet, run: DryRun, rules: list[Rule]) -> tuple[list[Finding], list[RuleFigures]]:
    findings: list[Finding] = []
    figures: list[RuleFigures] = []
    for rule in rules:
        rate = run.per_1000_device_days(rule.name)
        fires_on = {
            m.name: m.hits[rule.name].share for m in run.modes if rule.name in m.hits and _counts(rule, fleet, m.name)
        }
        expected = None
        if isinstance(rule, ThresholdRule) and not counter(fleet, rule.sensor):
            expected = expected_false_alarms(rule, *healthy_level(fleet, rule.sensor), fleet.telemetry_interval_s)
        figures.append(
            RuleFigures(
                rule=rule.name,
                kind=_kind(rule),
                fleet=fleet.name,
                false_alarms_per_1000_device_days=round(rate, 3),
                expected_per_1000_device_days=None if expected is None else round(expected, 3),
                fires_on=fires_on,
            )
        )
        if rate == 0:
            continue
        where = f"{_describe(rule)} fires on healthy devices of fleet {fleet.name!r}"
        if counter(fleet, rule.sensor):  # a usage trigger: it is meant to fire as the count rises
            findings.append(
                Finding(
                    severity="info",
                    code="false_alarms",
                    path=_path(rule),
                    message=f"{where} as the counter rises: {rate:,.1f} per 1,000 device-days, not judged as noise",
                    hint="meant as a service interval? a usage-based maintenance plan on the counter says so",
                )
            )
            continue
        severity: Severity = "error" if rate >= ERROR_PER_1000 else "warning" if rate >= WARNING_PER_1000 else "info"
        findings.append(
            Finding(
                severity=severity,
                code="false_alarms",
                path=_path(rule),
                message=f"{where}: {rate:,.1f} false alarms per 1,000 device-days "
                f"({run.false_alarms[rule.name]:,} in a dry run of {run.device_days:,.0f} device-days)",
                hint=_false_alarm_hint(rule, fleet, [m for m, share in fires_on.items() if share >= CATCH_SHARE]),
            )
        )
    return findings, figures


def lint(
    scenario: Scenario, *, device_days: float = DEFAULT_DEVICE_DAYS, seed: int | None = None, failures: int = FAILURES
) -> Report:
    """Dry-run every rule on every fleet of ``scenario`` and report what it found (see the module)."""
    seed = scenario.seed if seed is None else seed
    engine = scenario.engine
    distinct: dict[bytes, int] = {}  # fleets of the same product as it is give the same answers: one each
    for i, fleet in enumerate(scenario.fleets):
        model = [fleet.product, fleet.telemetry_interval_s, fleet.sensors, fleet.failure_modes, fleet.consumables]
        distinct.setdefault(msgspec.json.encode([*model, fleet.usage, fleet.cohorts]), i)
    indices = list(distinct.values())
    fleets = [scenario.fleets[i] for i in indices]
    watched = [r for r in engine.all_rules if any(applies(r, f) for f in fleets)]
    runs = dry_run(fleets, watched, device_days=device_days, seed=seed, failures=failures)
    findings: list[Finding] = []
    rule_figures: list[RuleFigures] = []
    mode_figures: list[ModeFigures] = []
    for i, fleet, run in zip(indices, fleets, runs, strict=True):
        rules = [r for r in watched if applies(r, fleet)]
        found, figures = _rule_findings(fleet, run, rules)
        findings += found
        rule_figures += figures
        found, modes = _mode_findings(i, fleet, run, rules, engine.fault_codes)
        findings += found
        mode_figures += modes
    firing = {r.rule for r in rule_figures if r.false_alarms_per_1000_device_days > 0 or r.fires_on}
    for rule in watched:
        if rule.name in firing:
            continue
        fleet = next(f for f in fleets if applies(rule, f))
        findings.append(
            Finding(
                severity="warning",
                code="never_fires",
                path=_path(rule),
                message=f"{_describe(rule)} fires neither on healthy devices nor on any failure of fleet {fleet.name!r}",
                hint=_never_fires_hint(rule, fleet),
            )
        )
    order = {"error": 0, "warning": 1, "info": 2}
    findings.sort(key=lambda f: order[f.severity])
    return Report(
        scenario=scenario.name,
        seed=seed,
        device_days=device_days,
        findings=findings,
        rules=rule_figures,
        modes=mode_figures,
    )
