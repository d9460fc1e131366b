"""Contact streams: questions owners ask whatever their devices do, placed through the contact centre.

The rate and its profiles, the scenario section and its checks, the world placing the contacts (rate,
devices, channels, repeats, abandonment, keyed draws that shift nothing else), the engine answering
them without a case, and the KPIs that count them apart.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from contracts import Contact, Kind, Topics, decode
from contracts.engine_config import EngineConfig, IssueType
from sim.contact_streams import Rate
from sim.kpis import compute_kpis
from sim.scenario import Scenario
from sim.scenario_file import load, validate_data, with_overrides
from sim.world import World
from support_engine.core.actions import CaseChanged, CreateWorkOrder, Notify
from support_engine.core.engine import Engine

HOUR = 3600.0
DAY = 24 * HOUR
WEEK = 7 * DAY
TOPICS = Topics()
ROOT = Path(__file__).resolve().parents[2]
OFFICE_HOURS = [0.0] * 8 + [1.0] * 10 + [0.0] * 6  # 08:00-18:00
WEEKDAYS = [1.0] * 5 + [0.0] * 2


def scenario(streams: dict[str, Any], *, fleet: dict[str, Any] | None = None, **top: Any) -> Scenario:
    data = {
        "name": "questions",
        "duration_days": 20,
        "seed": 5,
        "fleets": [
            {
                "name": "hub",
                "product": "home_hub",
                "count": 400,
                "telemetry_interval_s": 3600,
                "sensors": [{"name": "temp_c", "baseline": 20.0}],
                "contact_streams": streams,
                **(fleet or {}),
            }
        ],
        "contact_centre": {"agents": 3, "handle_time_s": {"dist": "exponential", "mean": 300}},
        "technicians": {"count": 1},
        **top,
    }
    result, problems = validate_data(data)
    assert result is not None, problems
    return result


def problems_of(streams: dict[str, Any], **top: Any) -> list[str]:
    data = {
        "name": "questions",
        "duration_days": 20,
        "fleets": [
            {
                "name": "hub",
                "product": "home_hub",
                "count": 10,
                "sensors": [{"name": "temp_c", "baseline": 20.0}],
                "contact_streams": streams,
            }
        ],
        "contact_centre": {"agents": 1},
        "technicians": {"count": 1},
        **top,
    }
    _, problems = validate_data(data)
    return [str(p) for p in problems]


def run_world(s: Scenario) -> tuple[World, list[Contact]]:
    world = World(s)
    out = world.advance(s.duration_s)
    contacts = [decode(Kind.CONTACT, p) for t, p in out if TOPICS.parse(t).kind is Kind.CONTACT]
    return world, [c for c in contacts if isinstance(c, Contact)]


def within_poisson(count: int, expected: float, z: float = 4.0) -> bool:
    return abs(count - expected) <= z * math.sqrt(expected)


# -- the rate ------------------------------------------------------------------------------------


def test_a_constant_rate_expects_rate_times_time_and_inverts_it() -> None:
    rate = Rate(0.01)
    assert rate.expected(5000.0) == pytest.approx(50.0)
    assert rate.next_arrival(100.0, 2.0) == pytest.approx(300.0)


def test_profiles_keep_the_mean_rate_and_put_no_arrival_in_an_hour_of_weight_zero() -> None:
    rate = Rate(0.01, OFFICE_HOURS, WEEKDAYS)
    assert rate.expected(WEEK) == pytest.approx(0.01 * WEEK)  # per_device_day stays the mean
    assert rate.at(3 * HOUR) == 0.0 and rate.at(6 * DAY + 12 * HOUR) == 0.0  # night, Sunday
    assert rate.at(12 * HOUR) == pytest.approx(0.01 * (24 / 10) * (7 / 5))
    # a Friday evening arrival is on Monday morning
    assert rate.next_arrival(4 * DAY + 18 * HOUR, 1e-9) == pytest.approx(WEEK + 8 * HOUR, abs=1e-3)


@given(t=st.floats(0.0, 10 * WEEK), mass=st.floats(1e-6, 50.0))
def test_next_arrival_inverts_the_cumulative_rate(t: float, mass: float) -> None:
    rate = Rate(1e-3, [float(h % 5) for h in range(24)], [1.0, 2.0, 0.0, 1.0, 1.0, 0.5, 0.0])
    after = rate.next_arrival(t, mass)
    assert after >= t
    assert rate.expected(after) - rate.expected(t) == pytest.approx(mass, rel=1e-9, abs=1e-9)
    assert rate.at(after) > 0 or rate.at(after - 1e-6) > 0  # never inside an hour without arrivals


# -- the scenario section ------------------------------------------------------------------------


def test_a_stream_is_validated_with_its_path() -> None:
    assert problems_of({"how_to": {"per_device_day": -1}}) == [
        "fleets[0].contact_streams.how_to.per_device_day: must be >= 0"
    ]
    assert problems_of({"how_to": {"per_device_day": 0.1, "daily_profile": [1.0] * 23}}) == [
        "fleets[0].contact_streams.how_to.daily_profile: must have at least 24 item(s)"
    ]
    (zero,) = problems_of({"how_to": {"per_device_day": 0.1, "weekly_profile": [0.0] * 7}})
    assert zero.startswith("fleets[0].contact_streams.how_to") and "more than 0" in zero
    (skill,) = problems_of(
        {"billing": {"per_device_day": 0.1, "skill": "billing"}},
        contact_centre={"groups": [{"name": "tech", "agents": 2, "skills": ["general"]}]},
    )
    assert skill == "fleets[0].contact_streams.billing.skill: no agent group serves skill 'billing'"


def test_a_products_streams_reach_its_fleets_and_a_fleets_own_replace_them() -> None:
    product = {
        "sensors": [{"name": "temp_c", "baseline": 20.0}],
        "contact_streams": {"set_up": {"per_device_day": 0.01}, "billing": {"per_device_day": 0.002}},
    }
    base = {"name": "t", "duration_days": 1, "contact_centre": {"agents": 1}, "technicians": {"count": 1}}
    fleets = [
        {"name": "a", "product": "hub", "count": 5},
        {"name": "b", "product": "hub", "count": 5, "contact_streams": {"how_to": {"per_device_day": 0.5}}},
    ]
    s, problems = validate_data({**base, "products": {"hub": product}, "fleets": fleets})
    assert s is not None, problems
    assert sorted(s.fleets[0].contact_streams) == ["billing", "set_up"]
    assert sorted(s.fleets[1].contact_streams) == ["how_to"]


def test_the_committed_mmc_scenario_is_a_pure_contact_stream() -> None:
    s = load(ROOT / "scenarios" / "contact_centre_mmc.yaml")
    (fleet,) = s.fleets
    assert fleet.failure_modes == [] and fleet.consumables == [] and s.technicians.count == 0
    assert list(fleet.contact_streams) == ["how_to"] and fleet.owners.patience_s is None


# -- the world placing them ----------------------------------------------------------------------


def test_contacts_arrive_at_the_rate_on_random_devices_and_reach_support_with_their_reason() -> None:
    s = scenario({"how_to": {"per_device_day": 0.05}, "billing": {"per_device_day": 0.02, "channels": {"chat": 1}}})
    world, contacts = run_world(s)
    by_reason = {r: [e for e in world.records.enquiries if e.reason == r] for r in ("how_to", "billing")}
    assert within_poisson(len(by_reason["how_to"]), 400 * 0.05 * 20)
    assert within_poisson(len(by_reason["billing"]), 400 * 0.02 * 20)
    assert {e.channel for e in by_reason["billing"]} == {"chat"}
    assert {e.channel for e in by_reason["how_to"]} <= {"app", "phone", "chat"}  # the owners' own channels
    assert world.records.failures == [] and world.records.incidents == []  # questions are not faults
    devices = [int(e.device_id.rsplit("-", 1)[1]) for e in world.records.enquiries]
    assert stats.kstest(np.array(devices) + 0.5, stats.uniform(0, 400).cdf).pvalue > 1e-3
    answered = [e for e in world.records.enquiries if e.answered and e.resolved is not None]
    assert len(contacts) == len(answered)
    assert all(c.reason == c.symptom and c.reason in ("how_to", "billing") and c.resolved for c in contacts)
    assert all(not c.about_a_fault for c in contacts)
    assert len({c.contact_id for c in contacts}) == len(contacts)


def test_a_daily_profile_puts_the_contacts_in_office_hours() -> None:
    s = scenario({"how_to": {"per_device_day": 0.05, "daily_profile": OFFICE_HOURS}})
    world, _ = run_world(s)
    hours = [e.arrived_s % DAY / HOUR for e in world.records.enquiries]
    assert hours and all(8.0 <= h < 18.0 for h in hours)
    assert within_poisson(len(hours), 400 * 0.05 * 20)


def test_a_question_not_settled_or_given_up_on_brings_the_owner_back() -> None:
    s = scenario(
        {"how_to": {"per_device_day": 0.2, "first_contact_resolution": 0.6}},
        fleet={
            "owners": {"patience_s": {"dist": "exponential", "mean": 60}, "recontact_h": {"dist": "fixed", "value": 2}}
        },
        contact_centre={"agents": 1, "handle_time_s": {"dist": "exponential", "mean": 600}},
    )
    world, _ = run_world(s)
    enquiries = world.records.enquiries
    first = [e for e in enquiries if e.attempt == 0 and e.answered and e.resolved is not None]
    settled = sum(e.resolved is True for e in first) / len(first)
    assert abs(settled - 0.6) <= 4 * math.sqrt(0.24 / len(first))
    gave_up = [e for e in enquiries if e.abandoned]
    assert gave_up and all(not e.answered and e.resolved is None for e in gave_up)
    again = [e for e in enquiries if e.attempt > 0]
    # a first contact not settled, or given up on, is followed by another (unless the run ended first)
    unsettled = sum(1 for e in enquiries if e.attempt == 0 and (e.abandoned or e.resolved is False))
    assert 0.9 * unsettled <= sum(1 for e in again if e.attempt == 1) <= unsettled
    assert max(e.attempt for e in enquiries) <= 4  # five contacts about one matter at most
    kinds = {kind for _, actor, kind, *_ in world.records.events if actor == "owner"}
    assert {"enquiry", "enquiry_abandoned"} <= kinds


def test_a_stream_shifts_no_other_random_number_of_the_run() -> None:
    base = load(ROOT / "scenarios" / "freezers.yaml")
    quiet = msgspec.to_builtins(msgspec.structs.replace(base.contact_centre, first_contact_resolution=0.0))
    plain = with_overrides(base, duration_days=20, contact_centre=quiet)
    fleet = msgspec.to_builtins(base.fleets[0])
    fleet["contact_streams"] = {"billing": {"per_device_day": 0.01}}
    streamed = with_overrides(plain, fleets=[fleet])
    a, b = World(plain), World(streamed)
    out_a, out_b = a.advance(plain.duration_s), b.advance(streamed.duration_s)
    truth = [(f.device_id, f.mode, f.onset_s) for f in a.records.failures]
    assert truth and truth == [(f.device_id, f.mode, f.onset_s) for f in b.records.failures]
    batches = [p for t, p in out_a if TOPICS.parse(t).kind is Kind.BATCH]
    assert batches == [p for t, p in out_b if TOPICS.parse(t).kind is Kind.BATCH]
    assert b.records.enquiries and not a.records.enquiries


def test_the_same_seed_gives_the_same_contacts() -> None:
    s = scenario({"how_to": {"per_device_day": 0.05}})
    (_, first), (_, again) = run_world(s), run_world(s)
    assert first == again


# -- the engine answering them -------------------------------------------------------------------


def engine() -> Engine:
    return Engine(
        EngineConfig(
            issues={"cooling": IssueType(skill="refrigeration")}, symptoms={"warm": "cooling"}, default_issue="cooling"
        )
    )


def question(n: int, *, resolved: bool = True, device: str = "hub-1", reason: str = "billing") -> Contact:
    return Contact(
        contact_id=f"enquiry-{n}",
        owner_id="owner-1",
        device_id=device,
        channel="phone",
        ts=100.0 * n,
        symptom=reason,
        reason=reason,
        resolved=resolved,
    )


def test_a_question_opens_no_case_and_sends_nobody() -> None:
    e = engine()
    for n, resolved in enumerate([True, False], start=1):
        assert e.handle(question(n, resolved=resolved), 100.0 * n) == []
    assert e.cases == {} and e.work_orders == {} and e.stats["contacts"] == 2
    assert e.stats["cases_opened"] == 0 and e.stats["work_orders"] == 0


def test_a_question_leaves_the_devices_open_fault_case_as_it_is() -> None:
    e = engine()
    fault = Contact(contact_id="c1", owner_id="owner-1", device_id="hub-1", channel="app", ts=0.0, symptom="warm")
    opened = e.handle(fault, 0.0)
    assert len([a for a in opened if isinstance(a, CreateWorkOrder)]) == 1
    (case,) = e.cases.values()
    before = msgspec.to_builtins(case)
    assert e.handle(question(2, resolved=True), 200.0) == []  # "resolved" settles the question, not the fault
    assert msgspec.to_builtins(case) == before and case.state == "in_progress"
    assert e.stats["contacts_joined"] == 0 and e.stats["resolved_on_contact"] == 0
    assert not [a for a in e.handle(question(3), 300.0) if isinstance(a, CaseChanged | Notify)]


# -- KPIs ------------------------------------------------------------------------------------------


def test_kpis_count_the_questions_apart_by_reason_and_leave_other_results_alone() -> None:
    s = scenario(
        {"how_to": {"per_device_day": 0.05}, "billing": {"per_device_day": 0.01}},
        fleet={"owners": {"patience_s": None}},
        warmup_days=2,
    )
    world, _ = run_world(s)
    kpis = compute_kpis(s, world.records, {}, s.duration_s, world.summary())
    block = kpis["contact_streams"]
    assert set(block["by_reason"]) == {"billing", "how_to"}
    counted = [e for e in world.records.enquiries if e.arrived_s >= 2 * DAY and e.answered]
    assert block["contacts"] == len(counted) == sum(r["contacts"] for r in block["by_reason"].values())
    assert block["contacts_per_1000_devices"] == pytest.approx(1000 * len(counted) / 400, abs=1e-6)
    assert block["by_reason"]["how_to"]["contacts"] > 3 * block["by_reason"]["billing"]["contacts"]
    waits = [e.wait_s for e in counted]
    assert block["asa_s"] == pytest.approx(np.mean(waits), abs=1e-6)
    assert block["p_wait"] == pytest.approx(np.mean([w > 0 for w in waits]), abs=1e-6)
    assert block["abandoned"] == 0 and block["settled_first_contact_rate"] == 1.0
    assert kpis["contacts_per_1000_devices"] == 0.0  # the fault contacts' KPI is about faults only
    plain = load(ROOT / "scenarios" / "freezers.yaml")
    w = World(with_overrides(plain, duration_days=2))
    w.advance(2 * DAY)
    assert "contact_streams" not in compute_kpis(w.scenario, w.records, {}, 2 * DAY, w.summary())
