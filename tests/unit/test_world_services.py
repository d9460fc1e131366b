"""The world answering the engine: remote resets and updates, deliveries, agents fixing on the call,
devices reporting their own faults, power that comes back, outages and the reconnect storm."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from contracts import (
    BatchView,
    Command,
    ConsumableOrder,
    Contact,
    DeviceEvent,
    Kind,
    Message,
    Topics,
    decode,
    decode_batch,
)
from sim.scenario import Scenario
from sim.scenario_file import validate_data
from sim.world import World

DAY = 86400.0
HOUR = 3600.0
TOPICS = Topics()


def scenario(fleet: dict[str, Any], **top: Any) -> Scenario:
    base_fleet = {
        "name": "w",
        "product": "widget",
        "count": 50,
        "telemetry_interval_s": 900,
        "sensors": [{"name": "temp_c", "baseline": 20.0}],
    }
    data = {
        "name": "services",
        "duration_days": 30,
        "fleets": [{**base_fleet, **fleet}],
        "contact_centre": {"agents": 2},
        "technicians": {"count": 2},
        "engine": {"default_issue": "fix", "issues": {"fix": {"skill": "general"}}},
        **top,
    }
    result, problems = validate_data(data)
    assert result is not None, problems
    return result


def decoded(out: list[tuple[str, bytes]]) -> list[Message | BatchView]:
    messages: list[Message | BatchView] = []
    for topic, payload in out:
        kind, key, _ = TOPICS.parse(topic)
        messages.append(decode_batch(payload, key=key) if kind is Kind.BATCH else decode(kind, payload, key=key))
    return messages


def events(out: list[tuple[str, bytes]], kind: str | None = None) -> list[DeviceEvent]:
    return [m for m in decoded(out) if isinstance(m, DeviceEvent) and (kind is None or m.kind == kind)]


def jam(**extra: Any) -> dict[str, Any]:
    return {
        "name": "jam",
        "life_days": {"dist": "exponential", "mean": 5},
        "symptom": "jammed",
        "remote_fix": {"action": "reset"},
        **extra,
    }


def first_failed(world: World, mode: str) -> tuple[int, str]:
    failure = next(f for f in world.records.failures if f.mode == mode)
    return world.index_of(failure.device_id), failure.device_id


def command(device_id: str, action: str, version: str | None = None) -> Command:
    return Command(command_id="cmd-1", device_id=device_id, ts=0.0, action=action, version=version)  # type: ignore[arg-type]


def test_a_remote_reset_fixes_a_remotely_fixable_failure_and_reports_it() -> None:
    world = World(
        scenario(
            {
                "failure_modes": [jam()],
                "owners": {
                    "notice_delay_h": {
                        "down": {"dist": "fixed", "value": 1000},
                        "degraded": {"dist": "fixed", "value": 1000},
                    }
                },
            }
        )
    )
    world.advance(2 * DAY)
    device, device_id = first_failed(world, "jam")
    world.deliver(command(device_id, "reset"))
    out = world.advance(2 * DAY + 1)
    result = [e for e in events(out, "command_result") if e.device_id == device_id]
    assert result[0].code == "fixed" and result[0].command_id == "cmd-1"
    failure = next(f for f in world.records.failures if f.device_id == device_id)
    assert failure.fixed_by == "remote" and failure.restored_s == pytest.approx(2 * DAY)
    assert not world.fleet_of(device).is_failed(device)


def test_a_reset_does_not_fix_what_needs_a_part() -> None:
    broken = {
        "name": "motor",
        "life_days": {"dist": "exponential", "mean": 5},
        "symptom": "dead",
        "repair": {"part": "motor"},
    }
    world = World(scenario({"failure_modes": [broken]}))
    world.advance(3 * DAY)
    _, device_id = first_failed(world, "motor")
    world.deliver(command(device_id, "reset"))
    result = [e for e in events(world.advance(3 * DAY + 1), "command_result") if e.device_id == device_id]
    assert result[0].code == "not_fixed"


def test_an_ota_removes_a_firmware_bug_for_good_and_reports_the_new_version() -> None:
    bug = {
        "name": "bug",
        "life_days": {"dist": "exponential", "mean": 2},
        "symptom": "crash",
        "firmware": ["1.0"],
        "remote_fix": {"action": "ota"},
    }
    world = World(scenario({"failure_modes": [bug], "firmware": {"1.0": 1.0}}))
    world.advance(2 * DAY)
    device, device_id = first_failed(world, "bug")
    world.deliver(command(device_id, "ota", "1.1"))
    out = world.advance(2 * DAY + 1)
    assert [e.code for e in events(out, "firmware") if e.device_id == device_id] == ["1.1"]
    assert [e.code for e in events(out, "command_result") if e.device_id == device_id] == ["fixed"]
    world.advance(30 * DAY)
    assert sum(f.device_id == device_id for f in world.records.failures) == 1  # never again
    assert world.fleet_of(device).version_of(device) == "1.1"


def test_a_device_reports_its_own_fault_code_when_it_fails() -> None:
    world = World(scenario({"failure_modes": [jam(fault_code="E42")]}))
    out = world.advance(3 * DAY)
    faults = events(out, "fault")
    failures = [f for f in world.records.failures if f.onset_s <= 3 * DAY]
    assert faults and all(e.code == "E42" for e in faults)
    assert len(faults) == len(failures)


def test_power_loss_comes_back_on_its_own() -> None:
    outage = {
        "name": "power",
        "life_days": {"dist": "exponential", "mean": 5},
        "symptom": "dark",
        "self_restore_h": {"dist": "fixed", "value": 3},
    }
    world = World(scenario({"failure_modes": [outage]}))
    world.advance(10 * DAY)
    done = [f for f in world.records.failures if f.onset_s < 9 * DAY]
    assert done and all(f.fixed_by == "self" and f.restored_s - f.onset_s == pytest.approx(3 * HOUR) for f in done)


def ink(**extra: Any) -> dict[str, Any]:
    return {
        "name": "ink",
        "sensor": "ink_pct",
        "drain_per_day": {"dist": "fixed", "value": 10},
        "start_fraction": {"dist": "fixed", "value": 0.5},
        "symptom": "no_ink",
        "delivery_h": {"dist": "fixed", "value": 24},
        **extra,
    }


def test_an_ordered_refill_arrives_after_its_lead_time_and_refills_the_device() -> None:
    world = World(scenario({"consumables": [ink()]}))
    out = world.advance(4 * DAY)
    lows = events(out, "consumable_low")
    assert len(lows) == 50 and {e.code for e in lows} == {"ink"}  # 50 % at 10 %/day: below 15 % on day 3.5
    world.deliver(ConsumableOrder(order_id="o-1", device_id="w-000003", ts=4 * DAY, consumable="ink", quantity=1))
    world.advance(5 * DAY - 1)
    assert world.fleet_of(3).levels(world.now)[0, 3] < 0.01  # nearly empty, the refill still on its way
    out = world.advance(5 * DAY + 1)
    refills = [e for e in events(out, "consumable_refilled") if e.device_id == "w-000003"]
    assert refills and refills[0].ts == pytest.approx(5 * DAY)
    assert world.fleet_of(3).levels(5 * DAY + 1)[0, 3] == pytest.approx(100.0, abs=0.01)


def test_a_device_that_runs_empty_is_down_until_the_refill_and_the_delivery_restores_it() -> None:
    world = World(scenario({"consumables": [ink()]}))
    world.advance(6 * DAY)  # empty on day 5
    incident = next(i for i in world.records.incidents if i.device_id == "w-000000")
    assert incident.onset_s == pytest.approx(5 * DAY) and math.isnan(incident.restored_s)
    world.deliver(ConsumableOrder(order_id="o-2", device_id="w-000000", ts=6 * DAY, consumable="ink", quantity=1))
    world.advance(8 * DAY)
    assert incident.restored_s == pytest.approx(7 * DAY) and incident.fixed_by == "delivery"


def test_an_agent_fixes_a_remotely_fixable_problem_on_the_call() -> None:
    fleet = {
        "failure_modes": [jam(severity="down")],
        "owners": {
            "patience_s": None,
            "notice_delay_h": {"down": {"dist": "fixed", "value": 1}, "degraded": {"dist": "fixed", "value": 1}},
        },
    }
    world = World(scenario(fleet, contact_centre={"agents": 5, "first_contact_resolution": 1.0}))
    out = world.advance(5 * DAY)
    contacts = [m for m in decoded(out) if isinstance(m, Contact)]
    assert contacts and all(c.resolved for c in contacts)
    fixed = [i for i in world.records.incidents if not math.isnan(i.restored_s)]
    assert fixed and all(i.fixed_by == "agent" for i in fixed)


def test_owners_who_lose_patience_abandon_and_call_again() -> None:
    fleet = {
        "count": 200,
        "failure_modes": [{"name": "dead", "life_days": {"dist": "exponential", "mean": 3}, "symptom": "dead"}],
        "owners": {
            "patience_s": {"dist": "fixed", "value": 10},
            "recontact_h": {"dist": "fixed", "value": 1},
            "notice_delay_h": {"down": {"dist": "fixed", "value": 1}, "degraded": {"dist": "fixed", "value": 1}},
        },
    }
    world = World(scenario(fleet, contact_centre={"agents": 1, "handle_time_s": {"dist": "fixed", "value": 1800}}))
    world.advance(5 * DAY)
    assert sum(i.abandoned for i in world.records.incidents) > 0
    assert world.contact_centre.summary(world.now)["abandoned"] == sum(i.abandoned for i in world.records.incidents)
    assert max(i.effort_steps for i in world.records.incidents) >= 2


def test_an_outage_silences_a_region_and_its_devices_return_with_their_buffers() -> None:
    fleet = {"count": 200, "regions": {"east": 0.5, "west": 0.5}}
    outage = {"name": "storm", "region": "east", "start_day": 1, "duration_h": 6, "power": True}
    world = World(
        scenario(fleet, outages=[outage], engine={"default_issue": "fix", "issues": {"fix": {"skill": "general"}}})
    )
    before = world.advance(DAY)
    during = world.advance(DAY + 5 * HOUR)
    after = world.advance(DAY + 7 * HOUR)
    east = np.array([world.fleets[0].region_of(i) == "east" for i in range(200)])

    def reporting(out: list[tuple[str, bytes]]) -> set[int]:
        seen: set[int] = set()
        for view in [m for m in decoded(out) if isinstance(m, BatchView)]:
            seen |= {int(world.index_of(view.devices[i])) for i in np.unique(view.index)}
        return seen

    assert reporting(before) == set(range(200))
    assert reporting(during) == set(np.flatnonzero(~east).tolist())
    storm = [m for m in decoded(after) if isinstance(m, BatchView)]
    rows_per_device = np.bincount(
        np.concatenate([[world.index_of(v.devices[i]) for i in v.index] for v in storm]), minlength=200
    )
    assert rows_per_device[east].min() > rows_per_device[~east].max()  # the reconnect storm carries the buffer
    power = [f for f in world.records.failures if f.mode == "power_outage"]
    assert len(power) == int(east.sum())
    assert all(f.restored_s == pytest.approx(DAY + 6 * HOUR) for f in power)
    assert any(kind == "outage" for _, _, kind, _ in world.records.link)
    assert world.symptom_of(int(np.flatnonzero(~east)[0])) == "other"


def test_duplicated_batches_are_sent_twice_byte_for_byte_and_recorded() -> None:
    world = World(scenario({"count": 100, "devices_per_gateway": 10, "connectivity": {"duplicate_share": 0.2}}))
    out = world.advance(DAY)
    batches = [(topic, payload) for topic, payload in out if "/gw/" in topic]
    copies = len(batches) - len(set(batches))
    recorded = [row for row in world.records.link if row[2] == "duplicate"]
    assert copies == len(recorded) > 0
    assert 0.1 < copies / len(set(batches)) < 0.3
    assert world.published == len(out) - copies  # the engine counts unique messages
    assert world.duplicates_sent == copies
