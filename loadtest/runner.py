"""Run a load test: broker and engine (unless given), Locust master and workers, then the reconciliation.

The runner never imports Locust (importing it patches the standard library through gevent): Locust
runs as ``python -m locust`` processes on :mod:`loadtest.locustfile`, and its statistics come back
through its ``--json-file``. A small MQTT connection of the runner's own watches the broker's
``$SYS`` counters (and counts what the engine publishes, to tell it from the devices' traffic);
the engine's counters come from its ``/metrics``. Everything started is stopped, always.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, NamedTuple

import msgspec
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from contracts.engine_config import EngineConfig
from contracts.topics import DEFAULT_PREFIX, Topics
from loadtest.broker import start_load_broker
from loadtest.fleet import FleetMix, UserKind
from loadtest.report import BrokerCounts, EngineCounts, build_report, parse_metrics, read_locust_json
from loadtest.shapes import Plan, parse_shape
from sim.errors import BrokerError, HarnessError
from sim.harness.broker import BrokerUrl, probe
from sim.harness.engine_process import EngineProcess

__all__ = [
    "LOCUSTFILE",
    "LoadTestError",
    "LoadTestOptions",
    "Outcome",
    "Status",
    "StartedEngine",
    "run_loadtest",
    "start_engine",
]

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
_LOCUST_REPORT_S = 3.0  # a Locust worker reports its statistics to the master this often
_START_ALLOWANCE_S = 120.0  # Locust start-up, workers joining, a spawn slower than the shape
_SETTLE_S = 3.0  # the engine's counters unchanged this long: it has taken in all it will
_SETTLE_MAX_S = 60.0
_FDS_PER_USER = 3  # a paho client holds its socket and a socket pair to wake its loop


class LoadTestError(HarnessError):
    """A load test could not be carried out (a process died, Locust wrote no statistics, ...)."""


@dataclass(frozen=True)
class LoadTestOptions:
    """How to run a load test. ``speed`` divides the fleet's telemetry intervals; ``rate`` (messages
    per second at the peak) sets it instead. ``workers`` None: one Locust worker per core; 0: Locust
    in a single process."""

    users: int
    spawn_rate: float
    duration_s: float
    shape: str = "soak"
    kind: UserKind = "device"
    workers: int | None = None
    broker_url: BrokerUrl | None = None
    engine_metrics_url: str | None = None
    prefix: str = DEFAULT_PREFIX
    speed: float | None = None
    rate: float | None = None
    ack_every: int = 10
    qos: int = 1
    jitter: float = 0.1
    event_share: float = 0.01
    drain_s: float = 10.0
    receipt_timeout_s: float = 5.0
    ui: bool = False
    ui_port: int = 8089
    locustfile: Path = LOCUSTFILE

    def check(self) -> None:
        """Raise :class:`ValueError` naming the option that cannot work."""
        if self.users < 1 or not (math.isfinite(self.spawn_rate) and self.spawn_rate > 0):
            raise ValueError("--users must be >= 1 and --spawn-rate > 0")
        if not (math.isfinite(self.duration_s) and self.duration_s >= 1):
            raise ValueError("--duration must be at least 1 s")
        if self.speed is not None and self.rate is not None:
            raise ValueError("give --speed or --rate, not both")
        for name, value in (("--speed", self.speed), ("--rate", self.rate)):
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a number > 0")
        if self.workers is not None and self.workers < 0:
            raise ValueError("--workers must be >= 0 (0: Locust in one process)")
        if self.ack_every < 0 or self.qos not in (0, 1):
            raise ValueError("--ack-every must be >= 0 and --qos 0 or 1")
        if not (0 <= self.jitter <= 1 and 0 <= self.event_share <= 1):
            raise ValueError("--jitter and --event-share must be between 0 and 1")
        if self.receipt_timeout_s <= 0 or self.drain_s < self.receipt_timeout_s + _LOCUST_REPORT_S + 1:
            raise ValueError(
                f"--drain ({self.drain_s:g} s) must exceed the receipt timeout ({self.receipt_timeout_s:g} s) by "
                f"{_LOCUST_REPORT_S + 1:g} s: a worker reports its last statistics every {_LOCUST_REPORT_S:g} s"
            )
        if self.engine_metrics_url is not None and self.broker_url is None:
            raise ValueError("--engine-metrics is for an engine you run yourself: give its --broker too")

    @property
    def run_time_s(self) -> int:
        return math.ceil(self.duration_s)

    def plan(self) -> Plan:
        shape = parse_shape(self.shape, users=self.users, spawn_rate=self.spawn_rate, duration_s=self.run_time_s)
        return Plan(shape, drain_s=self.drain_s)

    def worker_count(self) -> int:
        return (os.cpu_count() or 1) if self.workers is None else self.workers

    def speed_for(self, mix: FleetMix) -> float:
        if self.rate is not None:
            return mix.speed_for_rate(self.rate, self.plan().shape.peak(), self.kind, self._events)
        return 1.0 if self.speed is None else self.speed

    @property
    def _events(self) -> float:
        return self.event_share if self.kind == "device" else 0.0


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


# -- the engine -----------------------------------------------------------------------------------
@dataclass
class StartedEngine:
    """The engine process a load test started, and where its metrics are."""

    process: EngineProcess
    metrics_url: str

    def stop(self) -> None:
        self.process.stop()


def start_engine(
    broker: BrokerUrl,
    workdir: Path,
    config: EngineConfig,
    *,
    prefix: str = DEFAULT_PREFIX,
    ack_every: int = 10,
    client_id: str = "sot-loadtest-engine",
    timeout_s: float = 30.0,
) -> StartedEngine:
    """Start ``python -m support_engine`` on the wall clock with receipts and ``/metrics``; return it once
    it has subscribed (its session holds what comes from then on) and serves its metrics."""
    workdir.mkdir(parents=True, exist_ok=True)
    for stale in workdir.glob("engine.sqlite*"):
        stale.unlink()
    (workdir / "engine-config.json").write_bytes(msgspec.json.encode(config))
    port = _free_port()
    args = [
        "--broker", str(broker), "--db", str(workdir / "engine.sqlite"), "--clock", "wall",
        "--config", str(workdir / "engine-config.json"), "--prefix", prefix, "--client-id", client_id,
        "--protocol", "5", "--http", str(port), "--ack-every", str(ack_every), "--log-level", "INFO",
    ]  # fmt: skip
    log = workdir / "engine.log"
    log.unlink(missing_ok=True)
    process = EngineProcess(args, log)
    engine = StartedEngine(process, f"http://127.0.0.1:{port}/metrics")
    deadline = time.monotonic() + timeout_s
    try:
        while "engine connected" not in process.log_tail(200) or _scrape(engine.metrics_url) is None:
            if not process.alive():
                raise LoadTestError(f"the engine exited; its log ends with:\n{process.log_tail()}")
            if time.monotonic() > deadline:
                raise LoadTestError(f"the engine was not ready after {timeout_s:g} s:\n{process.log_tail()}")
            time.sleep(0.1)
    except BaseException:
        process.stop()
        raise
    return engine


def _scrape(url: str, timeout_s: float = 5.0) -> EngineCounts | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return parse_metrics(response.read().decode())
    except (OSError, urllib.error.URLError, ValueError):
        return None


# -- the broker's $SYS, and what the engine publishes -------------------------------------------------
_SYS_TOPICS = {
    "$SYS/broker/publish/messages/received": "received",
    "$SYS/broker/publish/messages/sent": "sent",
    "$SYS/broker/publish/messages/dropped": "dropped",
    "$SYS/broker/clients/connected": "connected",
}


class BrokerWatch:
    """The runner's own connection: the broker's ``$SYS`` counters and a count of the engine's publishes."""

    def __init__(self, url: BrokerUrl, topics: Topics) -> None:
        self.url, self.topics = url, topics
        self._values: dict[str, float] = {}
        self._updated: dict[str, float] = {}
        self.connected_max = 0.0
        self.engine_publishes = 0
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"sot-loadtest-watch-{os.getpid()}")
        self._client.on_message = self._on_message
        self._client.on_subscribe = lambda *args: self._ready.set()

    def start(self, timeout_s: float = 10.0) -> None:
        p = self.topics.prefix
        filters = [*_SYS_TOPICS, f"{p}/engine/#", f"{p}/dev/+/cmd", f"{p}/clock/ack"]
        try:
            self._client.connect(self.url.host, self.url.port, keepalive=30)
        except OSError as exc:
            raise BrokerError(f"cannot reach the broker at {self.url}: {exc}") from exc
        self._client.loop_start()
        self._client.subscribe([(f, 0) for f in filters])
        if not self._ready.wait(timeout_s):
            self.stop()
            raise BrokerError(f"the broker at {self.url} did not acknowledge the runner's subscriptions")

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        name = _SYS_TOPICS.get(message.topic)
        with self._lock:
            if name is None:
                self.engine_publishes += 1
                return
            with contextlib.suppress(ValueError):
                self._values[name] = float(message.payload)
                self._updated[name] = time.monotonic()
                if name == "connected":
                    self.connected_max = max(self.connected_max, self._values[name])

    def counts(self) -> BrokerCounts:
        with self._lock:
            v = self._values
            return BrokerCounts(v.get("received"), v.get("sent"), v.get("dropped"), self.connected_max or None)

    def connected(self) -> int | None:
        with self._lock:
            value = self._values.get("connected")
        return None if value is None else int(value)

    def fresh(self, timeout_s: float = 3.0) -> BrokerCounts:
        """The counters once the broker has published them again (they lag by up to its ``sys_interval``)."""
        since = time.monotonic()
        deadline = since + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                updated = self._updated.get("received", 0.0)
            if updated > since:
                break
            time.sleep(0.05)
        return self.counts()


# -- Locust ---------------------------------------------------------------------------------------
class _Locust:
    """``python -m locust`` as a single process, or a master and its workers, each in its own session."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self._procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def spawn(self, role: str, args: list[str], env: dict[str, str]) -> None:
        with open(self.out_dir / f"locust-{role}.log", "wb") as output:
            proc = subprocess.Popen(
                [sys.executable, "-m", "locust", *args],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env={**os.environ, **env},
                start_new_session=True,
                cwd=self.out_dir,
            )
        self._procs.append((role, proc))

    @property
    def main(self) -> subprocess.Popen[bytes]:
        return self._procs[0][1]

    def died(self, ending: bool) -> str | None:
        """The role of a worker that failed, or exited before the run was ``ending`` (told to quit), or None."""
        for role, proc in self._procs[1:]:
            code = proc.poll()
            if code is not None and (code != 0 or not ending):
                return role
        return None

    def tail(self, role: str, lines: int = 25) -> str:
        try:
            text = (self.out_dir / f"locust-{role}.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.rstrip().splitlines()[-lines:])

    def stop(self, grace_s: float = 15.0) -> None:
        """Let the workers follow their master out, then SIGTERM and SIGKILL whatever is left."""
        deadline = time.monotonic() + grace_s
        for _, proc in self._procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.0, deadline - time.monotonic()))
        for _, proc in self._procs:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                if proc.poll() is not None:
                    break
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, sig)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(5.0)


def _locust_args(options: LoadTestOptions, url: BrokerUrl, speed: float, out_dir: Path) -> list[str]:
    """The master's (or the single process's) options: the test, the reports, the fleet's knobs."""
    args = [
        "-f", str(options.locustfile.resolve()), "-H", str(url),
        "-u", str(options.users), "-r", f"{options.spawn_rate:g}", "-t", f"{options.run_time_s}s",
        "--csv", str(out_dir / "locust"), "--html", str(out_dir / "locust.html"),
        "--json-file", str(out_dir / "locust"), "--exit-code-on-error", "0", "--only-summary",
        "--sot-prefix", options.prefix, "--sot-speed", repr(speed), "--sot-jitter", repr(options.jitter),
        "--sot-event-share", repr(options.event_share), "--sot-ack-every", str(options.ack_every),
        "--sot-qos", str(options.qos), "--sot-shape", options.shape, "--sot-drain", repr(options.drain_s),
        "--sot-receipt-timeout", repr(options.receipt_timeout_s),
    ]  # fmt: skip
    if options.ui:
        args += ["--autostart", "--autoquit", "30", "--web-host", "127.0.0.1", "--web-port", str(options.ui_port)]
    else:
        args += ["--headless"]
    return args


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
    for stale in ("locust.json", "locust_stats.csv", "locust.html", "loadtest.json"):
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
        engine_before = _scrape(metrics_url) if metrics_url else None
        if metrics_url and engine_before is None:
            raise LoadTestError(f"cannot read the engine's metrics at {metrics_url}")
        broker_before = watch.fresh()
        publishes_before = watch.engine_publishes
        locust = _Locust(out_dir)
        stack.callback(locust.stop)
        _start_locust(locust, options, mix, url, speed, workers, out_dir)
        _await_locust(locust, plan, metrics_url, watch, status)
        stats_file = out_dir / "locust.json"
        if not stats_file.exists():
            raise LoadTestError(f"Locust wrote no statistics; its log ends with:\n{locust.tail('master')}")
        stats = read_locust_json(stats_file)
        published = sum(s.succeeded for s in stats if s.method == "publish")
        engine_after = _settle(metrics_url, engine_before, published) if metrics_url else None
        broker_after = watch.fresh()
        engine = engine_after.since(engine_before) if engine_after and engine_before else None
        report = build_report(
            run=_run_section(options, mix, plan, speed, workers, broker_version, engine_label, started_at),
            stats=stats,
            engine=engine,
            broker=broker_after.since(broker_before),
            engine_publishes=float(watch.engine_publishes - publishes_before),
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
        if _scrape(options.engine_metrics_url) is None:
            raise LoadTestError(f"cannot read the engine's metrics at {options.engine_metrics_url}")
        return options.engine_metrics_url, f"external, metrics at {options.engine_metrics_url}"
    engine = start_engine(url, out_dir, config or EngineConfig(), prefix=options.prefix, ack_every=options.ack_every)
    stack.callback(engine.stop)
    return engine.metrics_url, f"started (pid {engine.process.pid}, --ack-every {options.ack_every})"


def _start_locust(
    locust: _Locust, options: LoadTestOptions, mix: FleetMix, url: BrokerUrl, speed: float, workers: int, out_dir: Path
) -> None:
    env = {"SOT_LOADTEST_FLEET": mix.encode(), "PYTHONUNBUFFERED": "1"}
    user_class = "DeviceUser" if options.kind == "device" else "GatewayUser"
    args = _locust_args(options, url, speed, out_dir)
    if workers == 0:
        locust.spawn("master", [*args, user_class], env)
        return
    port = _free_port()
    master = ["--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port)]
    master += ["--expect-workers", str(workers), "--expect-workers-max-wait", "60"]
    locust.spawn("master", [*args, *master, user_class], env)
    for i in range(workers):
        worker = ["-f", str(options.locustfile.resolve()), "--worker", "--master-host", "127.0.0.1"]
        locust.spawn(f"worker-{i}", [*worker, "--master-port", str(port), user_class], env)


def _await_locust(
    locust: _Locust, plan: Plan, metrics_url: str | None, watch: BrokerWatch, status: Callable[[Status], None] | None
) -> None:
    started = time.monotonic()
    limit = plan.total_s + _START_ALLOWANCE_S + plan.shape.peak() / 100.0
    last: tuple[float, float] | None = None
    while locust.main.poll() is None:
        elapsed = time.monotonic() - started
        if elapsed > limit:
            raise LoadTestError(
                f"Locust did not finish within {limit:.0f} s; its log ends with:\n{locust.tail('master')}"
            )
        dead = locust.died(ending=elapsed > plan.total_s - 1.0)
        if dead is not None:
            raise LoadTestError(f"Locust's {dead} exited early; its log ends with:\n{locust.tail(dead)}")
        rate = None
        if metrics_url is not None and status is not None:
            counts = _scrape(metrics_url, timeout_s=1.0)
            if counts is not None:
                now = time.monotonic()
                if last is not None and now > last[0]:
                    rate = (counts.ingested - last[1]) / (now - last[0])
                last = (now, counts.ingested)
        if status is not None:
            status(Status(elapsed, plan.total_s, watch.connected(), rate))
        time.sleep(1.0)
    if locust.main.returncode != 0:
        raise LoadTestError(f"Locust exited with code {locust.main.returncode}:\n{locust.tail('master')}")


def _settle(url: str, before: EngineCounts | None, published: int) -> EngineCounts | None:
    """Wait until the engine has counted every published message, or its counters stop moving."""
    deadline = time.monotonic() + _SETTLE_MAX_S
    last, since = None, time.monotonic()
    while True:
        counts = _scrape(url)
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


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
