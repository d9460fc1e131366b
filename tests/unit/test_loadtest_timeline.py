"""The run over time: response times per interval across Locust's processes, and rates from sampled counters."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loadtest.intervals import IntervalBook, read_document
from loadtest.report import BrokerCounts, EngineCounts, Stat
from loadtest.timeline import BrokerReading, Sample, build_timeline, read_user_counts

T0 = 1_800_000_000.0


def test_a_workers_book_handed_to_its_master_adds_up_to_one_book() -> None:
    direct, master = IntervalBook(5.0), IntervalBook(5.0)
    workers = [IntervalBook(1.0), IntervalBook(1.0)]
    requests = [("publish", T0 + i * 0.7, 1.0 + i % 7, i % 11 == 0) for i in range(60)]
    requests.append(("ingest", T0 + 3.0, None, True))  # a receipt that never came: untimed, failed
    for i, (method, t, ms, failed) in enumerate(requests):
        direct.record(method, t, ms, failed)
        workers[i % 2].record(method, t, ms, failed)
        if i % 13 == 0:  # a worker reports every few seconds
            master.merge(workers[i % 2].take())
    for w in workers:
        master.merge(w.take())
        assert len(w) == 0
    assert master.document() == direct.document()
    step, bins = read_document(direct.document())
    assert step == 5.0
    assert sorted(bins["publish"]) == [T0 + 5.0 * k for k in range(9)]
    first = bins["publish"][T0]
    assert first.count == 8 and first.failures == 1 and first.max_ms == 7.0
    assert bins["ingest"][T0].count == 0 and bins["ingest"][T0].failures == 1


@given(st.lists(st.floats(min_value=0.0, max_value=1e5, allow_nan=False), max_size=50))
def test_every_timed_request_is_counted_once(times: list[float]) -> None:
    book = IntervalBook(2.0)
    for i, ms in enumerate(times):
        book.record("publish", T0 + i, ms, False)
    _, bins = read_document(book.document())
    assert sum(b.count for b in bins.get("publish", {}).values()) == len(times)


def test_an_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="must be > 0"):
        IntervalBook(0.0)


def engine(ingested: float, lag_count: float, lag_sum_s: float, fast: float) -> EngineCounts:
    """Counters with a two-bucket lag histogram: ``fast`` under 10 ms, the rest under 100 ms."""
    buckets = ((0.01, fast), (0.1, lag_count), (float("inf"), lag_count))
    return EngineCounts(ingested=ingested, lag_buckets=buckets, lag_count=lag_count, lag_sum_s=lag_sum_s)


def reading(t: float, received: float | None, connected: int = 3) -> BrokerReading:
    return BrokerReading(t, BrokerCounts(received, received, 0.0, None), connected)


def test_rates_are_differences_of_counters_over_the_time_between_readings() -> None:
    samples = [
        Sample(T0 + 0.2, engine(0, 0, 0.0, 0), reading(T0 + 0.1, 10.0)),
        Sample(T0 + 1.2, engine(100, 100, 0.5, 100), reading(T0 + 1.1, 210.0)),
        Sample(T0 + 2.2, None, reading(T0 + 1.1, 210.0)),  # the engine did not answer; the broker had not published
        Sample(T0 + 3.2, engine(300, 300, 4.5, 150), reading(T0 + 3.1, 610.0, connected=9)),
    ]
    t = build_timeline(start_unix=T0, step_s=1.0, stats=[], intervals=None, users=[], samples=samples)
    e, b = t["engine"], t["broker"]
    assert e["t_s"] == [1.2, 3.2]
    assert e["ingested_per_s"] == pytest.approx([100.0, 100.0])  # the missed sample doubles the interval
    assert e["lag_mean_ms"] == pytest.approx([5.0, 20.0])
    assert e["lag_p50_ms"][0] == pytest.approx(5.0)
    assert e["lag_p99_ms"][1] > 10.0  # three quarters of the second interval's messages were slow
    assert b["t_s"] == [1.1, 3.1]  # at the broker's own publications, each once
    assert b["received_per_s"] == pytest.approx([200.0, 200.0])
    assert b["connected"] == [3, 9]
    assert t["latency_ms"] is None


def test_a_counter_that_went_back_gives_no_rate_and_a_broker_without_sys_no_series() -> None:
    samples = [
        Sample(T0 + 1, engine(500, 0, 0.0, 0), reading(T0 + 1, None)),
        Sample(T0 + 2, engine(20, 0, 0.0, 0), BrokerReading(None, BrokerCounts(), None)),
    ]
    t = build_timeline(start_unix=T0, step_s=1.0, stats=[], intervals=None, users=[], samples=samples)
    assert t["engine"]["ingested_per_s"] == [None]  # an engine restarted: its counters began again
    assert t["engine"]["lag_p50_ms"] == [None]
    assert t["broker"] == {"t_s": [], "received_per_s": [], "sent_per_s": [], "dropped_per_s": [], "connected": []}
    assert build_timeline(start_unix=T0, step_s=1.0, stats=[], intervals=None, users=[], samples=[])["engine"] is None


def test_longer_intervals_keep_the_last_reading_of_each_and_the_totals() -> None:
    samples = [Sample(T0 + k + 0.5, engine(10.0 * k, 0, 0.0, 0), reading(T0 + k, 20.0 * k)) for k in range(10)]
    t = build_timeline(start_unix=T0, step_s=5.0, stats=[], intervals=None, users=[], samples=samples)
    assert t["engine"]["t_s"] == [9.5]
    assert t["engine"]["ingested_per_s"] == pytest.approx([10.0])


def test_locusts_seconds_and_the_interval_book_line_up_on_one_axis() -> None:
    seconds = {int(T0) + 3: 50, int(T0) + 4: 40, int(T0) + 6: 10}
    stats = [
        Stat("publish", "telemetry", 100, 2, 0, 9.0, {1.0: 98}, seconds, {int(T0) + 4: 2}),
        Stat("ingest", "telemetry", 10, 1, 1, 3.0, {3.0: 9}, {int(T0) + 4: 10}, {int(T0) + 4: 1}),
    ]
    book = IntervalBook(1.0)
    for k in range(20):
        book.record("publish", T0 + 3 + k * 0.1, 1.0 + k, False)
    t = build_timeline(
        start_unix=T0, step_s=1.0, stats=stats, intervals=book.document(), users=[(T0 + 3, 5)], samples=[]
    )
    r = t["requests_per_s"]
    assert r["t_s"] == [4.0, 5.0, 6.0, 7.0]  # the end of each second, gaps included
    assert r["published"] == [50.0, 38.0, 0.0, 10.0]
    assert r["publish_failed"] == [0.0, 2.0, 0.0, 0.0]
    assert r["receipts"] == [0.0, 9.0, 0.0, 0.0] and r["receipts_missing"] == [0.0, 1.0, 0.0, 0.0]
    assert t["load_started_s"] == 3.0
    publish = t["latency_ms"]["publish"]
    assert publish["t_s"] == [4.0, 5.0] and publish["count"] == [10, 10]
    assert publish["p50"] == [5.0, 15.0] and publish["max"] == [10.0, 20.0]
    assert t["latency_ms"]["ingest"]["count"] == [0, 0] and t["latency_ms"]["ingest"]["p99"] == [None, None]
    assert t["users"] == {"t_s": [3.0], "users": [5]}


def test_user_counts_come_from_locusts_stats_history(tmp_path: Path) -> None:
    path = tmp_path / "locust_stats_history.csv"
    path.write_text(
        "Timestamp,User Count,Type,Name,Requests/s\n"
        "1800000001,0,,Aggregated,0\n"
        "1800000002,30,publish,telemetry,12\n"
        "1800000002,30,,Aggregated,12\n"
        "garbage,x,,Aggregated,0\n"
    )
    assert read_user_counts(path) == [(1_800_000_001.0, 0), (1_800_000_002.0, 30)]
    assert read_user_counts(tmp_path / "missing.csv") == []
