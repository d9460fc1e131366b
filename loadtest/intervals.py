"""Response times per request type and interval: what Locust's final statistics cannot say over time.

Locust keeps one histogram per request type for the whole run; its stats history gives, every
second, percentiles over a trailing ten-second window and only for all types merged. A load test
needs ingest p99 *per interval*, apart from publish and connect. :class:`IntervalBook` counts each
request into a histogram of its type and interval (Unix time cut into ``step_s`` slices), with the
failures and the exact largest time. A Locust worker hands its book to the master with each report
(:meth:`take`, :meth:`merge`), the master (or the single process) writes :meth:`document` when it
quits. Pure: the caller passes the time.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Bin", "IntervalBook", "bucket_ms", "read_document"]


def bucket_ms(ms: float) -> float:
    """Two significant digits at every scale: Locust's own buckets round anything under 100 ms to whole
    milliseconds, too coarse for a loopback broker's sub-millisecond PUBACKs."""
    return float(f"{ms:.2g}")


@dataclass
class Bin:
    """One request type in one interval: timed requests by bucketed time (ms), failures, the largest time."""

    times: dict[float, int] = field(default_factory=dict)
    failures: int = 0
    max_ms: float | None = None

    @property
    def count(self) -> int:
        return sum(self.times.values())

    def add(self, other: Bin) -> None:
        for value, n in other.times.items():
            self.times[value] = self.times.get(value, 0) + n
        self.failures += other.failures
        if other.max_ms is not None:
            self.max_ms = other.max_ms if self.max_ms is None else max(self.max_ms, other.max_ms)


Key = tuple[str, float]  # (request type, the interval's start in Unix seconds)


class IntervalBook:
    """Histograms per (request type, interval of ``step_s`` seconds)."""

    def __init__(self, step_s: float = 1.0) -> None:
        if not (math.isfinite(step_s) and step_s > 0):
            raise ValueError(f"an interval must be > 0 s, not {step_s}")
        self.step_s = step_s
        self._bins: dict[Key, Bin] = {}

    def __len__(self) -> int:
        return len(self._bins)

    def _bin(self, method: str, t_unix: float) -> Bin:
        key = (method, math.floor(t_unix / self.step_s) * self.step_s)
        found = self._bins.get(key)
        if found is None:
            found = self._bins[key] = Bin()
        return found

    def record(self, method: str, t_unix: float, ms: float | None, failed: bool) -> None:
        """Count one request that completed at ``t_unix``: timed (``ms``) or not, failed or not."""
        b = self._bin(method, t_unix)
        if failed:
            b.failures += 1
        if ms is not None and math.isfinite(ms):
            value = bucket_ms(ms)
            b.times[value] = b.times.get(value, 0) + 1
            b.max_ms = ms if b.max_ms is None else max(b.max_ms, ms)

    def take(self) -> list[list[Any]]:
        """Everything counted since the last call, as plain lists (what a worker sends its master); then forget it."""
        rows = [
            [method, start, [[v, n] for v, n in b.times.items()], b.failures, b.max_ms]
            for (method, start), b in self._bins.items()
        ]
        self._bins = {}
        return rows

    def merge(self, rows: Iterable[list[Any]]) -> None:
        """Add what another book took (a worker's report), in this book's intervals."""
        for method, start, times, failures, max_ms in rows:
            other = Bin({float(v): int(n) for v, n in times}, int(failures), None if max_ms is None else float(max_ms))
            self._bin(str(method), float(start)).add(other)

    def document(self) -> dict[str, Any]:
        """The book as JSON: ``step_s`` and one row per (type, interval) in time order."""
        return {
            "step_s": self.step_s,
            "bins": [
                {
                    "method": method,
                    "start_unix": start,
                    "times": {repr(v): n for v, n in sorted(b.times.items())},
                    "failures": b.failures,
                    "max_ms": b.max_ms,
                }
                for (method, start), b in sorted(self._bins.items(), key=lambda kv: (kv[0][1], kv[0][0]))
            ],
        }


def read_document(document: Mapping[str, Any]) -> tuple[float, dict[str, dict[float, Bin]]]:
    """The step and the bins of :meth:`IntervalBook.document`: request type -> interval start -> bin."""
    step = float(document["step_s"])
    found: dict[str, dict[float, Bin]] = {}
    for row in document["bins"]:
        times = {float(v): int(n) for v, n in row["times"].items()}
        max_ms = row.get("max_ms")
        b = Bin(times, int(row["failures"]), None if max_ms is None else float(max_ms))
        found.setdefault(str(row["method"]), {}).setdefault(float(row["start_unix"]), Bin()).add(b)
    return step, found
