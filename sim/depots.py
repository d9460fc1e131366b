"""Parts depots run as (S-1, S) base stock: each part taken is re-ordered at once; demand beyond the
stock waits as a backorder, first come first served. Palm's theorem gives the fill rate (the share
of demands met from stock) from the mean pipeline alone; the tests check it.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import simpy

from sim.scenario import Depot
from sim.streams import Stream

__all__ = ["DepotStats", "Depots"]

HOUR_S = 3600.0


@dataclass
class DepotStats:
    """Tallies and level integrals of one part at one depot (times in seconds)."""

    start_s: float
    on_hand: int
    backordered: int = 0
    demands: int = 0  # takes: filled at once or backordered
    filled_immediately: int = 0
    backorders: int = 0
    lost: int = 0  # picks declined because nothing was on hand (try_take)
    on_hand_area: float = 0.0  # ∫ on-hand dt, unit-seconds
    backorder_area: float = 0.0  # ∫ backorders dt, unit-seconds
    backorder_delay_s: float = 0.0  # total wait of backordered demands
    _since_s: float = field(default=0.0, init=False, repr=False)

    def __post_init__(self) -> None:
        self._since_s = self.start_s

    def _advance(self, now: float) -> None:
        dt = now - self._since_s
        self.on_hand_area += self.on_hand * dt
        self.backorder_area += self.backordered * dt
        self._since_s = now

    @property
    def fill_rate(self) -> float:
        """Share of requests filled from stock at once (NaN before any request)."""
        asked = self.demands + self.lost
        return self.filled_immediately / asked if asked else math.nan

    def mean_on_hand(self, now: float) -> float:
        span = now - self.start_s
        return (self.on_hand_area + self.on_hand * (now - self._since_s)) / span if span > 0 else float(self.on_hand)

    def mean_backorders(self, now: float) -> float:
        span = now - self.start_s
        area = self.backorder_area + self.backordered * (now - self._since_s)
        return area / span if span > 0 else float(self.backordered)

    @property
    def mean_backorder_delay_s(self) -> float:
        """Mean wait per demand (zero for one filled at once): Little's law reads
        ``mean_backorders = demand rate * mean_backorder_delay_s``."""
        return self.backorder_delay_s / self.demands if self.demands else math.nan


@dataclass
class _Bin:
    depot: Depot
    part: str
    stream: Stream
    stats: DepotStats
    waiting: deque[tuple[simpy.Event, float]] = field(default_factory=deque)


class Depots:
    """Parts depots, each running (S-1, S) base stock per part with FIFO backorders."""

    def __init__(self, env: simpy.Environment, specs: Sequence[Depot], replenish_seed: int) -> None:
        self.env = env
        self.specs = list(specs)
        self._bins: dict[tuple[str, str], _Bin] = {}
        for spec in self.specs:
            for part, s in spec.stock.items():
                stats = DepotStats(start_s=float(env.now), on_hand=s)
                stream = Stream(replenish_seed, "depot", spec.name, part)
                self._bins[(spec.name, part)] = _Bin(spec, part, stream, stats)

    @property
    def stats(self) -> dict[tuple[str, str], DepotStats]:
        """Statistics per (depot name, part)."""
        return {k: b.stats for k, b in self._bins.items()}

    def stocks(self, part: str) -> bool:
        """Whether any depot stocks ``part`` (others come from an unlimited supply elsewhere)."""
        return any(part in d.stock for d in self.specs)

    def _bin(self, part: str, region: str | None) -> _Bin | None:
        stocking = [d for d in self.specs if part in d.stock]
        if not stocking:
            return None
        local = [d for d in stocking if region is not None and d.region == region]
        return self._bins[((local or stocking)[0].name, part)]

    def take(self, part: str, region: str | None, key: tuple[int, int]) -> simpy.Event | None:
        """Take one ``part``; the event fires when the unit is in hand (at once, or when a
        replenishment fills this backorder). None when no depot stocks the part."""
        b = self._bin(part, region)
        if b is None:
            return None
        now = float(self.env.now)
        st = b.stats
        st._advance(now)
        st.demands += 1
        event = self.env.event()
        if st.on_hand > 0:
            st.on_hand -= 1
            st.filled_immediately += 1
            event.succeed()
        else:
            st.backordered += 1
            st.backorders += 1
            b.waiting.append((event, now))
        self._reorder(b, key)
        return event

    def try_take(self, part: str, region: str | None, key: tuple[int, int]) -> bool:
        """Take one ``part`` only if it is on hand at the depot that serves ``region``; no backorder."""
        b = self._bin(part, region)
        if b is None:
            return False
        if b.stats.on_hand == 0:
            b.stats.lost += 1
            return False
        self.take(part, region, key)
        return True

    def _reorder(self, b: _Bin, key: tuple[int, int]) -> None:
        lead_h = float(b.depot.replenish_h.ppf(b.stream.one(key[0], key[1])))
        self.env.timeout(lead_h * HOUR_S).callbacks.append(lambda _: self._arrive(b))

    def _arrive(self, b: _Bin) -> None:
        now = float(self.env.now)
        st = b.stats
        st._advance(now)
        if b.waiting:
            event, since = b.waiting.popleft()
            st.backordered -= 1
            st.backorder_delay_s += now - since
            event.succeed()
        else:
            st.on_hand += 1

    def summary(self) -> dict[str, Any]:
        """Fill rate overall and per part, with the backorder figures behind it."""
        now = float(self.env.now)
        by_part: dict[str, list[DepotStats]] = {}
        for b in self._bins.values():
            by_part.setdefault(b.part, []).append(b.stats)

        def rate(stats: list[DepotStats]) -> float:
            asked = sum(s.demands + s.lost for s in stats)
            return sum(s.filled_immediately for s in stats) / asked if asked else math.nan

        everything = [s for stats in by_part.values() for s in stats]
        return {
            "fill_rate": rate(everything),
            "fill_rate_by_part": {p: rate(stats) for p, stats in sorted(by_part.items())},
            "demands": sum(s.demands for s in everything),
            "lost": sum(s.lost for s in everything),
            "backorders": sum(s.backorders for s in everything),
            "mean_backorders": sum(s.mean_backorders(now) for s in everything),
        }
