"""The engine scored against the ground truth: its alerts and cases matched to the true failures.

Alarm-based evaluation, as in predictive maintenance (definitions in docs/kpis.md, "Scorecard").
A *signal* is an alert, or a case the device itself opened (a fault code, a consumable running
low). It matches a true failure of its device when it is raised inside the failure's window
``[onset - W, end]``: W is the mode's precursor lead (else :data:`DEFAULT_WINDOW_S`); the window
ends when the failure was restored, or prevented, or at the end of the run while it is still on.
Of the failures whose window holds it, a signal takes one whose mode its issue fits, else one
whose mode moves the rule's sensor; only a signal that names no mode of its fleet (no mode its
issue fits or its sensor shows) takes any failure in the window. Among those, one not matched yet,
then the earliest.
A failure's first signal matches it; later ones are repeats (matched, not false alarms). An
unmatched signal in the last W of the run is undecided: its failure may begin after the end. An
unmatched signal about consumables only is unjudged: the ground truth records run-outs, not levels,
so a low-level warning answered in time (refilled before empty) cannot be told from a false one.

With a warm-up, only signals raised and failures beginning at or after ``start_s`` are counted,
but every signal and failure takes part in the matching: a signal before the warm-up's end can be
a counted failure's first, and a later signal about a failure that began before it is a repeat.

Signals are sorted once and compared with their own device's failures only, so the cost grows with
signals times failures per device, never with the fleet.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from contracts.engine_config import IssueType
from experiments.claims import REMOTE_FIX_TEXT, delivery_claims, remote_claims, resolved_claims, visit_claims
from experiments.rundata import AlertRow, RunData
from sim.kpis import mode_names
from sim.records import NO_POWER, POWER, Failure, Incident
from sim.scenario import Fleet, Scenario

__all__ = ["DEFAULT_WINDOW_S", "REMOTE_FIX_TEXT", "ModeSpec", "fits", "mode_specs", "score"]

DAY_S = 86400.0
HOUR_S = 3600.0
DEFAULT_WINDOW_S = DAY_S
"""W of a mode without a precursor (random failures, power cuts)."""
DEVICE_SOURCE = "device"
"""The source name of cases the device opened (alerts are named by their rule)."""
SCORED_ORIGINS = ("telemetry", "device")
"""Cases scored for the right issue: opened by an alert, or by the device itself."""


@dataclass(frozen=True)
class ModeSpec:
    """What the scorecard needs of one failure mode of one fleet."""

    name: str
    window_s: float  # W
    sensors: frozenset[str]  # what it moves: its precursor's sensor and its effects'
    skill: str | None = None
    part: str | None = None
    remote: str | None = None  # its remote fix's action
    consumable: bool = False


def mode_specs(scenario: Scenario) -> dict[tuple[str, str], ModeSpec]:
    """Every (fleet, mode) of the scenario with its window W and what fixes it.

    A consumable's W is the time from its low warning to empty at the mean drain (at least
    :data:`DEFAULT_WINDOW_S`); a power cut (``power_outage``) has the default W and moves what the
    fleet's own power losses move (:func:`_power_loss_sensors`).
    """
    specs: dict[tuple[str, str], ModeSpec] = {}
    for fleet in scenario.fleets:
        for m in fleet.failure_modes:
            p = m.precursor
            moved = {e.sensor for e in m.effects} | ({p.sensor} if p is not None else set())
            specs[fleet.name, m.name] = ModeSpec(
                m.name,
                p.lead_time_days * DAY_S if p is not None else DEFAULT_WINDOW_S,
                frozenset(moved),
                m.repair.skill,
                m.repair.part,
                m.remote_fix.action if m.remote_fix is not None else None,
            )
        for c in fleet.consumables:
            drain = c.drain_per_day.mean
            low_to_empty = c.low_fraction * c.capacity / drain * DAY_S if drain > 0 else 0.0
            specs[fleet.name, c.name] = ModeSpec(
                c.name, max(DEFAULT_WINDOW_S, low_to_empty), frozenset({c.sensor}), consumable=True
            )
        specs[fleet.name, POWER] = ModeSpec(POWER, DEFAULT_WINDOW_S, _power_loss_sensors(scenario, fleet))
    return specs


def _power_loss_sensors(scenario: Scenario, fleet: Fleet) -> frozenset[str]:
    """The sensors a power cut moves on ``fleet``: the effects of its power-loss modes, those whose
    symptom the engine takes for the same trouble as an outage's ``no_power`` (both lead to one
    issue in ``engine.symptoms``); empty when the fleet has no such mode."""
    symptoms = scenario.engine.symptoms
    issue = symptoms.get(NO_POWER)
    if issue is None:
        return frozenset()
    return frozenset(e.sensor for m in fleet.failure_modes if symptoms.get(m.symptom) == issue for e in m.effects)


def fits(issue: IssueType | None, mode: ModeSpec) -> bool:
    """Whether the engine's issue answers the true mode: the remote fix that fixes it, the refill of
    that consumable, advice for a power cut, or a visit with the mode's skill and its part."""
    if issue is None:
        return False
    if mode.consumable:
        return issue.consumable == mode.name
    if mode.name == POWER:
        return issue.advice is not None
    if issue.remote is not None and issue.remote == mode.remote:
        return True
    if issue.consumable is not None:
        return False
    return issue.skill == mode.skill and (mode.part is None or mode.part in issue.parts)


_UNKNOWN = ModeSpec("", DEFAULT_WINDOW_S, frozenset())


@dataclass
class _Truth:
    """One true failure as the matching sees it."""

    failure: Failure
    spec: ModeSpec
    lo: float  # onset - W
    hi: float  # restored or prevented; the end of the run while it is on
    noticed_s: float  # when the owner noticed (NaN: never)
    counted: bool
    first_s: float = math.nan  # its first signal


@dataclass(frozen=True)
class _Signal:
    t: float
    signal_id: str
    device: str
    source: str  # the rule's name, or DEVICE_SOURCE
    issue: str | None
    sensor: str | None


@dataclass
class _Tally:
    """The counts of one block (overall, one mode, one source)."""

    signals: int = 0
    alerts: int = 0
    device_cases: int = 0
    matched: int = 0
    repeats: int = 0
    false_alarms: int = 0
    undecided: int = 0
    unjudged: int = 0
    failures: int = 0
    prevented: int = 0
    detected: int = 0
    detected_before_owner: int = 0
    cases: int = 0
    right_issue: int = 0
    leads_h: list[float] = field(default_factory=list)

    def signal(self, s: _Signal, verdict: str) -> None:
        self.signals += 1
        if s.source == DEVICE_SOURCE:
            self.device_cases += 1
        else:
            self.alerts += 1
        if verdict in ("first", "repeat"):
            self.matched += 1
            self.repeats += verdict == "repeat"
        elif verdict == "false":
            self.false_alarms += 1
        elif verdict == "unjudged":
            self.unjudged += 1
        else:
            self.undecided += 1


def _noticed(incidents: list[Incident], onsets: list[float], f: Failure) -> float:
    """When the owner noticed the incident the failure belongs to (NaN: never, or none)."""
    k = bisect.bisect_right(onsets, f.onset_s) - 1
    if k < 0:
        return math.nan
    i = incidents[k]
    if math.isfinite(i.restored_s) and i.restored_s < f.onset_s:
        return math.nan
    return i.noticed_s


class _Matcher:
    """The failures by device, and the choice of the failure a signal matches."""

    def __init__(self, run: RunData) -> None:
        scenario = run.scenario
        self.end_s = run.end_s
        self.issues = scenario.engine.issues
        specs = mode_specs(scenario)
        self.modes_of_fleet: dict[str, list[ModeSpec]] = defaultdict(list)
        for (fleet, _), spec in specs.items():
            self.modes_of_fleet[fleet].append(spec)
        incidents: dict[str, list[Incident]] = defaultdict(list)
        for i in sorted(run.records.incidents, key=lambda i: i.onset_s):
            incidents[i.device_id].append(i)
        onsets = {d: [i.onset_s for i in found] for d, found in incidents.items()}
        self.truths: list[_Truth] = []
        self.by_device: dict[str, list[_Truth]] = defaultdict(list)
        self.fleet_of: dict[str, str] = {}
        for f in sorted(run.records.failures, key=lambda f: (f.onset_s, f.device_id, f.mode)):
            spec = specs.get((f.fleet, f.mode), _UNKNOWN)
            hi = min(f.restored_s if math.isfinite(f.restored_s) else math.inf, self.end_s)
            noticed = math.nan if f.prevented else _noticed(incidents[f.device_id], onsets.get(f.device_id, []), f)
            truth = _Truth(f, spec, f.onset_s - spec.window_s, hi, noticed, f.onset_s >= run.start_s)
            self.truths.append(truth)
            self.by_device[f.device_id].append(truth)
            self.fleet_of[f.device_id] = f.fleet
        self.fleets = {f.name for f in scenario.fleets}
        # Per device, windows by start, and the longest: the windows holding t start in [t - longest, t].
        self._starts: dict[str, list[float]] = {}
        self._longest: dict[str, float] = {}
        for device, truths in self.by_device.items():
            truths.sort(key=lambda x: x.lo)
            self._starts[device] = [x.lo for x in truths]
            self._longest[device] = max(x.hi - x.lo for x in truths)

    def _tiers(self, issue: str | None, sensor: str | None) -> list[Callable[[ModeSpec], bool]]:
        known = self.issues.get(issue) if issue is not None else None
        return [lambda m: fits(known, m), lambda m: sensor is not None and sensor in m.sensors]

    def choose(self, device: str, t: float, issue: str | None, sensor: str | None) -> _Truth | None:
        """The failure a signal of ``device`` at ``t`` matches, or None."""
        starts = self._starts.get(device)
        if starts is None:
            return None
        first = bisect.bisect_left(starts, t - self._longest[device])
        last = bisect.bisect_right(starts, t)
        inside = [x for x in self.by_device[device][first:last] if t <= x.hi]
        if not inside:
            return None
        for tier in self._tiers(issue, sensor):
            preferred = [x for x in inside if tier(x.spec)]
            if preferred:
                return _earliest_unmatched(preferred)
        if self.targets(device, issue, sensor):
            return None  # it is about a mode (or a sensor), and no failure in the window is of one
        return _earliest_unmatched(inside)

    def targets(self, device: str, issue: str | None, sensor: str | None) -> list[ModeSpec]:
        """The modes an unmatched signal was about: those its issue fits, else those its sensor shows."""
        fleet = self.fleet_of.get(device)
        if fleet is None:
            name = device.rsplit("-", 1)[0]  # device ids are <fleet>-<number>
            fleet = name if name in self.fleets else None
        modes = (
            self.modes_of_fleet[fleet] if fleet is not None else [m for v in self.modes_of_fleet.values() for m in v]
        )
        for tier in self._tiers(issue, sensor):
            chosen = [m for m in modes if tier(m)]
            if chosen:
                return chosen
        return []


def _earliest_unmatched(truths: list[_Truth]) -> _Truth:
    return min(truths, key=lambda x: (not math.isnan(x.first_s), x.failure.onset_s))


def _signals(run: RunData) -> list[_Signal]:
    """Alerts and device-opened cases, in time order."""
    rules = {r.name: r for r in run.scenario.engine.all_rules}
    signals = [
        _Signal(
            a.raised_s,
            a.alert_id,
            a.device_id,
            a.rule,
            rules[a.rule].issue if a.rule in rules else None,
            rules[a.rule].sensor if a.rule in rules else None,
        )
        for a in run.engine.alerts
    ]
    signals += [
        _Signal(c.opened_s, c.case_id, c.device_id, DEVICE_SOURCE, c.issue, None)
        for c in run.engine.cases
        if c.origin == "device"
    ]
    return sorted(signals, key=lambda s: (s.t, s.signal_id))


def _quantile(values: list[float], q: float) -> float | None:
    return float(np.quantile(np.asarray(values), q)) if values else None


def _r(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 6)


def _ratio(a: float, b: float) -> float | None:
    return _r(a / b) if b else None


def _figures(t: _Tally, device_days: float, *, failures: bool = True) -> dict[str, Any]:
    """The flat figures of one block; counters are 0 when zero, ratios None with nothing to divide.

    Without ``failures`` (a source's block) the failure figures, which belong to modes, are left out.
    """
    out: dict[str, Any] = {
        "signals": t.signals,
        "alerts": t.alerts,
        "device_cases": t.device_cases,
        "matched": t.matched,
        "repeats": t.repeats,
        "false_alarms": t.false_alarms,
        "undecided": t.undecided,
        "unjudged": t.unjudged,
        "precision": _ratio(t.matched, t.matched + t.false_alarms),
        "false_alarms_per_1000_device_days": _ratio(1000.0 * t.false_alarms, device_days),
    }
    if failures:
        leads = t.leads_h
        out |= {
            "failures": t.failures,
            "prevented": t.prevented,
            "detected": t.detected,
            "detected_before_owner": t.detected_before_owner,
            "missed_failures": t.failures - t.detected_before_owner,
            "recall": _ratio(t.detected_before_owner, t.failures),
            "lead_hours_n": len(leads),
            "lead_hours_mean": _r(sum(leads) / len(leads)) if leads else None,
            "lead_hours_median": _r(_quantile(leads, 0.5)),
            "lead_hours_p10": _r(_quantile(leads, 0.1)),
            "lead_hours_p90": _r(_quantile(leads, 0.9)),
        }
    return out | {"cases": t.cases, "right_issue": t.right_issue, "right_issue_rate": _ratio(t.right_issue, t.cases)}


def score(run: RunData) -> dict[str, Any]:
    """The ``scorecard`` block of ``result.json``: signals against the true failures (see the module)."""
    scenario = run.scenario
    matcher = _Matcher(run)
    modes = mode_names(scenario)
    rules = [r.name for r in scenario.engine.all_rules]
    overall = _Tally()
    by_mode: dict[str, _Tally] = {m: _Tally() for m in modes}
    by_source: dict[str, _Tally] = {name: _Tally() for name in [*rules, DEVICE_SOURCE]}

    def mode(name: str) -> _Tally:
        return by_mode.setdefault(name, _Tally())

    matched: dict[tuple[bool, str], _Truth] = {}  # (a device-opened case?, alert or case id) -> its failure
    for s in _signals(run):
        truth = matcher.choose(s.device, s.t, s.issue, s.sensor)
        if truth is not None:
            matched[s.source == DEVICE_SOURCE, s.signal_id] = truth
            verdict = "first" if math.isnan(truth.first_s) else "repeat"
            if verdict == "first":
                truth.first_s = s.t
            about = [truth.failure.mode]
        else:
            targets = matcher.targets(s.device, s.issue, s.sensor)
            window = max((m.window_s for m in targets), default=DEFAULT_WINDOW_S)
            if targets and all(m.consumable for m in targets):
                verdict = "unjudged"  # a refill in time leaves no trace in the ground truth
            else:
                verdict = "undecided" if s.t > run.end_s - window else "false"
            about = sorted({m.name for m in targets})
        if s.t < run.start_s:
            continue
        overall.signal(s, verdict)
        by_source.setdefault(s.source, _Tally()).signal(s, verdict)
        for name in about:
            mode(name).signal(s, verdict)

    for truth in matcher.truths:
        if not truth.counted:
            continue
        f = truth.failure
        for t in (overall, mode(f.mode)):
            t.failures += 1
            t.prevented += f.prevented
            if not math.isnan(truth.first_s):
                t.detected += 1
                t.detected_before_owner += math.isnan(truth.noticed_s) or truth.first_s <= truth.noticed_s
                t.leads_h.append((f.onset_s - truth.first_s) / HOUR_S)

    # A case is judged by the failure its signal matched: a device-opened case's own match, a telemetry
    # case's first alert's. Matching the case again, its issue first, would favour the failures it fits.
    first_alert: dict[str, AlertRow] = {}
    for a in sorted(run.engine.alerts, key=lambda a: (a.raised_s, a.alert_id)):
        if a.case_id is not None:
            first_alert.setdefault(a.case_id, a)
    for c in run.engine.cases:
        if c.origin not in SCORED_ORIGINS or c.opened_s < run.start_s:
            continue
        if c.origin == "device":
            source, truth = DEVICE_SOURCE, matched.get((True, c.case_id))
        else:
            alert = first_alert.get(c.case_id)
            if alert is None:
                continue
            source, truth = alert.rule, matched.get((False, alert.alert_id))
        if truth is None:
            continue
        right = fits(scenario.engine.issues.get(c.issue), truth.spec)
        for t in (overall, mode(truth.failure.mode), by_source.setdefault(source, _Tally())):
            t.cases += 1
            t.right_issue += right

    days = (run.end_s - run.start_s) / DAY_S
    devices_with: dict[str, int] = defaultdict(int)
    for fleet in scenario.fleets:
        for name in {m.name for m in matcher.modes_of_fleet[fleet.name]}:
            devices_with[name] += fleet.count
    device_days = scenario.device_count * days
    jobs = [j for j in run.records.jobs.values() if j.created_s >= run.start_s]
    no_fault = sum(j.outcome == "no_fault_found" for j in jobs)
    headline = _figures(overall, device_days)
    headline["no_fault_found_visits"] = no_fault
    widest = _widest(matcher.modes_of_fleet.values())
    claims = resolved_claims(run)
    return {
        "period": {"start_s": run.start_s, "end_s": run.end_s, "device_days": _r(device_days)},
        "window_h": {
            "default": DEFAULT_WINDOW_S / HOUR_S,
            **{name: _r(widest[name].window_s / HOUR_S) for name in sorted(by_mode) if name in widest},
        },
        "overall": headline,
        "by_mode": {
            name: _figures(t, devices_with.get(name, scenario.device_count) * days)
            for name, t in sorted(by_mode.items())
        },
        "by_source": {name: _figures(t, device_days, failures=False) for name, t in by_source.items()},
        "lead_hours": {
            "overall": _values(overall.leads_h),
            "by_mode": {name: _values(t.leads_h) for name, t in sorted(by_mode.items())},
        },
        "remote_fixes": remote_claims(run, claims, scenario.sync_interval_s),
        "visit_fixes": visit_claims(run, claims, scenario.sync_interval_s),
        "delivery_fixes": delivery_claims(run, claims, scenario.sync_interval_s),
        "field": {
            "work_orders": len(jobs),
            "no_fault_found_visits": no_fault,
            "no_fault_found_rate": _ratio(no_fault, len(jobs)),
        },
    }


def _values(leads: list[float]) -> list[float]:
    """Lead times for a histogram: sorted, rounded to 6 decimals."""
    return sorted(round(x, 6) for x in leads)


def _widest(groups: Iterable[list[ModeSpec]]) -> dict[str, ModeSpec]:
    """Each mode name's spec with the widest window over the fleets, sorted by name."""
    widest: dict[str, ModeSpec] = {}
    for specs in groups:
        for spec in specs:
            if spec.name not in widest or spec.window_s > widest[spec.name].window_s:
                widest[spec.name] = spec
    return dict(sorted(widest.items()))
