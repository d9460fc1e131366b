"""Owners behave plausibly when their device is fixed remotely while they are trying to reach support.

Thirty screens freeze at once; each owner notices within minutes and phones a centre with one
agent, so one owner is on the call and 29 wait. A reset then fixes every screen and the engine tells
each owner it is resolved: those in the queue leave it (not an abandoned call), and the one on the
call describes what they saw, not ``other``, and is not "fixed on the call"."""

from __future__ import annotations

import math

from contracts import Command, Contact, Kind, Notification, Topics, decode
from sim.scenario import Scenario
from sim.scenario_file import validate_data
from sim.world import World

DAY = 86400.0
COUNT = 30
TOPICS = Topics()


def frozen_screens() -> Scenario:
    minutes = {"dist": "fixed", "value": 0.1}
    data = {
        "name": "frozen",
        "duration_days": 3,
        "seed": 5,
        "fleets": [
            {
                "name": "tv",
                "product": "screen",
                "count": COUNT,
                "telemetry_interval_s": 3600,
                "sensors": [{"name": "cpu", "baseline": 0.2}],
                "failure_modes": [
                    {
                        "name": "hang",
                        "life_days": {"dist": "fixed", "value": 1.0},
                        "severity": "down",
                        "symptom": "screen_frozen",
                        "remote_fix": {"action": "reset", "success": 1.0},
                    }
                ],
                "owners": {
                    "notice_delay_h": {"down": minutes, "degraded": minutes},
                    "channels": {"phone": 1.0},
                    "patience_s": None,
                    "recontact_h": {"dist": "fixed", "value": 1000.0},
                },
            }
        ],
        "contact_centre": {"agents": 1, "handle_time_s": {"dist": "fixed", "value": 1800}},
        "technicians": {"count": 1},
        "engine": {"symptoms": {"screen_frozen": "hang"}, "issues": {"hang": {"skill": "general", "remote": "reset"}}},
    }
    scenario, problems = validate_data(data)
    assert scenario is not None, problems
    return scenario


def contacts(messages: list[tuple[str, bytes]]) -> list[Contact]:
    out = []
    for topic, payload in messages:
        kind = TOPICS.parse(topic).kind
        if kind is Kind.CONTACT:
            message = decode(kind, payload)
            assert isinstance(message, Contact)
            out.append(message)
    return out


def fix_all_and_tell(world: World, at: float) -> list[Contact]:
    """Reset every screen at ``at`` and tell each owner it is resolved; the contacts until day 2."""
    seen = contacts(world.advance(at))
    ids = world.fleets[0].ids
    for i, device_id in enumerate(ids):
        world.deliver(Command(command_id=f"cmd-{i}", device_id=device_id, ts=at, action="reset"))
    seen += contacts(world.advance(at + 1.0))
    for i, device_id in enumerate(ids):
        world.deliver(Notification(notification_id=f"n-{i}", device_id=device_id, ts=at + 1.0, kind="resolved"))
    return seen + contacts(world.advance(2 * DAY))


def test_owners_in_the_queue_leave_it_when_told_and_the_caller_describes_what_they_saw() -> None:
    world = World(frozen_screens())
    seen = fix_all_and_tell(world, DAY + 1200.0)  # noticed at 1 d + 6 min; one call answered, 29 waiting
    assert [(c.symptom, c.resolved) for c in seen] == [("screen_frozen", False)]
    events = world.records.events
    assert sum(1 for e in events if e[1:3] == ("owner", "withdrew")) == COUNT - 1
    assert not any(e[1:3] == ("owner", "abandoned") for e in events)
    incidents = world.records.incidents
    assert len(incidents) == COUNT and all(not math.isnan(i.restored_s) for i in incidents)
    assert sum(i.contacts for i in incidents) == 1 and sum(i.abandoned for i in incidents) == 0
    assert all(i.symptom == "screen_frozen" for i in incidents)
    centre = world.contact_centre.summary(world.now)
    assert (centre["withdrawn"], centre["abandoned"], centre["answered"]) == (COUNT - 1, 0, 1)


def test_without_the_notice_the_owners_stay_on_hold_and_no_one_reports_other() -> None:
    """Fixed but not told: every owner still gets through; each describes the fault they noticed."""
    world = World(frozen_screens())
    seen = contacts(world.advance(DAY + 1200.0))
    for i, device_id in enumerate(world.fleets[0].ids):
        world.deliver(Command(command_id=f"cmd-{i}", device_id=device_id, ts=DAY + 1200.0, action="reset"))
    seen += contacts(world.advance(2 * DAY))  # 30 calls of 30 min: all answered by then, before the next failure
    assert len(seen) == COUNT
    assert {c.symptom for c in seen} == {"screen_frozen"} and not any(c.resolved for c in seen)
    assert not any(e[1:3] == ("owner", "withdrew") for e in world.records.events)
