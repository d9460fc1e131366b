"""Preventive maintenance in the world: what a service does to a mode's life, what a preventive visit
carries out and records, usage counters, and the KPIs that keep preventive and corrective apart."""

from __future__ import annotations

import math
from pathlib import Path

import msgspec
import numpy as np
import pytest

from contracts.engine_config import MaintenancePlan
from contracts.messages import PreventiveVisit, WorkOrder
from sim.distributions import Fixed, Uniform, Weibull
from sim.fleet import DAY_S, FleetState
from sim.kpis import compute_kpis
from sim.records import Job, Records
from sim.scenario import Scenario, Sensor, Service
from sim.scenario_file import load, with_overrides
from sim.world import World

HOUR = 3600.0
BASE = load(Path(__file__).parents[2] / "scenarios" / "freezers.yaml")
FLEET = BASE.fleets[0]
WEAR = 0  # compressor_wear, the freezer's first mode
PLAN = MaintenancePlan(name="compressor_service", every_days=30.0, services=["compressor_wear"], skill="refrigeration")


def fleet(count: int = 2000, age: float = 1500.0, restores: float | None = None, **changes: object) -> FleetState:
    modes = list(FLEET.failure_modes)
    if restores is not None:
        service = Service(part=None, duration_h=Fixed(value=1.0), restores=restores)
        modes[WEAR] = msgspec.structs.replace(modes[WEAR], service=service)
    spec = msgspec.structs.replace(FLEET, count=count, age_days=Fixed(value=age), failure_modes=modes, **changes)
    return FleetState(spec, 7)


def serviced_lives(state: FleetState, now: float) -> np.ndarray:
    for d in range(state.n):
        state.service(WEAR, d, now)
    return (state.next_fail[WEAR] - now) / DAY_S


# -- what a service does to a life ------------------------------------------------------------------


def test_a_service_renews_the_life_as_a_repair_does() -> None:
    serviced, repaired = fleet(50), fleet(50)
    for d in range(50):
        serviced.service(WEAR, d, 10 * DAY_S)
        repaired.renew(WEAR, d, 10 * DAY_S)
    np.testing.assert_array_equal(serviced.next_fail, repaired.next_fail)  # the same (k-th) draws
    assert (serviced.life_k[WEAR] == 2).all() and not serviced.failed.any()


def test_a_service_of_an_old_wearing_unit_lengthens_its_life_and_less_so_when_it_restores_less() -> None:
    now = 0.0
    untouched = (fleet().next_fail[WEAR] - now) / DAY_S
    half = serviced_lives(fleet(restores=0.5), now)
    renewed = fleet(restores=1.0)
    new = serviced_lives(renewed, now)
    weibull = FLEET.failure_modes[WEAR].life_days
    assert isinstance(weibull, Weibull) and weibull.shape > 1  # wear-out: age matters
    assert untouched.mean() < half.mean() < new.mean()
    assert new.mean() == pytest.approx(weibull.mean * renewed.life_scale(WEAR).mean(), rel=0.03)  # as good as new
    # half as old: the mean residual life of a 750-day-old unit, not of a 1500-day-old one
    assert half.mean() == pytest.approx(fleet(age=750.0).next_fail[WEAR].mean() / DAY_S, rel=0.05)


def test_a_partial_service_counts_the_age_from_the_last_renewal() -> None:
    state = fleet(1, age=1000.0, restores=0.5)
    state.service(WEAR, 0, 0.0)
    assert state._born[(WEAR, 0)] == pytest.approx(-500.0 * DAY_S)  # 1,000 days old, now 500
    state.service(WEAR, 0, 100 * DAY_S)
    assert state._born[(WEAR, 0)] == pytest.approx(100 * DAY_S - 300.0 * DAY_S)  # (500 + 100) / 2
    state.renew(WEAR, 0, 200 * DAY_S)
    assert state._born[(WEAR, 0)] == 200 * DAY_S  # a repair: new


def test_a_service_of_a_random_failure_mode_changes_its_life_only_by_the_draw() -> None:
    """Exponential lives are memoryless: an old board serviced lives as long, on average, as one left alone."""
    state = fleet(4000)
    board = 1  # control_board: exponential
    before = state.next_fail[board].copy()
    for d in range(state.n):
        state.service(board, d, 0.0)
    assert state.next_fail[board].mean() == pytest.approx(before.mean(), rel=0.06)


# -- counters --------------------------------------------------------------------------------------


def test_a_counter_sensor_rises_with_usage_and_age() -> None:
    sensors = [*FLEET.sensors, Sensor(name="run_hours", unit="h", baseline=0.0, rises_per_day=10.0)]
    state = fleet(20, age=100.0, sensors=sensors)
    row = state.sensor_names.index("run_hours")
    for now in (0.0, 5 * DAY_S):
        expected = 10.0 * state.usage * (100.0 + now / DAY_S)
        np.testing.assert_allclose(state.readings(now)[row], expected, rtol=1e-9)


def test_a_fleet_without_counters_reads_as_before() -> None:
    a, b = fleet(30), fleet(30)
    np.testing.assert_array_equal(a.readings(3600.0), b._readings(3600.0))
    assert a.counter_rows.size == 0


# -- a preventive visit in the world ------------------------------------------------------------------


def freezers(count: int = 40, days: float = 20.0) -> Scenario:
    spec = msgspec.structs.replace(FLEET, count=count, age_days=Uniform(low=1500.0, high=2500.0))
    return with_overrides(BASE, duration_days=days, fleets=[msgspec.to_builtins(spec)])


def preventive(device: str, services: list[str], n: int = 1, parts: list[str] | None = None) -> WorkOrder:
    return WorkOrder(
        work_order_id=f"wo-{n}",
        case_id=f"pm-{n}",
        device_id=device,
        ts=0.0,
        issue="compressor_service",
        skill="refrigeration",
        parts=["compressor"] if parts is None else parts,
        duration_s=5400.0,
        priority=5,
        maintenance=PreventiveVisit(plan="compressor_service", services=services),
    )


def healthy_device(world: World, horizon_s: float) -> tuple[str, int]:
    """A device whose compressor neither fails nor drifts before ``horizon_s`` and nothing else fails."""
    state = world.fleets[0]
    nothing = state.next_fail.min(axis=0) > horizon_s + 11 * DAY_S
    local = int(np.flatnonzero(nothing)[0])
    return state.ids[local], local


def test_a_preventive_visit_services_the_named_mode_and_records_it_apart() -> None:
    world = World(freezers())
    device, local = healthy_device(world, 2 * DAY_S)
    world.advance(DAY_S)
    life = int(world.fleets[0].life_k[WEAR, local])
    world.deliver(preventive(device, ["compressor_wear"]))
    world.advance(2 * DAY_S)
    job = world.records.jobs["wo-1"]
    assert (job.kind, job.outcome, job.serviced, job.visits) == ("preventive", "serviced", ["compressor_wear"], 1)
    assert job.parts_used == ["compressor"]  # serviced as its repair ahead of time: the part, as good as new
    assert int(world.fleets[0].life_k[WEAR, local]) == life + 1
    assert not [f for f in world.records.failures if f.device_id == device]  # nothing failed or was prevented
    assert [e[2] for e in world.records.events if e[3] == device and e[1] == "technician"] == [
        "accepted",
        "arrived",
        "serviced",
        "fixed",
        "closed",
    ]


def test_a_preventive_visit_without_the_modes_part_comes_back_with_it() -> None:
    world = World(freezers())
    device, _ = healthy_device(world, 10 * DAY_S)
    world.advance(DAY_S)
    world.deliver(preventive(device, ["compressor_wear"], parts=[]))
    world.advance(10 * DAY_S)
    job = world.records.jobs["wo-1"]
    statuses = [e[2] for e in world.records.events if e[3] == device and e[1] == "technician"]
    if world.field.technicians[0].van["compressor"]:
        pytest.skip("the van carries compressors")
    assert statuses[:3] == ["accepted", "arrived", "part_missing"] and job.second_visit_causes == ["part"]
    assert (job.outcome, job.serviced, job.visits) == ("serviced", ["compressor_wear"], 2)


def test_a_preventive_visit_repairs_a_mode_drifting_towards_failure() -> None:
    world = World(freezers(count=200, days=30.0))
    state = world.fleets[0]
    drifting = np.flatnonzero((state.next_fail[WEAR] > 12 * DAY_S) & (state.next_fail[WEAR] < 15 * DAY_S))
    local = int(drifting[0])
    device = state.ids[local]
    world.advance(5 * DAY_S)
    assert state.in_precursor(WEAR, local, world.now)
    world.deliver(preventive(device, ["compressor_wear"]))
    world.advance(6 * DAY_S)
    (failure,) = [f for f in world.records.failures if f.device_id == device and f.mode == "compressor_wear"]
    assert failure.prevented and failure.fixed_by == "technician"
    assert world.records.jobs["wo-1"].serviced == ["compressor_wear"]


def test_an_inspection_that_finds_nothing_is_inspected_not_a_false_dispatch() -> None:
    world = World(freezers())
    device, _ = healthy_device(world, 2 * DAY_S)
    world.deliver(preventive(device, [], parts=[]))
    world.advance(DAY_S)
    assert world.records.jobs["wo-1"].outcome == "inspected"


def test_a_preventive_visit_changes_no_other_devices_history() -> None:
    scenario = freezers(count=100, days=20.0)
    visited, untouched = World(scenario), World(scenario)
    device, _ = healthy_device(visited, 2 * DAY_S)
    visited.advance(DAY_S)
    untouched.advance(DAY_S)
    visited.deliver(preventive(device, ["compressor_wear"]))
    visited.advance(scenario.duration_s)
    untouched.advance(scenario.duration_s)

    def others(world: World) -> list[tuple[str, str, float]]:
        return [(f.device_id, f.mode, f.onset_s) for f in world.records.failures if f.device_id != device]

    assert others(visited) == others(untouched) and others(visited)


# -- KPIs ---------------------------------------------------------------------------------------------


def test_preventive_work_is_counted_apart_and_only_where_plans_are_configured() -> None:
    planned = msgspec.structs.replace(BASE, engine=msgspec.structs.replace(BASE.engine, maintenance=[PLAN]))
    records = Records(
        jobs={
            "w1": Job("w1", "a", "freezer_cooling", 0.0, visits=2, outcome="fixed", second_visit_causes=["part"]),
            "w2": Job(
                "w2", "b", "compressor_service", 0.0, visits=1, labour_h=2.0, outcome="serviced", kind="preventive"
            ),
            "w3": Job(
                "w3", "c", "compressor_service", 0.0, visits=1, labour_h=1.0, outcome="inspected", kind="preventive"
            ),
        }
    )
    records.jobs["w2"].serviced = ["compressor_wear"]
    records.jobs["w2"].parts_used = ["compressor"]
    without = compute_kpis(BASE, records, {}, 10 * DAY_S)
    kpis = compute_kpis(planned, records, {}, 10 * DAY_S)
    assert "maintenance" not in without
    assert {k: v for k, v in kpis.items() if k != "maintenance"} == without
    assert kpis["first_time_fix_rate"] == 0.0  # the corrective job alone: preventive visits are not fixes
    assert kpis["truck_rolls_per_1000_devices"] == pytest.approx(1000 * 4 / 2000)  # every visit rolls a truck
    m = kpis["maintenance"]
    assert (m["work_orders"], m["visits"], m["serviced"]) == (2, 2, {"compressor_wear": 1})
    assert m["truck_rolls_per_1000_devices"] == 1.0 and m["corrective_truck_rolls_per_1000_devices"] == 1.0
    assert m["outcomes"] == {"inspected": 1, "serviced": 1}
    costs = BASE.costs
    assert m["cost"] == pytest.approx(
        2 * costs.truck_roll + 3.0 * costs.labour_per_hour + costs.parts.get("compressor", 0.0)
    )
    assert not math.isnan(m["labour_hours"])
