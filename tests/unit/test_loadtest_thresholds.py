"""``--fail-on``: conditions that fail a run, read strictly, and a gate that cannot see stays shut."""

from __future__ import annotations

import pytest

from loadtest.thresholds import METRICS, Threshold, ThresholdError, evaluate, parse_fail_on


def test_conditions_are_read_with_their_operators() -> None:
    found = parse_fail_on("p99_ingest_ms>100, lost>0,ingested_per_s<1800 ,lost_ratio>=0.001,rejected!=0,published==5")
    assert found == [
        Threshold("p99_ingest_ms", ">", 100.0),
        Threshold("lost", ">", 0.0),
        Threshold("ingested_per_s", "<", 1800.0),
        Threshold("lost_ratio", ">=", 0.001),
        Threshold("rejected", "!=", 0.0),
        Threshold("published", "==", 5.0),
    ]
    assert [str(t) for t in found[:2]] == ["p99_ingest_ms>100", "lost>0"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("p99_latency>100", "unknown metric 'p99_latency'"),
        ("lost", "is not METRIC OP NUMBER"),
        ("lost=>1", "is not METRIC OP NUMBER"),
        ("lost>many", "is not METRIC OP NUMBER"),
        (",", "holds no condition"),
        ("lost>1e999", "must be finite"),
    ],
)
def test_a_bad_condition_is_named(text: str, message: str) -> None:
    with pytest.raises(ThresholdError, match=message):
        parse_fail_on(text)


def test_every_latency_and_count_has_a_name() -> None:
    for name in ("p50_ingest_ms", "p99_publish_ms", "max_connect_ms", "p95_engine_lag_ms", "lost", "broker_dropped"):
        assert name in METRICS


def test_a_condition_fails_the_run_when_it_holds() -> None:
    crossed, held = evaluate(parse_fail_on("p99_ingest_ms>100,lost>0"), {"p99_ingest_ms": 142.5, "lost": 0})
    assert crossed.failed and crossed.measured == 142.5
    assert crossed.message() == "p99_ingest_ms>100 is true: measured p99_ingest_ms = 142.5"
    assert not held.failed
    assert held.message() == "lost>0 is false: measured lost = 0"


def test_an_unmeasured_metric_fails_its_condition() -> None:
    (verdict,) = evaluate(parse_fail_on("p99_engine_lag_ms>50"), {"p99_engine_lag_ms": None})
    assert verdict.failed and verdict.measured is None
    assert "was not measured" in verdict.message()
    (missing,) = evaluate(parse_fail_on("lost>0"), {})
    assert missing.failed
