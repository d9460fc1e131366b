"""Distributions as small validated objects: ``ppf(u)`` for common random numbers, ``mean`` for tests.

Each is a frozen msgspec Struct tagged by ``dist`` so that a scenario writes
``{dist: weibull, shape: 2.5, scale: 900}``. Units come from the field that holds the distribution
(``life_days``, ``handle_time_s``). Sampling goes through the inverse CDF so that the k-th draw of
a stream maps to the k-th uniform number, whatever the distribution's parameters.

The remaining life of a unit that has survived to an age solves ``H(age + r) = H(age) - ln(1 - u)``
with ``H = -ln S`` the cumulative hazard: in log-survival space, never through ``1 - S(age)``, which
rounds to 1 once ``S(age) < 1e-16`` and sends every old unit to fail at once. Weibull, exponential,
lognormal, uniform and fixed lives have it in closed form; gamma and Wiener lives invert their
log-survival numerically (scipy's ``isf`` where it holds, a bracketed Newton iteration beyond).
"""

from __future__ import annotations

import math
import warnings
from typing import Annotated

import msgspec
import numpy as np
import numpy.typing as npt
from scipy import special, stats

__all__ = [
    "Distribution",
    "Exponential",
    "Fixed",
    "Gamma",
    "Lognormal",
    "Uniform",
    "Weibull",
    "Wiener",
    "sample",
]

Positive = Annotated[float, msgspec.Meta(gt=0.0)]
NonNegative = Annotated[float, msgspec.Meta(ge=0.0)]
Floats = npt.NDArray[np.float64]
_LOG_TOL = 1e-12  # how close to its target an inverse survival must land (relative, in log space)
_MAX_DOUBLINGS = 1100  # widening a bracket by doubling: past any float
_MAX_STEPS = 200  # Newton steps, bisecting where one leaves the bracket


def _doc(description: str, *examples: object) -> msgspec.Meta:
    """A field's description and examples for its JSON Schema (``sot schema``: an editor's hover help)."""
    return msgspec.Meta(description=description, examples=list(examples))


class _Dist(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag_field="dist"):
    def ppf(self, u: npt.ArrayLike) -> Floats:
        """Inverse CDF at ``u`` in (0, 1), vectorised."""
        raise NotImplementedError

    def cdf(self, x: npt.ArrayLike) -> Floats:
        """Probability of a value at most ``x``, vectorised."""
        raise NotImplementedError

    @property
    def mean(self) -> float:
        raise NotImplementedError

    def logsf(self, x: npt.ArrayLike) -> Floats:
        """Log of the probability of a value above ``x`` (``-inf`` past the support), vectorised."""
        with np.errstate(divide="ignore"):
            return np.asarray(np.log1p(-self.cdf(x)), dtype=np.float64)

    def cumulative_hazard(self, x: npt.ArrayLike) -> Floats:
        """``H(x) = -ln S(x)``: the hazard a unit has lived through by age ``x``."""
        return -self.logsf(x)

    def residual_ppf(self, u: npt.ArrayLike, age: npt.ArrayLike) -> Floats:
        """Inverse CDF of the remaining life of units that have survived to ``age``.

        The ``u``-quantile ``r`` solves ``H(age + r) = H(age) - ln(1 - u)``, in log space; 0 for an
        age past the support (the unit is overdue and fails at once).
        """
        a, u_ = _pair(age, u)
        at_age = self.logsf(a)
        out = np.zeros(a.shape)
        ok = np.isfinite(at_age)
        if ok.any():
            target = at_age[ok] + np.log1p(-u_[ok])
            out[ok] = np.maximum(self._inverse_logsf(target, a[ok]) - a[ok], 0.0)
        return out

    # -- numerical inversion, for lives without a closed form -------------------------------------
    def _isf(self, s: Floats) -> Floats:
        """Inverse survival function at ``s`` (a first guess; checked by the caller)."""
        return self.ppf(-np.expm1(np.log(s)))

    def _logpdf(self, x: Floats) -> Floats:
        raise NotImplementedError

    def _inverse_logsf(self, target: Floats, lo: Floats) -> Floats:
        """The ``x >= lo`` with ``logsf(x) == target`` (``target <= logsf(lo)``).

        The inverse CDF (lower half) or scipy's inverse survival function (upper half) where they
        hold, checked against ``logsf``; else a bracketed Newton iteration on ``logsf``, whose slope
        is minus the hazard.
        """
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # boost's quantiles warn where they give up; the check catches those
            below = -np.expm1(target)  # the CDF there: exact while small, where the survival side rounds
            lower = below < 0.5
            guess = np.where(lower, self.ppf(np.where(lower, below, 0.5)), self._isf(np.exp(target)))
            x = np.where(np.isfinite(guess), np.maximum(guess, lo), lo)
            good = np.abs(self.logsf(x) - target) <= _LOG_TOL * np.maximum(1.0, np.abs(target))
        if not good.all():
            x[~good] = self._solve_logsf(target[~good], lo[~good])
        return x

    def _solve_logsf(self, target: Floats, lo: Floats) -> Floats:
        """Bracketed Newton on ``logsf(x) = target`` from ``lo`` (bisection where a step leaves the bracket)."""
        lo = lo.copy()
        width = np.full(lo.shape, max(self.mean, 1e-300))
        hi = lo + width
        with np.errstate(all="ignore"):
            for _ in range(_MAX_DOUBLINGS):  # widen until the bracket holds the root
                short = self.logsf(hi) > target
                if not short.any():
                    break
                width[short] *= 2.0
                hi[short] = lo[short] + width[short]
            x = lo.copy()
            for _ in range(_MAX_STEPS):
                at = self.logsf(x)
                gap = at - target  # logsf falls with x: > 0 left of the root, < 0 right of it
                lo = np.where(gap > 0, x, lo)
                hi = np.where(gap < 0, x, hi)
                hazard = np.exp(self._logpdf(x) - at)
                step = x + gap / hazard
                inside = np.isfinite(step) & (step > lo) & (step < hi)
                step = np.where(inside, step, 0.5 * (lo + hi))
                done = (gap == 0) | (np.abs(step - x) <= 4.0 * np.spacing(np.abs(step)))
                x = np.where(gap == 0, x, step)
                if done.all():
                    break
        return np.asarray(x, dtype=np.float64)


class Exponential(_Dist, frozen=True, kw_only=True, tag="exponential"):
    """A random, memoryless life or delay: ``mean`` is all it takes (a constant hazard)."""

    mean_: Annotated[Positive, _doc("Mean, in the unit of the field that holds the distribution.", 3000.0)] = (
        msgspec.field(name="mean")
    )

    def ppf(self, u: npt.ArrayLike) -> Floats:
        return -self.mean_ * np.log1p(-np.asarray(u, dtype=np.float64))

    def cdf(self, x: npt.ArrayLike) -> Floats:
        return -np.expm1(-np.maximum(np.asarray(x, dtype=np.float64), 0.0) / self.mean_)

    def logsf(self, x: npt.ArrayLike) -> Floats:
        return -np.maximum(np.asarray(x, dtype=np.float64), 0.0) / self.mean_

    def residual_ppf(self, u: npt.ArrayLike, age: npt.ArrayLike) -> Floats:
        """Memoryless: a survivor's remaining life is a fresh life."""
        _, u_ = _pair(age, u)
        return self.ppf(u_)

    @property
    def mean(self) -> float:
        return self.mean_


class Weibull(_Dist, frozen=True, kw_only=True, tag="weibull"):
    """A life whose hazard grows with age (``shape`` > 1: wear-out), stays flat (1) or falls (< 1)."""

    shape: Annotated[Positive, _doc("Shape: above 1 wears out, 1 is random (exponential), below 1 fails early.", 2.5)]
    scale: Annotated[Positive, _doc("Scale, in the field's unit (the mean is scale times Gamma(1 + 1/shape)).", 1800.0)]

    def ppf(self, u: npt.ArrayLike) -> Floats:
        return self.scale * (-np.log1p(-np.asarray(u, dtype=np.float64))) ** (1.0 / self.shape)

    def cdf(self, x: npt.ArrayLike) -> Floats:
        return -np.expm1(-((np.maximum(np.asarray(x, dtype=np.float64), 0.0) / self.scale) ** self.shape))

    def logsf(self, x: npt.ArrayLike) -> Floats:
        return -((np.maximum(np.asarray(x, dtype=np.float64), 0.0) / self.scale) ** self.shape)

    def residual_ppf(self, u: npt.ArrayLike, age: npt.ArrayLike) -> Floats:
        """``H(t) = (t / scale)^shape``, so ``r = age ((1 + E / H(age))^(1 / shape) - 1)`` with
        ``E = -ln(1 - u)``: taken through ``log1p``/``expm1``, exact however far past its scale the unit
        is; a new unit (``H(age) = 0``) draws a fresh life."""
        a, u_ = _pair(age, u)
        more = -np.log1p(-u_)  # the hazard still to live through
        lived = (np.maximum(a, 0.0) / self.scale) ** self.shape
        fresh = self.scale * more ** (1.0 / self.shape)
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            aged = a * np.expm1(np.log1p(more / lived) / self.shape)
        return np.where((lived > 0) & np.isfinite(aged), np.maximum(aged, 0.0), np.maximum(fresh - a, 0.0))

    @property
    def mean(self) -> float:
        return self.scale * math.gamma(1.0 + 1.0 / self.shape)


class Lognormal(_Dist, frozen=True, kw_only=True, tag="lognormal"):
    """Parameterised by the mean and standard deviation of the variable itself (not of its log)."""

    mean_: Annotated[Positive, _doc("Mean of the variable itself (not of its log), in the field's unit.", 6.0)] = (
        msgspec.field(name="mean")
    )
    sd: Annotated[Positive, _doc("Standard deviation of the variable itself.", 4.0)]

    @property
    def sigma(self) -> float:
        return math.sqrt(math.log1p((self.sd / self.mean_) ** 2))

    @property
    def mu(self) -> float:
        return math.log(self.mean_) - self.sigma**2 / 2

    def ppf(self, u: npt.ArrayLike) -> Floats:
        return np.asarray(
            np.exp(self.mu + self.sigma * special.ndtri(np.asarray(u, dtype=np.float64))), dtype=np.float64
        )

    def cdf(self, x: npt.ArrayLike) -> Floats:
        xs = np.asarray(x, dtype=np.float64)
        with np.errstate(divide="ignore"):
            return np.where(xs > 0, special.ndtr((np.log(np.maximum(xs, 1e-300)) - self.mu) / self.sigma), 0.0)

    def logsf(self, x: npt.ArrayLike) -> Floats:
        xs = np.asarray(x, dtype=np.float64)
        z = (np.log(np.maximum(xs, 1e-300)) - self.mu) / self.sigma
        return np.asarray(np.where(xs > 0, special.log_ndtr(-z), 0.0), dtype=np.float64)

    def _inverse_logsf(self, target: Floats, lo: Floats) -> Floats:
        """``S(x) = Φ(-z)``, so ``z = -Φ⁻¹(exp(target))``, which ``ndtri_exp`` takes in log space."""
        x = np.exp(self.mu - self.sigma * special.ndtri_exp(target))
        return np.maximum(np.asarray(x, dtype=np.float64), lo)

    @property
    def mean(self) -> float:
        return self.mean_


class Gamma(_Dist, frozen=True, kw_only=True, tag="gamma"):
    """A sum of ``shape`` exponential stages of mean ``scale``: a delay with a mode away from 0."""

    shape: Annotated[Positive, _doc("Shape.", 2.0)]
    scale: Annotated[Positive, _doc("Scale, in the field's unit (the mean is shape times scale).", 250.0)]

    def ppf(self, u: npt.ArrayLike) -> Floats:
        return np.asarray(special.gammaincinv(self.shape, np.asarray(u, dtype=np.float64)) * self.scale)

    def cdf(self, x: npt.ArrayLike) -> Floats:
        return np.asarray(special.gammainc(self.shape, np.maximum(np.asarray(x, dtype=np.float64), 0.0) / self.scale))

    def logsf(self, x: npt.ArrayLike) -> Floats:
        """``ln Q(shape, x / scale)``; where ``Q`` underflows, from ``Γ(s, z) = e^-z U(1-s, 1-s, z)``."""
        z = np.maximum(np.asarray(x, dtype=np.float64), 0.0) / self.scale
        q = np.asarray(special.gammaincc(self.shape, z), dtype=np.float64)
        with np.errstate(divide="ignore"):
            out = np.log(q)
        deep = q < 1e-300
        if deep.any():
            s, zd = self.shape, z[deep]
            with np.errstate(all="ignore"):
                out[deep] = -zd + np.log(special.hyperu(1.0 - s, 1.0 - s, zd)) - special.gammaln(s)
        return np.asarray(out, dtype=np.float64)

    def _isf(self, s: Floats) -> Floats:
        return np.asarray(special.gammainccinv(self.shape, s) * self.scale, dtype=np.float64)

    def _logpdf(self, x: Floats) -> Floats:
        return np.asarray(stats.gamma.logpdf(x, self.shape, scale=self.scale), dtype=np.float64)

    @property
    def mean(self) -> float:
        return self.shape * self.scale


class Uniform(_Dist, frozen=True, kw_only=True, tag="uniform"):
    """Any value from ``low`` to ``high``, equally likely."""

    low: Annotated[NonNegative, _doc("Lowest value, in the field's unit.", 0.0)]
    high: Annotated[NonNegative, _doc("Highest value (at least `low`).", 2000.0)]

    def __post_init__(self) -> None:
        if self.high < self.low:
            raise ValueError("`high` must be >= `low`")

    def ppf(self, u: npt.ArrayLike) -> Floats:
        return self.low + (self.high - self.low) * np.asarray(u, dtype=np.float64)

    def cdf(self, x: npt.ArrayLike) -> Floats:
        xs = np.asarray(x, dtype=np.float64)
        if self.high == self.low:
            return (xs >= self.low).astype(np.float64)
        return np.clip((xs - self.low) / (self.high - self.low), 0.0, 1.0)

    def residual_ppf(self, u: npt.ArrayLike, age: npt.ArrayLike) -> Floats:
        """Past ``low``, the rest of the support is uniform again: ``r = (high - age) u``."""
        a, u_ = _pair(age, u)
        return np.where(a < self.low, self.ppf(u_) - a, np.maximum(self.high - a, 0.0) * u_)

    @property
    def mean(self) -> float:
        return (self.low + self.high) / 2


class Fixed(_Dist, frozen=True, kw_only=True, tag="fixed"):
    """Always ``value``: no randomness."""

    value: Annotated[NonNegative, _doc("The value, every time, in the field's unit.", 1.0)]

    def ppf(self, u: npt.ArrayLike) -> Floats:
        return np.full(np.shape(u), self.value, dtype=np.float64)

    def cdf(self, x: npt.ArrayLike) -> Floats:
        return (np.asarray(x, dtype=np.float64) >= self.value).astype(np.float64)

    def residual_ppf(self, u: npt.ArrayLike, age: npt.ArrayLike) -> Floats:
        a, _ = _pair(age, u)
        return np.maximum(self.value - a, 0.0)

    @property
    def mean(self) -> float:
        return self.value


class Wiener(_Dist, frozen=True, kw_only=True, tag="wiener"):
    """Life as the first passage of a Wiener degradation process to a threshold (inverse Gaussian).

    Damage grows by ``drift`` per unit of time with diffusion ``volatility`` (per square root of the
    unit) and the unit fails when it reaches ``threshold``: mean life ``threshold / drift``.
    """

    drift: Annotated[Positive, _doc("Damage per unit of time.", 0.5)]
    volatility: Annotated[Positive, _doc("Diffusion, per square root of the unit of time.", 2.0)]
    threshold: Annotated[Positive, _doc("Damage at which the unit fails (the mean life is threshold / drift).", 400.0)]

    @property
    def _lam(self) -> float:
        return (self.threshold / self.volatility) ** 2

    def ppf(self, u: npt.ArrayLike) -> Floats:
        lam = self._lam
        return np.asarray(stats.invgauss.ppf(np.asarray(u, dtype=np.float64), self.mean / lam, scale=lam))

    def cdf(self, x: npt.ArrayLike) -> Floats:
        lam = self._lam
        return np.asarray(stats.invgauss.cdf(np.asarray(x, dtype=np.float64), self.mean / lam, scale=lam))

    def logsf(self, x: npt.ArrayLike) -> Floats:
        lam = self._lam
        with np.errstate(divide="ignore"):
            return np.asarray(stats.invgauss.logsf(np.asarray(x, dtype=np.float64), self.mean / lam, scale=lam))

    def _isf(self, s: Floats) -> Floats:
        lam = self._lam
        return np.asarray(stats.invgauss.isf(s, self.mean / lam, scale=lam), dtype=np.float64)

    def _logpdf(self, x: Floats) -> Floats:
        lam = self._lam
        return np.asarray(stats.invgauss.logpdf(x, self.mean / lam, scale=lam), dtype=np.float64)

    @property
    def mean(self) -> float:
        return self.threshold / self.drift


Distribution = Exponential | Weibull | Lognormal | Gamma | Uniform | Fixed | Wiener


def sample(dist: Distribution, rng: np.random.Generator, n: int) -> Floats:
    """Draw ``n`` values of ``dist`` from ``rng`` (through the inverse CDF)."""
    return dist.ppf(rng.random(n))


def _pair(age: npt.ArrayLike, u: npt.ArrayLike) -> tuple[Floats, Floats]:
    """``age`` and ``u`` as float arrays of one shape."""
    a, u_ = np.broadcast_arrays(np.asarray(age, dtype=np.float64), np.asarray(u, dtype=np.float64))
    return np.asarray(a, dtype=np.float64), np.asarray(u_, dtype=np.float64)
