"""The contact centre: Erlang C and Little's law, skills routing, shifts, abandonment, channels, determinism."""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Generator
from typing import Any, NamedTuple

import numpy as np
import pytest
import simpy
from scipy import stats

from sim.contact_centre import CallOutcome, ContactCentre, QueueStats, shift_state
from sim.distributions import Exponential, Fixed
from sim.scenario import AgentGroup, Shift
from sim.scenario import ContactCentre as Spec
from sim.streams import Stream

HOUR = 3600.0
DAY = 24 * HOUR
WEEK = 7 * DAY
WEEKDAYS = [0, 1, 2, 3, 4]


class Call(NamedTuple):
    at: float
    kw: dict[str, Any]


def story(
    spec: Spec, calls: list[Call], *, until: float | None, seed: int = 1
) -> tuple[ContactCentre, dict[int, CallOutcome], dict[int, float]]:
    """Place ``calls`` (caller i is the i-th call, k=0); return the centre, outcomes and answer times.

    ``until=None`` runs until nothing is left to do (only without shifts: a roster runs forever).
    """
    env = simpy.Environment()
    centre = ContactCentre(env, spec, seed)
    outcomes: dict[int, CallOutcome] = {}
    answered_at: dict[int, float] = {}

    def caller(i: int, call: Call) -> Generator[simpy.Event, Any, None]:
        yield env.timeout(call.at)
        kw = {"channel": "phone", "skill": "general", **call.kw}
        outcomes[i] = yield from centre.call(i, 0, on_answer=lambda _agent: answered_at.setdefault(i, env.now), **kw)

    for i, call in enumerate(calls):
        env.process(caller(i, call))
    env.run(until=until)
    return centre, outcomes, answered_at


def fixed(handle_s: float = 100.0, **kw: Any) -> Spec:
    return Spec(handle_time_s=Fixed(value=handle_s), **kw)


# -- Erlang C: M/M/55 at 48 erlangs ------------------------------------------------------------------

AGENTS, MEAN_HANDLE_S, RATE = 55, 240.0, 48 / 240.0
WARM_UP_S, RUN_S, REPLICATIONS = 2400.0, 60_000.0, 12


def erlang_c(a: float, c: int) -> float:
    """Probability that a call waits in M/M/c with offered load ``a`` erlangs (via Erlang B's recursion)."""
    b = 1.0
    for k in range(1, c + 1):
        b = a * b / (k + a * b)
    rho = a / c
    return b / (1 - rho + rho * b)


class Replication(NamedTuple):
    p_wait: float
    mean_wait_s: float
    queue_length: float  # time-average number waiting
    arrival_rate: float


def replicate(seed: int) -> Replication:
    """One M/M/55 run; figures over [warm-up, warm-up + RUN_S] from the centre's own statistics."""
    env = simpy.Environment()
    centre = ContactCentre(env, Spec(agents=AGENTS, handle_time_s=Exponential(mean_=MEAN_HANDLE_S)), seed)
    rng = np.random.default_rng(seed)

    def caller(i: int) -> Generator[simpy.Event, Any, None]:
        yield from centre.call(i, 0, channel="phone", skill="general")

    def arrivals() -> Generator[simpy.Event, Any, None]:
        for i in range(10**9):
            yield env.timeout(rng.exponential(1 / RATE))
            env.process(caller(i))

    env.process(arrivals())
    env.run(until=WARM_UP_S)
    before = dataclasses.replace(centre.stats["general"])
    env.run(until=WARM_UP_S + RUN_S)
    after = centre.stats["general"]
    answered = after.answered - before.answered
    return Replication(
        p_wait=(after.waited - before.waited) / answered,
        mean_wait_s=(after.total_wait_s - before.total_wait_s) / answered,
        queue_length=(after.queue_area(WARM_UP_S + RUN_S) - before.queue_area(WARM_UP_S)) / RUN_S,
        arrival_rate=(after.arrivals - before.arrivals) / RUN_S,
    )


@functools.cache
def replications() -> list[Replication]:
    return [replicate(seed) for seed in range(1001, 1001 + REPLICATIONS)]


def t_interval(values: list[float], confidence: float = 0.99) -> tuple[float, float]:
    n = len(values)
    mean, half = (
        float(np.mean(values)),
        stats.t.ppf((1 + confidence) / 2, n - 1) * np.std(values, ddof=1) / math.sqrt(n),
    )
    return mean - half, mean + half


def test_the_erlang_c_helper_gives_the_textbook_figures() -> None:
    a = RATE * MEAN_HANDLE_S
    p_wait = erlang_c(a, AGENTS)
    assert f"{p_wait:.3}" == "0.239"  # 0.2387
    assert f"{p_wait / (AGENTS / MEAN_HANDLE_S - RATE):.3}" == "8.18"
    assert erlang_c(1.0, 1) == pytest.approx(1.0)  # M/M/1 at load 1 always waits


def test_waits_match_erlang_c_within_a_99_percent_confidence_interval() -> None:
    runs = replications()
    p_low, p_high = t_interval([r.p_wait for r in runs])
    w_low, w_high = t_interval([r.mean_wait_s for r in runs])
    assert p_low <= 0.2387 <= p_high
    assert w_low <= 8.18 <= w_high
    # tight enough to mean something: ±15% on P(wait) and ±40% on the (skewed) mean wait
    assert p_high - p_low < 2 * 0.15 * 0.2387
    assert w_high - w_low < 2 * 0.40 * 8.18


def test_littles_law_holds_for_the_queue() -> None:
    for r in replications():
        assert r.queue_length == pytest.approx(r.arrival_rate * r.mean_wait_s, rel=0.03)


def test_a_single_skill_centre_waits_exactly_as_a_fifo_simpy_resource() -> None:
    """Same arrivals, same keyed handling times: the centre's waits are those of an M/M/c FIFO queue."""
    seed, spec = 5, Spec(agents=AGENTS, handle_time_s=Exponential(mean_=MEAN_HANDLE_S))
    times = np.cumsum(np.random.default_rng(seed).exponential(1 / RATE, 2000))
    handle = Stream(seed, "contact_centre", "handle")
    env = simpy.Environment()
    agents = simpy.Resource(env, capacity=AGENTS)
    reference: dict[int, float] = {}

    def caller(i: int) -> Generator[simpy.Event, Any, None]:
        yield env.timeout(times[i])
        with agents.request() as request:
            yield request
            reference[i] = env.now - times[i]
            yield env.timeout(float(spec.handle_time_s.ppf(handle.one(i, 0))))

    for i in range(len(times)):
        env.process(caller(i))
    env.run()
    _, outcomes, _ = story(spec, [Call(t, {}) for t in times], until=None, seed=seed)
    assert [outcomes[i].wait_s for i in range(len(times))] == [reference[i] for i in range(len(times))]
    assert sum(w > 0 for w in reference.values()) > 100  # the queue was exercised


# -- skills ----------------------------------------------------------------------------------------


def test_a_call_goes_only_to_a_group_with_its_skill() -> None:
    spec = fixed(
        groups=[
            AgentGroup(name="billing", agents=2, skills=["billing"]),
            AgentGroup(name="tech", agents=1, skills=["tech"]),
        ]
    )
    centre, out, _ = story(spec, [Call(0, {"skill": "tech"}), Call(1, {"skill": "tech"})], until=1000)
    assert (out[0].agent, out[0].wait_s) == ("tech-000", 0)
    assert (out[1].agent, out[1].wait_s) == ("tech-000", 99)  # both billing agents sat idle
    assert centre.can_serve("billing") and centre.can_serve("tech")
    assert not centre.can_serve("plumbing")
    assert set(centre.stats) == {"tech"}


def test_a_call_no_group_can_serve_raises() -> None:
    env = simpy.Environment()
    centre = ContactCentre(env, fixed(groups=[AgentGroup(name="billing", agents=1, skills=["billing"])]), 1)
    with pytest.raises(ValueError, match="plumbing"):
        next(centre.call(0, 0, channel="phone", skill="plumbing"))


def test_a_multi_skilled_agent_takes_the_oldest_call_across_its_queues() -> None:
    spec = fixed(groups=[AgentGroup(name="both", agents=1, skills=["billing", "tech"])])
    calls = [Call(0, {"skill": "billing"}), Call(10, {"skill": "tech"}), Call(20, {"skill": "billing"})]
    _, _, answered_at = story(spec, calls, until=1000)
    assert answered_at == {0: 0, 1: 100, 2: 200}


def test_the_agent_idle_longest_answers_and_ids_break_ties() -> None:
    spec = fixed(agents=2, handle_time_by_channel={"chat": Fixed(value=10.0)})
    calls = [Call(0, {}), Call(0, {"channel": "chat"}), Call(200, {})]
    _, out, _ = story(spec, calls, until=1000)
    assert [out[i].agent for i in range(3)] == ["agents-000", "agents-001", "agents-001"]


# -- shifts ----------------------------------------------------------------------------------------

DAY_SHIFT = AgentGroup(name="day", agents=1, shifts=[Shift(start_h=8, end_h=17, days=WEEKDAYS)])


def test_a_day_shift_answers_nothing_at_night_or_at_the_weekend() -> None:
    calls = [Call(h * HOUR + 1, {"channel": "chat"}) for h in range(0, 24 * 14, 5)]
    spec = fixed(60.0, groups=[DAY_SHIFT])
    _, _, answered_at = story(spec, calls, until=3 * WEEK)
    assert len(answered_at) == len(calls)
    for t in answered_at.values():
        assert 8 * HOUR <= t % DAY < 17 * HOUR
        assert (t % WEEK) // DAY in WEEKDAYS


def test_calls_wait_for_the_shift_to_start() -> None:
    saturday_10h = 5 * DAY + 10 * HOUR
    _, out, answered_at = story(fixed(groups=[DAY_SHIFT]), [Call(2 * HOUR, {}), Call(saturday_10h, {})], until=2 * WEEK)
    assert answered_at == {0: 8 * HOUR, 1: WEEK + 8 * HOUR}
    assert out[0].wait_s == 6 * HOUR


def test_an_agent_busy_at_shift_end_finishes_the_call_then_goes_off() -> None:
    calls = [Call(17 * HOUR - 60, {}), Call(17 * HOUR + 30, {})]
    centre, out, answered_at = story(fixed(600.0, groups=[DAY_SHIFT]), calls, until=2 * DAY)
    assert out[0].handle_s == 600  # runs 10 minutes past the shift
    assert answered_at[1] == DAY + 8 * HOUR  # not taken at 17:09 when the agent freed up
    summary = centre.summary(2 * DAY)
    assert summary["occupancy"] == pytest.approx(1200 / (2 * 9 * HOUR + 540))


def test_an_overnight_shift_belongs_to_the_day_it_starts() -> None:
    night = [Shift(start_h=22, end_h=6, days=[0])]
    assert shift_state(night, 23 * HOUR) == (True, DAY + 6 * HOUR)  # Monday night
    assert shift_state(night, DAY + 5 * HOUR) == (True, DAY + 6 * HOUR)  # Tuesday morning, Monday's shift
    assert shift_state(night, DAY + 7 * HOUR) == (False, WEEK + 22 * HOUR)
    sunday = [Shift(start_h=22, end_h=6, days=[6])]
    assert shift_state(sunday, 3 * HOUR) == (True, 6 * HOUR)  # last week's Sunday shift runs into Monday
    spec = fixed(groups=[AgentGroup(name="night", agents=1, shifts=night)])
    _, _, answered_at = story(spec, [Call(DAY + 5 * HOUR, {}), Call(DAY + 7 * HOUR, {})], until=2 * WEEK)
    assert answered_at == {0: DAY + 5 * HOUR, 1: WEEK + 22 * HOUR}


def test_touching_shifts_merge_and_a_group_with_no_days_never_works() -> None:
    split = [Shift(start_h=8, end_h=12, days=[0]), Shift(start_h=12, end_h=17, days=[0])]
    assert shift_state(split, 9 * HOUR) == (True, 17 * HOUR)
    assert shift_state([Shift(start_h=8, end_h=17, days=[])], 0.0) == (False, math.inf)
    assert shift_state([Shift(start_h=0, end_h=24)], 3 * DAY)[0]


# -- abandonment -----------------------------------------------------------------------------------


def test_a_caller_whose_patience_runs_out_abandons() -> None:
    calls = [Call(0, {}), Call(10, {"patience_s": 60.0}), Call(20, {"patience_s": 1000.0})]
    centre, out, answered_at = story(fixed(300.0, agents=1, service_level_s=20.0), calls, until=1000)
    assert out[1] == CallOutcome(answered=False, wait_s=60.0, handle_s=0.0, agent="", resolved=False)
    assert 1 not in answered_at
    assert answered_at[2] == 300
    s = centre.stats["general"]
    assert (s.arrivals, s.answered, s.abandoned, s.waited) == (3, 2, 1, 1)
    assert s.abandon_rate == pytest.approx(1 / 3)
    assert s.service_level == pytest.approx(1 / 3)  # only the first call, answered at once
    assert s.mean_wait_s == pytest.approx(280 / 2)
    assert s.p_wait == pytest.approx(0.5)
    assert s.queue_area(1000) == pytest.approx(60 + 280)
    assert s.mean_queue_length(1000) == pytest.approx(0.34)
    assert s.busy_s == pytest.approx(600)
    assert centre.summary(1000)["occupancy"] == pytest.approx(0.6)


def test_empty_stats_give_zero_ratios() -> None:
    s = QueueStats()
    assert (s.mean_wait_s, s.p_wait, s.abandon_rate, s.service_level, s.mean_queue_length(0.0)) == (0, 0, 0, 0, 0)


# -- channels, first-contact resolution, determinism -----------------------------------------------


def test_handling_time_follows_the_channel() -> None:
    spec = fixed(240.0, agents=3, handle_time_by_channel={"chat": Fixed(value=90.0)})
    _, out, _ = story(
        spec, [Call(0, {"channel": "phone"}), Call(0, {"channel": "chat"}), Call(0, {"channel": "app"})], until=1000
    )
    assert [out[i].handle_s for i in range(3)] == [240, 90, 240]


def test_self_service_needs_no_agent() -> None:
    calls = [Call(0, {}), Call(5, {"channel": "self_service", "fixable": True})]
    centre, out, answered_at = story(fixed(300.0, agents=1, first_contact_resolution=1.0), calls, until=1000)
    assert out[1] == CallOutcome(answered=True, wait_s=0.0, handle_s=0.0, agent="self_service", resolved=True)
    assert answered_at[1] == 5  # the only agent was busy
    assert centre.stats["general"].arrivals == 1
    assert centre.summary(1000)["self_service"] == 1


@pytest.mark.parametrize("channel", ["phone", "self_service"])
def test_first_contact_resolution_only_for_fixable_calls(channel: str) -> None:
    calls = [Call(i, {"channel": channel, "fixable": i % 2 == 0}) for i in range(400)]
    _, out, _ = story(fixed(1.0, agents=5, first_contact_resolution=0.7), calls, until=1000)
    fixable = [out[i].resolved for i in range(0, 400, 2)]
    assert not any(out[i].resolved for i in range(1, 400, 2))
    assert 0.6 < np.mean(fixable) < 0.8
    _, always, _ = story(fixed(1.0, agents=5, first_contact_resolution=1.0), calls, until=1000)
    assert [always[i].resolved for i in range(400)] == [i % 2 == 0 for i in range(400)]


def test_the_same_seed_gives_the_same_outcomes() -> None:
    rng = np.random.default_rng(3)
    spec = Spec(
        groups=[
            AgentGroup(name="tier1", agents=2, skills=["general"], shifts=[Shift(start_h=6, end_h=22)]),
            AgentGroup(name="tier2", agents=1),
        ],
        handle_time_s=Exponential(mean_=600.0),
        first_contact_resolution=0.5,
    )
    calls = [
        Call(float(t), {"skill": str(rng.choice(["general", "billing"])), "patience_s": 900.0, "fixable": True})
        for t in np.sort(rng.uniform(0, DAY, 300))
    ]
    first = story(spec, calls, until=2 * DAY, seed=11)[1]
    assert first == story(spec, calls, until=2 * DAY, seed=11)[1]
    assert first != story(spec, calls, until=2 * DAY, seed=12)[1]
    assert {o.agent for o in first.values()} >= {"tier1-000", "tier1-001", "tier2-000", ""}
