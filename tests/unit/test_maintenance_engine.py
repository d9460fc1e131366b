"""Preventive maintenance in the engine core: due dates on each device's grid, scope by product and
cohort, one open visit per device and plan, usage counters, field statuses, restarts, partitions."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest

from contracts.engine_config import EngineConfig, MaintenancePlan, Technician
from contracts.messages import DeviceRecord, PreventiveVisit, Telemetry, WorkOrder, WorkOrderStatus
from contracts.partitions import Partition, check_partitionable
from support_engine.core.actions import Action, CreateWorkOrder
from support_engine.core.engine import Engine, Snapshot
from support_engine.core.maintenance import CHECK_EVERY_S
from support_engine.core.schedule import crossed, phases

DAY = 86400.0
PLAN = MaintenancePlan(
    name="compressor_service",
    products=["freezer"],
    every_days=10.0,
    services=["compressor_wear"],
    skill="refrigeration",
    parts=["service_kit"],
    duration_s=5400.0,
)


def record(device: str, product: str = "freezer", **cohorts: str) -> DeviceRecord:
    return DeviceRecord(device_id=device, product=product, cohorts=cohorts)


def engine(*plans: MaintenancePlan, devices: int = 40, **config: object) -> Engine:
    e = Engine(EngineConfig(maintenance=list(plans), **config))  # type: ignore[arg-type]
    e.provision([record(f"fr-{i:03d}", climate="hot" if i % 4 == 0 else "temperate") for i in range(devices)])
    e.provision([record("printer-1", "printer")])
    return e


def orders(actions: list[Action]) -> list[WorkOrder]:
    return [a.message for a in actions if isinstance(a, CreateWorkOrder)]


def run(e: Engine, until_s: float, step_s: float = 3600.0, start_s: float = 0.0) -> list[WorkOrder]:
    """Advance ``e`` step by step from ``start_s`` to ``until_s``; the work orders it sent."""
    sent: list[WorkOrder] = []
    for t in np.arange(start_s, until_s + step_s / 2, step_s).tolist():
        sent += orders(e.advance(t))
    return sent


def status(order: WorkOrder, seq: int, state: str, t: float) -> WorkOrderStatus:
    return WorkOrderStatus(
        work_order_id=order.work_order_id,
        device_id=order.device_id,
        ts=t,
        seq=seq,
        status=state,  # type: ignore[arg-type]
        technician_id="t-1",
    )


def close(e: Engine, order: WorkOrder, t: float) -> None:
    for seq, state in enumerate(["accepted", "arrived", "fixed", "closed"], start=1):
        assert e.handle(status(order, seq, state, t), t) == []


# -- the grid ---------------------------------------------------------------------------------------


def test_phases_are_stable_spread_and_per_plan() -> None:
    devices = [f"fr-{i:05d}" for i in range(5000)]
    p = phases("compressor_service", devices)
    assert ((p > 0.0) & (p <= 1.0)).all()
    assert np.array_equal(p, phases("compressor_service", devices))  # a function of (plan, device) alone
    assert not np.array_equal(p, phases("door_check", devices))
    assert np.histogram(p, bins=10, range=(0.0, 1.0))[0].min() > 400  # spread over the interval


def test_a_grid_point_is_crossed_once() -> None:
    phase = np.array([0.25, 0.75])
    assert crossed(np.array([0.0, 0.0]), np.array([3.0, 3.0]), 10.0, phase).tolist() == [True, False]
    assert crossed(np.array([2.5, 2.5]), np.array([7.5, 7.5]), 10.0, phase).tolist() == [False, True]
    assert crossed(np.array([7.5, np.nan]), np.array([12.5, 12.5]), 10.0, phase).tolist() == [True, False]
    assert crossed(np.array([12.5, 12.5]), np.array([22.5, 22.5]), 10.0, phase).tolist() == [True, True]


def test_every_device_in_scope_is_due_once_an_interval_on_its_own_phase() -> None:
    e = engine(PLAN)
    sent = run(e, 10 * DAY)
    devices = [o.device_id for o in sent]
    assert sorted(devices) == [f"fr-{i:03d}" for i in range(40)]  # each freezer once, the printer never
    due = dict(zip(sorted(devices), phases(PLAN.name, sorted(devices)) * 10 * DAY, strict=True))
    for order in sent:  # sent at the first step at or after its grid point
        assert due[order.device_id] <= order.ts < due[order.device_id] + 3600.0
    assert len({round(o.ts) for o in sent}) > 20  # spread, not all at once


def test_a_preventive_work_order_carries_the_plan_and_opens_no_case() -> None:
    e = engine(PLAN)
    order = run(e, 10 * DAY)[0]
    assert order.preventive and order.maintenance == PreventiveVisit(
        plan="compressor_service", services=["compressor_wear"]
    )
    assert (order.issue, order.skill, order.parts, order.duration_s, order.priority) == (
        "compressor_service",
        "refrigeration",
        ["service_kit"],
        5400.0,
        5,
    )
    assert order.case_id.startswith("pm-") and order.work_order_id.startswith("wo-")
    assert e.cases == {} and e.open_case_of == {} and e.stats["cases_opened"] == 0
    assert e.stats["work_orders"] == 40 and e.stats["notifications"] == 0


def test_a_corrective_work_order_keeps_its_wire_form() -> None:
    corrective = WorkOrder(
        work_order_id="wo-1", case_id="case-1", device_id="d", ts=0.0, issue="x", skill="s", parts=[], duration_s=1.0
    )
    assert b"maintenance" not in msgspec.json.encode(corrective) and not corrective.preventive
    preventive = msgspec.structs.replace(corrective, maintenance=PreventiveVisit(plan="p"))
    text = msgspec.json.encode(preventive)
    assert text.endswith(b',"maintenance":{"plan":"p","services":[]}}')
    assert msgspec.json.decode(text, type=WorkOrder) == preventive


def test_visits_repeat_every_interval_once_the_last_one_closed() -> None:
    e = engine(PLAN, devices=5)
    first = run(e, 10 * DAY)
    for order in first:
        close(e, order, order.ts + 3600.0)
    second = run(e, 20 * DAY, start_s=10 * DAY + 3600.0)
    assert sorted(o.device_id for o in second) == sorted(o.device_id for o in first)
    for a, b in zip(sorted(first, key=lambda o: o.device_id), sorted(second, key=lambda o: o.device_id), strict=True):
        assert b.ts - a.ts == pytest.approx(10 * DAY, abs=3600.0)
    assert set(e.preventive) == {o.work_order_id for o in second}  # closed ones are forgotten


def test_a_visit_still_open_is_not_sent_again() -> None:
    e = engine(PLAN, devices=5)
    assert len(run(e, 10 * DAY)) == 5
    assert run(e, 30 * DAY, start_s=10 * DAY + 3600.0) == []  # none closed: no second order
    assert len(e.preventive) == 5


def test_scope_by_product_and_cohort() -> None:
    hot = msgspec.structs.replace(PLAN, cohorts={"climate": ["hot"]})
    sent = run(engine(hot), 10 * DAY)
    assert sorted(o.device_id for o in sent) == [f"fr-{i:03d}" for i in range(0, 40, 4)]
    anything = msgspec.structs.replace(PLAN, name="inspection", products=[], services=[])
    assert len(run(engine(anything), 10 * DAY)) == 41  # no products: the printer too


def test_a_device_registered_later_joins_the_grid() -> None:
    e = engine(PLAN, devices=0)
    assert run(e, 2 * DAY) == []
    e.provision([record("fr-late")])
    due = float(phases(PLAN.name, ["fr-late"])[0]) * 10 * DAY
    sent = run(e, 12 * DAY, start_s=2 * DAY + 3600.0)
    assert [o.device_id for o in sent] == ["fr-late"]
    assert sent[0].ts >= due


def test_checks_run_at_most_once_a_minute() -> None:
    e = engine(PLAN, devices=200)
    e.advance(0.0)
    sent = orders(e.advance(10 * DAY))
    assert len(sent) == 200
    t = 10 * DAY
    assert orders(e.advance(t + CHECK_EVERY_S / 2)) == []
    assert e.plan_clocks[PLAN.name].checked_s == t


def test_the_plan_runs_under_the_reactive_policy_too() -> None:
    assert len(run(engine(PLAN, policy="reactive"), 10 * DAY)) == 40


def test_the_engines_technicians_take_preventive_work() -> None:
    e = engine(PLAN, devices=4, technicians=[Technician(id="t-1", skills=["refrigeration"], max_open=2)])
    sent = run(e, 10 * DAY)
    assert [o.technician_id for o in sent].count("t-1") == 2 and sent.count(None) == 0  # type: ignore[arg-type]
    assert [o.technician_id for o in sent][2:] == [None, None]  # room for two only
    close(e, sent[0], 10 * DAY)
    assert e.tech_load["t-1"] == 1


# -- field statuses ---------------------------------------------------------------------------------


def test_field_statuses_move_a_preventive_order_through_its_lifecycle() -> None:
    e = engine(PLAN, devices=1)
    (order,) = run(e, 10 * DAY)
    t = order.ts
    e.handle(status(order, 1, "accepted", t), t)
    e.handle(status(order, 2, "arrived", t), t)
    e.handle(status(order, 3, "part_missing", t), t)
    assert e.preventive[order.work_order_id].state == "awaiting_part"
    assert (e.stats["second_visits"], e.stats["second_visits_part_missing"]) == (1, 1)
    e.handle(status(order, 4, "closed", t), t)  # the field gave up
    assert e.preventive == {} and e.preventive_of == {}
    e.handle(status(order, 5, "accepted", t), t)  # too late: an order it no longer has
    assert e.stats["unknown_work_order_status"] == 1


def test_a_status_out_of_turn_is_counted_and_not_applied() -> None:
    e = engine(PLAN, devices=1)
    (order,) = run(e, 10 * DAY)
    e.handle(status(order, 1, "fixed", order.ts), order.ts)
    assert e.preventive[order.work_order_id].state == "created"
    assert e.stats["field_status_out_of_order"] == 1


# -- usage ------------------------------------------------------------------------------------------


USAGE = MaintenancePlan(
    name="hours_service", usage_sensor="run_hours", every_usage=500.0, skill="refrigeration", services=["x"]
)


def hours(e: Engine, t: float, readings: dict[str, float]) -> None:
    e.handle_readings(
        [
            Telemetry(device_id=d, ts=t, boot_id=0, seq=int(t // 3600) + 1, values={"run_hours": h})
            for d, h in readings.items()
        ]
    )


def test_a_usage_plan_is_due_when_the_counter_passes_its_grid_point() -> None:
    e = engine(USAGE, devices=2)
    a, b = "fr-000", "fr-001"
    pa, pb = (float(x) * 500.0 for x in phases(USAGE.name, [a, b]))
    hours(e, 0.0, {a: pa - 1.0, b: pb + 1.0})
    assert orders(e.advance(0.0)) == []  # the first reading is where the count starts
    hours(e, 3600.0, {a: pa + 1.0, b: pb + 2.0})
    sent = orders(e.advance(3600.0))
    assert [o.device_id for o in sent] == [a]  # a passed its point; b was past it already
    hours(e, 7200.0, {a: pa + 2.0, b: pb + 501.0})
    assert [o.device_id for o in orders(e.advance(7200.0))] == [b]


def test_a_usage_plan_without_readings_sends_nothing() -> None:
    e = engine(USAGE, devices=3)
    assert run(e, 30 * DAY) == []


# -- restart and partitions ---------------------------------------------------------------------------


def test_a_restart_keeps_the_schedule_and_the_orders_out() -> None:
    def fresh() -> Engine:
        return engine(PLAN, USAGE, devices=30)

    straight, broken = fresh(), fresh()
    for e in (straight, broken):
        hours(e, 0.0, {"fr-000": 10.0})
    first = run(straight, 6 * DAY)
    assert run(broken, 6 * DAY) == first
    for e in (straight, broken):
        close(e, first[0], 6 * DAY)
    saved = msgspec.json.encode(broken.snapshot())
    restarted = fresh()
    restarted.restore(msgspec.json.decode(saved, type=Snapshot), dict(broken.stats))
    assert restarted.usage_seen == {"hours_service": {"fr-000": 10.0}}
    later = run(straight, 16 * DAY, start_s=6 * DAY + 3600.0)
    assert run(restarted, 16 * DAY, start_s=6 * DAY + 3600.0) == later
    assert later and restarted.snapshot() == straight.snapshot()


def test_a_maintenance_plan_is_decided_device_by_device() -> None:
    config = EngineConfig(maintenance=[PLAN])
    check_partitionable(config, Partition(0, 2, 2))  # no refusal: a partition schedules its own devices
