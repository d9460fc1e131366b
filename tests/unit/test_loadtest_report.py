"""Reading Locust's statistics and the engine's metrics, and reconciling the three witnesses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadtest.report import (
    BrokerCounts,
    EngineCounts,
    Stat,
    build_report,
    flat_metrics,
    histogram_quantile,
    latency_summary,
    parse_metrics,
    percentile,
    read_locust_json,
)
from support_engine.metrics import EngineMetrics


def stat(method: str, name: str, times: dict[float, int], failures: int = 0, untimed: int = 0) -> Stat:
    n = sum(times.values()) + untimed
    return Stat(method, name, n, failures, untimed, max(times, default=0.0), times, {1000: n // 2, 1001: n - n // 2})


def test_percentiles_are_nearest_rank_over_the_buckets() -> None:
    histogram = {1.0: 50, 2.0: 40, 10.0: 9, 100.0: 1}
    assert percentile(histogram, 0.5) == 1.0
    assert percentile(histogram, 0.9) == 2.0
    assert percentile(histogram, 0.99) == 10.0
    assert percentile(histogram, 1.0) == 100.0
    assert percentile({}, 0.5) is None


def test_a_prometheus_histogram_interpolates_within_its_bucket() -> None:
    buckets = ((0.001, 0.0), (0.005, 50.0), (0.01, 100.0), (float("inf"), 100.0))
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.005)
    assert histogram_quantile(0.75, buckets) == pytest.approx(0.0075)
    assert histogram_quantile(0.25, buckets) == pytest.approx(0.003)
    assert histogram_quantile(0.5, ((0.1, 0.0), (float("inf"), 4.0))) == 0.1  # beyond the last bound
    assert histogram_quantile(0.5, ()) is None


def test_the_engines_metrics_are_read_and_subtracted() -> None:
    metrics = EngineMetrics()
    metrics.ingested.inc(10)
    metrics.rejected.labels(reason="schema").inc(2)
    metrics.duplicates.inc(1)
    for lag in (0.002, 0.003, 0.02):
        metrics.lag.observe(lag)
    before = parse_metrics(metrics.exposition().decode())
    metrics.ingested.inc(5)
    metrics.rejected.labels(reason="device_mismatch").inc()
    metrics.lag.observe(0.004)
    after = parse_metrics(metrics.exposition().decode())

    assert (before.ingested, before.duplicates, before.rejected_total, before.lag_count) == (10, 1, 2, 3)
    delta = after.since(before)
    assert delta.ingested == 5 and delta.lag_count == 1 and delta.duplicates == 0
    assert delta.rejected == {"schema": 0.0, "device_mismatch": 1.0}
    assert histogram_quantile(0.5, delta.lag_buckets) == pytest.approx(0.0025 + 0.0025 * 0.5)


def test_locusts_json_statistics_are_read(tmp_path: Path) -> None:
    rows = [
        {
            "name": "telemetry",
            "method": "publish",
            "num_requests": 3,
            "num_failures": 1,
            "num_none_requests": 1,
            "max_response_time": 2.6,
            "response_times": {"0.35": 1, "2.6": 1},
            "num_reqs_per_sec": {"1795400000": 2, "1795400001": 1},
        }
    ]
    (tmp_path / "locust.json").write_text(json.dumps(rows))
    (s,) = read_locust_json(tmp_path / "locust.json")
    assert (s.method, s.name, s.requests, s.failures, s.succeeded, s.untimed) == ("publish", "telemetry", 3, 1, 2, 1)
    assert s.response_times == {0.35: 1, 2.6: 1} and s.per_second == {1795400000: 2, 1795400001: 1}


def test_latency_merges_names_and_counts_failures() -> None:
    stats = [
        stat("publish", "telemetry", {1.0: 98, 9.0: 1}),
        stat("publish", "event", {2.0: 1}, failures=1, untimed=1),
        stat("connect", "device", {5.0: 10}),
        stat("connect", "lost", {}, failures=2, untimed=2),
    ]
    publish = latency_summary(stats, "publish")
    assert (publish["count"], publish["failures"], publish["p50"], publish["p99"], publish["max"]) == (
        101,
        1,
        1.0,
        2.0,
        9.0,
    )
    assert publish["by_name"] == {"telemetry": {"count": 99, "failures": 0}, "event": {"count": 2, "failures": 1}}
    connect = latency_summary(stats, "connect", timed=("device",))
    assert connect["p99"] == 5.0 and connect["failures"] == 2


def test_the_warm_up_is_counted_but_left_out_of_the_quantiles() -> None:
    stats = [stat("ingest", "telemetry", {2.0: 100}), stat("ingest", "warm-up", {900.0: 50})]
    ingest = latency_summary(stats, "ingest")
    assert (ingest["count"], ingest["warm_up"], ingest["p99"], ingest["max"]) == (150, 50, 2.0, 2.0)


def run_report(engine: EngineCounts | None, broker: BrokerCounts | None = None) -> dict[str, object]:
    stats = [
        stat("publish", "telemetry", {1.0: 100}),
        stat("ingest", "telemetry", {3.0: 9}, failures=1, untimed=1),
        stat("connect", "device", {5.0: 20}),
    ]
    return build_report(run={"scenario": "s"}, stats=stats, engine=engine, broker=broker, engine_publishes=12.0)


def test_what_the_broker_acknowledged_and_the_engine_never_counted_is_lost() -> None:
    engine = EngineCounts(ingested=97, rejected={"device_mismatch": 1, "schema": 0}, duplicates=2, lag_count=97)
    r = run_report(engine, BrokerCounts(received=112, sent=200, dropped=0, clients_max=23))
    m = r["messages"]
    assert isinstance(m, dict)
    assert (m["published"], m["ingested"], m["rejected"], m["lost"], m["surplus"]) == (100, 97, 1, 2, 0)
    assert m["rejected_by_reason"] == {"device_mismatch": 1}
    assert m["receipts"] == {"timed": 9, "missing": 1}
    assert r["broker"] == {
        "publish_received": 112,
        "publish_sent": 200,
        "publish_dropped": 0,
        "clients_max": 23,
        "engine_and_runner_publishes": 12.0,
        "from_devices": 100,
    }
    flat = flat_metrics(r)
    assert (flat["lost"], flat["lost_ratio"], flat["p99_ingest_ms"], flat["receipts_missing"]) == (2, 0.02, 3.0, 1)
    assert flat["published_per_s"] == 50.0  # 100 messages over the two seconds they were sent in
    assert flat["connect_failed"] == 0 and flat["broker_dropped"] == 0


def test_more_ingested_than_published_is_surplus_not_negative_loss() -> None:
    r = run_report(EngineCounts(ingested=103))
    m = r["messages"]
    assert isinstance(m, dict)
    assert m["lost"] == 0 and m["surplus"] == 3


def test_without_the_engines_metrics_its_figures_are_unmeasured() -> None:
    r = run_report(None)
    flat = flat_metrics(r)
    assert flat["lost"] is None and flat["ingested"] is None and flat["p99_engine_lag_ms"] is None
    assert flat["broker_dropped"] is None
    assert flat["published"] == 100
