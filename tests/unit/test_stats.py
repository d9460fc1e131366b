"""The statistics of paired replications: intervals cover what they claim, degenerate cases stay quiet."""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, fields

import numpy as np
import pytest
from hypothesis import given
from scipy import stats

from experiments.stats import (
    Difference,
    Interval,
    SequentialPlan,
    holm,
    mean_ci,
    paired_difference,
    precision_reached,
    replications_needed,
    significant,
)
from tests.strategies import p_value_maps, paired_replications, replication_values

Pairs = Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray]]

NORMAL_DELTA = 0.5
LOGNORMAL_SIGMA, LOGNORMAL_RATIO = 0.5, 1.2
LOGNORMAL_DELTA = math.exp(LOGNORMAL_SIGMA**2 / 2) * (LOGNORMAL_RATIO - 1)
"""E[other] - E[baseline] for baseline ~ exp(sigma Z1), other ~ ratio * exp(sigma Z2)."""


def _correlated(rng: np.random.Generator, n: int, rho: float) -> tuple[np.ndarray, np.ndarray]:
    z1 = rng.standard_normal(n)
    return z1, rho * z1 + math.sqrt(1 - rho**2) * rng.standard_normal(n)


def normal_pairs(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Paired normal replications (sd 2, correlation 0.8, as common random numbers give)."""
    z1, z2 = _correlated(rng, n, 0.8)
    return 10 + 2 * z1, 10 + NORMAL_DELTA + 2 * z2


def lognormal_pairs(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Paired right-skewed replications: the differences have skewness about 0.7."""
    z1, z2 = _correlated(rng, n, 0.7)
    return np.exp(LOGNORMAL_SIGMA * z1), LOGNORMAL_RATIO * np.exp(LOGNORMAL_SIGMA * z2)


@dataclass(frozen=True)
class Coverage:
    t: float
    bca: float
    bca_leans_right: float
    """Share of repetitions whose BCa interval reaches further above the mean than below it."""


def coverage(pairs: Pairs, delta: float, *, n: int, reps: int, resamples: int, seed: int) -> Coverage:
    """Return how often the intervals of ``reps`` independent experiments of ``n`` pairs cover ``delta``."""
    rng = np.random.default_rng(seed)
    t_hits = bca_hits = leans_right = 0
    for rep in range(reps):
        d = paired_difference(*pairs(rng, n), resamples=resamples, seed=rep)
        assert d.t_lo is not None and d.t_hi is not None
        t_hits += d.t_lo <= delta <= d.t_hi
        if resamples:
            assert d.bca_method == "bca" and d.bca_lo is not None and d.bca_hi is not None
            bca_hits += d.bca_lo <= delta <= d.bca_hi
            leans_right += d.bca_hi - d.mean > d.mean - d.bca_lo
    return Coverage(t=t_hits / reps, bca=bca_hits / reps, bca_leans_right=leans_right / reps)


# Coverage bands. With R = 1000 repetitions a coverage p is estimated with binomial sd
# sqrt(p (1 - p) / R): 0.0069 at p = 0.95, so 93-97 % is +-2.9 sd around the nominal 95 %.
# The seeds are fixed, so each test gives the same figure on every run.


def test_t_interval_covers_a_normal_difference_at_95_percent() -> None:
    # The differences are normal, so the t-interval is exact at any n, even 10.
    cov = coverage(normal_pairs, NORMAL_DELTA, n=10, reps=1000, resamples=0, seed=101)
    assert 0.93 <= cov.t <= 0.97


def test_bca_covers_a_normal_difference_a_little_less_than_t() -> None:
    cov = coverage(normal_pairs, NORMAL_DELTA, n=30, reps=1000, resamples=999, seed=202)
    assert 0.93 <= cov.t <= 0.97
    # A bootstrap interval is about mean +- z * sd_plugin / sqrt(n), where sd_plugin divides by n and z
    # is the normal, not the t, quantile. For normal differences that covers P(|T_29| <= 1.96 sqrt(29/30)),
    # 93.6 % at n = 30 (sd 0.008 at R = 1000): the band 91-97 % is -3.3 / +4.4 sd around it.
    expected = 2 * stats.t.cdf(stats.norm.ppf(0.975) * math.sqrt(29 / 30), 29) - 1
    assert expected == pytest.approx(0.936, abs=0.001)
    assert 0.91 <= cov.bca <= 0.97


def test_bca_covers_a_skewed_difference_and_leans_to_its_long_tail() -> None:
    cov = coverage(lognormal_pairs, LOGNORMAL_DELTA, n=30, reps=1000, resamples=999, seed=303)
    assert 0.93 <= cov.t <= 0.97
    # Heavier tails than the normal case make the plug-in sd more often too small: over 4000 repetitions
    # this BCa covered 91.6 % (+-0.4 %). The band 89-96 % is -3 / +5 sd (sd 0.009 at R = 1000) around it.
    assert 0.89 <= cov.bca <= 0.96
    # What BCa buys over t on skewed data: its interval is longer on the side of the long tail, where t's
    # is symmetric by construction. It leant right in 68.5 % of these repetitions (and in 49.6 % on the
    # normal pairs); 60 % is 5.6 sd (0.015) below that.
    assert cov.bca_leans_right >= 0.6


def test_an_identical_policy_differs_by_exactly_nothing() -> None:
    baseline = [3.0, 5.5, 4.25, 8.0, 6.0]
    d = paired_difference(baseline, baseline)
    assert (d.mean, d.t_lo, d.t_hi, d.bca_lo, d.bca_hi, d.sd) == (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    assert d.bca_method == "zero_width"
    assert d.p_value == 1.0
    assert d.variance_reduction is None
    assert d.relative == 0.0


def test_a_policy_drawn_from_the_same_distribution_is_not_told_apart() -> None:
    baseline, other = normal_pairs(np.random.default_rng(7), 25)
    d = paired_difference(baseline, other - NORMAL_DELTA)
    assert d.t_lo is not None and d.t_hi is not None and d.bca_lo is not None and d.bca_hi is not None
    assert d.t_lo <= 0.0 <= d.t_hi
    assert d.bca_lo <= 0.0 <= d.bca_hi
    assert d.p_value is not None and d.p_value > 0.05


def test_the_p_value_agrees_with_the_t_interval() -> None:
    rng = np.random.default_rng(11)
    for _ in range(200):
        n = int(rng.integers(2, 15))
        d = paired_difference(rng.normal(size=n), rng.normal(0.4, 1.0, size=n), resamples=0)
        assert d.p_value is not None and d.t_lo is not None and d.t_hi is not None
        assert (d.p_value < 0.05) == (not d.t_lo <= 0.0 <= d.t_hi)


def test_the_p_value_matches_scipys_paired_t_test() -> None:
    baseline, other = normal_pairs(np.random.default_rng(3), 12)
    d = paired_difference(baseline, other, resamples=0)
    assert d.p_value == pytest.approx(stats.ttest_rel(other, baseline).pvalue, rel=1e-9)


def test_a_constant_nonzero_difference_is_certain() -> None:
    d = paired_difference([1.0, 2.0, 4.0], [1.5, 2.5, 4.5])
    assert (d.t_lo, d.t_hi, d.bca_lo, d.bca_hi, d.bca_method) == (0.5, 0.5, 0.5, 0.5, "zero_width")
    assert d.p_value == 0.0


@pytest.mark.parametrize(
    ("baseline", "other", "method"),
    [
        ([1.0], [2.0], "none"),
        ([1.0, 2.0], [1.5, 2.7], "percentile"),
        ([0.0, 0.0, 0.0], [0.0, 0.0, 1.0], "bca"),
        ([0.0, 0.0, 0.0], [1e-300, 0.0, 0.0], "percentile"),  # BCa's acceleration underflows
        ([2.0, 2.0, 2.0], [3.0, 3.0, 3.0], "zero_width"),
    ],
)
def test_small_and_degenerate_samples_fall_back_without_warnings(
    baseline: list[float], other: list[float], method: str
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        d = paired_difference(baseline, other)
    assert d.bca_method == method
    if method == "none":
        assert (d.t_lo, d.t_hi, d.bca_lo, d.bca_hi, d.sd, d.p_value) == (None,) * 6
    else:
        assert d.bca_lo is not None and d.bca_hi is not None
        assert d.bca_lo <= d.mean <= d.bca_hi


def test_the_bootstrap_is_a_function_of_the_seed() -> None:
    baseline, other = lognormal_pairs(np.random.default_rng(5), 20)
    first = paired_difference(baseline, other, resamples=999, seed=1)
    assert paired_difference(baseline, other, resamples=999, seed=1) == first
    assert paired_difference(baseline, other, resamples=999, seed=2).bca_lo != first.bca_lo


def test_resamples_zero_skips_the_bootstrap() -> None:
    d = paired_difference([1.0, 2.0, 3.0], [2.0, 2.5, 4.5], resamples=0)
    assert (d.bca_lo, d.bca_hi, d.bca_method) == (None, None, "none")
    assert d.t_lo is not None


def test_pairing_on_common_random_numbers_shrinks_the_variance() -> None:
    rng = np.random.default_rng(13)
    z1, z2 = _correlated(rng, 20_000, 0.95)
    correlated = paired_difference(z1, z2, resamples=0)
    # Equal variances: (s² + s²) / (2 s² (1 - rho)) = 1 / (1 - rho) = 20; its estimate's sd is about 1 %.
    assert correlated.variance_reduction == pytest.approx(20.0, rel=0.1)
    independent = paired_difference(rng.normal(size=20_000), rng.normal(size=20_000), resamples=0)
    assert independent.variance_reduction == pytest.approx(1.0, abs=0.05)


def test_relative_is_the_difference_over_the_baseline_mean() -> None:
    assert paired_difference([10.0, 12.0], [8.0, 9.0], resamples=0).relative == pytest.approx(-5 / 22)
    assert paired_difference([-1.0, 1.0], [8.0, 9.0], resamples=0).relative is None


def test_misuse_raises_value_error() -> None:
    with pytest.raises(ValueError, match="other: 2 replications but baseline has 3"):
        paired_difference([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="finite"):
        mean_ci([1.0, math.nan])
    with pytest.raises(ValueError, match="non-empty"):
        mean_ci([])
    with pytest.raises(ValueError, match="level"):
        mean_ci([1.0, 2.0], level=95)


def test_mean_ci_of_one_value_has_no_interval_and_of_equal_values_a_zero_width_one() -> None:
    assert mean_ci([4.0]) == Interval(mean=4.0, lo=None, hi=None, sd=None, n=1, half_width=None)
    assert mean_ci([0.1, 0.1, 0.1]) == Interval(mean=0.1, lo=0.1, hi=0.1, sd=0.0, n=3, half_width=0.0)


def test_mean_ci_matches_the_textbook_t_interval() -> None:
    ci = mean_ci([2.0, 4.0, 6.0], level=0.9)  # mean 4, sd 2, t(0.95, 2) = 2.919986
    assert ci.half_width is not None
    assert ci.half_width == pytest.approx(2.919986 * 2 / math.sqrt(3), rel=1e-6)
    assert (ci.lo, ci.hi) == pytest.approx((4 - ci.half_width, 4 + ci.half_width))


def test_results_are_plain_python_and_serialise_to_json() -> None:
    baseline, other = normal_pairs(np.random.default_rng(17), 8)
    for result in (mean_ci(baseline), paired_difference(baseline, other, resamples=999)):
        for f in fields(result):
            value = getattr(result, f.name)
            assert type(value) in (float, int, str), (f.name, type(value))
        assert json.loads(json.dumps(result.to_dict())) == result.to_dict()
    assert paired_difference([1.0], [2.0]).to_dict()["t_lo"] is None


def test_holm_against_a_hand_computed_family() -> None:
    p = {"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.005}
    # Sorted d, a, c, b: 4 x 0.005, 3 x 0.01, 2 x 0.03, then max(1 x 0.04, 0.06) keeps it monotone.
    adjusted = holm(p)
    assert list(adjusted) == ["a", "b", "c", "d"]
    assert adjusted == pytest.approx({"a": 0.03, "b": 0.06, "c": 0.06, "d": 0.02})
    assert significant(adjusted) == {"a": True, "b": False, "c": False, "d": True}
    assert holm({"x": 0.5, "y": 0.6}) == {"x": 1.0, "y": 1.0}
    assert holm({}) == {}
    with pytest.raises(ValueError, match=r"p_values\['x'\]"):
        holm({"x": 1.5})


@given(p_value_maps)
def test_holm_is_monotone_capped_and_never_below_the_raw_p_value(p: dict[str, float]) -> None:
    adjusted = holm(p)
    assert adjusted.keys() == p.keys()
    for name, raw in p.items():
        assert raw <= adjusted[name] <= min(1.0, len(p) * raw)
    by_raw = sorted(p, key=p.__getitem__)
    assert [adjusted[name] for name in by_raw] == sorted(adjusted[name] for name in by_raw)


@given(replication_values)
def test_the_t_interval_contains_the_sample_mean(values: list[float]) -> None:
    ci = mean_ci(values)
    assert min(values) <= ci.mean <= max(values)
    assert ci.mean == pytest.approx(float(np.mean(values)), rel=1e-9, abs=1e-6)
    if len(values) == 1:
        assert ci.lo is None and ci.hi is None
    else:
        assert ci.lo is not None and ci.hi is not None and ci.half_width is not None
        assert ci.lo <= ci.mean <= ci.hi
        assert ci.half_width >= 0.0


@given(paired_replications())
def test_swapping_the_policies_negates_the_difference(pair: tuple[list[float], list[float]]) -> None:
    baseline, other = pair
    forward, backward = paired_difference(baseline, other, resamples=0), paired_difference(other, baseline, resamples=0)
    assert backward.mean == -forward.mean
    flipped = None if forward.t_hi is None or forward.t_lo is None else (-forward.t_hi, -forward.t_lo)
    assert (None if backward.t_lo is None else (backward.t_lo, backward.t_hi)) == flipped
    assert (backward.sd, backward.p_value, backward.variance_reduction) == (
        forward.sd,
        forward.p_value,
        forward.variance_reduction,
    )


def _difference(mean: float, half_width: float | None, n: int) -> Difference:
    lo, hi = (None, None) if half_width is None else (mean - half_width, mean + half_width)
    return Difference(
        mean=mean,
        t_lo=lo,
        t_hi=hi,
        bca_lo=None,
        bca_hi=None,
        bca_method="none",
        sd=None,
        n=n,
        p_value=None,
        relative=None,
        variance_reduction=None,
    )


def test_precision_is_reached_when_every_half_width_is_within_target() -> None:
    diffs = {"cost": _difference(2.0, 0.5, 10), "wait_s": _difference(-30.0, 4.0, 10)}
    means = {"cost": 10.0, "wait_s": -100.0}  # allowed at 5 %: 0.5 and 5.0
    assert precision_reached(diffs, means, target=0.05)
    assert not precision_reached(diffs, means, target=0.045)  # cost allows 0.45 < 0.5
    assert not precision_reached({"cost": _difference(2.0, None, 1)}, means, target=0.5)
    with pytest.raises(ValueError, match="no mean for 'cost'"):
        precision_reached(diffs, {"wait_s": -100.0}, target=0.05)


def test_a_metric_with_a_zero_baseline_mean_does_not_hold_the_experiment_open() -> None:
    diffs = {"cost": _difference(2.0, 0.5, 10), "escalations": _difference(3.0, 2.0, 10)}
    assert precision_reached(diffs, {"cost": 10.0, "escalations": 0.0}, target=0.05)
    assert replications_needed(diffs["escalations"], 0.0, 0.05) == 10


def test_replications_needed_scales_with_the_squared_half_width_ratio() -> None:
    # hw 1.0 against an allowed 0.5: four times the replications.
    assert replications_needed(_difference(2.0, 1.0, 10), 10.0, 0.05) == 40
    assert replications_needed(_difference(2.0, 0.6, 10), 10.0, 0.05) == 15  # ceil(10 * 1.44)
    assert replications_needed(_difference(2.0, 0.5000001, 10), 10.0, 0.05) == 11  # at least n + 1
    assert replications_needed(_difference(2.0, 0.5, 10), 10.0, 0.05) == 10  # reached
    assert replications_needed(_difference(2.0, None, 1), 10.0, 0.05) == 2
    with pytest.raises(ValueError, match="target"):
        replications_needed(_difference(2.0, 0.5, 10), 10.0, 0.0)


def test_the_sequential_plan_adds_whole_batches_up_to_the_cap() -> None:
    plan = SequentialPlan(initial=10, batch=5, cap=50)
    assert plan.next_count(0, needed=0) == 10
    assert plan.next_count(4, needed=0) == 6
    assert plan.next_count(10, needed=10) == 0
    assert plan.next_count(10, needed=12) == 5
    assert plan.next_count(10, needed=23) == 15
    assert plan.next_count(45, needed=400) == 5
    assert plan.next_count(50, needed=400) == 0
    for bad in (
        {"initial": 1, "batch": 5, "cap": 50},
        {"initial": 10, "batch": 0, "cap": 50},
        {"initial": 10, "batch": 5, "cap": 9},
    ):
        with pytest.raises(ValueError):
            SequentialPlan(**bad)
