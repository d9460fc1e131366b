"""Summarise paired replications: intervals, paired differences, bootstrap, Holm and sequential precision.

Pure: numpy and scipy only, no I/O, no global RNG. Every number returned is a plain ``float``/``int``
(or ``None``) so the results serialise to JSON as they are.

Conventions:

- "No interval" is ``None``, never ``nan``: a single replication has a mean but no spread, so
  ``sd``, ``lo``, ``hi`` and ``half_width`` are ``None`` at ``n = 1``.
- A difference is ``other - baseline``, paired by replication index: replication ``i`` of both
  policies ran on the same random numbers, so the noise the pair shares cancels in the difference.
- Values that are all equal give a zero-width interval, exactly, whatever the float rounding.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from scipy import stats

__all__ = [
    "BcaMethod",
    "Difference",
    "Interval",
    "SequentialPlan",
    "holm",
    "mean_ci",
    "paired_difference",
    "precision_reached",
    "replications_needed",
    "significant",
]

BcaMethod = Literal["bca", "percentile", "zero_width", "none"]
"""How ``bca_lo``/``bca_hi`` were obtained: BCa proper; the percentile bootstrap because BCa
degenerated (``n < 3``, or scipy reported degenerate data); exactly the mean because every
difference is equal; or not at all (``n = 1``, ``resamples = 0``, or no finite interval came out)."""

Values = Sequence[float] | NDArray[np.floating]
_BATCH_VALUES = 1_000_000
"""At most this many resampled values are held at once (8 MB): scipy would hold ``resamples * n``."""


def _to_dict(obj: Interval | Difference) -> dict[str, float | int | str | None]:
    out: dict[str, float | int | str | None] = {}
    for key, value in asdict(obj).items():
        out[key] = None if isinstance(value, float) and math.isnan(value) else value
    return out


@dataclass(frozen=True)
class Interval:
    """A Student-t confidence interval of a mean; ``lo``/``hi``/``sd``/``half_width`` are None at n = 1."""

    mean: float
    lo: float | None
    hi: float | None
    sd: float | None
    n: int
    half_width: float | None

    def to_dict(self) -> dict[str, float | int | str | None]:
        """Return the fields as a JSON-ready dict, ``nan`` as None."""
        return _to_dict(self)


@dataclass(frozen=True)
class Difference:
    """The paired difference ``other - baseline`` with its t and bootstrap intervals and t-test."""

    mean: float
    t_lo: float | None
    t_hi: float | None
    bca_lo: float | None
    bca_hi: float | None
    bca_method: BcaMethod
    sd: float | None
    n: int
    p_value: float | None
    relative: float | None
    """``mean / baseline mean``; None when the baseline mean is 0."""
    variance_reduction: float | None
    """``(s²_baseline + s²_other) / s²_difference``: how much pairing shrank the variance of the
    difference against independent runs; None when ``n < 2`` or ``s²_difference = 0``."""

    @property
    def half_width(self) -> float | None:
        """Return the half-width of the t-interval, None at n = 1."""
        return None if self.t_hi is None else self.t_hi - self.mean

    def to_dict(self) -> dict[str, float | int | str | None]:
        """Return the fields as a JSON-ready dict, ``nan`` as None."""
        return _to_dict(self)


def _array(values: Values, name: str) -> NDArray[np.float64]:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name}: need a non-empty 1-D sequence, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: every value must be finite")
    return arr


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level: must be in (0, 1), got {level}")


def _mean_sd(arr: NDArray[np.float64]) -> tuple[float, float | None]:
    """Return the mean and sample sd; exactly ``(x, 0.0)`` when every value is ``x``."""
    if np.all(arr == arr[0]):
        return float(arr[0]), (0.0 if arr.size > 1 else None)
    return float(np.mean(arr)), (float(np.std(arr, ddof=1)) if arr.size > 1 else None)


def _t_interval(arr: NDArray[np.float64], level: float) -> Interval:
    mean, sd = _mean_sd(arr)
    n = int(arr.size)
    if sd is None:
        return Interval(mean=mean, lo=None, hi=None, sd=None, n=n, half_width=None)
    hw = float(stats.t.ppf(0.5 + level / 2.0, n - 1)) * sd / math.sqrt(n)
    return Interval(mean=mean, lo=mean - hw, hi=mean + hw, sd=sd, n=n, half_width=hw)


def mean_ci(values: Values, level: float = 0.95) -> Interval:
    """Return the Student-t interval of the mean of ``values`` at confidence ``level``."""
    _check_level(level)
    return _t_interval(_array(values, "values"), level)


def _bootstrap(
    diffs: NDArray[np.float64], level: float, resamples: int, seed: int
) -> tuple[float | None, float | None, BcaMethod]:
    """Return the BCa interval of the mean difference, or the fallback it degenerated to."""
    if diffs.size < 2 or resamples == 0:
        return None, None, "none"
    if np.all(diffs == diffs[0]):
        return float(diffs[0]), float(diffs[0]), "zero_width"
    methods: tuple[Literal["BCa", "percentile"], ...] = ("BCa", "percentile") if diffs.size >= 3 else ("percentile",)
    for method in methods:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = stats.bootstrap(
                (diffs,),
                np.mean,
                n_resamples=resamples,
                batch=max(1, _BATCH_VALUES // diffs.size),
                vectorized=True,
                confidence_level=level,
                method=method,
                rng=np.random.default_rng(seed),
            )
        lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if not caught and math.isfinite(lo) and math.isfinite(hi):
            return lo, hi, "bca" if method == "BCa" else "percentile"
    return None, None, "none"


def _p_value(mean: float, sd: float | None, n: int) -> float | None:
    """Return the two-sided paired t-test p-value of ``mean = 0``; 1 or 0 exactly when ``sd = 0``."""
    if sd is None:
        return None
    if sd == 0.0:
        return 1.0 if mean == 0.0 else 0.0
    t_stat = mean / (sd / math.sqrt(n))
    return float(min(1.0, 2.0 * stats.t.sf(abs(t_stat), n - 1)))


def paired_difference(
    baseline: Values, other: Values, level: float = 0.95, resamples: int = 9999, seed: int = 0
) -> Difference:
    """Compare ``other`` with ``baseline`` replication by replication.

    The BCa interval bootstraps the differences themselves (resampling pairs keeps the common
    random numbers together), from ``numpy.random.default_rng(seed)`` so the same inputs always
    give the same interval. ``resamples = 0`` skips the bootstrap (``bca_method = "none"``), for
    the rounds of a sequential procedure that need only the t half-width.

    The p-value is the two-sided paired t-test's; when every difference is equal it is exactly 1
    if they are all 0 and 0 otherwise (a certain shift), and None at n = 1.
    """
    _check_level(level)
    if resamples < 0:
        raise ValueError(f"resamples: must be >= 0, got {resamples}")
    base, oth = _array(baseline, "baseline"), _array(other, "other")
    if base.shape != oth.shape:
        raise ValueError(f"other: {oth.size} replications but baseline has {base.size}")
    diffs = oth - base
    t = _t_interval(diffs, level)
    bca_lo, bca_hi, bca_method = _bootstrap(diffs, level, resamples, seed)
    base_mean, base_sd = _mean_sd(base)
    _, other_sd = _mean_sd(oth)
    reduction = None
    if t.sd is not None and base_sd is not None and other_sd is not None and t.sd > 0.0:
        reduction = (base_sd**2 + other_sd**2) / t.sd**2
    return Difference(
        mean=t.mean,
        t_lo=t.lo,
        t_hi=t.hi,
        bca_lo=bca_lo,
        bca_hi=bca_hi,
        bca_method=bca_method,
        sd=t.sd,
        n=t.n,
        p_value=_p_value(t.mean, t.sd, t.n),
        relative=None if base_mean == 0.0 else t.mean / base_mean,
        variance_reduction=reduction,
    )


def holm(p_values: Mapping[str, float]) -> dict[str, float]:
    """Return Holm-Bonferroni adjusted p-values, in the order of ``p_values``: monotone, capped at 1.

    Sorted ascending, ``p_(i)`` becomes ``max_{j <= i} min(1, (m - j + 1) p_(j))``; this controls
    the family-wise error rate for any dependence between the tests.
    """
    for name, p in p_values.items():
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p_values[{name!r}]: must be in [0, 1], got {p}")
    m = len(p_values)
    adjusted: dict[str, float] = {}
    running = 0.0
    for rank, (name, p) in enumerate(sorted(p_values.items(), key=lambda item: item[1])):
        running = max(running, min(1.0, (m - rank) * float(p)))
        adjusted[name] = running
    return {name: adjusted[name] for name in p_values}


def significant(p_adjusted: Mapping[str, float], level: float = 0.95) -> dict[str, bool]:
    """Return which adjusted p-values fall below ``1 - level``."""
    _check_level(level)
    return {name: p < 1.0 - level for name, p in p_adjusted.items()}


def precision_reached(
    differences: Mapping[str, Difference], baseline_means: Mapping[str, float], target: float
) -> bool:
    """Return whether every difference's t half-width is within ``target * |baseline mean|``.

    This is the relative-precision stopping rule of Law & Kelton. A metric whose baseline mean is
    0 has no relative scale and is skipped: it cannot hold the experiment open. A difference
    without a half-width (n = 1) never meets the target.
    """
    if target <= 0.0:
        raise ValueError(f"target: must be > 0, got {target}")
    for name, diff in differences.items():
        if name not in baseline_means:
            raise ValueError(f"baseline_means: no mean for {name!r}")
        if diff.half_width is None:
            return False
        scale = abs(baseline_means[name])
        if scale != 0.0 and diff.half_width > target * scale:
            return False
    return True


def replications_needed(current: Difference, baseline_mean: float, target: float) -> int:
    """Estimate the replications the difference needs for a half-width of ``target * |baseline_mean|``.

    The smallest ``i > n`` with ``t(i - 1) · s / √i ≤ target · |baseline_mean|`` (Law & Kelton's
    relative-precision rule, with the sd ``s`` measured so far and the t quantile of ``i``
    replications, not of ``n``: with few replications so far the t quantile alone would ask for
    many more than needed); ``n`` once the target is met (or when the baseline mean is 0, as
    :func:`precision_reached` skips such a metric), 2 at n = 1.
    """
    if target <= 0.0:
        raise ValueError(f"target: must be > 0, got {target}")
    n, hw, sd = current.n, current.half_width, current.sd
    if hw is None:
        return n + 1
    allowed = target * abs(baseline_mean)
    if baseline_mean == 0.0 or hw <= allowed:
        return n
    if not sd:  # no spread known: the half-width taken to shrink as 1/√n
        return max(n + 1, math.ceil(n * (hw / allowed) ** 2))
    level = _level_of(current)
    i = n + 1
    while i < 100_000 and float(stats.t.ppf(0.5 + level / 2.0, i - 1)) * sd / math.sqrt(i) > allowed:
        i = max(i + 1, math.ceil(i * 1.05)) if i > 200 else i + 1
    return i


def _level_of(d: Difference) -> float:
    """The confidence level behind a difference's t-interval (its half-width over sd/√n)."""
    if d.half_width is None or not d.sd or d.n < 2:
        return 0.95
    q = d.half_width / (d.sd / math.sqrt(d.n))
    return float(2.0 * stats.t.cdf(q, d.n - 1) - 1.0)


@dataclass(frozen=True)
class SequentialPlan:
    """Decide how many replications to add next: ``initial`` first, then batches, up to ``cap``."""

    initial: int
    batch: int
    cap: int

    def __post_init__(self) -> None:
        if self.initial < 2:
            raise ValueError(f"initial: must be >= 2 (an interval needs two replications), got {self.initial}")
        if self.batch < 1:
            raise ValueError(f"batch: must be >= 1, got {self.batch}")
        if self.cap < self.initial:
            raise ValueError(f"cap: must be >= initial ({self.initial}), got {self.cap}")

    def next_count(self, n: int, needed: int) -> int:
        """Return how many replications to add after ``n``, given the estimate ``needed``; 0 means stop.

        The estimated shortfall ``needed - n`` is rounded up to whole batches, so that the worker
        pool stays full; the caller re-estimates ``needed`` after each round, so an estimate that
        was too low costs one more round, and ``cap`` bounds one that was too high.
        """
        if n < 0:
            raise ValueError(f"n: must be >= 0, got {n}")
        if n < self.initial:
            return self.initial - n
        if n >= self.cap or needed <= n:
            return 0
        return min(self.cap - n, self.batch * math.ceil((needed - n) / self.batch))
