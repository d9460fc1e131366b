"""The effortless-service checklist of one run: each of its seven points as a measured share with a verdict.

Every point is a share of things the run's records count (contacts, work orders, incidents, owners),
held against a target from :data:`TARGETS`: ``pass`` at or above the target, ``partial`` from
``partial_from`` up to it, ``fail`` below, and ``not exercised`` when the run has nothing to count
(no contact, no outage). Only what starts after the warm-up (``RunData.start_s``) counts. The exact
definitions are in docs/kpis.md, "Checklist".
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from experiments.rundata import CaseRow, RunData, owner_contacts, resolved_times
from sim.records import POWER, Incident

__all__ = ["TARGETS", "VALIDATION_S", "Target", "Verdict", "evaluate", "verdict"]

DAY_S = 86400.0
VALIDATION_S = 900.0
""""At once" for instant validation: the owner hears "resolved" within 15 minutes of the restoration."""
CLOCK_EPS_S = 1.0  # times within a second of each other count as the same instant (float timestamps)
OUTAGE_NOTICE = "outage"  # the kind an issue's advice (what support remains) goes out as

Verdict = Literal["pass", "partial", "fail", "not exercised"]


@dataclass(frozen=True)
class Target:
    """One point of the checklist: what it asks, the share that passes, the share that is partial."""

    number: int
    key: str
    title: str
    target: float
    partial_from: float
    source: str


TARGETS: tuple[Target, ...] = (
    Target(
        1,
        "in_context",
        "Support in context, through the owner's preferred channel",
        0.80,
        0.70,
        "no published figure; 80 % as for the other points",
    ),
    Target(
        2,
        "right_first_time",
        "The right person or expert the first time",
        0.88,
        0.75,
        "first-time fix in field-service surveys: best in class 88 %, average 75-80 %, laggards 63 %",
    ),
    Target(
        3,
        "few_steps",
        "Resolution in fewer than four steps for the owner",
        0.80,
        0.70,
        "96 % of customers with a high-effort interaction become more disloyal; 80 % as for the other points",
    ),
    Target(
        4,
        "within_a_day",
        "Resolution within a day (or the SLA's resolution time when longer)",
        0.80,
        0.70,
        "67 % of owners expect a reply within a day; 80 % as for the other points",
    ),
    Target(
        5,
        "proactive",
        "Automatic triage: the company contacts the owner first",
        0.80,
        0.70,
        "no published figure; 80 % as for the other points",
    ),
    Target(
        6,
        "instant_validation",
        "Instant validation: the owner is told at once that it is resolved",
        0.95,
        0.85,
        "'at once' taken as within 15 minutes; 95 %: a confirmation is the system's own message",
    ),
    Target(
        7,
        "contingency",
        "A contingency plan: during a major outage the owner is told what support remains",
        0.80,
        0.70,
        "76 % of customers left a company after one bad experience; 80 % as for the other points",
    ),
)
"""The checklist's targets, in the order of domain.md's checklist (one table for the report)."""
_BY_KEY = {t.key: t for t in TARGETS}


def verdict(share: float | None, target: Target) -> Verdict:
    """``pass`` at or above the target, ``partial`` from ``partial_from``, ``fail`` below; no share: not exercised."""
    if share is None:
        return "not exercised"
    if share >= target.target:
        return "pass"
    return "partial" if share >= target.partial_from else "fail"


def _point(
    key: str, definition: str, numerator: int, denominator: int, details: dict[str, Any], reason: str = ""
) -> dict[str, Any]:
    target = _BY_KEY[key]
    share = numerator / denominator if denominator and not reason else None
    out: dict[str, Any] = {
        "id": key,
        "point": target.number,
        "title": target.title,
        "definition": definition,
        "target": target.target,
        "partial_from": target.partial_from,
        "numerator": numerator,
        "denominator": denominator,
        "share": None if share is None else round(share, 6),
        "verdict": verdict(share, target),
        "details": details,
    }
    if share is None:
        out["reason"] = reason or "nothing to count in this run"
    return out


def _notices(run: RunData) -> dict[str, list[tuple[float, str]]]:
    """Every notification the engine sent, by device: (time, kind), in time order."""
    out: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for row in run.engine.outbox:
        if row.kind == "Notify":
            out[row.device_id].append((row.ts, str(json.loads(row.payload).get("kind", ""))))
    for rows in out.values():
        rows.sort()
    return out


def _incidents(run: RunData) -> list[Incident]:
    return [i for i in run.records.incidents if i.onset_s >= run.start_s]


def _shares(weights: dict[str, float]) -> dict[str, float]:
    total = sum(weights.values())
    return {k: round(v / total, 6) for k, v in sorted(weights.items())} if total > 0 else {}


def _offline_windows(run: RunData) -> tuple[dict[str, list[tuple[float, float]]], list[tuple[float, float]]]:
    """When devices could not report: per device (offline spells, power cuts of an outage), and for
    every device (an outage of the whole fleet)."""
    per: dict[str, list[tuple[float, float]]] = defaultdict(list)
    everyone: list[tuple[float, float]] = []
    outages = {o.name: o for o in run.scenario.outages}
    for t, who, kind, detail in run.records.link:
        if kind == "offline":
            per[who].append((t, t + float(detail.split()[0]) * 3600.0))
        elif kind == "outage":
            outage = outages.get(detail.split(":", 1)[0])
            if outage is not None and not outage.power and outage.region is None and outage.share >= 1.0:
                everyone.append((t, t + outage.duration_h * 3600.0))
    for f in run.records.failures:
        if f.mode == POWER:
            per[f.device_id].append((f.onset_s, run.end_s if math.isnan(f.restored_s) else f.restored_s))
    return per, everyone


def _inside(t: float, windows: Iterable[tuple[float, float]]) -> bool:
    return any(a <= t < b for a, b in windows)


def _case_open(cases: list[CaseRow], resolved: dict[str, float], t: float) -> bool:
    """Whether one of ``cases`` was opened before ``t`` and not yet resolved at ``t`` (``resolved``:
    when each resolved case was resolved, :func:`experiments.rundata.resolved_times`)."""
    return any(c.opened_s < t and resolved.get(c.case_id, math.inf) >= t for c in cases)


def _in_context(run: RunData) -> dict[str, Any]:
    contacts = owner_contacts(run)
    resolved = resolved_times(run.engine)
    cases: dict[str, list[CaseRow]] = defaultdict(list)
    for case in run.engine.cases:
        cases[case.device_id].append(case)
    per, everyone = _offline_windows(run)
    known = online = either = 0
    for t, device, _ in contacts:
        k = _case_open(cases[device], resolved, t)
        o = not _inside(t, per.get(device, ())) and not _inside(t, everyone)
        known, online, either = known + k, online + o, either + (k or o)
    preferred: dict[str, float] = defaultdict(float)
    for fleet in run.scenario.fleets:
        weights = fleet.owners.channels
        total = sum(weights.values())
        for channel, w in weights.items():
            preferred[str(channel)] += fleet.count * w / total
    used = Counter(channel for _, _, channel in contacts)
    return _point(
        "in_context",
        "owner contacts the engine could answer with the device's context: a case for the device was "
        "already open when the contact arrived, or the device was online (not in an offline spell or an "
        "outage) so its readings came with it; every contact uses a channel its owner prefers (the world "
        "draws it from the owners' channel weights)",
        either,
        len(contacts),
        {
            "case_already_open": known,
            "device_online": online,
            "channels_used": _shares({k: float(v) for k, v in used.items()}),
            "channels_preferred": _shares(dict(preferred)),
        },
        "" if contacts else "no owner contact reached support",
    )


def _right_first_time(run: RunData) -> dict[str, Any]:
    jobs = [j for j in run.records.jobs.values() if j.created_s >= run.start_s]
    fault = [j for j in jobs if j.outcome in ("fixed", "part_missing")]
    first = [j for j in fault if j.visits == 1 and not j.second_visit_causes]
    causes = Counter(c for j in fault for c in j.second_visit_causes)
    return _point(
        "right_first_time",
        "work orders that found a fault (outcome fixed or part_missing) and were done at the first visit, "
        "with no second visit for a part or a skill; contacts are answered by the first agent of their "
        "skill's queue (the world records no transfers)",
        len(first),
        len(fault),
        {
            "second_visits_by_cause": dict(sorted(causes.items())),
            "no_fault_found": sum(j.outcome == "no_fault_found" for j in jobs),
            "still_open": sum(j.outcome == "open" for j in jobs),
        },
        "" if fault else "no work order found a fault",
    )


def _few_steps(run: RunData) -> dict[str, Any]:
    incidents = _incidents(run)
    decided = [i for i in incidents if not math.isnan(i.restored_s) or i.effort_steps >= 4]
    few = [i for i in decided if i.effort_steps < 4]
    steps = [i.effort_steps for i in decided]
    return _point(
        "few_steps",
        "incidents in which the owner took fewer than four steps (contacts + calls given up + visits); "
        "an incident still open at the end counts once it has four steps, and is undecided before",
        len(few),
        len(decided),
        {
            "steps_mean": round(sum(steps) / len(steps), 6) if steps else 0.0,
            "undecided": len(incidents) - len(decided),
        },
        "" if decided else "no incident ended",
    )


def _within_a_day(run: RunData) -> dict[str, Any]:
    window = max(DAY_S, run.scenario.engine.sla.resolution_s)
    due = [i for i in _incidents(run) if i.onset_s <= run.end_s - window]
    fast = [i for i in due if not math.isnan(i.restored_s) and i.restored_s - i.onset_s <= window]
    return _point(
        "within_a_day",
        "incidents restored within a day of their onset, or within the SLA's resolution time when that is "
        "longer; only incidents that began at least that long before the end count",
        len(fast),
        len(due),
        {"window_h": round(window / 3600.0, 6)},
        "" if due else "no incident began early enough to be judged",
    )


def _proactive(run: RunData) -> dict[str, Any]:
    incidents = _incidents(run)
    first = [
        i
        for i in incidents
        if not math.isnan(i.informed_s) and (math.isnan(i.noticed_s) or i.informed_s <= i.noticed_s)
    ]
    prevented = [f for f in run.records.failures if f.prevented and f.onset_s >= run.start_s]
    told = [f for f in prevented if not math.isnan(f.informed_s)]
    return _point(
        "proactive",
        "incidents whose owner the engine told of the trouble (case opened, visit scheduled, outreach, "
        "outage advice) no later than the owner noticed, or the owner never noticed; and failures "
        "prevented while they drifted whose owner the engine told meanwhile (Failure.informed_s)",
        len(first) + len(told),
        len(incidents) + len(prevented),
        {
            "incidents": len(incidents),
            "incidents_told_first": len(first),
            "prevented": len(prevented),
            "prevented_told": len(told),
        },
        "" if incidents or prevented else "no incident and no prevented failure",
    )


def _told_by(run: RunData, restored_s: float) -> float:
    """The latest time a "resolved" for a restoration at ``restored_s`` counts as at once: 15 minutes
    after it, or the first sync step after it when that is later (the world hears the engine only at
    its sync steps, so a run cannot time a notice more finely)."""
    step = run.scenario.sync_interval_s
    next_step = min((math.floor(restored_s / step) + 1) * step, run.end_s)
    return max(restored_s + VALIDATION_S, next_step)


def _instant_validation(run: RunData) -> dict[str, Any]:
    resolved = [i for i in _incidents(run) if not math.isnan(i.restored_s) and i.restored_s <= run.end_s - VALIDATION_S]
    confirmed = [i for i in resolved if not math.isnan(i.confirmed_s)]
    # Told "resolved" while it was still on (the world's count), or a confirmation time before the restoration.
    premature = [i for i in resolved if i.premature_resolved or i.confirmed_s < i.restored_s - CLOCK_EPS_S]
    at_once = [
        i
        for i in confirmed
        if not i.premature_resolved and i.restored_s - CLOCK_EPS_S <= i.confirmed_s <= _told_by(run, i.restored_s)
    ]
    reason = "" if resolved else "no incident was resolved"
    if resolved and not confirmed and not premature:
        notices = _notices(run)
        told = any(
            kind == "resolved" and ts >= i.onset_s for i in resolved for ts, kind in notices.get(i.device_id, ())
        )
        if told:  # the engine said "resolved" but the records carry no confirmation time at all
            reason = "the records carry no confirmation times (Incident.confirmed_s)"
    minutes = f"{VALIDATION_S / 60:.0f} minutes"
    return _point(
        "instant_validation",
        f"resolved incidents whose owner was told 'resolved' (Incident.confirmed_s) within {minutes} of the "
        "restoration, or by the first sync step after it when the run's steps are longer (the world hears "
        "the engine only at its steps); an incident told 'resolved' while it was still on, or confirmed before "
        f"its restoration (premature), does not count; incidents restored in the last {minutes} are undecided",
        len(at_once),
        len(resolved),
        {
            "confirmed": len(confirmed),
            "premature": len(premature),
            "never_confirmed": len(resolved) - len(confirmed),
        },
        reason,
    )


def _affected(run: RunData, t: float, until: float, power: bool, everywhere: bool) -> set[str] | None:
    """Devices an outage at ``t`` hit whose owners lived it; None when the records cannot say."""
    if power:
        return {f.device_id for f in run.records.failures if f.mode == POWER and abs(f.onset_s - t) < CLOCK_EPS_S}
    if everywhere:
        return {
            i.device_id
            for i in run.records.incidents
            if i.onset_s < until and (math.isnan(i.restored_s) or i.restored_s > t)
        }
    return None


def _contingency(run: RunData) -> dict[str, Any]:
    outages = {o.name: o for o in run.scenario.outages}
    notices = _notices(run)
    calls: dict[str, list[float]] = defaultdict(list)
    for t, device, _ in owner_contacts(run):
        calls[device].append(t)
    owners = told = 0
    per_outage: dict[str, dict[str, int]] = {}
    unresolved: list[str] = []
    for t, _, kind, detail in run.records.link:
        outage = outages.get(detail.split(":", 1)[0]) if kind == "outage" else None
        if outage is None or t < run.start_s:
            continue
        until = t + outage.duration_h * 3600.0
        hit = _affected(run, t, until, outage.power, outage.region is None and outage.share >= 1.0)
        if hit is None:
            unresolved.append(outage.name)
            continue
        n = 0
        for device in hit:
            called = [c for c in calls.get(device, ()) if t <= c <= until]
            before = min(called) if called else math.inf
            n += any(k == OUTAGE_NOTICE and t <= ts <= until and ts < before for ts, k in notices.get(device, ()))
        per_outage[outage.name] = {"owners": len(hit), "told_before_calling": n}
        owners, told = owners + len(hit), told + n
    if not run.scenario.outages:
        reason = "the scenario has no outage"
    elif not per_outage and unresolved:
        reason = "the records do not name the devices a link-only regional outage hit"
    elif not per_outage:
        reason = "no outage took place after the warm-up"
    else:
        reason = "" if owners else "no outage hit an owner after the warm-up"
    return _point(
        "contingency",
        "owners whose device an outage hit (its power cut in the ground truth; for a link outage of the "
        "whole fleet, owners with an incident during it) who got an outage notice (an issue's advice) "
        "during the outage before their first contact, or without calling",
        told,
        owners,
        {"outages": per_outage, "unresolved_outages": unresolved},
        reason,
    )


def evaluate(run: RunData) -> dict[str, Any]:
    """Return the checklist of one run: each point's share, target and verdict, and how many of each verdict."""
    points = {
        "in_context": _in_context(run),
        "right_first_time": _right_first_time(run),
        "few_steps": _few_steps(run),
        "within_a_day": _within_a_day(run),
        "proactive": _proactive(run),
        "instant_validation": _instant_validation(run),
        "contingency": _contingency(run),
    }
    tally = Counter(p["verdict"] for p in points.values())
    return {
        "points": points,
        "summary": {v: tally.get(v, 0) for v in ("pass", "partial", "fail", "not exercised")},
    }
