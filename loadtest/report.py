"""What a load test found: Locust's statistics, the broker's counters and the engine's, reconciled.

Three witnesses count the messages. **Locust** counts what the broker acknowledged (``publish``
requests that succeeded, one per message however many copies its device sent: the copies sent
again are ``resend`` requests) and times the engine's receipts (``ingest``). The **broker** counts
the PUBLISH packets it received, sent and dropped (``$SYS``). The **engine** counts what it took in,
rejected (by reason) and recognised as duplicates (``/metrics``). ``lost`` is what the broker
acknowledged and the engine neither took in nor rejected. Pure: the runner gathers, this module
reads and adds up.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

__all__ = [
    "REPORT_SCHEMA_VERSION",
    "BrokerCounts",
    "EngineCounts",
    "Stat",
    "build_report",
    "flat_metrics",
    "histogram_quantile",
    "latency_summary",
    "parse_metrics",
    "percentile",
    "read_locust_json",
]

REPORT_SCHEMA_VERSION = 2  # 2: the timeline, the comparison with a baseline, thresholds with metric, op and limit
WARMUP = "warm-up"  # the locustfile's name for messages sent while the load builds up
QUANTILES = {"p50": 0.50, "p90": 0.90, "p95": 0.95, "p99": 0.99}


# -- Locust's side ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Stat:
    """One row of Locust's final statistics (a request type and name), from its ``--json-file``."""

    method: str
    name: str
    requests: int
    failures: int
    untimed: int  # requests fired without a time (a receipt that never came)
    max_ms: float
    response_times: Mapping[float, int]  # bucketed time (ms) -> count
    per_second: Mapping[int, int]  # Unix second -> requests
    failed_per_second: Mapping[int, int] = field(default_factory=dict)  # Unix second -> failures

    @property
    def succeeded(self) -> int:
        return self.requests - self.failures


def read_locust_json(path: Path) -> list[Stat]:
    """Read the statistics Locust wrote with ``--json-file`` (its master's, in a distributed run)."""
    rows = json.loads(path.read_text(encoding="utf-8"))
    return [
        Stat(
            method=str(r["method"]),
            name=str(r["name"]),
            requests=int(r["num_requests"]),
            failures=int(r["num_failures"]),
            untimed=int(r.get("num_none_requests") or 0),
            max_ms=float(r.get("max_response_time") or 0.0),
            response_times={float(k): int(v) for k, v in (r.get("response_times") or {}).items()},
            per_second={int(float(k)): int(v) for k, v in (r.get("num_reqs_per_sec") or {}).items()},
            failed_per_second={int(float(k)): int(v) for k, v in (r.get("num_fail_per_sec") or {}).items()},
        )
        for r in rows
    ]


def percentile(histogram: Mapping[float, int], q: float) -> float | None:
    """The nearest-rank ``q`` quantile (0 < q <= 1) of a bucketed histogram; None when it is empty."""
    n = sum(histogram.values())
    if n == 0:
        return None
    rank = max(1, math.ceil(q * n))
    seen = 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen >= rank:
            return value
    return max(histogram)  # pragma: no cover - the ranks always add up


def latency_summary(stats: Iterable[Stat], method: str, timed: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Count, failures and quantiles (ms) of the requests of type ``method``; quantiles over the names
    ``timed`` only (default: every name but ``warm-up``, the messages of the load's warm-up)."""
    rows = [s for s in stats if s.method == method]
    merged: dict[float, int] = {}
    for s in rows:
        if (timed is not None and s.name not in timed) or (timed is None and s.name == WARMUP):
            continue
        for value, count in s.response_times.items():
            merged[value] = merged.get(value, 0) + count
    summary: dict[str, Any] = {
        "count": sum(s.requests for s in rows),
        "failures": sum(s.failures for s in rows),
        "warm_up": sum(s.requests for s in rows if s.name == WARMUP),
        "by_name": {s.name: {"count": s.requests, "failures": s.failures} for s in rows},
    }
    top = max(
        (s.max_ms for s in rows if s.response_times and (s.name in timed if timed is not None else s.name != WARMUP)),
        default=None,
    )
    for k, q in QUANTILES.items():
        found = percentile(merged, q)  # a bucket's value may round above the largest time itself
        summary[k] = found if found is None or top is None else min(found, top)
    summary["max"] = top
    return summary


def _per_second(stats: Iterable[Stat], method: str) -> dict[int, int]:
    series: dict[int, int] = {}
    for s in stats:
        if s.method == method:
            for t, n in s.per_second.items():
                series[t] = series.get(t, 0) + n
    return series


# -- the engine's side -----------------------------------------------------------------------------
@dataclass(frozen=True)
class EngineCounts:
    """The engine's counters from its Prometheus ``/metrics`` (cumulative, or a difference of two)."""

    ingested: float = 0.0
    duplicates: float = 0.0
    readings: float = 0.0
    rejected: Mapping[str, float] = field(default_factory=dict)
    lag_buckets: tuple[tuple[float, float], ...] = ()  # (upper bound s, cumulative count)
    lag_count: float = 0.0
    lag_sum_s: float = 0.0

    @property
    def rejected_total(self) -> float:
        return sum(self.rejected.values())

    def since(self, before: EngineCounts) -> EngineCounts:
        """What happened between ``before`` and this reading."""
        old = dict(before.lag_buckets)
        return EngineCounts(
            ingested=self.ingested - before.ingested,
            duplicates=self.duplicates - before.duplicates,
            readings=self.readings - before.readings,
            rejected={k: v - before.rejected.get(k, 0.0) for k, v in self.rejected.items()},
            lag_buckets=tuple((le, n - old.get(le, 0.0)) for le, n in self.lag_buckets),
            lag_count=self.lag_count - before.lag_count,
            lag_sum_s=self.lag_sum_s - before.lag_sum_s,
        )


def parse_metrics(text: str) -> EngineCounts:
    """Read the engine's counters and its ingest-lag histogram from the Prometheus text format."""
    values: dict[str, float] = {}
    rejected: dict[str, float] = {}
    buckets: list[tuple[float, float]] = []
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "sot_messages_rejected_total":
                rejected[s.labels.get("reason", "")] = s.value
            elif s.name == "sot_ingest_lag_seconds_bucket":
                buckets.append((float(s.labels["le"]), s.value))
            else:
                values[s.name] = s.value
    return EngineCounts(
        ingested=values.get("sot_messages_ingested_total", 0.0),
        duplicates=values.get("sot_messages_duplicates_total", 0.0),
        readings=values.get("sot_readings_total", 0.0),
        rejected=rejected,
        lag_buckets=tuple(sorted(buckets)),
        lag_count=values.get("sot_ingest_lag_seconds_count", 0.0),
        lag_sum_s=values.get("sot_ingest_lag_seconds_sum", 0.0),
    )


def histogram_quantile(q: float, buckets: tuple[tuple[float, float], ...]) -> float | None:
    """The ``q`` quantile of a cumulative histogram, interpolated within its bucket as Prometheus does.

    None when the histogram is empty; the last finite bound when the quantile lies in ``+Inf``.
    """
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if math.isinf(le):
                return lower
            inside = count - below
            return le if inside <= 0 else lower + (le - lower) * (rank - below) / inside
        lower, below = le, count
    return lower  # pragma: no cover - the last bucket holds everything


# -- the broker's side -----------------------------------------------------------------------------
@dataclass(frozen=True)
class BrokerCounts:
    """Mosquitto's ``$SYS`` counters (None: the broker does not publish them)."""

    received: float | None = None
    sent: float | None = None
    dropped: float | None = None
    clients_max: float | None = None

    def since(self, before: BrokerCounts) -> BrokerCounts:
        def minus(a: float | None, b: float | None) -> float | None:
            return None if a is None or b is None else a - b

        return BrokerCounts(
            minus(self.received, before.received),
            minus(self.sent, before.sent),
            minus(self.dropped, before.dropped),
            self.clients_max,
        )


# -- the report ------------------------------------------------------------------------------------
def build_report(
    *,
    run: Mapping[str, Any],
    stats: list[Stat],
    engine: EngineCounts | None,
    broker: BrokerCounts | None,
    engine_publishes: float,
) -> dict[str, Any]:
    """The ``loadtest.json`` document: the run, rates, latencies and the reconciled message counts.

    ``engine_publishes`` is what the engine and the runner published on the broker meanwhile
    (receipts, dead letters, outputs, the runner's own requests), told apart from the devices' PUBLISHes.
    """
    publish = latency_summary(stats, "publish")
    ingest = latency_summary(stats, "ingest")
    connect = latency_summary(stats, "connect", timed=("device", "gateway"))
    published = publish["count"] - publish["failures"]
    outbox = {s.name: s.requests for s in stats if s.method == "outbox"}
    series = _per_second(stats, "publish")
    span_s = float(max(series) - min(series) + 1) if series else 0.0
    messages: dict[str, Any] = {
        "published": published,
        "publish_failed": publish["failures"],
        "generated": publish["count"],
        "resent": sum(s.requests for s in stats if s.method == "resend"),
        "outbox_overflow": outbox.get("overflow", 0),
        "unconfirmed": outbox.get("unconfirmed", 0),
        "by_kind": {k: v["count"] - v["failures"] for k, v in publish["by_name"].items()},
        "ingested": None,
        "rejected": None,
        "rejected_by_reason": None,
        "duplicates": None,
        "lost": None,
        "surplus": None,
        "receipts": {"timed": ingest["count"] - ingest["failures"], "missing": ingest["failures"]},
    }
    engine_lag: dict[str, Any] = {"count": None, **dict.fromkeys(QUANTILES), "mean": None}
    if engine is not None:
        ingested, rejected = round(engine.ingested), round(engine.rejected_total)
        messages.update(
            ingested=ingested,
            rejected=rejected,
            rejected_by_reason={k: round(v) for k, v in sorted(engine.rejected.items()) if v},
            duplicates=round(engine.duplicates),
            lost=max(0, published - ingested - rejected),
            surplus=max(0, ingested + rejected - published),
            readings=round(engine.readings),
        )
        engine_lag = {
            "count": round(engine.lag_count),
            **{k: _ms(histogram_quantile(q, engine.lag_buckets)) for k, q in QUANTILES.items()},
            "mean": _ms(engine.lag_sum_s / engine.lag_count) if engine.lag_count else None,
        }
    broker_part: dict[str, Any] | None = None
    if broker is not None:
        received = broker.received
        broker_part = {
            "publish_received": received,
            "publish_sent": broker.sent,
            "publish_dropped": broker.dropped,
            "clients_max": broker.clients_max,
            "engine_and_runner_publishes": engine_publishes,
            "from_devices": None if received is None else received - engine_publishes,
        }
    return {
        "schema_version": REPORT_SCHEMA_VERSION,
        **run,
        "rates": {
            "load_s": span_s,
            "published_per_s": published / span_s if span_s else None,
            "published_per_s_median": statistics.median(series.values()) if series else None,
            "ingested_per_s": messages["ingested"] / span_s if span_s and messages["ingested"] is not None else None,
        },
        "latency_ms": {
            "publish": _quantiles(publish),
            "ingest": _quantiles(ingest),
            "connect": _quantiles(connect),
            "engine_lag": engine_lag,
        },
        "connections": {
            "made": connect["by_name"].get("device", {}).get("count", 0)
            + connect["by_name"].get("gateway", {}).get("count", 0),
            "failed": connect["failures"],
            "lost": connect["by_name"].get("lost", {}).get("count", 0),
        },
        "messages": messages,
        "broker": broker_part,
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def _quantiles(summary: Mapping[str, Any]) -> dict[str, Any]:
    return {k: summary[k] for k in ("count", "failures", "warm_up", *QUANTILES, "max")}


def flat_metrics(report: Mapping[str, Any]) -> dict[str, float | None]:
    """The report's figures under the names ``--fail-on`` knows (see :data:`loadtest.thresholds.METRICS`)."""
    flat: dict[str, float | None] = {}
    for name, figures in report["latency_ms"].items():
        for q in (*QUANTILES, "max"):
            flat[f"{q}_{name}_ms"] = figures.get(q)
    m = report["messages"]
    published = m["published"]
    flat.update(
        published=published,
        publish_failed=m["publish_failed"],
        resent=m.get("resent"),
        outbox_overflow=m.get("outbox_overflow"),
        ingested=m["ingested"],
        rejected=m["rejected"],
        duplicates=m["duplicates"],
        lost=m["lost"],
        lost_ratio=None if m["lost"] is None or not published else m["lost"] / published,
        receipts_missing=m["receipts"]["missing"],
        connect_failed=report["connections"]["failed"] + report["connections"]["lost"],
        broker_dropped=None if report["broker"] is None else report["broker"]["publish_dropped"],
        published_per_s=report["rates"]["published_per_s"],
        ingested_per_s=report["rates"]["ingested_per_s"],
    )
    return flat
