"""The world's memory: arrays per device and no Python object per device — ids made when asked and read
back strictly, rosters encoded once, the registry streamed, readings computed where something happens."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts import Command, Topics
from sim.fleet import DeviceIds, FleetState, _add_product
from sim.scenario import Scenario
from sim.scenario_file import load, validate_data, with_overrides
from sim.world import World

DAY = 86400.0
FREEZERS = load(Path(__file__).parents[2] / "scenarios" / "freezers.yaml")


def scenario(fleets: list[dict[str, Any]], days: float = 5.0) -> Scenario:
    data = {
        "name": "memory",
        "duration_days": days,
        "fleets": fleets,
        "contact_centre": {"agents": 1},
        "technicians": {"count": 1},
        "engine": {"default_issue": "fix", "issues": {"fix": {"skill": "general"}}},
    }
    result, problems = validate_data(data)
    assert result is not None, problems
    return result


def freezers(count: int, days: float = 1.0, sync_s: float | None = None) -> Scenario:
    short = with_overrides(FREEZERS, duration_days=days)
    fleet = msgspec.structs.replace(short.fleets[0], count=count)
    return msgspec.structs.replace(short, fleets=[fleet], sync_interval_s=sync_s or short.sync_interval_s)


# -- device ids ---------------------------------------------------------------------------------


def test_device_ids_are_made_when_asked_and_read_back_strictly() -> None:
    ids = DeviceIds("freezer", 2000)
    assert len(ids) == 2000 and ids[0] == "freezer-000000" and ids[-1] == "freezer-001999"
    assert ids[3:6] == ["freezer-000003", "freezer-000004", "freezer-000005"]
    assert list(ids) == [f"freezer-{i:06d}" for i in range(2000)]
    assert all(ids.find(device_id) == i for i, device_id in enumerate(ids))
    for stranger in [
        "freezer-1",
        "freezer-0000001",
        "freezer-002000",  # one past the fleet
        "freezer-+00001",
        "freezer-00_001",
        "freezer- 00001",
        "freezer-\u0660\u0660\u0660\u0660\u0660\u0661",  # Arabic-Indic digits: int() reads them, an id does not
        "freezers-000001",
        "freezer000001",
        "freezer-",
        "",
    ]:
        assert ids.find(stranger) is None, stranger
        assert stranger not in ids
    with pytest.raises(IndexError):
        ids[2000]
    with pytest.raises(ValueError, match="not one of"):
        ids.index("freezer-1")


def test_ids_past_999999_keep_their_seven_digits() -> None:
    ids = DeviceIds("f", 1_000_001)
    assert ids[999_999] == "f-999999" and ids[1_000_000] == "f-1000000"
    assert ids.find("f-1000000") == 1_000_000 and ids.find("f-999999") == 999_999
    assert ids.find("f-01000000") is None and ids.find("f-0999999") is None


def test_an_id_no_fleet_has_is_unknown_to_the_world() -> None:
    spec = {"product": "widget", "sensors": [{"name": "t", "baseline": 1.0}]}
    world = World(scenario([{**spec, "name": "a", "count": 5}, {**spec, "name": "a-1", "count": 5}], days=1.0))
    assert world.index_of("a-000004") == 4 and world.index_of("a-1-000000") == 5
    for stranger in ["a-1", "a-0000001", "a-000005", "a-1-00000", "b-000000"]:
        with pytest.raises(KeyError):
            world.index_of(stranger)
        world.deliver(Command(command_id=f"c-{stranger}", device_id=stranger, ts=0.0, action="reset"))
    assert world.unsent == 0  # no device answered


# -- the registry -------------------------------------------------------------------------------


def test_the_registry_is_streamed_and_written_byte_for_byte_as_the_joined_records(tmp_path: Path) -> None:
    spec = {"product": "widget", "sensors": [{"name": "t", "baseline": 1.0}]}
    world = World(
        scenario(
            [
                {
                    **spec,
                    "name": "north",
                    "count": 23,
                    "regions": {"x": 0.5, "y": 0.5},
                    "firmware": {"1.0": 0.3, "1.1": 0.7},
                    "cohorts": {"batch": {"b1": {"share": 0.5}, "b2": {"share": 0.5}}},
                },
                {**spec, "name": "south", "count": 7},
            ],
            days=1.0,
        )
    )
    records = world.registry()
    assert isinstance(records, Iterator)
    joined = b"".join(msgspec.json.encode(r) + b"\n" for r in records)
    assert joined.count(b"\n") == 30 and b'"cohorts":{"batch":"b' in joined and b'"region":"x"' in joined
    for chunk in (1, 4, 10_000):
        path = tmp_path / f"devices-{chunk}.jsonl"
        assert world.write_registry(path, chunk=chunk) == 30
        assert path.read_bytes() == joined
        assert b"".join(msgspec.json.encode(r) + b"\n" for r in world.registry(chunk)) == joined
    with pytest.raises(ValueError, match="chunk"):
        next(world.registry(0))


# -- readings -----------------------------------------------------------------------------------


def busy_fleet(count: int) -> FleetState:
    """Precursors (two linear on one sensor, one Wiener), effects on every sensor, a consumable; short lives."""
    lives = {"dist": "weibull", "shape": 2.0, "scale": 6.0}
    fleet = {
        "name": "busy",
        "product": "widget",
        "count": count,
        "sensors": [{"name": "a", "baseline": 1.0, "noise_sd": 0.1}, {"name": "b", "baseline": -3.0, "noise_sd": 1.0}],
        "failure_modes": [
            {
                "name": "wear",
                "life_days": lives,
                "symptom": "s",
                "precursor": {"sensor": "a", "lead_time_days": 2.0, "delta": 0.37},
                "effects": [{"sensor": "a", "delta": 0.3}, {"sensor": "b", "delta": -0.45}],
            },
            {
                "name": "leak",
                "life_days": lives,
                "symptom": "s",
                "precursor": {"sensor": "a", "lead_time_days": 1.5, "delta": -0.11},
                "effects": [{"sensor": "a", "delta": 0.7}, {"sensor": "b", "delta": 0.1}],
            },
            {
                "name": "bearing",
                "life_days": lives,
                "symptom": "s",
                "precursor": {"sensor": "b", "lead_time_days": 1.0, "delta": 4.0, "path": "wiener", "volatility": 0.5},
                "effects": [{"sensor": "a", "delta": 0.05}],
            },
        ],
        "consumables": [
            {
                "name": "ink",
                "sensor": "ink",
                "capacity": 10,
                "drain_per_day": {"dist": "uniform", "low": 1, "high": 5},
                "symptom": "empty",
            }
        ],
    }
    return FleetState(scenario([fleet]).fleets[0], 11)


def test_readings_computed_where_something_happens_equal_the_whole_fleet_products_bit_for_bit() -> None:
    sparse, whole = busy_fleet(400), busy_fleet(400)
    whole._sparse = False  # the whole-fleet matrix products, as for a fleet of one sensor row
    for tick in range(1, 4 * 24 * 8):
        now = tick * 900.0
        due = sparse.pop_due(now)
        assert due == whole.pop_due(now)
        for j, d in due[::3]:  # some repaired at once, the rest left failed
            sparse.renew(j, d, now)
            whole.renew(j, d, now)
        if tick % 40 == 0:  # and now and then a device caught while drifting
            d = tick % 400
            sparse.renew(0, d, now)
            whole.renew(0, d, now)
        a, b = sparse.readings(now), whole.readings(now)
        assert a.tobytes() == b.tobytes(), tick
    assert sparse.failed.any() and (sparse._drifting.size < sparse.n)


@settings(deadline=None, max_examples=60)
@given(m=st.integers(1, 6), s=st.integers(2, 5), n=st.integers(2, 300), seed=st.integers(0, 2**32 - 1), data=st.data())
def test_the_product_on_some_columns_is_the_whole_products_columns(
    m: int, s: int, n: int, seed: int, data: Any
) -> None:
    rng = np.random.default_rng(seed)
    delta = rng.normal(size=(m, s)) * (rng.random((m, s)) < 0.7)
    weights = rng.random((m, n)) * (rng.random((m, n)) < 0.7)
    whole = rng.normal(size=(s, n))
    some = whole.copy()
    cols = np.array(sorted(data.draw(st.sets(st.integers(0, n - 1), min_size=1, max_size=min(n, 8)))))
    _add_product(whole, None, delta, weights)
    _add_product(some, cols, delta, weights[:, cols])
    assert some[:, cols].tobytes() == whole[:, cols].tobytes()


# -- bytes per device ---------------------------------------------------------------------------


def traced(count: int, sync_s: float) -> tuple[int, int]:
    """Bytes allocated by a freezers world of ``count`` devices: held once built, and at peak over a day."""
    gc.collect()
    tracemalloc.start()
    try:
        world = World(freezers(count, days=1.0, sync_s=sync_s))
        held = tracemalloc.get_traced_memory()[0]
        t = 0.0
        while t < world.scenario.duration_s:
            t += world.scenario.sync_interval_s
            out = world.advance(t)
            del out
        assert len(world.fleets[0].calendar) < count / 20  # the failures due soon, not one entry per device
        return held, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_world_keeps_about_a_hundred_bytes_per_device_and_a_tick_of_payloads_at_peak() -> None:
    """State: next failure times (5 modes x 8 bytes), life counters (5 x 4), the rosters encoded once,
    usage, flags and codes. Peak: that, one tick's readings (3 x 8 bytes) and its payloads."""
    small, large = traced(10_000, 900.0), traced(30_000, 900.0)
    held, peak = ((b - a) / 20_000 for a, b in zip(small, large, strict=True))
    assert held <= 150, held
    assert peak <= 250, peak


def test_ids_rosters_and_topics_are_made_per_fleet_and_gateway_not_per_device() -> None:
    world = World(freezers(50))
    assert isinstance(world.fleets[0].ids, DeviceIds)
    assert all(isinstance(r.devices, msgspec.Raw) for r in world.fleets[0].rosters)
    assert Topics().batch(world.fleets[0].gateways[0][0]) == world._batch_topics["freezer"][0]
