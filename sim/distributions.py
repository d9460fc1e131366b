"""Distributions as small validated objects: ``ppf(u)`` for common random numbers, ``mean`` for tests.

Each is a frozen msgspec Struct tagged by ``dist`` so that a scenario writes
``{dist: weibull, shape: 2.5, scale: 900}``. Units come from the field that holds the distribution
(``life_days``, ``handle_time_s``). Sampling goes through the inverse CDF so that the k-th draw of
a stream maps to the k-th uniform number, whatever the distribution's parameters.
"""

from __future__ import annotations

import math
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

    def residual_ppf(self, u: npt.ArrayLike, age: npt.ArrayLike) -> Floats:
        """Inverse CDF of the remaining life of units that have survived to ``age``."""
        a = np.asarray(age, dtype=np.float64)
        f = self.cdf(a)
        q = np.minimum(f + np.asarray(u, dtype=np.float64) * (1.0 - f), 1.0 - 1e-16)
        return np.maximum(self.ppf(q) - a, 0.0)


class Exponential(_Dist, frozen=True, kw_only=True, tag="exponential"):
    mean_: Positive = msgspec.field(name="mean")

    def ppf(self, u: npt.ArrayLike) -> Floats:
        return -self.mean_ * np.log1p(-np.asarray(u, dtype=np.float64))

    def cdf(self, x: npt.ArrayLike) -> Floats:
        return -np.expm1(-np.maximum(np.asarray(x, dtype=np.float64), 0.0) / self.mean_)

    def residual_ppf(self, u: npt.ArrayLike, age: npt.ArrayLike) -> Floats:
        """Memoryless: a survivor's remaining life is a fresh life (the generic form gives 0 when age >> mean)."""
        u_, _ = np.broadcast_arrays(np.asarray(u, dtype=np.float64), np.asarray(age, dtype=np.float64))
        return self.ppf(u_)

    @property
    def mean(self) -> float:
        return self.mean_


class Weibull(_Dist, frozen=True, kw_only=True, tag="weibull"):
    shape: Positive
    scale: Positive

    def ppf(self, u: npt.ArrayLike) -> Floats:
        return self.scale * (-np.log1p(-np.asarray(u, dtype=np.float64))) ** (1.0 / self.shape)

    def cdf(self, x: npt.ArrayLike) -> Floats:
        return -np.expm1(-((np.maximum(np.asarray(x, dtype=np.float64), 0.0) / self.scale) ** self.shape))

    @property
    def mean(self) -> float:
        return self.scale * math.gamma(1.0 + 1.0 / self.shape)


class Lognormal(_Dist, frozen=True, kw_only=True, tag="lognormal"):
    """Parameterised by the mean and standard deviation of the variable itself (not of its log)."""

    mean_: Positive = msgspec.field(name="mean")
    sd: Positive

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

    @property
    def mean(self) -> float:
        return self.mean_


class Gamma(_Dist, frozen=True, kw_only=True, tag="gamma"):
    shape: Positive
    scale: Positive

    def ppf(self, u: npt.ArrayLike) -> Floats:
        return np.asarray(special.gammaincinv(self.shape, np.asarray(u, dtype=np.float64)) * self.scale)

    def cdf(self, x: npt.ArrayLike) -> Floats:
        return np.asarray(special.gammainc(self.shape, np.maximum(np.asarray(x, dtype=np.float64), 0.0) / self.scale))

    @property
    def mean(self) -> float:
        return self.shape * self.scale


class Uniform(_Dist, frozen=True, kw_only=True, tag="uniform"):
    low: NonNegative
    high: NonNegative

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

    @property
    def mean(self) -> float:
        return (self.low + self.high) / 2


class Fixed(_Dist, frozen=True, kw_only=True, tag="fixed"):
    value: NonNegative

    def ppf(self, u: npt.ArrayLike) -> Floats:
        return np.full(np.shape(u), self.value, dtype=np.float64)

    def cdf(self, x: npt.ArrayLike) -> Floats:
        return (np.asarray(x, dtype=np.float64) >= self.value).astype(np.float64)

    @property
    def mean(self) -> float:
        return self.value


class Wiener(_Dist, frozen=True, kw_only=True, tag="wiener"):
    """Life as the first passage of a Wiener degradation process to a threshold (inverse Gaussian).

    Damage grows by ``drift`` per unit of time with diffusion ``volatility`` (per square root of the
    unit) and the unit fails when it reaches ``threshold``: mean life ``threshold / drift``.
    """

    drift: Positive
    volatility: Positive
    threshold: Positive

    @property
    def _lam(self) -> float:
        return (self.threshold / self.volatility) ** 2

    def ppf(self, u: npt.ArrayLike) -> Floats:
        lam = self._lam
        return np.asarray(stats.invgauss.ppf(np.asarray(u, dtype=np.float64), self.mean / lam, scale=lam))

    def cdf(self, x: npt.ArrayLike) -> Floats:
        lam = self._lam
        return np.asarray(stats.invgauss.cdf(np.asarray(x, dtype=np.float64), self.mean / lam, scale=lam))

    @property
    def mean(self) -> float:
        return self.threshold / self.drift


Distribution = Exponential | Weibull | Lognormal | Gamma | Uniform | Fixed | Wiener


def sample(dist: Distribution, rng: np.random.Generator, n: int) -> Floats:
    """Draw ``n`` values of ``dist`` from ``rng`` (through the inverse CDF)."""
    return dist.ppf(rng.random(n))
