"""KPIs of a run, reduced from the world's records and the engine's counters.

Definitions follow docs/kpis.md: downtime counts incidents whose worst failure stopped the device;
MTTR is time to restore (failure onset to repaired); first-time fix counts jobs that found a fault
and closed at their first visit; detection before the owner means the engine told the owner before
the owner noticed (a failure prevented while it drifted counts when the engine told its owner
meanwhile); detection lead is the failure onset minus the engine first telling the owner
(positive: ahead of the failure). With a
warm-up (``start_s``) only what begins at or after it counts, over the counted period's device-years.
Preventive jobs (maintenance plans' visits) count in the truck rolls, work orders and costs, not in
first-time fix, and apart in ``maintenance`` when the scenario has plans.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from sim.contact_centre import SELF_SERVICE
from sim.records import POWER, Enquiry, Incident, Job, Records
from sim.scenario import Scenario

__all__ = ["FIXERS", "compute_kpis", "mode_names"]

DAY_S = 86400.0
REMOTE = ("remote", "agent", "ota", "delivery")  # restored without a technician's visit
FIXERS = ("technician", *REMOTE, "self")
"""What may restore an incident (``fixed_by``); ``restored_by`` lists each, 0 where none."""
T = TypeVar("T")


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _r(x: float) -> float:
    return round(float(x), 6)


def _clean(value: Any) -> Any:
    """Rounded numbers, and None where a ratio has nothing to divide (JSON has no NaN)."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, float):
        return None if not math.isfinite(value) else _r(value)
    return value


def mode_names(scenario: Scenario) -> list[str]:
    """Every failure mode of the scenario: the fleets' modes and consumables, and ``power_outage``
    when an outage cuts power; sorted."""
    names = {m.name for f in scenario.fleets for m in f.failure_modes}
    names |= {c.name for f in scenario.fleets for c in f.consumables}
    if any(o.power for o in scenario.outages):
        names.add(POWER)
    return sorted(names)


def _since(items: Iterable[T], when: Callable[[T], float], start_s: float) -> list[T]:
    """The items that begin at or after ``start_s`` (all of them without a warm-up)."""
    if start_s <= 0.0:
        return list(items)
    return [x for x in items if when(x) >= start_s]


def compute_kpis(
    scenario: Scenario,
    records: Records,
    engine_stats: Mapping[str, int],
    end_s: float,
    world: Mapping[str, Any] | None = None,
    *,
    start_s: float | None = None,
) -> dict[str, Any]:
    """Return the KPI block of ``result.json`` (keys as in docs/kpis.md).

    ``world`` holds the world's own figures (contact centre, field, depots) from ``World.summary``.
    ``start_s`` ends the warm-up (default: the scenario's ``warmup_days``): incidents, failures and
    link events from before it are left out, jobs created before it too, and device-years count
    the period from ``start_s`` to ``end_s``.
    """
    start_s = scenario.warmup_s if start_s is None else start_s
    if start_s < 0.0 or (start_s > 0.0 and start_s >= end_s):
        raise ValueError(f"start_s must be >= 0 and < end_s ({end_s:g}), not {start_s!r}")
    devices = scenario.device_count
    span_s = end_s - start_s
    device_years = devices * span_s / (365.0 * DAY_S)
    incidents = _since(records.incidents, lambda i: i.onset_s, start_s)
    all_failures = _since(records.failures, lambda f: f.onset_s, start_s)
    price = {f.name: (f.downtime_per_hour, f.degraded_per_hour) for f in scenario.fleets}

    def span_h(i: Incident) -> float:
        return ((end_s if math.isnan(i.restored_s) else i.restored_s) - i.onset_s) / 3600.0

    def hours(severity: str) -> float:
        return sum(span_h(i) for i in incidents if i.severity == severity)

    def hourly(i: Incident) -> float:
        down, degraded = price.get(i.fleet, (None, None))
        if i.severity == "down":
            return scenario.costs.downtime_per_hour if down is None else down
        return scenario.costs.degraded_per_hour if degraded is None else degraded

    down_h, degraded_h = hours("down"), hours("degraded")
    restored = [i for i in incidents if not math.isnan(i.restored_s)]
    due = [i for i in incidents if i.onset_s <= end_s - DAY_S]
    within_day = [i for i in due if not math.isnan(i.restored_s) and i.restored_s - i.onset_s <= DAY_S]
    jobs = _since(records.jobs.values(), lambda j: j.created_s, start_s)
    fault_jobs = [j for j in jobs if j.outcome in ("fixed", "part_missing")]
    visits = sum(j.visits for j in jobs)
    labour_h = sum(j.labour_h for j in jobs)
    contacts = sum(i.contacts for i in incidents)
    detected_first = [
        i
        for i in incidents
        if not math.isnan(i.informed_s) and (math.isnan(i.noticed_s) or i.informed_s <= i.noticed_s)
    ]
    prevented = [f for f in all_failures if f.prevented]  # caught while drifting: before any owner noticed
    # Only those whose owner the engine told before it would have failed: a reactive visit clearing a
    # drifting mode by chance, or an update removing it without a word, detected nothing.
    prevented_told = [f for f in prevented if math.isfinite(f.informed_s)]
    before_owner = len(incidents) + len(prevented)
    lead_h = [(f.onset_s - f.informed_s) / 3600.0 for f in all_failures if math.isfinite(f.informed_s)]
    costs = scenario.costs
    cost_downtime = sum(span_h(i) * hourly(i) for i in incidents)
    cost_field = visits * costs.truck_roll + labour_h * costs.labour_per_hour
    streams = _contact_streams(scenario, records, start_s) if any(f.contact_streams for f in scenario.fleets) else None
    cost_contact = (contacts + (streams["contacts"] if streams is not None else 0)) * costs.contact
    cost_parts = sum(costs.parts.get(p, 0.0) for j in jobs for p in j.parts_used)
    failures = [f for f in all_failures if not f.prevented]
    by_mode = Counter(dict.fromkeys(mode_names(scenario), 0))
    by_mode.update(f.mode for f in failures)
    fixed_by = Counter(dict.fromkeys(FIXERS, 0))
    fixed_by.update(i.fixed_by for i in restored)
    acted_on = [i for i in restored if i.fixed_by != "self"]  # what support fixed (not power coming back)
    respond_h = [(i.informed_s - i.onset_s) / 3600.0 for i in incidents if not math.isnan(i.informed_s)]
    link = Counter(kind for _, _, kind, _ in _since(records.link, lambda row: row[0], start_s))
    world = world or {}
    kpis: dict[str, Any] = {
        "devices": devices,
        "failures": len(failures),
        "prevented_failures": len(prevented),
        "incidents": len(incidents),
        "downtime_hours_per_device_year": _r(down_h / device_years if device_years else 0.0),
        "degraded_hours_per_device_year": _r(degraded_h / device_years if device_years else 0.0),
        "mttr_hours": _r(_mean([(i.restored_s - i.onset_s) / 3600.0 for i in restored])),
        "first_time_fix_rate": _r(
            _mean([1.0 if j.visits == 1 and not j.second_visit_causes else 0.0 for j in fault_jobs])
        ),
        "resolved_within_day_rate": _r(len(within_day) / len(due) if due else 0.0),
        "truck_rolls_per_1000_devices": _r(1000.0 * visits / devices),
        "remote_resolution_rate": _r(_mean([1.0 if i.fixed_by in REMOTE else 0.0 for i in acted_on])),
        "detected_before_owner_rate": _r(
            (len(detected_first) + len(prevented_told)) / before_owner if before_owner else 0.0
        ),
        "detection_lead_hours_mean": _r(_mean(lead_h)),
        "contacts_per_1000_devices": _r(1000.0 * contacts / devices),
        "contact_wait_s_mean": _r(_mean(records.contact_waits_s)),
        "owner_effort_steps_mean": _r(_mean([float(i.effort_steps) for i in incidents])),
        "sla_breaches": int(engine_stats.get("sla_breaches", 0)),
        "churned_owners": len({i.device_id for i in incidents if i.churned}),
        "work_orders": len(jobs),
        "availability": _r(1.0 - down_h / (devices * span_s / 3600.0) if devices and span_s else 1.0),
        "failures_per_device_year": _r(len(failures) / device_years if device_years else 0.0),
        "failures_by_mode": dict(sorted(by_mode.items())),  # every mode of the scenario, 0 where none
        "time_to_respond_hours_mean": _r(max(0.0, _mean(respond_h))),
        "restored_by": dict(sorted(fixed_by.items())),  # every standard fixer, 0 where none
        "abandoned_calls": sum(i.abandoned for i in incidents),
        "connectivity": {
            "offline_spells": link["offline"],
            "late_batches": link["late"],
            "duplicated_batches": link["duplicate"],
            "outages": link["outage"],
            "readings_dropped_at_source": int(world.get("readings_dropped_at_source", 0)),
        },
        "contact_centre": world.get("contact_centre", {}),
        "field": world.get("field", {}),
        "parts": world.get("depots", {}),
        "cost": {
            "downtime": _r(cost_downtime),
            "field": _r(cost_field),
            "contact_centre": _r(cost_contact),
            "parts": _r(cost_parts),
            "total": _r(cost_downtime + cost_field + cost_contact + cost_parts),
        },
    }
    if scenario.engine.maintenance:  # only where plans are configured: other results keep their keys
        kpis["maintenance"] = _maintenance(scenario, jobs)
    if streams is not None:  # only where a fleet has contact streams, likewise
        kpis["contact_streams"] = streams
    return {k: _clean(v) for k, v in kpis.items()}


def _maintenance(scenario: Scenario, jobs: list[Job]) -> dict[str, Any]:
    """Preventive work apart from corrective: work orders, visits (truck rolls), modes serviced, cost."""
    devices, costs = scenario.device_count, scenario.costs
    preventive = [j for j in jobs if j.kind == "preventive"]
    visits = sum(j.visits for j in preventive)
    corrective = sum(j.visits for j in jobs if j.kind != "preventive")
    labour_h = sum(j.labour_h for j in preventive)
    parts = sum(costs.parts.get(p, 0.0) for j in preventive for p in j.parts_used)
    serviced = Counter(m for j in preventive for m in j.serviced)
    return {
        "work_orders": len(preventive),
        "visits": visits,
        "truck_rolls_per_1000_devices": _r(1000.0 * visits / devices),
        "corrective_truck_rolls_per_1000_devices": _r(1000.0 * corrective / devices),
        "serviced": dict(sorted(serviced.items())),
        "outcomes": dict(sorted(Counter(j.outcome for j in preventive).items())),
        "labour_hours": _r(labour_h),
        "cost": _r(visits * costs.truck_roll + labour_h * costs.labour_per_hour + parts),
    }


def _contact_streams(scenario: Scenario, records: Records, start_s: float) -> dict[str, Any]:
    """Contacts of the contact streams (questions, not faults), in all and by reason."""
    enquiries = _since(records.enquiries, lambda e: e.arrived_s, start_s)
    devices, level = scenario.device_count, scenario.contact_centre.service_level_s
    reasons = sorted({reason for f in scenario.fleets for reason in f.contact_streams})
    by_reason = {r: _enquiry_figures([e for e in enquiries if e.reason == r], devices, level) for r in reasons}
    return {**_enquiry_figures(enquiries, devices, level), "by_reason": by_reason}


def _enquiry_figures(enquiries: list[Enquiry], devices: int, service_level_s: float) -> dict[str, Any]:
    """Contacts answered, calls given up, waits of the calls to agents, and first-contact settlement."""
    answered = [e for e in enquiries if e.answered]
    ended = [e for e in enquiries if e.channel != SELF_SERVICE and (e.answered or e.abandoned)]  # needed an agent
    taken = [e for e in ended if e.answered]
    first = [e for e in answered if e.attempt == 0 and e.resolved is not None]
    within = sum(1 for e in taken if e.wait_s <= service_level_s)
    return {
        "contacts": len(answered),
        "contacts_per_1000_devices": _r(1000.0 * len(answered) / devices),
        "repeat_contacts": sum(1 for e in answered if e.attempt > 0),
        "abandoned": len(ended) - len(taken),
        "asa_s": _r(_mean([e.wait_s for e in taken])),
        "p_wait": _r(_mean([1.0 if e.wait_s > 0 else 0.0 for e in taken])),
        "service_level": _r(within / len(ended) if ended else 0.0),
        "settled_first_contact_rate": _r(_mean([1.0 if e.resolved else 0.0 for e in first])),
    }
