"""Device twins as columns: one slot per device, one array per sensor and per rule.

A gateway batch updates every reading's device at once (numpy fancy indexing) and evaluates every
rule for the whole batch in a few vectorised operations: thresholds with persistence; trends (an
exponentially weighted line fit per device, kept as five running sums shifted to the current time,
giving level and slope: remaining useful life to a level, run-out of a consumable, rate of change);
anomalies (a per-device EWMA mean and variance scoring each reading, and a two-sided CUSUM of the
scores). Python code runs per *fired* alert, never per reading.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from contracts.engine_config import AnomalyRule, ThresholdRule, TrendRule

__all__ = ["Fired", "Twins"]

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
Rule = ThresholdRule | TrendRule | AnomalyRule
_TREND = 6  # running sums S0, S1, S2, Sy, S1y (times relative to the last reading) and the last reading's time
_ANOMALY = 5  # EWMA mean, EWMA variance, CUSUM up, CUSUM down, readings seen


class Fired(NamedTuple):
    """Rule state changes of one batch: slots that crossed into alert, slots that cleared, and
    offline devices heard from again."""

    raised: list[tuple[int, int, float, float]]  # (slot, rule index, ts, value)
    cleared: list[tuple[int, int, float]]  # (slot, rule index, ts)
    online: list[tuple[int, float]]  # (slot, ts)


class Twins:
    """Columnar twin state of every device the engine has heard from."""

    def __init__(self, rules: Sequence[Rule], capacity: int = 1024) -> None:
        self.rules = list(rules)
        self.ids: list[str] = []
        self.slot_of: dict[str, int] = {}
        self._capacity = capacity
        self.last_seen = np.full(capacity, -np.inf)
        self.last_seq = np.zeros(capacity, dtype=np.int64)
        self.values: dict[str, Floats] = {}
        self.breach_since = np.full((len(self.rules), capacity), np.nan)
        self.alerting = np.zeros((len(self.rules), capacity), dtype=bool)
        # Running state of trend and anomaly rules: a block of rows for each such rule only. A trend
        # rule counts its readings in an anomaly block's last row, so it has one of those too.
        self._trend_row = _rows(isinstance(rule, TrendRule) for rule in self.rules)
        self._anomaly_row = _rows(isinstance(rule, (TrendRule, AnomalyRule)) for rule in self.rules)
        self.trend = np.zeros((sum(r >= 0 for r in self._trend_row), _TREND, capacity))
        self.trend[:, 5] = np.nan
        self.anomaly = np.zeros((sum(r >= 0 for r in self._anomaly_row), _ANOMALY, capacity))
        self._rosters: dict[str, tuple[list[str], Ints]] = {}
        # Products: a rule with `products` applies to devices of those products only.
        self.product_code: dict[str, int] = {}
        self.product = np.full(capacity, -1, dtype=np.int64)
        self._rule_products: list[Ints | None] = [
            np.array([self._code(p) for p in rule.products], dtype=np.int64) if rule.products else None
            for rule in self.rules
        ]
        # Reporting: the learned interval between readings, the registry's when known, offline flags, gaps.
        self.interval = np.full(capacity, np.nan)
        self.expected_interval = np.full(capacity, np.nan)
        self.offline = np.zeros(capacity, dtype=bool)
        self.gaps = np.zeros(capacity, dtype=np.int64)  # readings missing by sequence number
        self.late = np.zeros(capacity, dtype=np.int64)  # readings older than the twin's last one
        self.missing_total = 0  # the sums of both, over every device
        self.late_total = 0
        self.last_gap: tuple[int, int, int] | None = (
            None  # the largest gap of the latest readings with one: (slot, missing, seq)
        )

    def __len__(self) -> int:
        return len(self.ids)

    # -- slots ----------------------------------------------------------------------------------
    def slot(self, device_id: str) -> int:
        """The slot of ``device_id``, allocated on first sight."""
        slot = self.slot_of.get(device_id)
        if slot is None:
            slot = len(self.ids)
            if slot == self._capacity:
                self.reserve(1)
            self.ids.append(device_id)
            self.slot_of[device_id] = slot
        return slot

    def reserve(self, more: int) -> None:
        """Make room for ``more`` devices beyond those there are (columns grow by half, or to fit)."""
        needed = len(self.ids) + more
        if needed > self._capacity:
            self._grow(max(needed, self._capacity + self._capacity // 2))

    def _code(self, product: str) -> int:
        return self.product_code.setdefault(product, len(self.product_code))

    def set_product(self, slot: int, product: str | None) -> None:
        self.product[slot] = -1 if product is None else self._code(product)

    def slots(self, source: str, roster: list[str]) -> Ints:
        """Slots of a gateway's roster; cached while the gateway sends the same roster."""
        cached = self._rosters.get(source)
        if cached is not None and (cached[0] is roster or cached[0] == roster):
            return cached[1]
        result = np.array([self.slot(d) for d in roster], dtype=np.int64)
        self._rosters[source] = (roster, result)
        return result

    def has_roster(self, source: str, roster: list[str]) -> bool:
        """Whether ``roster`` is the very list :meth:`slots` last gave ``source`` slots for (all its
        devices have one): a cheap test for the sender of an unchanged roster."""
        cached = self._rosters.get(source)
        return cached is not None and cached[0] is roster

    def _grow(self, new: int) -> None:
        """Widen every column to ``new`` slots, one column at a time (the old one is freed as the next is made)."""

        def widen(a: npt.NDArray[np.generic], fill: object) -> npt.NDArray[np.generic]:
            out = np.full((*a.shape[:-1], new), fill, dtype=a.dtype)
            out[..., : self._capacity] = a
            return out

        self.last_seen = widen(self.last_seen, -np.inf)  # type: ignore[assignment]
        self.last_seq = widen(self.last_seq, 0)  # type: ignore[assignment]
        for name, column in self.values.items():
            self.values[name] = widen(column, np.nan)  # type: ignore[assignment]
        self.breach_since = widen(self.breach_since, np.nan)  # type: ignore[assignment]
        self.alerting = widen(self.alerting, False)  # type: ignore[assignment]
        trend = widen(self.trend, 0.0)
        trend[:, 5, self._capacity :] = np.nan
        self.trend = trend  # type: ignore[assignment]
        self.anomaly = widen(self.anomaly, 0.0)  # type: ignore[assignment]
        self.product = widen(self.product, -1)  # type: ignore[assignment]
        self.interval = widen(self.interval, np.nan)  # type: ignore[assignment]
        self.expected_interval = widen(self.expected_interval, np.nan)  # type: ignore[assignment]
        self.offline = widen(self.offline, False)  # type: ignore[assignment]
        self.gaps = widen(self.gaps, 0)  # type: ignore[assignment]
        self.late = widen(self.late, 0)  # type: ignore[assignment]
        self._capacity = new

    def forget(self, slot: int, rule: int | None = None) -> None:
        """Re-arm one device's rules (all, or one) after a repair: persistence, trend fit, anomaly baseline."""
        every = slice(None)
        self.alerting[every if rule is None else rule, slot] = False
        self.breach_since[every if rule is None else rule, slot] = np.nan
        trend = every if rule is None else self._trend_row[rule]
        anomaly = every if rule is None else self._anomaly_row[rule]
        if trend != -1:
            self.trend[trend, :, slot] = 0.0
            self.trend[trend, 5, slot] = np.nan
        if anomaly != -1:
            self.anomaly[anomaly, :, slot] = 0.0

    # -- readings -------------------------------------------------------------------------------
    def ingest(self, slots: Ints, ts: Floats, seq: npt.NDArray[np.integer], values: dict[str, Floats]) -> Fired:
        """Apply readings (one per element) and evaluate every rule; return alerts raised and cleared.

        Readings are applied in time order; within one timestamp a device's last reading wins.
        Older readings than a twin's last seen one update nothing (late data does not rewind).
        """
        raised: list[tuple[int, int, float, float]] = []
        cleared: list[tuple[int, int, float]] = []
        online: list[tuple[int, float]] = []
        if len(slots) == 0:
            return Fired(raised, cleared, online)
        order = np.argsort(ts, kind="stable")
        bounds = np.flatnonzero(np.diff(ts[order])) + 1
        for group in np.split(order, bounds):
            fired = self._ingest_one_time(
                slots[group], float(ts[group[0]]), seq[group], {k: v[group] for k, v in values.items()}
            )
            raised += fired.raised
            cleared += fired.cleared
            online += fired.online
        return Fired(raised, cleared, online)

    def silent(self, now: float, after_intervals: float, min_s: float) -> Ints:
        """Slots not yet offline whose silence exceeds ``after_intervals`` reporting intervals (the
        registry's, else the learned one) and ``min_s``; devices never heard from are not judged."""
        n = len(self.ids)
        interval = np.where(np.isnan(self.expected_interval[:n]), self.interval[:n], self.expected_interval[:n])
        limit = np.maximum(after_intervals * interval, min_s)
        heard = np.isfinite(self.last_seen[:n])  # a device never heard from is not judged
        quiet = (now - self.last_seen[:n]) > limit  # NaN intervals compare False: not judged yet
        return np.flatnonzero(heard & quiet & ~self.offline[:n])

    def _ingest_one_time(self, slots: Ints, t: float, seq: npt.NDArray[np.integer], values: dict[str, Floats]) -> Fired:
        previous = self.last_seen[slots]
        fresh = previous <= t
        np.add.at(self.late, slots[~fresh], 1)
        self.late_total += int((~fresh).sum())
        # Gaps: a sequence number that jumps ahead says how many readings went missing (a restart
        # numbers from the start again: no gap); several readings of a device at one time all count.
        if len(slots) > 1 and not (slots[1:] > slots[:-1]).all():
            devices, where, received = np.unique(slots[fresh], return_inverse=True, return_counts=True)
            top = np.zeros(len(devices), dtype=np.int64)
            np.maximum.at(top, where, seq[fresh].astype(np.int64))
            heard_before = np.isfinite(self.last_seen[devices])
            missing = np.where(heard_before, np.maximum(top - self.last_seq[devices] - received, 0), 0)
            showed = top
            _, last = np.unique(slots[::-1], return_index=True)  # a device's last reading wins for its rules too
            wins = np.zeros(len(slots), dtype=bool)
            wins[len(slots) - 1 - last] = True
            fresh &= wins
        else:
            devices = slots[fresh]
            jump = np.where(np.isfinite(previous[fresh]), seq[fresh].astype(np.int64) - self.last_seq[devices], 1)
            missing = np.maximum(jump - 1, 0)
            showed = seq[fresh].astype(np.int64)
        if len(missing) and missing.any():
            worst = int(np.argmax(missing))
            self.last_gap = (int(devices[worst]), int(missing[worst]), int(showed[worst]))
        self.gaps[devices] += missing
        self.missing_total += int(missing.sum())
        slots = slots[fresh]
        seq = seq[fresh].astype(np.int64)
        heard = np.isfinite(previous[fresh])
        # The interval is learned as a moving average, each step clipped to twice the current
        # estimate so that one long silence does not inflate it.
        dt = t - previous[fresh]
        learned = self.interval[slots]
        step = np.where(np.isnan(learned), dt, learned + 0.2 * (np.minimum(dt, 2.0 * learned) - learned))
        self.interval[slots] = np.where(heard & (dt > 0), step, learned)
        back = slots[self.offline[slots]]
        self.offline[back] = False
        online = [(int(s), t) for s in back]
        self.last_seen[slots] = t
        self.last_seq[slots] = seq
        for name, column in values.items():
            target = self.values.get(name)
            if target is None:
                target = self.values[name] = np.full(self._capacity, np.nan)
            reported = column[fresh]
            known = ~np.isnan(reported)  # NaN: this reading did not carry the sensor; keep the last value
            target[slots[known]] = reported[known]
        raised: list[tuple[int, int, float, float]] = []
        cleared: list[tuple[int, int, float]] = []
        for r, rule in enumerate(self.rules):
            rule_column = values.get(rule.sensor)
            if rule_column is None:
                continue
            v = rule_column[fresh]
            was = self.alerting[r, slots]
            ok = np.isfinite(v)  # a missing reading (NaN) leaves the rule's state as it was
            scope = self._rule_products[r]
            if scope is not None:  # a rule for some products only leaves the others' state alone
                ok &= _among(self.product[slots], scope)
            firing = was.copy()
            if isinstance(rule, ThresholdRule):
                firing[ok] = self._threshold(r, rule, slots[ok], t, v[ok])
            elif isinstance(rule, TrendRule):
                firing[ok] = self._trend(r, rule, slots[ok], t, v[ok])
            else:
                firing[ok] = self._anomaly(r, rule, slots[ok], v[ok])
            up = firing & ~was
            down = ~firing & was
            self.alerting[r, slots] = firing
            raised += [(int(s), r, t, float(x)) for s, x in zip(slots[up], v[up], strict=True)]
            cleared += [(int(s), r, t) for s in slots[down]]
        return Fired(raised, cleared, online)

    # -- rule kinds (each returns which of ``slots`` are firing after the readings ``v`` at ``t``) ----
    def _threshold(self, r: int, rule: ThresholdRule, slots: Ints, t: float, v: Floats) -> npt.NDArray[np.bool_]:
        breach = v > rule.above if rule.above is not None else v < rule.below  # type: ignore[operator]
        since = self.breach_since[r, slots]
        since = np.where(breach, np.where(np.isnan(since), t, since), np.nan)
        self.breach_since[r, slots] = since
        firing: npt.NDArray[np.bool_] = breach & (t - since >= rule.for_s)
        return firing

    def _trend(self, r: int, rule: TrendRule, slots: Ints, t: float, v: Floats) -> npt.NDArray[np.bool_]:
        r, counter = self._trend_row[r], self._anomaly_row[r]
        s0, s1, s2, sy, s1y, last = (self.trend[r, i, slots] for i in range(_TREND))
        dt = np.where(np.isnan(last), 0.0, t - last)
        d = np.exp(-dt / rule.window_s)
        # Shift the sums from times relative to the last reading to times relative to t, then decay.
        s2 = d * (s2 - 2.0 * dt * s1 + dt * dt * s0)
        s1 = d * (s1 - dt * s0)
        s1y = d * (s1y - dt * sy)
        s0, sy = d * s0 + 1.0, d * sy + v
        self.trend[r, :, slots] = np.stack([s0, s1, s2, sy, s1y, np.full(len(slots), t)], axis=1)
        seen = self.anomaly[counter, 4, slots] + 1.0  # the readings counter lives in the anomaly block's last row
        self.anomaly[counter, 4, slots] = seen
        denominator = s0 * s2 - s1 * s1
        with np.errstate(divide="ignore", invalid="ignore"):
            slope = np.where(denominator > 1e-12, (s0 * s1y - s1 * sy) / denominator, 0.0)  # per second
            level = (sy - slope * s1) / s0  # at t
            ready = seen >= rule.min_readings
            if rule.reaches is not None and rule.within_s is not None:
                time_left = (rule.reaches - level) / slope
                firing = ready & (slope != 0.0) & (time_left >= 0.0) & (time_left <= rule.within_s)
            else:
                per_hour = slope * 3600.0
                firing = ready & (
                    (per_hour > rule.slope_above if rule.slope_above is not None else False)
                    | (per_hour < rule.slope_below if rule.slope_below is not None else False)
                )
        result: npt.NDArray[np.bool_] = np.asarray(firing, dtype=bool)
        return result

    def _anomaly(self, r: int, rule: AnomalyRule, slots: Ints, v: Floats) -> npt.NDArray[np.bool_]:
        r = self._anomaly_row[r]
        mean, var, up, down, seen = (self.anomaly[r, i, slots] for i in range(_ANOMALY))
        warm = seen >= rule.warm_up
        z = np.where(warm, (v - mean) / np.sqrt(var + 1e-12), 0.0)
        up = np.where(warm, np.maximum(0.0, up + z - rule.k), 0.0)
        down = np.where(warm, np.maximum(0.0, down - z - rule.k), 0.0)
        # During warm-up the weight is 1/n (a plain running mean), then alpha (forgetting).
        a = np.maximum(rule.alpha, 1.0 / (seen + 1.0))
        delta = v - mean
        mean = mean + a * delta
        var = (1.0 - a) * (var + a * delta * delta)
        self.anomaly[r, :, slots] = np.stack([mean, var, up, down, seen + 1.0], axis=1)
        firing: npt.NDArray[np.bool_] = warm & (np.maximum(up, down) > rule.h)
        return firing


def _among(codes: Ints, scope: Ints) -> npt.NDArray[np.bool_]:
    """``np.isin(codes, scope)`` for the few products a rule names: one comparison each, no sort."""
    found: npt.NDArray[np.bool_] = codes == scope[0]
    for code in scope[1:]:
        found |= codes == code
    return found


def _rows(uses: Iterable[bool]) -> list[int]:
    """For each rule, its row in a block that only some rules use (numbered in rule order), or -1."""
    rows, n = [], 0
    for used in uses:
        rows.append(n if used else -1)
        n += used
    return rows
