"""The failure calendar of one fleet: every next failure time in an array, only the ones due soon in a heap.

A heap entry per (mode, device) as a Python tuple costs hundreds of bytes a device. The calendar
keeps the times where the fleet keeps them, in its ``(modes, devices)`` array, and holds in a small
heap only the failures due within a window ahead. Asked about a time past the window, it scans the
array (vectorised) for what falls due before the new end of the window and sorts it by
(time, mode, device) — the order one heap of every failure would have given. A failure rescheduled
(a repair, a refill, an update) joins the heap at once only if it falls due within the window; a
later one waits in the array for the scan that reaches it. An entry made stale by a reschedule or a
failure is dropped when it reaches the top, by its life counter, as in a heap of everything.
"""

from __future__ import annotations

import heapq
import math

import numpy as np
import numpy.typing as npt

__all__ = ["Calendar"]

Entry = tuple[float, int, int, int]  # (time, mode, device, life)


class Calendar:
    """Failure times ``when[mode, device]`` of lives ``life[mode, device]``, not yet ``failed``.

    The arrays are the fleet's own (read, never replaced); ``span_s`` is how far past the asked
    time a scan looks, so that a scan is needed about once a span.
    """

    def __init__(
        self,
        when: npt.NDArray[np.float64],
        life: npt.NDArray[np.int32],
        failed: npt.NDArray[np.bool_],
        span_s: float,
    ) -> None:
        if not span_s > 0:
            raise ValueError(f"span_s must be > 0, not {span_s!r}")
        self._when, self._life, self._failed = when, life, failed
        self.span_s = span_s
        self.until = -math.inf  # every failure due at or before this time is in the heap
        self._heap: list[Entry] = []

    def __len__(self) -> int:
        """Entries in the heap now (stale ones included)."""
        return len(self._heap)

    def cover(self, horizon: float) -> None:
        """Make sure every failure due at or before ``horizon`` is in the heap."""
        if horizon <= self.until:
            return
        until = horizon + self.span_s if math.isfinite(horizon) else math.inf
        n = self._when.shape[1]
        when = self._when.reshape(-1)
        hit = np.flatnonzero(self._when <= until)
        t = when[hit]
        keep = (t > self.until) & (t < math.inf) & ~self._failed.reshape(-1)[hit]
        hit, t = hit[keep], t[keep]
        mode, device = np.divmod(hit, n)
        order = np.lexsort((device, mode, t))
        fresh = list(
            zip(
                t[order].tolist(),
                mode[order].tolist(),
                device[order].tolist(),
                self._life.reshape(-1)[hit[order]].tolist(),
                strict=True,
            )
        )
        if self._heap:
            self._heap += fresh
            heapq.heapify(self._heap)
        else:
            self._heap = fresh  # a sorted list is a heap
        self.until = until

    def push(self, mode: int, device: int) -> None:
        """Schedule the current life of ``mode`` on ``device`` (its time is in the array already)."""
        t = float(self._when[mode, device])
        if t <= self.until and math.isfinite(t):
            heapq.heappush(self._heap, (t, mode, device, int(self._life[mode, device])))

    def next_time(self, horizon: float = math.inf) -> float:
        """Time of the earliest failure due at or before ``horizon`` (inf if none is)."""
        self.cover(horizon)
        heap = self._heap
        while heap:
            t, j, d, k = heap[0]
            if k == self._life[j, d] and not self._failed[j, d]:
                return t if t <= horizon else math.inf
            heapq.heappop(heap)
        return math.inf

    def pop_due(self, now: float) -> list[tuple[int, int]]:
        """Mark every failure due at or before ``now`` as failed; return their (mode, device) pairs."""
        due = []
        while self.next_time(now) < math.inf:  # next_time is due by now or inf (no entry is at inf)
            _, j, d, _ = heapq.heappop(self._heap)
            self._failed[j, d] = True
            due.append((j, d))
        return due
