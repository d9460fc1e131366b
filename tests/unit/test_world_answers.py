"""A device answers a remote fix with what really happened: fixed, not fixed, or no fault to fix.

A defrost-like mode drifts for five days before it fails (every life between day 10 and day 12),
and a reset clears it, failed or still drifting, with its success probability."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from contracts import Command, DeviceEvent, Kind, Notification, Topics, decode
from sim.scenario import Scenario
from sim.scenario_file import validate_data
from sim.streams import Stream
from sim.world import World

DAY = 86400.0
TOPICS = Topics()
COUNT = 200


def drifting(success: float, **mode: Any) -> Scenario:
    defrost = {
        "name": "defrost",
        "life_days": {"dist": "uniform", "low": 10, "high": 12},
        "severity": "degraded",
        "symptom": "iced_up",
        "precursor": {"sensor": "defrost_min", "lead_time_days": 5, "delta": 25.0},
        "remote_fix": {"action": "reset", "success": success},
        **mode,
    }
    quiet = {"dist": "fixed", "value": 10000}  # owners never notice within the run: only the commands act
    data = {
        "name": "answers",
        "duration_days": 20,
        "seed": 3,
        "fleets": [
            {
                "name": "fz",
                "product": "iced_box",
                "count": COUNT,
                "telemetry_interval_s": 3600,
                "sensors": [{"name": "defrost_min", "baseline": 20.0}],
                "failure_modes": [defrost],
                "owners": {"notice_delay_h": {"down": quiet, "degraded": quiet}},
            }
        ],
        "contact_centre": {"agents": 1},
        "technicians": {"count": 1},
        "engine": {"default_issue": "fix", "issues": {"fix": {"skill": "general"}}},
    }
    scenario, problems = validate_data(data)
    assert scenario is not None, problems
    return scenario


def reset_all(world: World, at: float) -> dict[str, str]:
    """Reset every device at ``at``; return each device's answer code."""
    world.advance(at)
    for i, device_id in enumerate(world.fleets[0].ids):
        world.deliver(Command(command_id=f"cmd-{i}", device_id=device_id, ts=at, action="reset"))
    answers: dict[str, str] = {}
    for topic, payload in world.advance(at + 1.0):
        kind = TOPICS.parse(topic).kind
        if kind is Kind.EVENT:
            event = decode(kind, payload)
            assert isinstance(event, DeviceEvent)
            if event.kind == "command_result":
                answers[event.device_id] = event.code
    assert len(answers) == COUNT
    return answers


def test_a_reset_to_a_device_with_nothing_failed_or_drifting_finds_no_fault_and_fixes_nothing() -> None:
    world = World(drifting(success=1.0))
    before = world.fleets[0].next_fail.copy()
    answers = reset_all(world, 1 * DAY)
    assert set(answers.values()) == {"no_fault"}
    assert world.records.failures == [] and not [e for e in world.records.events if e[2] == "prevented"]
    assert np.array_equal(world.fleets[0].next_fail, before)  # no life renewed: nothing was touched


def test_a_reset_clears_a_drifting_fault_with_its_probability_and_it_counts_as_prevented() -> None:
    world = World(drifting(success=0.5))
    fleet = world.fleets[0]
    would_fail = fleet.next_fail[0].copy()
    assert all(fleet.in_precursor(0, d, 8 * DAY) for d in range(COUNT))  # all drifting, none failed
    answers = reset_all(world, 8 * DAY)
    draws = Stream(world.seed, "remote").uniform(np.arange(COUNT), np.full(COUNT, 64))  # first command, mode 0
    cleared = {fleet.ids[d] for d in np.flatnonzero(draws < 0.5).tolist()}
    assert 70 < len(cleared) < 130
    assert {d for d, code in answers.items() if code == "fixed"} == cleared
    assert {d for d, code in answers.items() if code == "not_fixed"} == set(fleet.ids) - cleared
    prevented = {f.device_id: f for f in world.records.failures}
    assert set(prevented) == cleared
    for device_id, failure in prevented.items():
        d = world.index_of(device_id)
        assert failure.prevented and failure.fixed_by == "remote" and failure.restored_s == 8 * DAY
        assert failure.onset_s == would_fail[d] and fleet.next_fail[0, d] > would_fail[d]
    world.advance(13 * DAY)  # the ones not cleared fail as they would have
    failed = {f.device_id for f in world.records.failures if not f.prevented}
    assert failed == set(fleet.ids) - cleared


def test_a_failed_fault_the_reset_does_not_clear_answers_not_fixed() -> None:
    world = World(drifting(success=0.0))
    answers = reset_all(world, 13 * DAY)  # every device has failed by day 12
    assert set(answers.values()) == {"not_fixed"}
    assert len(world.records.failures) == COUNT
    assert all(not f.prevented and math.isnan(f.restored_s) for f in world.records.failures)
    assert world.fleets[0].failed.all()


def test_a_reset_that_fixes_a_failed_fault_answers_fixed() -> None:
    world = World(drifting(success=1.0))
    answers = reset_all(world, 13 * DAY)
    assert set(answers.values()) == {"fixed"}
    assert all(f.fixed_by == "remote" and f.restored_s == pytest.approx(13 * DAY) for f in world.records.failures)


def test_a_drifting_fault_another_command_fixes_is_a_fault_left() -> None:
    world = World(drifting(success=1.0, remote_fix={"action": "ota", "success": 1.0}))
    answers = reset_all(world, 8 * DAY)  # a reset cannot touch what an update fixes, and says so
    assert set(answers.values()) == {"not_fixed"} and world.records.failures == []


def resolved(device_id: str, n: int) -> Notification:
    return Notification(notification_id=f"n-{n}", device_id=device_id, ts=0.0, kind="resolved", case_id=f"c-{n}")


def test_a_resolved_notice_while_the_device_is_still_failed_is_premature_and_confirms_nothing() -> None:
    world = World(drifting(success=1.0))
    device = world.fleets[0].ids[0]
    reset_all(world, 13 * DAY)  # every device failed by day 12; the reset fixes it: restored, unconfirmed
    world.advance(26 * DAY)  # every life lasts 10 to 12 days: each device has failed again
    first, second = [i for i in world.records.incidents if i.device_id == device]
    assert first.restored_s == pytest.approx(13 * DAY) and math.isnan(second.restored_s)
    world.deliver(resolved(device, 1))
    assert math.isnan(first.confirmed_s)  # not the earlier incident's confirmation, 13 days late
    assert second.premature_resolved == 1 and math.isnan(second.confirmed_s)
    assert all(i.premature_resolved == 0 for i in world.records.incidents if i.device_id != device)
