"""The cost ledger of one run: what the service cost and earned, line by line, in total and per device-year.

Every line prices what the world recorded with the scenario's ``costs``: downtime by product, truck
rolls, technician time, agent time, parts, SLA penalties, revenue lost to churn, the proactive
service's own running cost, and, as revenue, the margin on refills delivered. Only what starts
after the warm-up (``RunData.start_s``) counts, and device-years are over that counted period, so
two policies compare per device-year whatever their run lengths. Definitions: docs/kpis.md, "Cost
ledger".
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import Any

from experiments.rundata import RunData, owner_contacts
from sim.contact_centre import SELF_SERVICE
from sim.records import Enquiry, Incident
from sim.scenario import Scenario

__all__ = ["LINES", "REVENUE_LINES", "agent_hours", "cost_ledger", "enquiry_hours", "sla_breaches"]

YEAR_S = 365.0 * 86400.0
LINES = (
    "downtime",
    "truck_rolls",
    "technician_time",
    "agent_time",
    "parts",
    "sla_penalties",
    "churn",
    "monitoring",
    "consumable_sales",
)
"""The ledger's lines, in the order a report prints them."""
REVENUE_LINES = frozenset({"consumable_sales"})
"""Lines that are earnings: ``total`` subtracts them."""


def _r(x: float) -> float:
    return round(float(x), 6)


def agent_hours(scenario: Scenario, channels: Counter[str]) -> float:
    """Expected agent hours of contacts counted by channel: the scenario's mean handling time for
    each channel (``handle_time_by_channel``, else ``handle_time_s``); self-service takes no agent.

    The world does not record each call's handling time, so this is its expectation.
    """
    centre = scenario.contact_centre
    by_channel = {str(c): d for c, d in centre.handle_time_by_channel.items()}
    seconds = sum(
        n * by_channel.get(channel, centre.handle_time_s).mean
        for channel, n in channels.items()
        if channel != SELF_SERVICE
    )
    return seconds / 3600.0


def enquiry_hours(scenario: Scenario, enquiries: list[Enquiry]) -> float:
    """Expected agent hours of contact-stream contacts: each one's stream's mean handling time (its
    ``handle_time_s``, else the centre's for the channel, as the world draws it); self-service takes none."""
    centre = scenario.contact_centre
    by_channel = {str(c): d for c, d in centre.handle_time_by_channel.items()}
    streams = {f.name: f.contact_streams for f in scenario.fleets}
    seconds = 0.0
    for e in enquiries:
        if e.channel == SELF_SERVICE:
            continue
        stream = streams.get(e.fleet, {}).get(e.reason)
        own = stream.handle_time_s if stream is not None else None
        seconds += (own if own is not None else by_channel.get(e.channel, centre.handle_time_s)).mean
    return seconds / 3600.0


def sla_breaches(run: RunData) -> tuple[int, int, str]:
    """(first-response, resolution) breaches to charge, and where they were counted.

    The engine records every clock it breached, once per (case, clock), with the time the clock passed
    its target (``EngineLog.sla_breaches``); those at or after ``start_s`` are charged, so a warm-up
    needs no recount. Without a warm-up they are the engine's counters (``kpis.sla_breaches``).
    """
    clocks = Counter(b.clock for b in run.engine.sla_breaches if b.ts >= run.start_s)
    return clocks["first_response"], clocks["resolution"], "engine sla_breaches"


def cost_ledger(run: RunData) -> dict[str, Any]:
    """Return the run's cost ledger: every line (0 when nothing happened), the sums and the net per device-year.

    ``total`` is the cost lines minus the revenue lines; per-device-year figures divide by the devices
    times the counted period (``start_s`` → ``end_s``) in years.
    """
    scenario, records, costs = run.scenario, run.records, run.scenario.costs
    start, end = run.start_s, run.end_s
    devices = scenario.device_count
    device_years = devices * max(0.0, end - start) / YEAR_S

    def per_year(amount: float) -> float:
        return _r(amount / device_years) if device_years > 0 else 0.0

    raw: dict[str, float] = {}  # unrounded amounts, so that the sums round once

    def line(amount: float, name: str, **items: Any) -> dict[str, Any]:
        raw[name] = amount
        kind = "revenue" if name in REVENUE_LINES else "cost"
        return {"kind": kind, **items, "amount": _r(amount), "per_device_year": per_year(amount)}

    incidents = [i for i in records.incidents if i.onset_s >= start]
    jobs = [j for j in records.jobs.values() if j.created_s >= start]
    fleets = {f.name: f for f in scenario.fleets}

    def span_h(i: Incident) -> float:
        return ((end if math.isnan(i.restored_s) else i.restored_s) - i.onset_s) / 3600.0

    by_product: dict[str, dict[str, float]] = defaultdict(lambda: {"down_h": 0.0, "degraded_h": 0.0, "amount": 0.0})
    for i in incidents:
        fleet = fleets.get(i.fleet)
        product = fleet.product if fleet is not None else i.fleet
        own = None if fleet is None else (fleet.downtime_per_hour if i.severity == "down" else fleet.degraded_per_hour)
        default = costs.downtime_per_hour if i.severity == "down" else costs.degraded_per_hour
        row = by_product[product]
        row["down_h" if i.severity == "down" else "degraded_h"] += span_h(i)
        row["amount"] += span_h(i) * (default if own is None else own)
    downtime = sum(row["amount"] for row in by_product.values())

    visits = sum(j.visits for j in jobs)
    labour_h = sum(j.labour_h for j in jobs)
    used = Counter(p for j in jobs for p in j.parts_used)
    part_amount = {p: n * costs.parts.get(p, 0.0) for p, n in used.items()}
    by_part = {
        p: {"count": n, "price": costs.parts.get(p, 0.0), "amount": _r(part_amount[p])} for p, n in sorted(used.items())
    }
    contacts = owner_contacts(run)
    channels = Counter(channel for _, _, channel in contacts)
    agent_h = agent_hours(scenario, channels)
    enquiries = [e for e in records.enquiries if e.answered and e.arrived_s >= start]  # questions, not faults
    enquiry_h = enquiry_hours(scenario, enquiries)
    first, resolution, counted_from = sla_breaches(run)
    churned = len({i.device_id for i in incidents if i.churned})
    charged = run.policy != "reactive"
    refills = Counter(
        detail
        for t, actor, kind, _, _, detail in records.events
        if actor == "courier" and kind == "delivered" and t >= start
    )
    margin = {c: n * costs.refill_margin.get(c, 0.0) for c, n in refills.items()}
    by_consumable = {
        c: {"count": n, "price": costs.refill_margin.get(c, 0.0), "amount": _r(margin[c])}
        for c, n in sorted(refills.items())
    }

    lines = {
        "downtime": line(
            downtime,
            "downtime",
            down_h=_r(sum(r["down_h"] for r in by_product.values())),
            degraded_h=_r(sum(r["degraded_h"] for r in by_product.values())),
            by_product={p: {k: _r(v) for k, v in row.items()} for p, row in sorted(by_product.items())},
        ),
        "truck_rolls": line(visits * costs.truck_roll, "truck_rolls", visits=visits, price=costs.truck_roll),
        "technician_time": line(
            labour_h * costs.labour_per_hour, "technician_time", labour_h=_r(labour_h), price=costs.labour_per_hour
        ),
        "agent_time": line(
            (len(contacts) + len(enquiries)) * costs.contact + (agent_h + enquiry_h) * costs.agent_per_hour,
            "agent_time",
            contacts=len(contacts),
            enquiries=len(enquiries),
            contact_price=costs.contact,
            agent_h=_r(agent_h),
            enquiry_agent_h=_r(enquiry_h),
            price=costs.agent_per_hour,
            by_channel=dict(sorted(channels.items())),
        ),
        "parts": line(sum(part_amount.values()), "parts", parts_used=sum(used.values()), by_part=by_part),
        "sla_penalties": line(
            (first + resolution) * costs.sla_penalty,
            "sla_penalties",
            breaches=first + resolution,
            first_response=first,
            resolution=resolution,
            counted_from=counted_from,
            price=costs.sla_penalty,
        ),
        "churn": line(churned * costs.churned_owner, "churn", churned_owners=churned, price=costs.churned_owner),
        "monitoring": line(
            device_years * costs.monitoring_per_device_year if charged else 0.0,
            "monitoring",
            charged=charged,
            device_years=_r(device_years if charged else 0.0),
            price=costs.monitoring_per_device_year,
        ),
        "consumable_sales": line(
            sum(margin.values()),
            "consumable_sales",
            refills=sum(refills.values()),
            by_consumable=by_consumable,
        ),
    }
    cost = sum(v for k, v in raw.items() if k not in REVENUE_LINES)
    revenue = sum(v for k, v in raw.items() if k in REVENUE_LINES)
    return {
        "currency": costs.currency,
        "policy": run.policy,
        "devices": devices,
        "start_s": _r(start),
        "end_s": _r(end),
        "device_years": _r(device_years),
        "lines": lines,
        "cost": _r(cost),
        "revenue": _r(revenue),
        "total": _r(cost - revenue),
        "cost_per_device_year": per_year(cost),
        "revenue_per_device_year": per_year(revenue),
        "net_per_device_year": per_year(cost - revenue),
        "per_device_year": {
            **{k: 0.0 - v["per_device_year"] if k in REVENUE_LINES else v["per_device_year"] for k, v in lines.items()},
            "net": per_year(cost - revenue),
        },
    }
