"""What the world records beside its tallies: the level series sampled at each sync step, when an
owner was first told of a failure, and when they were told it is resolved."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import pytest

from contracts import Command, Notification, WorkOrder
from harness.outputs import write_run
from sim.records import LEVELS
from sim.scenario import Scenario
from sim.scenario_file import validate_data
from sim.world import World

DAY = 86400.0
HOUR = 3600.0
QUIET = {"dist": "fixed", "value": 10000}  # owners who never notice within the run


def scenario(
    modes: list[dict[str, Any]], count: int = 12, owners: dict[str, Any] | None = None, **top: Any
) -> Scenario:
    data = {
        "name": "levels",
        "duration_days": 20,
        "seed": 5,
        "fleets": [
            {
                "name": "box",
                "product": "box",
                "count": count,
                "telemetry_interval_s": 3600,
                "sensors": [{"name": "temp_c", "baseline": 20.0}],
                "failure_modes": modes,
                "owners": owners or {"notice_delay_h": {"down": QUIET, "degraded": QUIET}},
            }
        ],
        "contact_centre": {"agents": 1},
        "technicians": {"count": 1},
        "engine": {"default_issue": "fix", "issues": {"fix": {"skill": "general"}}},
        **top,
    }
    result, problems = validate_data(data)
    assert result is not None, problems
    return result


DEAD = {"name": "dead", "life_days": {"dist": "exponential", "mean": 3}, "severity": "down", "symptom": "dead"}
DIM = {"name": "dim", "life_days": {"dist": "exponential", "mean": 2}, "severity": "degraded", "symptom": "dim"}
DRIFT = {
    "name": "wear",
    "life_days": {"dist": "uniform", "low": 10, "high": 12},
    "severity": "down",
    "symptom": "dead",
    "precursor": {"sensor": "temp_c", "lead_time_days": 5, "delta": 10.0},
    "remote_fix": {"action": "reset"},
}


def note(device_id: str, kind: str, n: int) -> Notification:
    return Notification(notification_id=f"n-{n}", device_id=device_id, ts=0.0, kind=kind, case_id=f"c-{n}")  # type: ignore[arg-type]


def test_one_level_row_per_step_and_devices_down_as_the_ground_truth_says() -> None:
    power_cut = {"name": "cut", "start_day": 2, "duration_h": 5, "power": True, "share": 0.5}
    world = World(scenario([DEAD, DIM], outages=[power_cut]))
    steps = [k * HOUR for k in range(1, 5 * 24 + 1)]
    for t in steps:
        world.advance(t)
        world.advance(t)  # no time passes: no second row
    levels = world.records.levels
    assert len(levels) == len(steps) and [row[0] for row in levels] == steps
    assert all(len(row) == len(LEVELS) for row in levels)
    col = {name: i for i, name in enumerate(LEVELS)}
    failures = world.records.failures
    assert any(f.mode == "power_outage" for f in failures) and any(f.severity == "degraded" for f in failures)

    def on_at(t: float, severity: str) -> set[str]:
        """Devices with a failure of ``severity`` on just before ``t`` (what is due at t happens in the next step)."""
        return {
            f.device_id
            for f in failures
            if f.severity == severity and f.onset_s < t and not (f.restored_s < t)  # NaN: still on
        }

    for row in levels:
        t = row[0]
        down, degraded = on_at(t, "down"), on_at(t, "degraded")
        assert row[col["devices_down"]] == len(down)
        assert row[col["devices_degraded"]] == len(degraded - down)
        assert row[col["open_incidents"]] == len(down | degraded)
        assert row[col["work_orders_waiting"]] == row[col["technicians_busy"]] == 0  # no engine, no work orders
    assert max(row[col["devices_down"]] for row in levels) > min(row[col["devices_down"]] for row in levels)


def test_queues_and_technicians_show_in_the_levels() -> None:
    world = World(
        scenario([DEAD], owners={"notice_delay_h": {"down": {"dist": "fixed", "value": 1}, "degraded": QUIET}})
    )
    world.advance(2 * DAY)
    col = {name: i for i, name in enumerate(LEVELS)}
    dead = [f.device_id for f in world.records.failures]
    assert len(dead) >= 3
    for n, device_id in enumerate(dead):  # one technician for them all: one busy, the rest waiting
        order = WorkOrder(
            work_order_id=f"wo-{n}",
            case_id=f"c-{n}",
            device_id=device_id,
            ts=2 * DAY,
            issue="fix",
            skill="general",
            parts=[],
            duration_s=HOUR,
        )
        world.deliver(order)
    world.advance(2 * DAY + 60.0)
    row = world.records.levels[-1]
    assert (row[col["technicians_busy"]], row[col["work_orders_waiting"]]) == (1, len(dead) - 1)
    assert row[col["owners_waiting"]] == world.contact_centre.waiting >= 0


def test_the_owner_told_while_a_failure_drifts_or_is_on_counts_as_informed_then() -> None:
    world = World(scenario([DRIFT], count=5))
    ids = world.fleets[0].ids
    world.advance(1 * DAY)
    world.deliver(note(ids[2], "outreach", 1))  # told before the drift began: not of this failure
    world.advance(8 * DAY)  # every device drifts now
    world.deliver(note(ids[0], "case_opened", 2))
    world.deliver(note(ids[4], "visit_scheduled", 3))
    world.advance(9 * DAY)
    world.deliver(note(ids[0], "visit_scheduled", 4))  # a later notice: the first one counts
    world.deliver(Command(command_id="cmd-1", device_id=ids[4], ts=9 * DAY, action="reset"))  # cleared, prevented
    world.advance(13 * DAY)  # the others fail by day 12
    world.deliver(note(ids[3], "case_opened", 5))  # told once it has failed
    world.advance(14 * DAY)
    informed = {f.device_id: (f.prevented, f.informed_s) for f in world.records.failures}
    assert informed[ids[0]] == (False, 8 * DAY)
    assert informed[ids[3]] == (False, 13 * DAY)
    assert informed[ids[4]] == (True, 8 * DAY)
    assert math.isnan(informed[ids[1]][1]) and math.isnan(informed[ids[2]][1])


def test_the_resolved_notice_confirms_the_last_restored_incident() -> None:
    world = World(scenario([DRIFT], count=3))
    ids = world.fleets[0].ids
    world.advance(13 * DAY)
    world.deliver(Command(command_id="cmd-1", device_id=ids[0], ts=13 * DAY, action="reset"))
    world.advance(13 * DAY + HOUR)
    (incident,) = [i for i in world.records.incidents if i.device_id == ids[0]]
    assert incident.restored_s == pytest.approx(13 * DAY) and math.isnan(incident.confirmed_s)
    world.deliver(note(ids[1], "resolved", 1))  # another device's, whose incident is still on: nothing
    world.deliver(note(ids[0], "resolved", 2))
    world.advance(13 * DAY + 2 * HOUR)
    world.deliver(note(ids[0], "resolved", 3))  # told again: the first notice stays
    assert incident.confirmed_s == 13 * DAY + HOUR
    assert all(math.isnan(i.confirmed_s) for i in world.records.incidents if i.device_id != ids[0])


def test_the_level_series_is_written_tidy(tmp_path: Path) -> None:
    world = World(scenario([DEAD, DIM]))
    for k in range(1, 4):
        world.advance(k * DAY)
    write_run(tmp_path, {"scenario": "levels"}, world.records)
    with open(tmp_path / "timeseries.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 * (len(LEVELS) - 1)
    assert [r["series"] for r in rows[: len(LEVELS) - 1]] == list(LEVELS[1:])
    by = {(float(r["t_s"]), r["series"]): float(r["value"]) for r in rows}
    for row in world.records.levels:
        for name, value in zip(LEVELS[1:], row[1:], strict=True):
            assert by[row[0], name] == value
    assert {r["t_days"] for r in rows} == {"1.000000", "2.000000", "3.000000"}
