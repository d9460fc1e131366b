"""Per-source token buckets: a device or gateway may send ``per_s`` messages a second on average,
in bursts of up to ``burst``. The clock is the caller's (message time in event time, arrival time
on the wall clock), so the same stream is limited the same way every time."""

from __future__ import annotations

__all__ = ["RateLimiter"]


class RateLimiter:
    """Token buckets keyed by source; :meth:`allow` spends one token or says no."""

    def __init__(self, per_s: float, burst: int) -> None:
        if per_s <= 0 or burst < 1:
            raise ValueError(f"a rate limit needs per_s > 0 and burst >= 1, not {per_s} and {burst}")
        self.per_s, self.burst = per_s, float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}  # source -> (tokens, time of last refill)

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, source: str, now: float) -> bool:
        """Whether ``source`` may send a message at ``now`` (a refused message spends nothing)."""
        tokens, then = self._buckets.get(source, (self.burst, now))
        tokens = min(self.burst, tokens + max(0.0, now - then) * self.per_s)
        if tokens < 1.0:
            self._buckets[source] = (tokens, max(now, then))
            return False
        self._buckets[source] = (tokens - 1.0, max(now, then))
        return True
