"""A service with no field crews (``technicians: {count: 0}``): work orders wait, nobody attends, KPIs say so.

The world and the engine core run in one loop here (the harness's barrier without a broker): what the
world publishes at each step goes to the engine, and the engine's messages come back at the step's end.
"""

from __future__ import annotations

import math
from typing import Any

from contracts import BatchView, Kind, Message, Topics, decode, decode_batch
from sim.kpis import compute_kpis
from sim.scenario import Scenario
from sim.scenario_file import validate_data
from sim.world import World
from support_engine.core.actions import CreateWorkOrder, Notify, OrderConsumable, SendCommand
from support_engine.core.engine import Engine

DAY = 86400.0
TOPICS = Topics()


def no_crews(**technicians: Any) -> Scenario:
    data = {
        "name": "no_field",
        "duration_days": 10,
        "seed": 2,
        "fleets": [
            {
                "name": "box",
                "product": "box",
                "count": 100,
                "telemetry_interval_s": 3600,
                "sensors": [{"name": "temp_c", "baseline": 20.0}],
                "failure_modes": [
                    {
                        "name": "board",
                        "life_days": {"dist": "exponential", "mean": 100},
                        "symptom": "dead",
                        "repair": {"skill": "electrics"},
                    }
                ],
                "owners": {"patience_s": None},
            }
        ],
        "contact_centre": {"agents": 2},
        "technicians": technicians,
        "engine": {"symptoms": {"dead": "board"}, "issues": {"board": {"skill": "electrics"}}},
    }
    scenario, problems = validate_data(data)
    assert scenario is not None, problems
    return scenario


def closed_loop(scenario: Scenario) -> tuple[World, Engine]:
    world, engine = World(scenario), Engine(scenario.engine)
    step = scenario.sync_interval_s
    for k in range(1, math.ceil(scenario.duration_s / step) + 1):
        now = min(k * step, scenario.duration_s)
        actions = []
        for topic, payload in world.advance(now):
            kind, key, _ = TOPICS.parse(topic)
            message: Message | BatchView = (
                decode_batch(payload, key=key) if kind is Kind.BATCH else decode(kind, payload, key=key)
            )
            actions += engine.handle(message, now)
        actions += engine.advance(now)
        for action in actions:
            if isinstance(action, CreateWorkOrder | Notify | SendCommand | OrderConsumable):
                world.deliver(action.message)
    return world, engine


def test_count_zero_without_crews_is_accepted_as_a_service_with_no_field_crews() -> None:
    assert no_crews(count=0).technicians.count == 0
    assert no_crews().technicians.crews == []  # `technicians: {}` too: count defaults to 0


def test_work_orders_wait_unattended_and_the_kpis_say_so_without_dividing_by_zero() -> None:
    scenario = no_crews(count=0)
    world, engine = closed_loop(scenario)
    assert world.field.technicians == []
    assert engine.stats["work_orders"] > 0  # owners called; the engine sent work orders
    assert world.field.waiting == engine.stats["work_orders"] == len(world.records.jobs)
    assert all(job.visits == 0 and job.outcome == "open" for job in world.records.jobs.values())
    kpis = compute_kpis(scenario, world.records, engine.stats, scenario.duration_s, world.summary())
    field = kpis["field"]
    assert field["technicians"] == 0 and field["queue_arrivals"] == field["waiting_now"] == kpis["work_orders"]
    assert field["utilisation"] is None and field["mean_response_h"] is None and field["queue_mean_wait_h"] is None
    assert kpis["truck_rolls_per_1000_devices"] == 0.0 and kpis["first_time_fix_rate"] == 0.0
    assert kpis["restored_by"]["technician"] == 0 and kpis["incidents"] > 0
    assert kpis["mttr_hours"] == 0.0  # nothing was restored: an average over nothing
    assert kpis["availability"] < 1.0 and kpis["cost"]["field"] == 0.0
    assert math.isfinite(kpis["downtime_hours_per_device_year"])


def test_the_same_run_with_a_crew_does_attend() -> None:
    world, _ = closed_loop(no_crews(count=2))
    assert any(job.visits for job in world.records.jobs.values())
    assert world.summary()["field"]["utilisation"] > 0
