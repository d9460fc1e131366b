"""Fleet campaigns: cohort excess tests (power, false alarms, the binomial p-value) and staged rollouts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import msgspec
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from contracts.engine_config import CampaignRule
from support_engine.core.campaigns import CAMPAIGN, Campaign, cohort_excess, open_campaign, rollout_order
from support_engine.errors import IllegalTransition
from tests import strategies as _profiles  # noqa: F401  # loads the suite's HYPOTHESIS_PROFILE

ROOT = Path(__file__).parents[2]
DAY = 86400.0


def fleet(sizes: dict[str, int]) -> list[str | None]:
    """A cohort value per device: ``sizes[value]`` devices of each value, in blocks."""
    return [value for value, n in sizes.items() for _ in range(n)]


def campaign(n: int, stages: list[float], **kwargs: object) -> Campaign:
    return Campaign(
        campaign_id="camp-1",
        rule="fw8",
        action="ota",
        cohort="firmware=8.0",
        targets=[f"d{i:03d}" for i in range(n)],
        stages=stages,
        opened_s=0.0,
        version="8.1",
        **kwargs,  # type: ignore[arg-type]
    )


def run_stage(c: Campaign, now: float, *, wait_s: float = DAY, threshold: float = 0.05) -> str:
    """Send what is due at ``now``, then review once the stage's wait is over."""
    c.mark_sent(c.due(), now)
    return c.review(now + wait_s, stage_wait_s=wait_s, abort_failure_rate=threshold)


# -- cohort_excess --------------------------------------------------------------------------------------
def test_a_cohort_failing_four_times_as_often_is_found_alone() -> None:
    cohorts = fleet({"7.1": 600, "7.2": 600, "7.3": 600, "8.0": 200})  # 2,000 devices, 10 % on 8.0
    rate = np.where(np.array(cohorts) == "8.0", 0.2, 0.05)
    for seed in range(20):
        cases = np.random.default_rng(seed).poisson(rate)
        found = cohort_excess(cohorts, cases, min_cases=5, alpha=0.001)
        assert [e.cohort for e in found] == ["8.0"], seed
        (excess,) = found
        assert (excess.devices, excess.rest_devices) == (200, 1800)
        assert excess.cases == cases[1800:].sum()
        assert excess.rest_cases == cases[:1800].sum()
        assert excess.p_value < 0.001 / 4


def test_equal_rates_raise_false_alarms_at_most_at_alpha() -> None:
    repetitions, alpha = 2000, 0.01
    cohorts = fleet({f"B-{k}": 400 for k in range(5)})
    all_cases = np.random.default_rng(7).poisson(0.05, size=(repetitions, len(cohorts)))
    alarms = sum(bool(cohort_excess(cohorts, cases, min_cases=1, alpha=alpha)) for cases in all_cases)
    # Bonferroni bounds the chance of any false alarm in a repetition by alpha: the count of
    # repetitions with one is at most Binomial(repetitions, alpha); allow its upper 1e-6 tail.
    assert alarms <= stats.binom.isf(1e-6, repetitions, alpha)


def test_a_cohort_needs_min_cases() -> None:
    cohorts = fleet({"good": 1000, "bad": 3})
    cases = np.array([0] * 1000 + [1, 1, 1])
    assert cohort_excess(cohorts, cases, min_cases=4, alpha=0.01) == []
    assert [e.cohort for e in cohort_excess(cohorts, cases, min_cases=3, alpha=0.01)] == ["bad"]


def test_devices_of_unknown_cohort_are_left_out() -> None:
    cohorts = fleet({"a": 300, "b": 300})
    cases = np.random.default_rng(3).poisson(np.where(np.array(cohorts) == "b", 0.3, 0.05))
    with_unknown = [*cohorts, *[None] * 500]
    cases_with_unknown = np.concatenate([cases, np.full(500, 3)])  # many cases: would mask b's excess
    found = cohort_excess(with_unknown, cases_with_unknown, min_cases=5, alpha=0.001)
    assert found == cohort_excess(cohorts, cases, min_cases=5, alpha=0.001)
    assert [(e.cohort, e.rest_devices) for e in found] == [("b", 300)]


@pytest.mark.parametrize(
    ("sizes", "cases"),
    [
        ({"x": 10, "y": 90}, [2] * 10 + [0] * 80 + [1] * 10),
        ({"x": 50, "y": 50}, [1] * 30 + [0] * 20 + [1] * 10 + [0] * 40),
        ({"x": 1, "y": 999}, [3] + [0] * 990 + [1] * 9),
    ],
)
def test_the_p_value_is_scipys_one_sided_binomial_test(sizes: dict[str, int], cases: list[int]) -> None:
    found = cohort_excess(fleet(sizes), np.array(cases), min_cases=1, alpha=0.5)
    assert found, "each example is an excess of x"
    x = found[0]
    assert x.cohort == "x"
    expected = stats.binomtest(x.cases, x.cases + x.rest_cases, sizes["x"] / sum(sizes.values()), alternative="greater")
    assert x.p_value == pytest.approx(expected.pvalue, rel=1e-9)


@given(
    st.lists(st.tuples(st.sampled_from(["a", "b", "c", "d", None]), st.integers(0, 6)), max_size=80),
    st.integers(1, 4),
    st.floats(0.01, 0.99),
)
def test_cohort_excess_agrees_with_a_cohort_by_cohort_oracle(
    devices: list[tuple[str | None, int]], min_cases: int, alpha: float
) -> None:
    cohorts = [c for c, _ in devices]
    cases = np.array([k for _, k in devices], dtype=np.int64)
    found = cohort_excess(cohorts, cases, min_cases=min_cases, alpha=alpha)
    known = [(c, k) for c, k in devices if c is not None]
    values = sorted({c for c, _ in known})
    expected = []
    for value in values:
        n = sum(1 for c, _ in known if c == value)
        k = sum(kk for c, kk in known if c == value)
        n_rest, k_rest = len(known) - n, sum(kk for _, kk in known) - k
        if n_rest == 0 or k < min_cases or k / n <= k_rest / n_rest:
            continue  # no rest to compare with, too few cases, or not a higher rate
        p = stats.binomtest(k, k + k_rest, n / len(known), alternative="greater").pvalue
        if p < alpha / len(values):
            expected.append((value, n, k, n_rest, k_rest, p))
    assert [e[:5] for e in found] == [e[:5] for e in sorted(expected, key=lambda e: (e[5], e[0]))]
    for excess, oracle in zip(found, sorted(expected, key=lambda e: (e[5], e[0])), strict=True):
        assert excess.p_value == pytest.approx(oracle[5], rel=1e-9)


def test_a_cohort_with_a_lower_or_equal_rate_is_never_flagged() -> None:
    cohorts = fleet({"low": 100, "equal": 100, "high": 100})
    cases = np.array([0] * 99 + [1] + [1] * 50 + [0] * 50 + [1] * 99 + [0])
    found = cohort_excess(cohorts, cases, min_cases=1, alpha=0.99)
    assert [e.cohort for e in found] == ["high"]
    # "equal" has rate 0.5, the rest (low + high) 100/200 = 0.5: not an excess, however lax alpha is.
    assert all(e.cases * e.rest_devices > e.rest_cases * e.devices for e in found)


def test_equally_significant_cohorts_are_ordered_by_name() -> None:
    cohorts = fleet({"b": 10, "c": 1000, "a": 10, "d": 10})
    cases = np.array([1] * 10 + [0] * 1000 + [1] * 10 + [3] * 10)
    found = cohort_excess(cohorts, cases, min_cases=1, alpha=0.01)
    assert [e.cohort for e in found] == ["d", "a", "b"]
    assert found[1].p_value == found[2].p_value


def test_cohort_excess_refuses_mismatched_inputs() -> None:
    with pytest.raises(ValueError, match="3 cohort values for 2"):
        cohort_excess(["a", "b", "c"], np.array([1, 2]), min_cases=1, alpha=0.01)
    with pytest.raises(ValueError, match="negative"):
        cohort_excess(["a", "b"], np.array([1, -2]), min_cases=1, alpha=0.01)


# -- staged rollout -------------------------------------------------------------------------------------
def test_stages_are_cumulative_and_reach_every_target_once() -> None:
    c = campaign(100, [0.05, 0.25, 1.0])
    assert [c.reach(k) for k in range(3)] == [5, 25, 100]
    reached = []
    for now, expected_new, outcome in [(0.0, 5, "advance"), (DAY, 20, "advance"), (2 * DAY, 75, "complete")]:
        due = c.due()
        assert len(due) == expected_new
        reached += due
        assert run_stage(c, now) == outcome
    assert reached == c.sent == c.targets
    assert c.state == "completed" and c.due() == []
    assert c.reason.startswith("all 100 devices reached")


def test_a_stage_size_is_not_pushed_up_by_rounding() -> None:
    assert campaign(100, [0.07, 1.0]).reach(0) == 7  # 0.07 * 100 == 7.000000000000001
    assert campaign(101, [0.07, 1.0]).reach(0) == 8


def test_a_stage_waits_its_time_from_when_its_devices_went_out() -> None:
    c = campaign(10, [0.5, 1.0])
    c.mark_sent(c.due(), 100.0)
    assert c.review(100.0 + DAY - 1.0, stage_wait_s=DAY, abort_failure_rate=0.05) == "wait"
    assert c.review(100.0 + DAY, stage_wait_s=DAY, abort_failure_rate=0.05) == "advance"
    assert (c.stage, c.stage_started_s) == (1, 100.0 + DAY)


def test_a_tiny_cohort_skips_stages_that_reach_no_one_new() -> None:
    c = campaign(1, [0.05, 0.25, 1.0])
    assert c.due() == ["d000"]
    assert run_stage(c, 0.0) == "complete"
    assert c.sent == ["d000"]


def test_an_empty_cohort_completes_on_the_first_review() -> None:
    c = campaign(0, [0.05, 0.25, 1.0])
    assert c.due() == []
    assert c.review(0.0, stage_wait_s=DAY, abort_failure_rate=0.05) == "complete"
    assert c.state == "completed"
    assert c.review(DAY, stage_wait_s=DAY, abort_failure_rate=0.05) == "done"


def test_failures_at_the_threshold_continue_and_above_it_abort() -> None:
    c = campaign(20, [0.5, 1.0])
    c.mark_sent(c.due(), 0.0)
    assert c.record_failure(c.sent[0])  # 1 of 10: exactly the threshold
    assert c.review(DAY, stage_wait_s=DAY, abort_failure_rate=0.1) == "advance"
    c.mark_sent(c.due(), DAY)
    for device in c.sent[10:13]:  # 4 of 20
        assert c.record_failure(device)
    assert c.review(2 * DAY, stage_wait_s=DAY, abort_failure_rate=0.1) == "abort"
    assert c.state == "aborted"
    assert c.reason == "4 of 20 devices reached failed (20.0%), more than the abort threshold 10.0%"
    assert c.due() == []
    assert c.review(3 * DAY, stage_wait_s=DAY, abort_failure_rate=0.1) == "done"


def test_a_zero_threshold_aborts_on_the_first_failure() -> None:
    c = campaign(10, [1.0])
    c.mark_sent(c.due(), 0.0)
    c.record_failure(c.sent[-1])
    assert c.review(DAY, stage_wait_s=DAY, abort_failure_rate=0.0) == "abort"


def test_a_failure_counts_once_and_only_for_a_device_reached() -> None:
    c = campaign(10, [0.5, 1.0])
    c.mark_sent(c.due(), 0.0)
    first, later = c.sent[0], c.targets[-1]
    assert c.record_failure(first) is True
    assert c.record_failure(first) is False
    assert c.record_failure(later) is False  # a target, not sent yet
    assert c.record_failure("someone-else") is False
    assert c.failed == [first]


def test_only_due_devices_can_be_marked_sent() -> None:
    c = campaign(10, [0.5, 1.0])
    due = c.due()
    with pytest.raises(ValueError, match="not due"):
        c.mark_sent([c.targets[-1]], 0.0)  # a later stage's device
    with pytest.raises(ValueError, match="given twice"):
        c.mark_sent([due[0], due[0]], 0.0)
    c.mark_sent(due[:2], 0.0)
    with pytest.raises(ValueError, match="not due"):
        c.mark_sent(due[:1], 0.0)
    assert c.sent == due[:2]


def test_an_ended_campaign_cannot_end_again() -> None:
    assert CAMPAIGN.is_terminal("completed") and CAMPAIGN.is_terminal("aborted")
    c = campaign(0, [1.0])
    c.review(0.0, stage_wait_s=DAY, abort_failure_rate=0.05)
    with pytest.raises(IllegalTransition, match="'completed' to 'aborted'"):
        c._end("aborted", "too late")


def test_a_campaign_refuses_inconsistent_fields() -> None:
    with pytest.raises(ValueError, match="rise strictly"):
        campaign(10, [0.5, 0.5, 1.0])
    with pytest.raises(ValueError, match=r"ending at 1\.0"):
        campaign(10, [0.5])
    with pytest.raises(ValueError, match="twice"):
        Campaign("c", "r", "ota", "firmware=8.0", ["d1", "d1"], [1.0], 0.0)
    with pytest.raises(ValueError, match="action"):
        Campaign("c", "r", "rollback", "firmware=8.0", ["d1"], [1.0], 0.0)


stage_lists = st.lists(st.floats(0.01, 0.99), max_size=4).map(lambda fs: [*sorted(set(fs)), 1.0])
operations = st.lists(
    st.one_of(
        st.tuples(st.just("send"), st.integers(0, 50)),  # send the first k devices due
        st.tuples(st.just("fail"), st.integers(0, 45)),  # device index; some are not targets
        st.tuples(st.just("review"), st.floats(0.0, 2 * DAY)),  # time passes, then a review
    ),
    max_size=60,
)


@given(st.integers(0, 40), stage_lists, st.floats(0.0, 1.0), operations)
def test_no_device_is_sent_twice_or_early_and_states_follow_the_table(
    n: int, stages: list[float], threshold: float, ops: list[tuple[str, float]]
) -> None:
    c = campaign(n, stages)
    now = 0.0
    for op, arg in ops:
        state, stage, sent, failed = c.state, c.stage, list(c.sent), list(c.failed)
        if op == "send":
            c.mark_sent(c.due()[: int(arg)], now)
        elif op == "fail":
            device = f"d{int(arg):03d}"
            assert c.record_failure(device) == (device in sent and device not in failed)
        else:
            now += arg
            outcome = c.review(now, stage_wait_s=DAY, abort_failure_rate=threshold)
            if outcome == "abort":
                assert len(failed) / len(sent) > threshold
            if outcome == "advance":
                assert c.stage > stage and c.reach() > c.reach(stage)
        assert len(set(c.sent)) == len(c.sent) <= c.reach()
        assert set(c.sent) <= set(c.targets[: c.reach()])
        assert c.sent[: len(sent)] == sent and c.failed[: len(failed)] == failed  # only ever appended
        assert len(set(c.failed)) == len(c.failed) and set(c.failed) <= set(c.sent)
        assert c.state == state or c.state in CAMPAIGN.table[state]
        assert c.stage >= stage


@given(st.integers(0, 200), stage_lists)
def test_a_campaign_without_failures_reaches_every_target_in_at_most_one_review_a_stage(
    n: int, stages: list[float]
) -> None:
    c = campaign(n, stages)
    outcomes = [run_stage(c, 0.0)]
    while outcomes[-1] == "advance":
        outcomes.append(run_stage(c, len(outcomes) * DAY))
    assert outcomes[-1] == "complete" and len(outcomes) <= len(stages)
    assert c.sent == c.targets


@given(st.integers(0, 30), stage_lists, st.floats(0.0, 1.0), operations)
def test_a_campaign_survives_a_json_round_trip_anywhere(
    n: int, stages: list[float], threshold: float, ops: list[tuple[str, float]]
) -> None:
    c, now = campaign(n, stages), 0.0
    for op, arg in ops:
        if op == "send":
            c.mark_sent(c.due()[: int(arg)], now)
        elif op == "fail":
            c.record_failure(f"d{int(arg):03d}")
        else:
            now += arg
            c.review(now, stage_wait_s=DAY, abort_failure_rate=threshold)
        copy = msgspec.json.decode(msgspec.json.encode(c), type=Campaign)
        assert copy == c
        assert copy.due() == c.due()
        c = copy  # carry on with the restored one: its membership caches rebuild


def test_rollout_order_is_a_stable_spread_permutation() -> None:
    devices = [f"SN-{i:05d}" for i in range(1000)]
    order = rollout_order(devices, "camp-1")
    assert sorted(order) == devices
    assert rollout_order(list(reversed(devices)), "camp-1") == order
    assert rollout_order(devices, "camp-2") != order
    first_stage = [int(d[3:]) for d in order[:50]]
    assert min(first_stage) < 250 and max(first_stage) >= 750  # spread, not a run of serial numbers


def test_rollout_order_is_the_same_in_another_process() -> None:
    devices = [f"SN-{i:05d}" for i in range(200)]
    code = "import json; from support_engine.core.campaigns import rollout_order; "
    code += f"print(json.dumps(rollout_order({devices!r}, 'camp-1')))"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == rollout_order(devices, "camp-1")


def test_open_campaign_takes_the_rule_and_starts_the_first_stage() -> None:
    rule = CampaignRule(name="fw8", ota_version="8.1", stages=[0.1, 1.0])
    c = open_campaign("camp-7", rule, "8.0", ["d3", "d1", "d2", "d1"], now=50.0)
    assert (c.rule, c.action, c.cohort, c.version) == ("fw8", "ota", "firmware=8.0", "8.1")
    assert c.targets == rollout_order(["d1", "d2", "d3"], "camp-7")
    assert (c.stages, c.opened_s, c.stage_started_s, c.state) == ([0.1, 1.0], 50.0, 50.0, "running")
    assert c.review(50.0, stage_wait_s=rule.stage_wait_s, abort_failure_rate=rule.abort_failure_rate) == "wait"
    recall = CampaignRule(name="b7", by="batch", action="recall", recall_issue="swap", ota_version="9")
    assert open_campaign("camp-8", recall, "B-7", ["d1"], now=0.0).version is None
