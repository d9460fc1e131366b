"""Claims against truth: every "fixed" the engine recorded, held against what the world says fixed it.

The engine claims a fix when it resolves a case and tells the owner (a ``resolved`` notification):
after a remote command answered ``fixed`` ("We fixed your device remotely."), after the work orders
of a case closed (a visit), and after a refill arrived (a delivery). Each claim is confirmed by a
true fix of the same device within a tolerance (one sync interval: the world hears the engine only
at its steps), each fix confirming one claim, the nearest. Definitions: docs/kpis.md, "The other
scorecard blocks".
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import msgspec

from experiments.rundata import RunData

__all__ = [
    "REMOTE_FIX_TEXT",
    "TRUE_REMOTE",
    "Claim",
    "delivery_claims",
    "remote_claims",
    "resolved_claims",
    "visit_claims",
]

REMOTE_FIX_TEXT = "We fixed your device remotely."
"""The text of the engine's ``resolved`` notification after a remote command fixed a device."""
TRUE_REMOTE = ("remote", "ota")
"""The world's ``fixed_by`` of a fix without a visit that a remote command made."""


@dataclass(frozen=True)
class Claim:
    """One "resolved" notification of the engine: a claim that a case's trouble is gone."""

    t: float
    device: str
    case_id: str
    text: str


def resolved_claims(run: RunData) -> list[Claim]:
    """The engine's "resolved" notifications at or after ``start_s``."""
    out = []
    for row in run.engine.outbox:
        if row.kind != "Notify" or row.ts < run.start_s or "resolved" not in row.payload:
            continue
        note = msgspec.json.decode(row.payload)
        if note.get("kind") == "resolved":
            out.append(Claim(row.ts, row.device_id, str(note.get("case_id") or ""), str(note.get("text") or "")))
    return out


def _confirm(claims: list[Claim], fixes: dict[str, list[float]], tolerance_s: float) -> list[bool]:
    """Which claims a true fix of the same device within ``tolerance_s`` confirms; each fix confirms
    one claim, the nearest, in the claims' time order."""
    left = {device: sorted(times) for device, times in fixes.items()}
    confirmed = [False] * len(claims)
    for k in sorted(range(len(claims)), key=lambda k: (claims[k].t, k)):
        c = claims[k]
        open_fixes = left.get(c.device, [])
        near = [j for j, s in enumerate(open_fixes) if abs(s - c.t) <= tolerance_s]
        if near:
            open_fixes.pop(min(near, key=lambda j: abs(open_fixes[j] - c.t)))
            confirmed[k] = True
    return confirmed


def _count_claims(
    claims: list[Claim], fixes: dict[str, list[float]], tolerance_s: float
) -> tuple[dict[str, int], list[bool]]:
    confirmed = _confirm(claims, fixes, tolerance_s)
    true, n = sum(len(v) for v in fixes.values()), sum(confirmed)
    counts = {
        "claimed": len(claims),
        "true": true,
        "confirmed": n,
        "false_claims": len(claims) - n,
        "unclaimed": true - n,
    }
    return counts, confirmed


def _restores(run: RunData, fixed_by: Iterable[str]) -> dict[str, list[float]]:
    """Per device, when the world restored a failure (prevented ones included) by one of ``fixed_by``,
    at or after ``start_s``; failures restored together (one visit, one command) count once."""
    by = set(fixed_by)
    times: dict[str, set[float]] = defaultdict(set)
    for f in run.records.failures:
        if f.fixed_by in by and math.isfinite(f.restored_s) and f.restored_s >= run.start_s:
            times[f.device_id].add(f.restored_s)
    return {device: sorted(t) for device, t in times.items()}


def remote_claims(run: RunData, claims: list[Claim], tolerance_s: float) -> dict[str, int]:
    """The engine's "fixed remotely" claims against the world's remote and OTA fixes."""
    remote = [c for c in claims if c.text == REMOTE_FIX_TEXT]
    fixes: dict[str, list[float]] = defaultdict(list)
    for f in run.records.failures:  # every failure counts: a reset that cleared two modes fixed two
        if f.fixed_by in TRUE_REMOTE and math.isfinite(f.restored_s) and f.restored_s >= run.start_s:
            fixes[f.device_id].append(f.restored_s)
    counts, _ = _count_claims(remote, fixes, tolerance_s)
    engine_counter = int(run.engine.counters.get("remote_fixes", run.stats.get("remote_fixes", 0)))
    return {
        "claimed": counts["claimed"],
        "engine_counter": engine_counter,
        **{k: counts[k] for k in ("true", "confirmed", "false_claims", "unclaimed")},
    }


def visit_claims(run: RunData, claims: list[Claim], tolerance_s: float) -> dict[str, int]:
    """The engine's "repaired" after its work orders closed, against the world's technician fixes.

    A visit that found no fault, or came after someone else (a reset, the device itself) had already
    restored the device, or a job the field gave up on, leaves no technician fix to confirm the
    claim: a false claim; ``no_fault_found`` counts those whose work orders found no fault."""
    orders: dict[str, list[str]] = defaultdict(list)
    for w in run.engine.work_orders:
        orders[w.case_id].append(w.work_order_id)
    visits = [c for c in claims if c.case_id in orders]
    counts, confirmed = _count_claims(visits, _restores(run, ("technician",)), tolerance_s)
    jobs = run.records.jobs

    def found_nothing(c: Claim) -> bool:
        outcomes = [jobs[w].outcome for w in orders[c.case_id] if w in jobs]
        return bool(outcomes) and all(o == "no_fault_found" for o in outcomes)

    nff = sum(found_nothing(c) for c, ok in zip(visits, confirmed, strict=True) if not ok)
    return {**counts, "no_fault_found": nff}


def delivery_claims(run: RunData, claims: list[Claim], tolerance_s: float) -> dict[str, int]:
    """The engine's "your refill has arrived" (a refill case resolved) against the couriers' deliveries.

    The truth is the delivery (the world's event log), not a failure's ``fixed_by``: a refill that
    arrived before the consumable ran empty restores no failure, yet the claim is true.
    ``ran_empty`` counts the deliveries that restored an empty consumable (``fixed_by`` delivery)."""
    issues = run.scenario.engine.issues
    with_orders = {w.case_id for w in run.engine.work_orders}
    refill_cases = {
        c.case_id
        for c in run.engine.cases
        if c.case_id not in with_orders and (i := issues.get(c.issue)) is not None and i.consumable is not None
    }
    delivered: dict[str, list[float]] = defaultdict(list)
    for t, actor, kind, device, _, _ in run.records.events:
        if actor == "courier" and kind == "delivered" and t >= run.start_s:
            delivered[device].append(t)
    counts, _ = _count_claims([c for c in claims if c.case_id in refill_cases], delivered, tolerance_s)
    ran_empty = sum(len(v) for v in _restores(run, ("delivery",)).values())
    return {**counts, "ran_empty": ran_empty}
