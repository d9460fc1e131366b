"""The simulated world: determinism, common random numbers, precursors, owners, technicians, KPIs, streams."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts import (
    BatchView,
    Contact,
    Kind,
    Message,
    Notification,
    Topics,
    WorkOrder,
    WorkOrderStatus,
    decode,
    decode_batch,
)
from sim.distributions import Exponential, Fixed, Uniform
from sim.fleet import FleetState
from sim.kpis import compute_kpis
from sim.records import Failure, Incident, Job, Records
from sim.scenario import Scenario
from sim.scenario_file import load, with_overrides
from sim.streams import Stream
from sim.world import World

DAY = 86400.0
HOUR = 3600.0
NAN = math.nan
BASE = load(Path(__file__).parents[2] / "scenarios" / "freezers.yaml")
TOPICS = Topics()
ALL_PARTS = ["compressor", "control_board", "door_seal"]


def freezers(count: int = 200, days: float = 40.0, seed: int = 7) -> Scenario:
    """The freezers scenario, shrunk, with an old installed base so that failures happen within days."""
    spec = msgspec.structs.replace(BASE.fleets[0], count=count, age_days=Uniform(low=1500.0, high=2500.0))
    return with_overrides(BASE, duration_days=days, seed=seed, fleets=[msgspec.to_builtins(spec)])


def decoded(out: list[tuple[str, bytes]]) -> Iterator[Message | BatchView]:
    for topic, payload in out:
        kind, key, _ = TOPICS.parse(topic)
        yield decode_batch(payload, key=key) if kind is Kind.BATCH else decode(kind, payload, key=key)


def batches(out: list[tuple[str, bytes]]) -> list[BatchView]:
    return [m for m in decoded(out) if isinstance(m, BatchView)]


def of(out: list[tuple[str, bytes]], kind: type) -> list[Any]:
    return [m for m in decoded(out) if isinstance(m, kind)]


def readings(out: list[tuple[str, bytes]], device: str, sensor: str) -> list[tuple[float, float]]:
    """(ts, value) of every reading of ``device``'s ``sensor``."""
    series = []
    for view in batches(out):
        if device in view.devices:
            at = view.index == view.devices.index(device)
            series += zip(view.reading_ts[at].tolist(), view.values[sensor][at].tolist(), strict=True)
    return series


def work_order(device: str, parts: list[str], n: int = 1) -> WorkOrder:
    return WorkOrder(
        work_order_id=f"wo-{n}",
        case_id=f"case-{n}",
        device_id=device,
        ts=0.0,
        issue="compressor",
        skill="refrigeration",
        parts=parts,
        duration_s=10800.0,
    )


class Reference(NamedTuple):
    world: World
    out: list[tuple[str, bytes]]


@pytest.fixture(scope="module")
def ref() -> Reference:
    """The shrunk scenario run to its end with no engine at all, and everything it published."""
    world = World(freezers())
    return Reference(world, world.advance(world.scenario.duration_s))


def lone_failure(world: World, mode: str, after_s: float = 0.0) -> Failure:
    """The first failure of ``mode`` after ``after_s`` on a device that has no other failure in the run."""
    per_device = Counter(f.device_id for f in world.records.failures)
    return next(
        f for f in world.records.failures if f.mode == mode and f.onset_s >= after_s and per_device[f.device_id] == 1
    )


# -- determinism --------------------------------------------------------------------------------


def run(world: World, step_s: float = HOUR) -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    for k in range(1, math.ceil(world.scenario.duration_s / step_s) + 1):
        out += world.advance(k * step_s)
    return out


def test_the_same_scenario_and_seed_give_the_same_bytes_and_ground_truth() -> None:
    scenario = freezers(days=20)
    a, b = World(scenario), World(scenario, seed=scenario.seed)
    out_a, out_b = run(a), run(b)
    assert out_a == out_b and len(out_a) > 20 * 24
    assert repr(a.records.failures) == repr(b.records.failures) and a.records.failures
    assert repr(a.records.incidents) == repr(b.records.incidents)
    assert a.records.events == b.records.events


def test_a_different_seed_gives_a_different_run() -> None:
    scenario = freezers(days=20)
    a, b = World(scenario, seed=1), World(scenario, seed=2)
    out_a, out_b = run(a), run(b)
    assert [t for t, _ in out_a[:10]] == [t for t, _ in out_b[:10]]  # same topics ...
    assert out_a[0][1] != out_b[0][1]  # ... other readings
    assert repr(a.records.failures) != repr(b.records.failures)


def test_repairing_one_device_leaves_every_other_devices_history_alone(ref: Reference) -> None:
    target = ref.world.records.failures[0]
    scenario = ref.world.scenario
    fixed, untouched = World(scenario), World(scenario)
    fixed.advance(target.onset_s + HOUR)
    untouched.advance(target.onset_s + HOUR)
    fixed.deliver(work_order(target.device_id, ALL_PARTS))
    fixed.advance(scenario.duration_s)
    untouched.advance(scenario.duration_s)

    def history(world: World) -> list[tuple[str, str, float]]:
        return [(f.device_id, f.mode, f.onset_s) for f in world.records.failures if f.device_id != target.device_id]

    def noticed(world: World) -> list[tuple[str, float]]:
        return [(i.device_id, i.noticed_s) for i in world.records.incidents if i.device_id != target.device_id]

    assert history(fixed) == history(untouched) and len(history(fixed)) >= 5
    assert noticed(fixed) == noticed(untouched)
    (repaired,) = [f for f in fixed.records.failures if f.device_id == target.device_id]
    (left,) = [f for f in untouched.records.failures if f.device_id == target.device_id]
    assert repaired.onset_s == left.onset_s and math.isnan(left.restored_s) and repaired.restored_s > repaired.onset_s


# -- precursors and telemetry -------------------------------------------------------------------


def test_compressor_wear_is_announced_by_a_rising_duty_cycle(ref: Reference) -> None:
    lead_s = 10 * DAY
    failure = lone_failure(ref.world, "compressor_wear", after_s=lead_s + DAY)
    duty = readings(ref.out, failure.device_id, "compressor_duty")
    baseline = ref.world.scenario.fleets[0].sensors[1].baseline
    before_window = [v for t, v in duty if t < failure.onset_s - lead_s]
    last_days = [v for t, v in duty if failure.onset_s - 2 * DAY <= t < failure.onset_s]
    assert before_window and max(before_window) < baseline + 0.3
    assert max(last_days) > baseline + 0.3
    assert np.mean(last_days) > np.mean(before_window) + 0.2


def test_exponential_lives_are_memoryless_however_old_the_fleet() -> None:
    spec = BASE.fleets[0]
    modes = [msgspec.structs.replace(m, life_days=Exponential(mean_=1.0)) for m in spec.failure_modes]
    new = FleetState(msgspec.structs.replace(spec, count=500, failure_modes=modes, age_days=Fixed(value=0.0)), 7)
    old = FleetState(msgspec.structs.replace(spec, count=500, failure_modes=modes, age_days=Fixed(value=3000.0)), 7)
    np.testing.assert_allclose(old.next_fail, new.next_fail, rtol=1e-12)
    assert (old.next_fail > 0).all() and abs(old.next_fail.mean() / DAY - 1.0) < 0.15


@settings(max_examples=20, deadline=None)
@given(
    counts=st.lists(st.integers(1, 30), min_size=1, max_size=2),
    per_gateway=st.integers(1, 12),
    intervals=st.lists(st.sampled_from([300.0, 900.0, 1800.0, 3600.0]), min_size=2, max_size=2),
    mean_life_days=st.sampled_from([0.2, 1.0, 1000.0]),
    seed=st.integers(0, 2**32),
)
def test_every_tick_reports_every_device_once_with_rising_timestamps(
    counts: list[int], per_gateway: int, intervals: list[float], mean_life_days: float, seed: int
) -> None:
    spec = BASE.fleets[0]
    modes = [msgspec.structs.replace(m, life_days=Exponential(mean_=mean_life_days)) for m in spec.failure_modes]
    fleets = [
        msgspec.structs.replace(
            spec, name=f"f{i}", count=n, devices_per_gateway=per_gateway, telemetry_interval_s=dt, failure_modes=modes
        )
        for i, (n, dt) in enumerate(zip(counts, intervals, strict=False))
    ]
    scenario = msgspec.structs.replace(BASE, fleets=fleets, duration_days=1.0)
    world = World(scenario, seed=seed)
    out = run(world)
    per_tick: dict[tuple[str, float], Counter[str]] = defaultdict(Counter)
    last: dict[str, tuple[float, int]] = {}
    for view in batches(out):
        fleet = view.gateway_id.split("-gw")[0]
        devices = [view.devices[i] for i in view.index.tolist()]
        assert (view.reading_ts == view.ts).all()
        per_tick[(fleet, view.ts)].update(devices)
        for d, t, k in zip(devices, view.reading_ts.tolist(), view.reading_seq.tolist(), strict=True):
            assert last.get(d, (-1.0, 0)) < (t, k) and last.get(d, (-1.0, 0))[0] < t
            last[d] = (t, k)
    for f in fleets:
        ticks = sorted(t for name, t in per_tick if name == f.name)
        assert ticks == [k * f.telemetry_interval_s for k in range(len(ticks))]
        assert len(ticks) >= DAY / f.telemetry_interval_s
        everyone = Counter(f"{f.name}-{i:06d}" for i in range(f.count))
        assert all(per_tick[(f.name, t)] == everyone for t in ticks)
    assert world.readings == sum(len(v) for v in batches(out))


# -- owners -------------------------------------------------------------------------------------


def test_owners_contact_support_with_the_failed_modes_symptom(ref: Reference) -> None:
    symptom = {m.name: m.symptom for m in ref.world.scenario.fleets[0].failure_modes}
    contacts: list[Contact] = of(ref.out, Contact)
    assert len(contacts) >= len(ref.world.records.incidents)
    by_device = defaultdict(list)
    for f in ref.world.records.failures:
        by_device[f.device_id].append(f)
    for c in contacts:
        failed = [f for f in by_device[c.device_id] if f.onset_s <= c.ts]
        assert c.symptom in {symptom[f.mode] for f in failed}
    end = ref.world.scenario.duration_s
    for incident in ref.world.records.incidents:
        if incident.noticed_s < end - DAY:
            mine = [c for c in contacts if c.device_id == incident.device_id]
            assert 1 <= len(mine) == incident.contacts <= 5
            assert min(c.ts for c in mine) >= incident.noticed_s


def noticed_incident(world: World) -> Incident:
    """An incident that starts after the first day and that its owner notices before the end."""
    return next(i for i in world.records.incidents if i.onset_s > DAY and not math.isnan(i.noticed_s))


def test_owners_told_by_support_before_they_notice_do_not_call(ref: Reference) -> None:
    incident = noticed_incident(ref.world)
    told_at = incident.onset_s + 0.5 * (incident.noticed_s - incident.onset_s)
    world = World(ref.world.scenario)
    out = world.advance(told_at)
    world.deliver(
        Notification(notification_id="n-1", device_id=incident.device_id, ts=told_at, kind="case_opened", case_id="c-1")
    )
    out += world.advance(world.scenario.duration_s)
    callers = {c.device_id for c in of(out, Contact)}
    assert incident.device_id not in callers and len(callers) >= 3
    (mine,) = [i for i in world.records.incidents if i.device_id == incident.device_id]
    assert (mine.contacts, mine.informed_s, mine.noticed_s) == (0, told_at, incident.noticed_s)


def test_owners_told_before_the_failure_count_as_informed_at_onset(ref: Reference) -> None:
    incident = noticed_incident(ref.world)
    world = World(ref.world.scenario)
    world.advance(incident.onset_s - DAY)
    world.deliver(Notification(notification_id="n-1", device_id=incident.device_id, ts=0.0, kind="outreach"))
    out = world.advance(world.scenario.duration_s)
    assert incident.device_id not in {c.device_id for c in of(out, Contact)}
    (mine,) = [i for i in world.records.incidents if i.device_id == incident.device_id]
    assert mine.informed_s == mine.onset_s == incident.onset_s


# -- technicians --------------------------------------------------------------------------------


def dispatch(scenario: Scenario, at: float, order: WorkOrder, days_after: float) -> tuple[World, list[WorkOrderStatus]]:
    world = World(scenario)
    world.advance(at)
    world.deliver(order)
    out = world.advance(at + days_after * DAY)
    statuses = [s for s in of(out, WorkOrderStatus) if s.work_order_id == order.work_order_id]
    return world, statuses


def test_a_work_order_with_the_right_part_repairs_the_device(ref: Reference) -> None:
    failure = lone_failure(ref.world, "compressor_wear")
    order = work_order(failure.device_id, ["compressor"])
    world, statuses = dispatch(ref.world.scenario, failure.onset_s + HOUR, order, days_after=3)
    assert [(s.status, s.seq, s.visit) for s in statuses] == [
        ("accepted", 1, 1),
        ("arrived", 2, 1),
        ("fixed", 3, 1),
        ("closed", 4, 1),
    ]
    assert [s.ts for s in statuses] == sorted(s.ts for s in statuses)
    (mine,) = [f for f in world.records.failures if f.device_id == failure.device_id]
    assert mine.onset_s == failure.onset_s and not mine.prevented
    assert mine.restored_s == statuses[2].ts
    job = world.records.jobs["wo-1"]
    assert (job.visits, job.outcome, job.parts_used, job.closed_s) == (1, "fixed", ["compressor"], statuses[-1].ts)


def test_a_work_order_lacking_the_part_needs_a_second_visit(ref: Reference) -> None:
    failure = lone_failure(ref.world, "compressor_wear")
    order = work_order(failure.device_id, ["door_seal"])
    world, statuses = dispatch(ref.world.scenario, failure.onset_s + HOUR, order, days_after=10)
    first, second = ["accepted", "arrived", "part_missing"], ["accepted", "arrived", "fixed", "closed"]
    assert [s.status for s in statuses] == first + second
    assert statuses[2].note == "compressor"
    assert [s.seq for s in statuses] == list(range(1, 8))
    job = world.records.jobs["wo-1"]
    assert (job.visits, job.second_visit_causes, job.outcome) == (2, ["part"], "fixed")
    (mine,) = [f for f in world.records.failures if f.device_id == failure.device_id]
    assert mine.restored_s == statuses[5].ts
    (incident,) = [i for i in world.records.incidents if i.device_id == failure.device_id]
    assert incident.visits == 2 and incident.restored_s == mine.restored_s


def test_a_visit_while_the_precursor_drifts_prevents_the_failure(ref: Reference) -> None:
    failure = lone_failure(ref.world, "compressor_wear", after_s=4 * DAY)
    world, statuses = dispatch(
        ref.world.scenario, failure.onset_s - 3 * DAY, work_order(failure.device_id, ["compressor"]), 5
    )
    assert [s.status for s in statuses] == ["accepted", "arrived", "fixed", "closed"]
    (mine,) = [f for f in world.records.failures if f.device_id == failure.device_id]
    assert mine.prevented and mine.onset_s == failure.onset_s and mine.restored_s < failure.onset_s
    assert not [i for i in world.records.incidents if i.device_id == failure.device_id]


def test_a_visit_to_a_healthy_device_finds_no_fault(ref: Reference) -> None:
    failed = {f.device_id for f in ref.world.records.failures}
    healthy = next(d for d in ref.world.fleets[0].ids if d not in failed)
    world, statuses = dispatch(ref.world.scenario, 2 * DAY, work_order(healthy, ALL_PARTS), 1)
    assert [s.status for s in statuses] == ["accepted", "arrived", "no_fault_found", "closed"]
    assert not [f for f in world.records.failures if f.device_id == healthy]


# -- KPIs ---------------------------------------------------------------------------------------


def incident(
    device: str, severity: str, onset: float, *, noticed: float = NAN, informed: float = NAN, restored: float = NAN
) -> Incident:
    return Incident(device, "freezer", 1, onset, severity, noticed_s=noticed, informed_s=informed, restored_s=restored)


def test_kpis_of_a_tiny_hand_built_run() -> None:
    scenario = freezers(count=10, days=10)
    end = 10 * DAY
    records = Records(
        incidents=[
            incident("a", "down", 0.0, noticed=200.0, informed=100.0, restored=2 * HOUR),
            incident("b", "degraded", HOUR, noticed=400.0, informed=500.0, restored=4 * HOUR),
            incident("c", "down", end - HOUR, informed=end - HOUR),
            incident("d", "down", DAY, noticed=DAY + HOUR),
            incident("e", "down", DAY, noticed=DAY, informed=DAY, restored=DAY),
        ],
        jobs={
            "w1": Job("w1", "a", "cooling", 0.0, visits=1, outcome="fixed"),
            "w2": Job("w2", "b", "door_seal", 0.0, visits=2, second_visit_causes=["part"], outcome="fixed"),
            "w3": Job("w3", "c", "cooling", 0.0, visits=1, outcome="no_fault_found"),
        },
    )
    kpis = compute_kpis(scenario, records, {"sla_breaches": 2}, end)
    device_years = 10 * end / (365 * DAY)
    down_h = 2.0 + 1.0 + (end - DAY) / HOUR  # the open incidents count until the end of the run
    assert kpis["downtime_hours_per_device_year"] == pytest.approx(down_h / device_years, abs=1e-5)
    assert kpis["degraded_hours_per_device_year"] == pytest.approx(3.0 / device_years, abs=1e-5)
    assert kpis["mttr_hours"] == pytest.approx((2.0 + 3.0 + 0.0) / 3)  # restored incidents only
    assert kpis["first_time_fix_rate"] == pytest.approx(0.5)  # jobs that found a fault: w1 yes, w2 no
    # a (told at 100 s, noticed at 200 s), c (never noticed) and e (told as they noticed); not b (told late) nor d
    assert kpis["detected_before_owner_rate"] == pytest.approx(3 / 5)
    assert kpis["truck_rolls_per_1000_devices"] == pytest.approx(1000 * 4 / 10)
    assert (kpis["incidents"], kpis["work_orders"], kpis["sla_breaches"]) == (5, 3, 2)


def test_kpis_of_an_empty_run_are_zero_not_errors() -> None:
    kpis = compute_kpis(freezers(count=10, days=1), Records(), {}, DAY)
    assert kpis["mttr_hours"] == kpis["first_time_fix_rate"] == kpis["detected_before_owner_rate"] == 0.0


# -- streams ------------------------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(
    seed=st.integers(0, 2**63),
    names=st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=3),
    device=st.integers(0, 2**40),
    k=st.integers(0, 2**40),
)
def test_a_stream_draw_depends_on_seed_names_device_and_k(seed: int, names: list[str], device: int, k: int) -> None:
    u = Stream(seed, *names).one(device, k)
    assert 0.0 < u < 1.0
    assert Stream(seed, *names).one(device, k) == u
    assert Stream(seed, *names, "other").one(device, k) != u
    assert Stream(seed, *names).one(device, k + 1) != u


def test_a_stream_is_vectorised_and_looks_uniform() -> None:
    stream = Stream(7, "freezer", "life", "compressor_wear")
    devices = np.arange(20_000)
    u = stream.uniform(devices, 3)
    assert ((u > 0) & (u < 1)).all()
    assert [stream.one(d, 3) for d in (0, 1, 19_999)] == u[[0, 1, 19_999]].tolist()
    assert abs(u.mean() - 0.5) < 0.01 and abs(np.median(u) - 0.5) < 0.01
    assert not np.any(Stream(7, "freezer", "life", "door_seal_leak").uniform(devices, 3) == u)
