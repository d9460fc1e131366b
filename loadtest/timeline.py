"""The run over time: latency per request type and interval, rates, users, the engine's lag, the broker's counters.

Four sources, gathered by the runner and read here: the locustfile's response times per interval
(:mod:`loadtest.intervals`), Locust's requests and failures per second (``locust.json``), Locust's
user count (its stats history CSV), and the runner's samples of the engine's ``/metrics`` and the
broker's ``$SYS`` counters (:class:`loadtest.witnesses.Sampler`). Every series is columnar, a
``t_s`` list (seconds since ``start_unix``, each figure at the *end* of the interval it covers)
beside lists of figures (None: nothing to say in that interval). Rates are differences of
cumulative counters over the time between two readings, so a late or missed sample coarsens the
series and never changes a total. Pure: nothing here reads a clock or a socket.
"""

from __future__ import annotations

import csv
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from loadtest.intervals import Bin, read_document
from loadtest.report import BrokerCounts, EngineCounts, Stat, histogram_quantile, percentile

__all__ = [
    "LATENCY_TYPES",
    "BrokerReading",
    "Sample",
    "build_timeline",
    "read_user_counts",
]

LATENCY_TYPES = ("publish", "ingest", "connect")
_LATENCY_QUANTILES = {"p50": 0.50, "p95": 0.95, "p99": 0.99}
_LAG_QUANTILES = {"lag_p50_ms": 0.50, "lag_p95_ms": 0.95, "lag_p99_ms": 0.99}


class BrokerReading(NamedTuple):
    """The broker's counters as of its ``$SYS`` publication at ``t_unix``, and the clients connected then."""

    t_unix: float | None
    counts: BrokerCounts
    connected: int | None


class Sample(NamedTuple):
    """One look at both witnesses: the engine's counters when scraped (None: it did not answer), the broker's."""

    t_unix: float
    engine: EngineCounts | None
    broker: BrokerReading


def read_user_counts(path: Path) -> list[tuple[float, int]]:
    """(Unix second, users) from Locust's stats history CSV (its ``Aggregated`` rows); [] without the file."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except OSError:
        return []
    found = []
    for row in rows:
        if row.get("Name") != "Aggregated":
            continue
        try:
            found.append((float(row["Timestamp"]), int(float(row["User Count"]))))
        except (KeyError, TypeError, ValueError):
            continue
    return found


def build_timeline(
    *,
    start_unix: float,
    step_s: float,
    stats: Sequence[Stat],
    intervals: Mapping[str, Any] | None,
    users: Sequence[tuple[float, int]],
    samples: Sequence[Sample],
) -> dict[str, Any]:
    """The ``timeline`` section of ``loadtest.json``; ``intervals`` is the locustfile's
    ``locust_timeline.json`` (None: a locustfile without its hooks, no latency over time)."""
    seconds = [t for s in stats for t in s.per_second]
    return {
        "start_unix": start_unix,
        "step_s": step_s,
        "load_started_s": None if not seconds else min(seconds) - start_unix,
        "latency_ms": None if intervals is None else _latency(intervals, start_unix),
        "requests_per_s": _requests(stats, start_unix, step_s),
        "users": _users(users, start_unix, step_s),
        "engine": _engine(samples, start_unix, step_s),
        "broker": _broker(samples, start_unix, step_s),
    }


# -- Locust's side ---------------------------------------------------------------------------------
def _grid(starts: Iterable[float], step_s: float) -> list[float]:
    """Every interval start from the first to the last given, ``step_s`` apart."""
    found = sorted(set(starts))
    if not found:
        return []
    n = round((found[-1] - found[0]) / step_s)
    return [found[0] + i * step_s for i in range(n + 1)]


def _latency(document: Mapping[str, Any], start_unix: float) -> dict[str, Any]:
    step, bins = read_document(document)
    grid = _grid((t for by_start in bins.values() for t in by_start), step)
    out: dict[str, Any] = {"step_s": step}
    for method in LATENCY_TYPES:
        series: dict[str, list[Any]] = {"t_s": [], "count": [], "failures": [], **{k: [] for k in _LATENCY_QUANTILES}}
        series["max"] = []
        by_start = bins.get(method, {})
        for t in grid:
            b = by_start.get(t, Bin())
            series["t_s"].append(_round(t + step - start_unix))
            series["count"].append(b.count)
            series["failures"].append(b.failures)
            for k, q in _LATENCY_QUANTILES.items():
                found = percentile(b.times, q)
                series[k].append(found if found is None or b.max_ms is None else min(found, b.max_ms))
            series["max"].append(b.max_ms)
        out[method] = series
    return out


def _requests(stats: Sequence[Stat], start_unix: float, step_s: float) -> dict[str, list[Any]]:
    """Requests per second of each kind, from Locust's per-second counts, summed over each interval."""
    columns = {
        "published": ("publish", False),
        "publish_failed": ("publish", True),
        "receipts": ("ingest", False),
        "receipts_missing": ("ingest", True),
        "resent": ("resend", False),
    }
    counts: dict[str, dict[float, int]] = {k: {} for k in columns}
    for s in stats:
        for column, (method, failures) in columns.items():
            if s.method != method:
                continue
            for second, n in s.per_second.items():
                bad = s.failed_per_second.get(second, 0)
                start = math.floor(second / step_s) * step_s
                counts[column][start] = counts[column].get(start, 0) + (bad if failures else n - bad)
    grid = _grid((t for c in counts.values() for t in c), step_s)
    out: dict[str, list[Any]] = {"t_s": [_round(t + step_s - start_unix) for t in grid]}
    for column, by_start in counts.items():
        out[column] = [by_start.get(t, 0) / step_s for t in grid]
    return out


def _users(users: Sequence[tuple[float, int]], start_unix: float, step_s: float) -> dict[str, list[Any]]:
    last: dict[int, tuple[float, int]] = {}
    for t, n in sorted(users):
        last[math.floor((t - start_unix) / step_s)] = (t, n)
    kept = [last[k] for k in sorted(last)]
    return {"t_s": [_round(t - start_unix) for t, _ in kept], "users": [n for _, n in kept]}


# -- the witnesses' side ---------------------------------------------------------------------------
def _thin(points: Sequence[tuple[float, Any]], start_unix: float, step_s: float) -> list[tuple[float, Any]]:
    """The last reading of each interval, in time order, readings at the same moment once."""
    last: dict[int, tuple[float, Any]] = {}
    for t, value in sorted(points, key=lambda p: p[0]):
        last[math.floor((t - start_unix) / step_s)] = (t, value)
    return [last[k] for k in sorted(last)]


def _rate(after: float | None, before: float | None, dt: float) -> float | None:
    if after is None or before is None or dt <= 0 or after < before:  # a counter that went back: a restart
        return None
    return (after - before) / dt


def _engine(samples: Sequence[Sample], start_unix: float, step_s: float) -> dict[str, list[Any]] | None:
    readings = _thin([(s.t_unix, s.engine) for s in samples if s.engine is not None], start_unix, step_s)
    if not readings:
        return None
    out: dict[str, list[Any]] = {
        "t_s": [],
        "ingested_per_s": [],
        "rejected_per_s": [],
        "duplicates_per_s": [],
        **{k: [] for k in _LAG_QUANTILES},
        "lag_mean_ms": [],
    }
    for (t0, a), (t1, b) in itertools.pairwise(readings):
        dt = t1 - t0
        out["t_s"].append(_round(t1 - start_unix))
        out["ingested_per_s"].append(_rate(b.ingested, a.ingested, dt))
        out["rejected_per_s"].append(_rate(b.rejected_total, a.rejected_total, dt))
        out["duplicates_per_s"].append(_rate(b.duplicates, a.duplicates, dt))
        delta = b.since(a)
        for k, q in _LAG_QUANTILES.items():
            found = histogram_quantile(q, delta.lag_buckets) if delta.lag_count > 0 else None
            out[k].append(None if found is None else found * 1000)
        out["lag_mean_ms"].append(delta.lag_sum_s / delta.lag_count * 1000 if delta.lag_count > 0 else None)
    return out


def _broker(samples: Sequence[Sample], start_unix: float, step_s: float) -> dict[str, list[Any]] | None:
    points = {s.broker.t_unix: s.broker for s in samples if s.broker.t_unix is not None}
    readings = _thin([(t, r) for t, r in points.items() if t is not None], start_unix, step_s)
    if not readings:
        return None
    out: dict[str, list[Any]] = {
        "t_s": [],
        "received_per_s": [],
        "sent_per_s": [],
        "dropped_per_s": [],
        "connected": [],
    }
    for (t0, a), (t1, b) in itertools.pairwise(readings):
        dt = t1 - t0
        out["t_s"].append(_round(t1 - start_unix))
        out["received_per_s"].append(_rate(b.counts.received, a.counts.received, dt))
        out["sent_per_s"].append(_rate(b.counts.sent, a.counts.sent, dt))
        out["dropped_per_s"].append(_rate(b.counts.dropped, a.counts.dropped, dt))
        out["connected"].append(b.connected)
    return out


def _round(t: float) -> float:
    return round(t, 3)
