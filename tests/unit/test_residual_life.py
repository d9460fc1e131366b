"""Residual lives from the cumulative hazard: exact for units far past a life's scale, unchanged for young ones.

The reference figures are numerical integrals of the survival function, ``E[R | age] =
∫ S(age + r) / S(age) dr``, taken in log space so that they hold wherever ``S(age)`` underflows.
"""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import integrate, stats

from sim.distributions import Distribution, Exponential, Fixed, Gamma, Lognormal, Uniform, Weibull, Wiener

DAY_H = 24.0
U = np.random.default_rng(20240613).random(40_000)


def exact_mean_residual(dist: Distribution, age: float) -> float:
    """``∫ S(age + r) / S(age) dr`` by quadrature of ``exp(logsf(age + r) - logsf(age))``."""
    at_age = float(dist.logsf(np.array([age]))[0])
    scale = dist.mean

    def survival(r: float) -> float:
        return math.exp(float(dist.logsf(np.array([age + r]))[0]) - at_age)

    pieces = [0.0, 1e-3 * scale, 1e-2 * scale, 0.1 * scale, scale, 10 * scale, math.inf]
    return sum(integrate.quad(survival, a, b, limit=400)[0] for a, b in itertools.pairwise(pieces))


def old_residual(dist: Distribution, u: npt.NDArray[np.float64], age: float) -> npt.NDArray[np.float64]:
    """The formula through the CDF, ``F⁻¹(F(age) + u (1 - F(age))) - age``: precise while ``S(age)`` is not tiny."""
    f = dist.cdf(np.full(u.shape, age))
    return np.maximum(dist.ppf(np.minimum(f + u * (1.0 - f), 1.0 - 1e-16)) - age, 0.0)


def sample_mean_within(values: npt.NDArray[np.float64], expected: float, confidence: float = 0.999) -> None:
    half = stats.norm.ppf(0.5 + confidence / 2) * values.std(ddof=1) / math.sqrt(values.size)
    assert abs(values.mean() - expected) <= half, (values.mean(), expected, half)


def test_a_weibull_unit_four_scales_old_has_about_five_hours_left_not_zero() -> None:
    life = Weibull(shape=4.0, scale=50.0)
    assert exact_mean_residual(life, 200.0) * DAY_H == pytest.approx(4.674, abs=1e-3)
    residual = life.residual_ppf(U, np.full(U.size, 200.0))
    assert np.isfinite(residual).all() and (residual > 0).all()
    sample_mean_within(residual * DAY_H, exact_mean_residual(life, 200.0) * DAY_H)
    # The old formula sent every such unit to fail at once.
    assert (old_residual(life, U, 200.0) == 0).all()


@pytest.mark.parametrize(
    ("dist", "age"),
    [
        (Weibull(shape=4.0, scale=50.0), 1_000.0),  # H(age) = 160,000
        (Weibull(shape=2.5, scale=1_100.0), 4_400.0),  # a heavily used car's brake pads
        (Weibull(shape=0.7, scale=10.0), 5_000.0),  # decreasing hazard: long residuals
        (Gamma(shape=2.5, scale=1.0), 800.0),  # S(age) underflows: the log survival from U(a, b, z)
        (Gamma(shape=0.5, scale=1.0), 5_000.0),
        (Lognormal(mean_=10.0, sd=5.0), 5_000.0),
        (Wiener(drift=0.001, volatility=0.0095, threshold=1.0), 100_000.0),  # scipy's isf gives up there
    ],
    ids=repr,
)
def test_residual_lives_far_in_the_tail_match_the_integral_of_the_survival(dist: Distribution, age: float) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no scipy warning leaks out of the inversion
        residual = dist.residual_ppf(U, np.full(U.size, age))
    assert np.isfinite(residual).all() and (residual > 0).all()
    sample_mean_within(residual, exact_mean_residual(dist, age))


@pytest.mark.parametrize(
    "dist",
    [
        Weibull(shape=2.5, scale=1_800.0),
        Weibull(shape=0.8, scale=10.0),
        Lognormal(mean_=6.0, sd=4.0),
        Gamma(shape=2.0, scale=3.0),
        Gamma(shape=0.5, scale=100.0),
        Wiener(drift=0.000625, volatility=0.0075, threshold=1.0),
        Uniform(low=2.0, high=5.0),
        Fixed(value=1.5),
        Exponential(mean_=24.0),
    ],
    ids=repr,
)
@pytest.mark.parametrize("age_in_means", [0.0, 0.01, 0.5, 1.0])
def test_young_units_keep_the_lives_the_old_formula_gave(dist: Distribution, age_in_means: float) -> None:
    age = age_in_means * dist.mean
    new = dist.residual_ppf(U, np.full(U.size, age))
    old = old_residual(dist, U, age) if not isinstance(dist, Exponential) else dist.ppf(U)
    assert new == pytest.approx(old, rel=1e-8, abs=1e-9 * dist.mean)
    if age == 0.0 and isinstance(dist, Weibull | Uniform | Fixed | Exponential):
        assert np.array_equal(new, dist.ppf(U))  # a new unit draws a fresh life, to the bit


def test_a_unit_past_a_bounded_support_is_overdue_and_fails_at_once() -> None:
    assert (Fixed(value=10.0).residual_ppf(U[:100], np.full(100, 10.0)) == 0).all()
    assert (Uniform(low=1.0, high=3.0).residual_ppf(U[:100], np.full(100, 4.0)) == 0).all()
    assert Uniform(low=1.0, high=3.0).residual_ppf(np.array([0.5]), np.array([2.0]))[0] == pytest.approx(0.5)


@given(
    shape=st.floats(0.3, 8.0),
    age_in_scales=st.floats(0.0, 1e4),
    u=st.floats(1e-12, 1.0 - 1e-12),
)
def test_weibull_residual_solves_the_cumulative_hazard_equation(shape: float, age_in_scales: float, u: float) -> None:
    life = Weibull(shape=shape, scale=3.0)
    age = age_in_scales * life.scale
    r = float(life.residual_ppf(np.array([u]), np.array([age]))[0])
    assert math.isfinite(r) and r >= 0
    lived = float(life.cumulative_hazard(np.array([age]))[0])
    more = -math.log1p(-u)
    total = float(life.cumulative_hazard(np.array([age + r]))[0])
    if r > 0 and lived < 1e12:  # beyond that r is below the spacing of age and H(age + r) rounds to H(age)
        assert total - lived == pytest.approx(more, rel=1e-6, abs=1e-9 * max(1.0, lived))


@given(u=st.lists(st.floats(1e-9, 1.0 - 1e-9), min_size=2, max_size=20), age=st.floats(0.0, 500.0))
def test_residual_quantiles_never_decrease_in_u(u: list[float], age: float) -> None:
    q = np.sort(np.array(u))
    for dist in (Weibull(shape=3.0, scale=20.0), Gamma(shape=2.0, scale=5.0), Lognormal(mean_=10.0, sd=5.0)):
        r = dist.residual_ppf(q, np.full(q.size, age))
        assert np.all(np.diff(r) >= -1e-9 * max(1.0, age))
