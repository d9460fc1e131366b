"""Device twins as columns: one slot per device, one array per sensor and per rule.

A gateway batch updates every reading's device at once (numpy fancy indexing) and evaluates the
threshold-with-persistence rules for the whole batch in a few vectorised operations. Python code
runs per *fired* alert, never per reading.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from contracts.engine_config import ThresholdRule

__all__ = ["Fired", "Twins"]

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]


class Fired(NamedTuple):
    """Rule state changes of one batch: slots that crossed into alert, and slots that cleared."""

    raised: list[tuple[int, int, float, float]]  # (slot, rule index, ts, value)
    cleared: list[tuple[int, int, float]]  # (slot, rule index, ts)


class Twins:
    """Columnar twin state of every device the engine has heard from."""

    def __init__(self, rules: Sequence[ThresholdRule], capacity: int = 1024) -> None:
        self.rules = list(rules)
        self.ids: list[str] = []
        self.slot_of: dict[str, int] = {}
        self._capacity = capacity
        self.last_seen = np.full(capacity, -np.inf)
        self.last_seq = np.zeros(capacity, dtype=np.int64)
        self.values: dict[str, Floats] = {}
        self.breach_since = np.full((len(self.rules), capacity), np.nan)
        self.alerting = np.zeros((len(self.rules), capacity), dtype=bool)
        self._rosters: dict[str, tuple[list[str], Ints]] = {}

    def __len__(self) -> int:
        return len(self.ids)

    # -- slots ----------------------------------------------------------------------------------
    def slot(self, device_id: str) -> int:
        """The slot of ``device_id``, allocated on first sight."""
        slot = self.slot_of.get(device_id)
        if slot is None:
            slot = len(self.ids)
            if slot == self._capacity:
                self._grow()
            self.ids.append(device_id)
            self.slot_of[device_id] = slot
        return slot

    def slots(self, source: str, roster: list[str]) -> Ints:
        """Slots of a gateway's roster; cached while the gateway sends the same roster."""
        cached = self._rosters.get(source)
        if cached is not None and cached[0] == roster:
            return cached[1]
        result = np.array([self.slot(d) for d in roster], dtype=np.int64)
        self._rosters[source] = (roster, result)
        return result

    def _grow(self) -> None:
        new = self._capacity * 2

        def widen(a: npt.NDArray[np.generic], fill: object) -> npt.NDArray[np.generic]:
            out = np.full((*a.shape[:-1], new), fill, dtype=a.dtype)
            out[..., : self._capacity] = a
            return out

        self.last_seen = widen(self.last_seen, -np.inf)  # type: ignore[assignment]
        self.last_seq = widen(self.last_seq, 0)  # type: ignore[assignment]
        self.values = {k: widen(v, np.nan) for k, v in self.values.items()}  # type: ignore[misc]
        self.breach_since = widen(self.breach_since, np.nan)  # type: ignore[assignment]
        self.alerting = widen(self.alerting, False)  # type: ignore[assignment]
        self._capacity = new

    # -- readings -------------------------------------------------------------------------------
    def ingest(self, slots: Ints, ts: Floats, seq: npt.NDArray[np.integer], values: dict[str, Floats]) -> Fired:
        """Apply readings (one per element) and evaluate every rule; return alerts raised and cleared.

        Readings are applied in time order; within one timestamp a device's last reading wins.
        Older readings than a twin's last seen one update nothing (late data does not rewind).
        """
        raised: list[tuple[int, int, float, float]] = []
        cleared: list[tuple[int, int, float]] = []
        if len(slots) == 0:
            return Fired(raised, cleared)
        order = np.argsort(ts, kind="stable")
        bounds = np.flatnonzero(np.diff(ts[order])) + 1
        for group in np.split(order, bounds):
            fired = self._ingest_one_time(
                slots[group], float(ts[group[0]]), seq[group], {k: v[group] for k, v in values.items()}
            )
            raised += fired.raised
            cleared += fired.cleared
        return Fired(raised, cleared)

    def _ingest_one_time(self, slots: Ints, t: float, seq: npt.NDArray[np.integer], values: dict[str, Floats]) -> Fired:
        fresh = self.last_seen[slots] <= t
        if len(slots) > 1 and not (slots[1:] > slots[:-1]).all():  # a device's last reading wins for its rules too
            _, last = np.unique(slots[::-1], return_index=True)
            fresh &= np.isin(np.arange(len(slots)), len(slots) - 1 - last)
        slots = slots[fresh]
        self.last_seen[slots] = t
        self.last_seq[slots] = seq[fresh]
        for name, column in values.items():
            target = self.values.get(name)
            if target is None:
                target = self.values[name] = np.full(self._capacity, np.nan)
            target[slots] = column[fresh]
        raised: list[tuple[int, int, float, float]] = []
        cleared: list[tuple[int, int, float]] = []
        for r, rule in enumerate(self.rules):
            rule_column = values.get(rule.sensor)
            if rule_column is None:
                continue
            v = rule_column[fresh]
            breach = v > rule.above if rule.above is not None else v < rule.below  # type: ignore[operator]
            since = self.breach_since[r, slots]
            since = np.where(breach, np.where(np.isnan(since), t, since), np.nan)
            self.breach_since[r, slots] = since
            firing = breach & (t - since >= rule.for_s)
            was = self.alerting[r, slots]
            up = firing & ~was
            down = ~breach & was
            self.alerting[r, slots] = np.where(up, True, np.where(down, False, was))
            raised += [(int(s), r, t, float(x)) for s, x in zip(slots[up], v[up], strict=True)]
            cleared += [(int(s), r, t) for s in slots[down]]
        return Fired(raised, cleared)
