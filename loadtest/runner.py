"""Run a load test: broker and engine (unless given), Locust, then the reconciliation of three witnesses.

Locust counts what the broker acknowledged and times the engine's receipts (:mod:`loadtest.swarm`);
the broker's ``$SYS`` counters and the engine's ``/metrics`` are the other two witnesses
(:mod:`loadtest.witnesses`, read once before and after, and about once a second between for the
time series of :mod:`loadtest.timeline`); :mod:`loadtest.report` adds them up. Everything started is stopped,
always. The runner returns the report; the command writes it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, NamedTuple

from contracts.engine_config import EngineConfig
from contracts.topics import Topics
from harness.broker import BrokerUrl, probe
from loadtest.broker import start_load_broker
from loadtest.errors import LoadTestError
from loadtest.fleet import FleetMix
from loadtest.options import LoadTestOptions
from loadtest.report import EngineCounts, build_report, read_locust_json
from loadtest.shapes import Plan
from loadtest.swarm import TIMELINE_FILE, Swarm, start_swarm
from loadtest.timeline import build_timeline, read_user_counts
from loadtest.witnesses import BrokerWatch, Sampler, scrape, start_engine

__all__ = ["LoadTestError", "LoadTestOptions", "Outcome", "Status", "run_loadtest"]

_START_ALLOWANCE_S = 120.0  # Locust start-up, workers joining, a spawn slower than the shape
_SETTLE_S = 3.0  # the engine's counters unchanged this long: it has taken in all it will
_SETTLE_MAX_S = 60.0
_FDS_PER_USER = 3  # a paho client holds its socket and a socket pair to wake its loop
_SAMPLE_S = 1.0  # the witnesses are read this often while Locust runs


class Status(NamedTuple):
    """Where a running load test is, for a progress display."""

    elapsed_s: float
    total_s: float
    connected: int | None  # clients on the broker ($SYS), the runner's and the engine's included
    ingested_per_s: float | None


@dataclass
class Outcome:
    """A finished load test: the report (``loadtest.json``) and what else it wrote."""

    report: dict[str, Any]
    files: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


# -- the run --------------------------------------------------------------------------------------
def run_loadtest(
    mix: FleetMix,
    options: LoadTestOptions,
    out_dir: Path,
    *,
    engine_config: EngineConfig | None = None,
    status: Callable[[Status], None] | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> Outcome:
    """Run the load test that ``options`` describe on the fleet ``mix``; stop everything started, always.

    Without ``options.broker_url`` the runner starts Mosquitto and the engine (``engine_config``,
    default settings when None); with it, it starts neither and reconciles against
    ``options.engine_metrics_url`` when given. ``on_ready`` hears what was started.
    """
    options.check()
    plan = options.plan()
    speed = options.speed_for(mix)
    workers = options.worker_count()
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("locust.json", "locust_stats.csv", "locust.html", TIMELINE_FILE, "loadtest.json", "loadtest.html"):
        (out_dir / stale).unlink(missing_ok=True)
    warnings = _raise_fd_limit(options.users, workers)
    started_at = datetime.now(UTC)
    wall = time.monotonic()
    with contextlib.ExitStack() as stack:
        url, broker_version = _broker(stack, options, out_dir)
        metrics_url, engine_label = _engine(stack, options, url, out_dir, engine_config)
        if on_ready is not None:
            on_ready(f"broker {broker_version} at {url}; engine: {engine_label}; locust workers: {workers or 'none'}")
        watch = BrokerWatch(url, Topics(options.prefix))
        watch.start()
        stack.callback(watch.stop)
        engine_before = scrape(metrics_url) if metrics_url else None
        if metrics_url and engine_before is None:
            raise LoadTestError(f"cannot read the engine's metrics at {metrics_url}")
        broker_before = watch.counts()  # nothing moves yet: the retained values are current
        publishes_before = watch.engine_publishes
        sampler = Sampler(metrics_url, watch)
        start_unix = float(math.floor(time.time()))
        sampler.sample()
        locust = Swarm(out_dir)
        stack.callback(locust.stop)
        start_swarm(locust, options, mix, url, speed, workers, out_dir)
        _await_locust(locust, plan, sampler, status)
        stats_file = out_dir / "locust.json"
        if not stats_file.exists():
            raise LoadTestError(f"Locust wrote no statistics; its log ends with:\n{locust.tail('master')}")
        stats = read_locust_json(stats_file)
        published = sum(s.succeeded for s in stats if s.method == "publish")
        engine_after = _settle(metrics_url, engine_before, published) if metrics_url else None
        broker_after = watch.settled()
        sampler.sample()
        engine = engine_after.since(engine_before) if engine_after and engine_before else None
        report = build_report(
            run=_run_section(options, mix, plan, speed, workers, broker_version, engine_label, started_at),
            stats=stats,
            engine=engine,
            broker=broker_after.since(broker_before),
            engine_publishes=float(watch.engine_publishes - publishes_before),
        )
        report["timeline"] = build_timeline(
            start_unix=start_unix,
            step_s=options.timeline_step_s(),
            stats=stats,
            intervals=_read_json(out_dir / TIMELINE_FILE),
            users=read_user_counts(out_dir / "locust_stats_history.csv"),
            samples=sampler.samples,
        )
    report["timing"] = {"wall_s": round(time.monotonic() - wall, 3), "planned_s": plan.total_s}
    report["warnings"] = warnings
    files = sorted(p for p in out_dir.iterdir() if p.name.startswith(("locust", "engine")))
    return Outcome(report, files, warnings)


def _broker(stack: contextlib.ExitStack, options: LoadTestOptions, out_dir: Path) -> tuple[BrokerUrl, str]:
    if options.broker_url is not None:
        probe(options.broker_url)
        return options.broker_url, f"external {options.broker_url}"
    broker = stack.enter_context(start_load_broker(out_dir / "broker"))
    return broker.url, broker.version


def _engine(
    stack: contextlib.ExitStack,
    options: LoadTestOptions,
    url: BrokerUrl,
    out_dir: Path,
    config: EngineConfig | None,
) -> tuple[str | None, str]:
    if options.broker_url is not None:
        if options.engine_metrics_url is None:
            return None, "not watched (no --engine-metrics): published counts only"
        if scrape(options.engine_metrics_url) is None:
            raise LoadTestError(f"cannot read the engine's metrics at {options.engine_metrics_url}")
        return options.engine_metrics_url, f"external, metrics at {options.engine_metrics_url}"
    engine = start_engine(url, out_dir, config or EngineConfig(), prefix=options.prefix, ack_every=options.ack_every)
    stack.callback(engine.stop)
    return engine.metrics_url, f"started (pid {engine.process.pid}, --ack-every {options.ack_every})"


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return found


def _await_locust(locust: Swarm, plan: Plan, sampler: Sampler, status: Callable[[Status], None] | None) -> None:
    """Wait for Locust to finish, sampling both witnesses about once a second meanwhile."""
    started = time.monotonic()
    limit = plan.total_s + _START_ALLOWANCE_S + plan.shape.peak() / 100.0
    due = started
    while locust.main.poll() is None:
        elapsed = time.monotonic() - started
        if elapsed > limit:
            raise LoadTestError(
                f"Locust did not finish within {limit:.0f} s; its log ends with:\n{locust.tail('master')}"
            )
        dead = locust.died(ending=elapsed > plan.total_s - 1.0)
        if dead is not None:
            raise LoadTestError(f"Locust's {dead} exited early; its log ends with:\n{locust.tail(dead)}")
        taken = sampler.sample()
        if status is not None:
            status(Status(elapsed, plan.total_s, taken.broker.connected, sampler.ingested_per_s()))
        due += _SAMPLE_S
        time.sleep(max(0.05, due - time.monotonic()))
    if locust.main.returncode != 0:
        raise LoadTestError(f"Locust exited with code {locust.main.returncode}:\n{locust.tail('master')}")


def _settle(url: str, before: EngineCounts | None, published: int) -> EngineCounts | None:
    """Wait until the engine has counted every published message, or its counters stop moving."""
    deadline = time.monotonic() + _SETTLE_MAX_S
    last, since = None, time.monotonic()
    while True:
        counts = scrape(url)
        if counts is None:
            return None
        done = counts.since(before) if before else counts
        if done.ingested + done.rejected_total >= published:
            return counts
        if last is None or counts.ingested != last.ingested or counts.rejected_total != last.rejected_total:
            last, since = counts, time.monotonic()
        elif time.monotonic() - since > _SETTLE_S or time.monotonic() > deadline:
            return counts
        time.sleep(0.2)


def _run_section(
    options: LoadTestOptions,
    mix: FleetMix,
    plan: Plan,
    speed: float,
    workers: int,
    broker_version: str,
    engine_label: str,
    started_at: datetime,
) -> dict[str, Any]:
    peak = plan.shape.peak()
    return {
        "scenario": mix.scenario,
        "kind": options.kind,
        "users": options.users,
        "spawn_rate": options.spawn_rate,
        "duration_s": options.run_time_s,
        "shape": plan.describe(),
        "fleet": mix.users_by_fleet(peak, options.kind),
        "speed": speed,
        "offered_per_s_at_peak": mix.message_rate(peak, options.kind, speed, options._events),
        "qos": options.qos,
        "ack_every": options.ack_every,
        "event_share": options.event_share if options.kind == "device" else 0.0,
        "warmup_s": options.warmup_s,
        "outbox": {"mode": options.outbox if options.qos == 1 else None, "size": options.outbox_size},
        "manifest": {
            "broker": broker_version,
            "engine": engine_label,
            "workers": workers,
            "locust": _version("locust"),
            "paho_mqtt": _version("paho-mqtt"),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "fd_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
            "started_at": started_at.isoformat(timespec="seconds"),
        },
    }


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _raise_fd_limit(users: int, workers: int) -> list[str]:
    """Raise this process's file-descriptor limit (and so its children's) as far as a load of ``users`` needs."""
    per_process = _FDS_PER_USER * math.ceil(users / max(workers, 1)) + 200
    needed = max(per_process, users + 200)  # the broker holds one descriptor per connection
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if needed > hard and os.geteuid() == 0:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, needed))
            soft, hard = needed, needed
    if soft < min(needed, hard):
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, hard), hard))
        soft = min(needed, hard)
    if soft < needed:
        return [
            f"file descriptors: the limit is {soft:,} but {users:,} users over {max(workers, 1)} Locust process(es) "
            f"need about {needed:,}; raise `ulimit -n` or add --workers"
        ]
    return []
