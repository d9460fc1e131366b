"""Failure physics and connectivity against theory: mean lives, competing risks, cohorts, usage,
firmware, consumables, Wiener precursors, and the link's conservation and ordering laws."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from sim.fleet import DAY_S, FleetState
from sim.link import Link
from sim.records import Records
from sim.scenario import Fleet
from sim.scenario_file import validate_data

SENSOR = {"name": "temp_c", "baseline": 20.0, "noise_sd": 0.0}


def fleet(count: int = 10_000, **fields: Any) -> Fleet:
    """A fleet (validated through the scenario reader) with one sensor and the given modes."""
    spec = {"name": "f", "product": "custom_widget", "count": count, "telemetry_interval_s": 900, "sensors": [SENSOR]}
    spec.update(fields)
    data = {
        "name": "physics",
        "duration_days": 1,
        "fleets": [spec],
        "contact_centre": {"agents": 1},
        "technicians": {"count": 1},
        "engine": {"default_issue": "fix", "issues": {"fix": {"skill": "general"}}},
    }
    scenario, problems = validate_data(data)
    assert scenario is not None, problems
    return scenario.fleets[0]


def mode(name: str, life: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": name, "life_days": life, "symptom": "broken", **extra}


def t_interval(samples: list[float], level: float = 0.99) -> tuple[float, float]:
    a = np.asarray(samples)
    half = stats.t.ppf(0.5 + level / 2, len(a) - 1) * a.std(ddof=1) / math.sqrt(len(a))
    return float(a.mean() - half), float(a.mean() + half)


def first_lives_days(spec: Fleet, seed: int, j: int = 0) -> np.ndarray:
    return FleetState(spec, seed).next_fail[j] / DAY_S


# -- lives ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("life", "mean"),
    [
        ({"dist": "weibull", "shape": 2.5, "scale": 1800}, 1800 * math.gamma(1 + 1 / 2.5)),
        ({"dist": "weibull", "shape": 0.8, "scale": 500}, 500 * math.gamma(1 + 1 / 0.8)),
        ({"dist": "lognormal", "mean": 900, "sd": 600}, 900.0),
        ({"dist": "gamma", "shape": 3, "scale": 200}, 600.0),
        ({"dist": "wiener", "drift": 0.5, "volatility": 2.0, "threshold": 400}, 800.0),
    ],
)
def test_mean_life_matches_the_distribution(life: dict[str, Any], mean: float) -> None:
    spec = fleet(5_000, failure_modes=[mode("wear", life)])
    replications = [float(first_lives_days(spec, seed).mean()) for seed in range(12)]
    low, high = t_interval(replications)
    assert low <= mean <= high, (low, mean, high)


def test_competing_risks_split_failures_by_hazard() -> None:
    """Two exponential modes (means 1000 and 3000 days): 3/4 of first failures are the first mode's."""
    spec = fleet(
        5_000,
        failure_modes=[
            mode("a", {"dist": "exponential", "mean": 1000}),
            mode("b", {"dist": "exponential", "mean": 3000}),
        ],
    )
    shares = [float((FleetState(spec, seed).next_fail.argmin(axis=0) == 0).mean()) for seed in range(12)]
    low, high = t_interval(shares)
    assert low <= 0.75 <= high, (low, high)


def test_first_failure_time_of_competing_exponentials_is_exponential_with_summed_rate() -> None:
    spec = fleet(
        20_000,
        failure_modes=[
            mode("a", {"dist": "exponential", "mean": 1000}),
            mode("b", {"dist": "exponential", "mean": 3000}),
        ],
    )
    first = FleetState(spec, 3).next_fail.min(axis=0) / DAY_S
    assert stats.kstest(first, stats.expon(scale=750).cdf).pvalue > 0.001


def test_a_cohort_life_factor_scales_that_cohorts_lives_only() -> None:
    spec = fleet(
        20_000,
        failure_modes=[mode("wear", {"dist": "weibull", "shape": 2.0, "scale": 1000})],
        cohorts={"batch": {"good": {"share": 0.5}, "bad": {"share": 0.5, "life_factor": {"wear": 0.4}}}},
    )
    state = FleetState(spec, 1)
    names, which = state.cohort["batch"]
    lives = state.next_fail[0] / DAY_S
    good, bad = lives[which == names.index("good")], lives[which == names.index("bad")]
    assert 0.45 < len(bad) / len(lives) < 0.55
    assert bad.mean() / good.mean() == pytest.approx(0.4, rel=0.05)


def test_usage_driven_lives_shorten_with_usage() -> None:
    spec = fleet(
        20_000,
        usage={"dist": "uniform", "low": 0.5, "high": 2.0},
        failure_modes=[
            mode("pads", {"dist": "weibull", "shape": 3.0, "scale": 400}, usage_driven=True),
            mode("random", {"dist": "exponential", "mean": 400}),
        ],
    )
    state = FleetState(spec, 2)
    heavy, light = state.usage > 1.5, state.usage < 0.7
    pads = state.next_fail[0]
    assert pads[heavy].mean() < 0.5 * pads[light].mean()
    random = state.next_fail[1]  # not usage-driven: the same whatever the usage
    assert random[heavy].mean() / random[light].mean() == pytest.approx(1.0, rel=0.1)


def test_an_aged_fleet_of_wear_out_units_fails_sooner_than_a_new_one() -> None:
    wear = [mode("wear", {"dist": "weibull", "shape": 3.0, "scale": 1000})]
    new = first_lives_days(fleet(10_000, failure_modes=wear), 4)
    old = first_lives_days(fleet(10_000, failure_modes=wear, age_days={"dist": "fixed", "value": 900}), 4)
    assert old.mean() < 0.5 * new.mean()


# -- firmware -----------------------------------------------------------------------------------


def firmware_fleet() -> Fleet:
    return fleet(
        4_000,
        firmware={"1.0": 0.5, "1.1": 0.5, "1.3": 0.0},  # no device starts on 1.3; an update brings it
        failure_modes=[
            mode("bug", {"dist": "exponential", "mean": 100}, firmware=["1.1", "1.3"], remote_fix={"action": "ota"})
        ],
    )


def test_a_firmware_bound_mode_strikes_only_devices_running_those_versions() -> None:
    state = FleetState(firmware_fleet(), 5)
    on_11 = state.firmware == state.versions.index("1.1")
    assert np.isfinite(state.next_fail[0][on_11]).all()
    assert np.isinf(state.next_fail[0][~on_11]).all()
    assert 0.45 < on_11.mean() < 0.55


def test_an_update_removes_the_bug_and_a_bad_update_brings_it() -> None:
    state = FleetState(firmware_fleet(), 5)
    device = int(np.flatnonzero(state.firmware == state.versions.index("1.1"))[0])
    state.pop_due(state.next_fail[0, device])
    assert state.failed[0, device]
    assert state.set_firmware(device, "1.2", 10 * DAY_S) == [0]  # failed and now gone
    state.failed[0, device] = False
    assert math.isinf(state.next_fail[0, device])
    assert state.set_firmware(device, "1.3", 20 * DAY_S) == []
    assert state.next_fail[0, device] > 20 * DAY_S
    assert state.version_of(device) == "1.3"


# -- consumables --------------------------------------------------------------------------------


def ink_fleet(count: int = 1_000) -> Fleet:
    return fleet(
        count,
        consumables=[
            {
                "name": "ink",
                "sensor": "ink_pct",
                "capacity": 100,
                "drain_per_day": {"dist": "uniform", "low": 1, "high": 4},
                "start_fraction": {"dist": "fixed", "value": 1.0},
                "symptom": "no_ink",
            }
        ],
    )


def test_a_consumable_runs_empty_when_its_level_reaches_zero_and_its_sensor_reports_the_level() -> None:
    state = FleetState(ink_fleet(), 1)
    empty_at = state.next_fail[0]
    per_day = state.rate[0] * DAY_S
    np.testing.assert_allclose(empty_at / DAY_S, 100.0 / per_day)
    level = state.readings(10 * DAY_S)[1]
    np.testing.assert_allclose(level, np.maximum(100.0 - 10 * per_day, 0.0))
    assert state.newly_low(10 * DAY_S) == [] or all(c == 0 for c, _ in state.newly_low(10 * DAY_S))


def test_a_refill_fills_to_capacity_and_reschedules_the_run_out() -> None:
    state = FleetState(ink_fleet(), 1)
    t = float(state.next_fail[0, 0])
    assert (0, 0) in state.pop_due(t)
    state.renew(0, 0, t + DAY_S)
    assert state.readings(t + DAY_S)[1, 0] == pytest.approx(100.0)
    assert state.next_fail[0, 0] == pytest.approx(t + DAY_S + 100.0 / state.rate[0, 0])


def test_low_level_is_reported_once_per_cycle() -> None:
    state = FleetState(ink_fleet(10), 1)
    late = 100 * DAY_S  # even the slowest (1 %/day) is empty by then
    first = state.newly_low(late)
    assert sorted(d for _, d in first) == list(range(10))
    assert state.newly_low(late + 1) == []


# -- precursors -----------------------------------------------------------------------------------


def test_a_wiener_precursor_starts_at_zero_wanders_and_reaches_its_delta_at_the_failure() -> None:
    spec = fleet(
        2_000,
        failure_modes=[
            mode(
                "bearing",
                {"dist": "uniform", "low": 40, "high": 60},
                precursor={
                    "sensor": "temp_c",
                    "lead_time_days": 20,
                    "delta": 10.0,
                    "path": "wiener",
                    "volatility": 0.3,
                },
            )
        ],
    )
    state = FleetState(spec, 3)
    end = state.next_fail[0]
    paths = []
    for day in np.arange(0, 61, 0.25):
        values = state.readings(day * DAY_S)[0] - 20.0
        paths.append(values)
    series = np.array(paths)  # (time, device)
    times = np.arange(0, 61, 0.25) * DAY_S
    before = times[:, None] < end[None, :] - 20 * DAY_S
    assert np.all(series[before] == 0.0)
    last = np.array([series[np.searchsorted(times, e) - 1, d] for d, e in enumerate(end)])
    assert np.median(last) > 8.0  # close to 10 on the last tick before the failure
    mid = (times[:, None] > end[None, :] - 10.5 * DAY_S) & (times[:, None] < end[None, :] - 9.5 * DAY_S)
    assert 3.0 < series[mid].mean() < 7.0  # about half way on average
    assert series[mid].std() > 0.5  # and it wanders


# -- connectivity ---------------------------------------------------------------------------------


def link_run(spec_fields: dict[str, Any], n: int, ticks: int, seed: int) -> tuple[Link, list[Any]]:
    spec = fleet(n, connectivity=spec_fields).connectivity
    link = Link(spec, "f", n, seed, Records())
    out = []
    for tick in range(1, ticks + 1):
        now = tick * 900.0
        values = np.vstack([np.full(n, float(tick)), np.arange(n, dtype=float)])
        rows, _ = link.step(now, tick, values)
        out.append(rows)
    return link, out


@settings(deadline=None, max_examples=25)
@given(
    n=st.integers(1, 60),
    ticks=st.integers(1, 80),
    seed=st.integers(0, 2**16),
    every=st.floats(0.05, 3.0),
    late=st.floats(0.0, 0.5),
    skew=st.floats(0.0, 120.0),
    buffer_max=st.integers(0, 50),
)
def test_every_reading_is_delivered_dropped_or_still_held_and_timestamps_rise_per_device(
    n: int, ticks: int, seed: int, every: float, late: float, skew: float, buffer_max: int
) -> None:
    spec = {
        "offline_every_days": {"dist": "exponential", "mean": every},
        "offline_h": {"dist": "exponential", "mean": 3.0},
        "buffer_max_readings": buffer_max,
        "late_share": late,
        "late_s": {"dist": "exponential", "mean": 1800},
        "clock_skew_s": skew,
    }
    link, out = link_run(spec, n, ticks, seed)
    delivered = sum(len(r.device) for r in out)
    pending = 0 if link._late is None else len(link._late.device)
    assert delivered + link.dropped + link.buffered + pending == n * ticks  # no reading made or lost unseen
    device = np.concatenate([r.device for r in out])
    seq = np.concatenate([r.seq for r in out])
    ts = np.concatenate([r.ts for r in out])
    tick_value = np.concatenate([r.values[0] for r in out])
    np.testing.assert_array_equal(tick_value, seq)  # a reading keeps its own values and seq
    np.testing.assert_array_equal(np.concatenate([r.values[1] for r in out]), device)
    for d in range(n):
        mine = device == d
        assert len(set(seq[mine].tolist())) == int(mine.sum())  # no reading twice
        order = np.argsort(seq[mine])
        assert np.all(np.diff(ts[mine][order]) >= 0)  # per-device timestamps monotone in seq


def test_devices_offline_send_their_buffer_when_they_return() -> None:
    spec = fleet(50).connectivity
    link = Link(spec, "f", 50, 1, Records())
    link.force_offline(np.arange(10), until=4 * 900.0)
    sizes = []
    for tick in range(1, 8):
        rows, back = link.step(tick * 900.0, tick, np.zeros((1, 50)))
        sizes.append((len(rows.device), back.tolist()))
    assert sizes[0][0] == 40 and sizes[2][0] == 40
    assert sizes[3] == (50 + 3 * 10, list(range(10)))  # the reconnect storm: 3 buffered ticks each
    assert sizes[4][0] == 50


def test_without_a_buffer_offline_readings_are_dropped_and_counted() -> None:
    spec = fleet(20, connectivity={"buffer": False}).connectivity
    link = Link(spec, "f", 20, 1, Records())
    link.force_offline(np.arange(5), until=3 * 900.0)
    total = sum(len(link.step(t * 900.0, t, np.zeros((1, 20)))[0].device) for t in range(1, 6))
    assert link.dropped == 10 and total == 100 - 10
