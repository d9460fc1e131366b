"""The failure calendar: a window of a heap over the fleet's arrays, in the order one heap of every failure gives."""

from __future__ import annotations

import heapq
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.calendar import Calendar
from sim.fleet import DAY_S, FleetState
from sim.scenario import Fleet
from sim.scenario_file import validate_data

INF = math.inf


class OneHeap:
    """Every failure in one heap of (time, mode, device, life) tuples: the design the calendar replaces."""

    def __init__(self, when: np.ndarray, life: np.ndarray, failed: np.ndarray) -> None:
        self.when, self.life, self.failed = when, life, failed
        m, n = when.shape
        self.heap = [(float(when[j, d]), j, d, int(life[j, d])) for j in range(m) for d in range(n)]
        self.heap = [e for e in self.heap if math.isfinite(e[0])]
        heapq.heapify(self.heap)

    def push(self, j: int, d: int) -> None:
        t = float(self.when[j, d])
        if math.isfinite(t):
            heapq.heappush(self.heap, (t, j, d, int(self.life[j, d])))

    def next_time(self, horizon: float = INF) -> float:
        while self.heap:
            t, j, d, k = self.heap[0]
            if k == self.life[j, d] and not self.failed[j, d]:
                return t if t <= horizon else INF
            heapq.heappop(self.heap)
        return INF

    def pop_due(self, now: float) -> list[tuple[int, int]]:
        due = []
        while self.next_time() <= now:
            _, j, d, _ = heapq.heappop(self.heap)
            self.failed[j, d] = True
            due.append((j, d))
        return due


def pair(when: np.ndarray, span_s: float) -> tuple[Calendar, OneHeap, tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    """A calendar and a one-heap model over separate copies of the same arrays."""
    arrays = (when.copy(), np.ones(when.shape, dtype=np.int32), np.zeros(when.shape, dtype=bool))
    model = (when.copy(), np.ones(when.shape, dtype=np.int32), np.zeros(when.shape, dtype=bool))
    return Calendar(*arrays, span_s=span_s), OneHeap(*model), arrays, model


# Times from a small set, so that ties (same time, several modes and devices) are common.
times = st.sampled_from([0.0, 0.5, 1.0, 1.0, 2.0, 2.5, 3.0, 4.0, 7.0, 7.0, 9.5, INF])
steps = st.lists(
    st.one_of(
        st.tuples(st.just("pop"), st.floats(0.0, 3.0)),
        st.tuples(st.just("ask"), st.floats(-1.0, 6.0)),
        st.tuples(st.just("renew"), st.integers(0, 2), st.integers(0, 5), st.sampled_from([0.0, 0.25, 1.0, 3.0, INF])),
    ),
    max_size=40,
)


@settings(deadline=None, max_examples=300)
@given(
    m=st.integers(1, 3),
    n=st.integers(1, 6),
    data=st.data(),
    span_s=st.sampled_from([0.1, 1.0, 2.5, 100.0]),
    ops=steps,
)
def test_the_calendar_pops_what_one_heap_of_everything_pops_in_the_same_order(
    m: int, n: int, data: Any, span_s: float, ops: list[tuple[Any, ...]]
) -> None:
    when = np.array(data.draw(st.lists(times, min_size=m * n, max_size=m * n))).reshape(m, n)
    calendar, model, (c_when, c_life, c_failed), (m_when, m_life, m_failed) = pair(when, span_s)
    now = 0.0
    for op in ops:
        if op[0] == "pop":
            now += op[1]
            assert calendar.pop_due(now) == model.pop_due(now)
        elif op[0] == "ask":
            horizon = now + op[1]
            assert calendar.next_time(horizon) == model.next_time(horizon)
        else:  # a repair or refill now: the next life is due `later` from now (inf: never)
            j, d, later = op[1] % m, op[2] % n, op[3]
            for w, life, failed, schedule in ((c_when, c_life, c_failed, calendar), (m_when, m_life, m_failed, model)):
                failed[j, d] = False
                life[j, d] += 1
                w[j, d] = now + later
                schedule.push(j, d)
    assert calendar.pop_due(1e9) == model.pop_due(1e9)
    np.testing.assert_array_equal(c_failed, m_failed)


def test_a_repair_due_after_the_window_waits_in_the_array_for_the_scan_that_reaches_it() -> None:
    calendar, _, (when, life, failed), _ = pair(np.array([[1.0, 50.0, INF]]), span_s=10.0)
    assert calendar.next_time(1.0) == 1.0
    assert calendar.until == 11.0 and len(calendar) == 1  # only what falls due within the window
    assert calendar.pop_due(1.0) == [(0, 0)]
    failed[0, 0], life[0, 0], when[0, 0] = False, 2, 30.0  # repaired now; fails again at 30, past the window
    calendar.push(0, 0)
    assert len(calendar) == 0
    assert calendar.next_time(20.0) == INF
    assert calendar.pop_due(40.0) == [(0, 0)]  # a scan found it, before the device whose time is 50
    assert calendar.pop_due(INF) == [(0, 1)]


def test_an_entry_made_stale_by_a_reschedule_is_dropped() -> None:
    calendar, _, (when, life, _failed), _ = pair(np.array([[5.0, 6.0]]), span_s=100.0)
    assert calendar.next_time() == 5.0
    life[0, 0], when[0, 0] = 2, 8.0  # rescheduled before it fell due: the entry at 5 is stale
    calendar.push(0, 0)
    assert calendar.pop_due(10.0) == [(0, 1), (0, 0)]


def test_a_span_must_be_positive() -> None:
    with pytest.raises(ValueError, match="span_s"):
        Calendar(np.zeros((1, 1)), np.ones((1, 1), dtype=np.int32), np.zeros((1, 1), dtype=bool), span_s=0.0)


def ink(count: int) -> Fleet:
    """A fleet (through the scenario reader) whose jams and empty cartridges come every few days."""
    spec = {
        "name": "p",
        "product": "custom_printer",
        "count": count,
        "sensors": [{"name": "temp_c", "baseline": 20.0, "noise_sd": 1.0}],
        "failure_modes": [{"name": "jam", "life_days": {"dist": "exponential", "mean": 3.0}, "symptom": "jammed"}],
        "consumables": [
            {
                "name": "ink",
                "sensor": "ink_pct",
                "capacity": 100,
                "drain_per_day": {"dist": "uniform", "low": 5, "high": 40},
                "symptom": "no_ink",
            }
        ],
    }
    data = {
        "name": "calendar",
        "duration_days": 1,
        "fleets": [spec],
        "contact_centre": {"agents": 1},
        "technicians": {"count": 1},
        "engine": {"default_issue": "fix", "issues": {"fix": {"skill": "general"}}},
    }
    scenario, problems = validate_data(data)
    assert scenario is not None, problems
    return scenario.fleets[0]


def test_a_fleet_repaired_as_it_fails_fails_in_the_order_one_heap_gives() -> None:
    state = FleetState(ink(300), 3)
    model = OneHeap(state.next_fail.copy(), state.life_k.copy(), state.failed.copy())
    for hour in range(1, 24 * 20):
        now = hour * 3600.0
        assert state.next_failure_time(now) == model.next_time(now)
        due = state.pop_due(now)
        assert due == model.pop_due(now)
        for j, d in due[::2]:  # half of them repaired at once, the other half left failed
            state.renew(j, d, now)
            model.failed[j, d] = False
            model.life[j, d] = state.life_k[j, d]
            model.when[j, d] = state.next_fail[j, d]
            model.push(j, d)
    assert state.calendar.until < 21 * DAY_S + state.calendar.span_s  # it never scanned further than it was asked
