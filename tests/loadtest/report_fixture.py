"""A synthetic, deterministic ``loadtest.json`` report for the tests of the page, the JUnit file and the baseline.

:func:`sample_report` makes up what the runner would have gathered from a 30-second soak of 200
devices (Locust's statistics, the locustfile's response times per interval, the engine's and the
broker's counters sampled every second) and passes it through the real
:func:`~loadtest.report.build_report`, :func:`~loadtest.timeline.build_timeline` and
``--fail-on`` evaluation, so the document has the shape ``sot loadtest`` writes.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from loadtest.baseline import compare
from loadtest.intervals import IntervalBook, bucket_ms
from loadtest.report import BrokerCounts, EngineCounts, Stat, build_report, flat_metrics
from loadtest.thresholds import evaluate, parse_fail_on, records
from loadtest.timeline import BrokerReading, Sample, build_timeline

START = 1_800_000_000.0
LOAD_FROM, LOAD_S, DRAIN_S = 5, 30, 10
RATE = 400  # messages per second
USERS = 200
LAG_BOUNDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, math.inf)


def _histogram(values: np.ndarray) -> dict[float, int]:
    found: dict[float, int] = {}
    for v in values:
        b = bucket_ms(float(v))
        found[b] = found.get(b, 0) + 1
    return found


def sample_report(
    *,
    lost: int = 0,
    rejected: int = 3,
    fail_on: str = "lost>0,p99_ingest_ms>100",
    slow_after_s: float | None = None,
    baseline: dict[str, Any] | None = None,
    gate: bool = False,
    seed: int = 7,
) -> dict[str, Any]:
    """The report of a made-up run; ``slow_after_s``: ingest gets ten times slower from then on."""
    rng = np.random.default_rng(seed)
    book = IntervalBook(1.0)
    times: dict[str, list[float]] = {"publish": [], "ingest": [], "connect": []}
    per_second: dict[str, dict[int, int]] = {"publish": {}, "ingest": {}, "connect": {}}
    for i in range(LOAD_S):
        second = int(START) + LOAD_FROM + i
        slow = 10.0 if slow_after_s is not None and LOAD_FROM + i >= slow_after_s else 1.0
        drawn = {
            "publish": rng.lognormal(math.log(1.2), 0.5, RATE),
            "ingest": rng.lognormal(math.log(3.0), 0.6, RATE // 10) * slow,
            "connect": rng.lognormal(math.log(2.0), 0.4, USERS // 3 if i < 3 else 0),
        }
        for method, values in drawn.items():
            for j, ms in enumerate(values):
                book.record(method, second + j / max(len(values), 1), float(ms), False)
            times[method].extend(float(v) for v in values)
            if len(values):
                per_second[method][second] = len(values)
    names = {"publish": "telemetry", "ingest": "telemetry", "connect": "device"}
    stats = [
        Stat(method, names[method], len(values), 0, 0, max(values), _histogram(np.array(values)), per_second[method])
        for method, values in times.items()
    ]
    published = len(times["publish"])
    ingested = published - rejected - lost
    samples = []
    lag = np.sort(rng.lognormal(math.log(0.004), 0.5, ingested))
    for k in range(LOAD_FROM + LOAD_S + DRAIN_S + 1):
        share = min(max(k - LOAD_FROM, 0) / LOAD_S, 1.0)
        n_in = round(ingested * share)
        seen = lag[:n_in]
        engine = EngineCounts(
            ingested=float(n_in),
            duplicates=0.0,
            readings=float(n_in),
            rejected={"device_mismatch": float(round(rejected * share))},
            lag_buckets=tuple((le, float(np.sum(seen <= le))) for le in LAG_BOUNDS),
            lag_count=float(n_in),
            lag_sum_s=float(seen.sum()),
        )
        received = round(published * share) * 2.0  # the devices' messages and the engine's receipts
        broker = BrokerCounts(received, received * 1.0, 0.0, None)
        connected = USERS + 2 if LOAD_FROM <= k < LOAD_FROM + LOAD_S else 2
        samples.append(Sample(START + k + 0.25, engine, BrokerReading(START + k + 0.1, broker, connected)))
    first, last = samples[0], samples[-1]
    assert first.engine is not None and last.engine is not None
    report = build_report(
        run=_run(),
        stats=stats,
        engine=last.engine.since(first.engine),
        broker=BrokerCounts(float(published * 2), float(published * 2), 0.0, float(USERS + 2)),
        engine_publishes=float(published),
    )
    users = [
        (START + k, USERS if LOAD_FROM <= k < LOAD_FROM + LOAD_S else 0) for k in range(LOAD_FROM + LOAD_S + DRAIN_S)
    ]
    report["timeline"] = build_timeline(
        start_unix=START, step_s=1.0, stats=stats, intervals=book.document(), users=users, samples=samples
    )
    report["timing"] = {"wall_s": 52.4, "planned_s": float(LOAD_S + DRAIN_S)}
    report["warnings"] = []
    verdicts = evaluate(parse_fail_on(fail_on), flat_metrics(report)) if fail_on else []
    report["thresholds"] = records(verdicts)
    report["comparison"] = None
    if baseline is not None:
        report["comparison"] = compare(report, baseline, source="runs/old/loadtest.json", gate=gate)
    regressed = bool(report["comparison"] and report["comparison"]["failed"])
    report["passed"] = not any(v.failed for v in verdicts) and not regressed
    return report


def _run() -> dict[str, Any]:
    return {
        "scenario": "city",
        "kind": "device",
        "users": USERS,
        "spawn_rate": 100.0,
        "duration_s": LOAD_S,
        "shape": {"name": "soak", "users": USERS, "spawn_rate": 100.0, "duration_s": LOAD_S, "drain_s": DRAIN_S},
        "fleet": {"shop-freezer": 40, "vending": 40, "garage": 60, "office-printer": 30, "taxi": 30},
        "speed": 250.0,
        "offered_per_s_at_peak": float(RATE),
        "qos": 1,
        "ack_every": 10,
        "event_share": 0.0,
        "warmup_s": 5.0,
        "outbox": {"mode": "puback", "size": 100},
        "manifest": {
            "broker": "mosquitto 2.0.11",
            "engine": "started (pid 4242, --ack-every 10)",
            "workers": 2,
            "locust": "2.47.0",
            "paho_mqtt": "2.2.0",
            "python": "3.11.7",
            "platform": "Linux",
            "cpus": 2,
            "fd_limit": 20000,
            "started_at": "2027-01-15T09:00:00+00:00",
        },
    }
