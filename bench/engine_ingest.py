"""Measure the support engine's ingest: JSON telemetry through Mosquitto, and columnar batches in process.

**Broker** (the path real devices use): a paho publisher in its own process (one connection, QoS 1,
at most ``PUBLISH_WINDOW`` un-acknowledged) sends one-reading :class:`contracts.Telemetry`
messages, each a new (device, seq), to a Mosquitto started by :func:`harness.broker.start_broker`.
Three measures, alternating, ``--repeat`` times; the best of each counts:

- **publisher alone** — nobody subscribed: the rate the publisher and the broker can offer;
- **bare** — a paho subscriber in its own process (MQTT 5, persistent session, QoS 1, the engine's
  topic filters) that counts messages and does nothing else;
- **engine** — ``python -m support_engine --clock wall`` with two threshold rules and its own
  SQLite database; done when its *committed* ``msg_ingested`` counter (read from that database)
  reaches the message count.

A consumer's rate is messages / (time its last message was handled - time the publisher was told
to go). The consumer's CPU time and what the broker wrote to storage are measured alongside (Linux).
It runs on the project's broker configuration (``--project-messages`` a run) and on the same
configuration with Mosquitto's default autosave (``--messages`` a run; ``--broker-config``).

**In process** (no broker): the same readings (``--devices`` x ``--ticks``, three sensors, a reading
every 900 s) as columnar gateway batches of ``--batch`` devices and as one JSON message each:

- **decode** — :class:`contracts.codec.BatchDecoder` alone, as the engine decodes (a gateway's
  roster checked once, then compared);
- **twins** — :meth:`Twins.ingest` alone, on batches decoded beforehand;
- **columnar** — decode + :meth:`Engine.handle` (proactive, rules with persistence);
- **service** — the engine service in event time, as the harness drives it: a sync step a tick
  (every gateway's batch, then the clock), through an in-memory broker that hands out at most
  ``--window`` un-acknowledged messages, into a SQLite file: intake, de-duplication, the hold,
  handling, the step's commit, acknowledgements and the clock ack;
- **per-message** — ``codec.decode`` + :meth:`Engine.handle`, one reading at a time (the baseline);
- **service, sqlalchemy storage** / **service, hand-written storage** — the service again, on
  :class:`support_engine.storage.Storage` (SQLAlchemy Core) and on the named baseline
  ``bench/_handwritten_storage.py`` (the engine's SQLite layer before SQLAlchemy: main at ad05e72),
  ``--storage-repeat`` runs each, alternating;
- **storage writes, sqlalchemy** / **storage writes, hand-written** — the storage calls of one
  service run, recorded and replayed into a new file on each layer, alternating: the storage alone.

    python bench/engine_ingest.py                                   # both parts, about a minute
    python bench/engine_ingest.py --skip-broker --devices 20000 --ticks 48 --batch 5000

The ratios printed: engine/bare per broker configuration, columnar/per-message, and the SQLAlchemy
storage against the hand-written one (service, and storage writes alone), best and median runs.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import platform
import queue
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import msgspec
import numpy as np
import numpy.typing as npt
import paho.mqtt.client as paho
from _handwritten_storage import Storage as HandWrittenStorage  # the baseline: this directory, not the engine
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from contracts import codec
from contracts.engine_config import EngineConfig, IssueType, ThresholdRule
from contracts.messages import Clock, ClockAck, Telemetry
from contracts.topics import Kind, Topics
from harness.broker import RunningBroker, start_broker
from harness.engine_process import EngineProcess
from harness.mqtt_transport import WorldTransport
from support_engine.core.engine import Engine
from support_engine.core.twins import Twins
from support_engine.service import EngineService
from support_engine.storage import Storage

__all__ = [
    "Measure",
    "Readings",
    "batch_payloads",
    "bench_config",
    "machine",
    "main",
    "make_readings",
    "measure_in_process",
    "measure_service",
    "telemetry_payloads",
]

INTERVAL_S = 900.0
SEED = 7
PUBLISH_WINDOW = 50  # un-acked QoS 1 messages: paho slows down past a few dozen (it scans them on each ack)
_POLL_S = 0.01
_TIMEOUT_S = 300.0


# -- workload -------------------------------------------------------------------------------------
def bench_config() -> EngineConfig:
    """Two threshold rules with persistence, on the proactive policy: detection runs on every reading."""
    return EngineConfig(
        policy="proactive",
        rules=[
            ThresholdRule(name="cabinet_warm", sensor="temp_c", issue="door_seal", above=-12.0, for_s=1800.0),
            ThresholdRule(name="long_duty", sensor="duty", issue="compressor", above=0.9, for_s=3600.0),
        ],
        issues={
            "door_seal": IssueType(skill="refrigeration", parts=["door_gasket"], duration_s=1800.0),
            "compressor": IssueType(skill="refrigeration", parts=["compressor"], duration_s=7200.0, priority=2),
        },
    )


@dataclass(frozen=True)
class Readings:
    """One reading per device per tick (every ``INTERVAL_S``); sensor columns of shape (ticks, devices)."""

    devices: list[str]
    ticks: int
    values: dict[str, npt.NDArray[np.float64]]

    def __len__(self) -> int:
        return len(self.devices) * self.ticks


def make_readings(devices: int, ticks: int, seed: int = SEED) -> Readings:
    """A freezer-like fleet: one device in 100 runs a warm cabinet, another one in 100 a long duty cycle."""
    if devices <= 0 or ticks <= 0:
        raise ValueError(f"devices and ticks must be > 0 (got {devices} and {ticks})")
    rng = np.random.default_rng(seed)
    shape = (ticks, devices)
    temp = -18.0 + rng.normal(0.0, 0.5, shape)
    duty = np.clip(0.4 + rng.normal(0.0, 0.05, shape), 0.0, 1.0)
    power = 150.0 + rng.normal(0.0, 10.0, shape)
    which = np.arange(devices) % 100
    temp[:, which == 1] += 10.0
    duty[:, which == 2] = 0.95
    ids = [f"dev-{i:06d}" for i in range(devices)]
    return Readings(ids, ticks, {"temp_c": temp, "duty": duty, "power_w": power})


def telemetry_payloads(readings: Readings, limit: int | None = None) -> list[tuple[str, bytes]]:
    """(device id, JSON :class:`Telemetry`) per reading, tick by tick, at most ``limit`` of them."""
    out: list[tuple[str, bytes]] = []
    wanted = len(readings) if limit is None else min(limit, len(readings))
    names = list(readings.values)
    for tick in range(readings.ticks):
        rows = zip(*(readings.values[n][tick].tolist() for n in names), strict=True)
        for device, row in zip(readings.devices, rows, strict=True):
            if len(out) == wanted:
                return out
            message = Telemetry(
                device_id=device, ts=tick * INTERVAL_S, boot_id=0, seq=tick, values=dict(zip(names, row, strict=True))
            )
            out.append((device, codec.encode(message)))
    return out


def batch_payloads(readings: Readings, batch: int) -> list[tuple[str, bytes]]:
    """(gateway id, msgpack batch): every tick, one batch per ``batch`` devices, as a gateway sends them."""
    if batch <= 0:
        raise ValueError(f"batch must be > 0 (got {batch})")
    out: list[tuple[str, bytes]] = []
    for tick in range(readings.ticks):
        for g, start in enumerate(range(0, len(readings.devices), batch)):
            roster = readings.devices[start : start + batch]
            n = len(roster)
            gateway = f"gw-{g:04d}"
            payload = codec.encode_batch(
                gateway_id=gateway,
                ts=tick * INTERVAL_S,
                boot_id=0,
                seq=tick,
                devices=roster,
                index=np.arange(n),
                reading_ts=np.full(n, tick * INTERVAL_S),
                reading_seq=np.full(n, tick),
                values={k: v[tick, start : start + n] for k, v in readings.values.items()},
            )
            out.append((gateway, payload))
    return out


# -- figures --------------------------------------------------------------------------------------
class Run(NamedTuple):
    """One run of one measure."""

    wall_s: float
    counts: dict[str, int]  # what was handled
    cpu_s: float | None = None  # CPU time of the consumer process (broker part, Linux only)
    broker_bytes: int | None = None  # what the broker wrote to storage meanwhile (its persistence file)
    thread_s: float | None = None  # CPU time of the measuring thread (in process: what other processes cannot take)


@dataclass(frozen=True)
class Measure:
    """One measure's figures: the best of its runs."""

    part: str  # "broker" or "in-process"
    name: str
    count: int  # messages (broker) or readings (in process)
    wall_s: float  # best of the runs
    runs_s: list[float]
    counts: dict[str, int] = field(default_factory=dict)  # the same for every run
    cpu_s: float | None = None  # the consumer's CPU time in the best run
    broker_bytes: int | None = None  # what the broker wrote to storage in the best run
    runs_thread_s: list[float] | None = None  # in process, where measured: each run's thread CPU time

    @property
    def thread_per_s(self) -> float | None:
        """The rate on the least thread CPU time of the runs (a busy machine's other processes cannot slow it)."""
        return None if not self.runs_thread_s else self.count / min(self.runs_thread_s)

    @property
    def per_s(self) -> float:
        return self.count / self.wall_s

    @property
    def median_per_s(self) -> float:
        """The rate of the median run: the fairer figure when runs scatter (an fsync-bound broker)."""
        return self.count / statistics.median(self.runs_s)

    @property
    def cpu_us_each(self) -> float | None:
        return None if self.cpu_s is None else self.cpu_s / self.count * 1e6

    @property
    def broker_kb_each(self) -> float | None:
        return None if self.broker_bytes is None else self.broker_bytes / self.count / 1000


def _best(part: str, name: str, count: int, runs: Sequence[Run]) -> Measure:
    counts = {json.dumps(r.counts, sort_keys=True) for r in runs}
    if len(counts) != 1:  # same input every run: the same counts every run
        raise RuntimeError(f"{name}: runs disagree on what they handled: {sorted(counts)}")
    best = min(runs, key=lambda r: r.wall_s)
    runs_s = [round(r.wall_s, 4) for r in runs]
    threads = [round(r.thread_s, 5) for r in runs if r.thread_s is not None] or None
    return Measure(part, name, count, best.wall_s, runs_s, best.counts, best.cpu_s, best.broker_bytes, threads)


def _outcome(stats: Any) -> dict[str, int]:
    keys = ("readings", "alerts", "cases_opened", "work_orders")
    return {k: int(stats.get(k, 0)) for k in keys}


# -- in process -----------------------------------------------------------------------------------
def _timed(run: Callable[[], dict[str, int]]) -> Run:
    gc.collect()
    started = time.perf_counter()
    counts = run()
    return Run(time.perf_counter() - started, counts)


def measure_in_process(readings: Readings, batch: int, repeat: int, config: EngineConfig) -> list[Measure]:
    """Time decode, twins ingest, decode + handle (columnar) and the per-message baseline on ``readings``."""
    batches = batch_payloads(readings, batch)
    singles = telemetry_payloads(readings)
    views = [codec.decode_batch(p, key=g) for g, p in batches]
    n = len(readings)

    def decode() -> dict[str, int]:
        decoder = codec.BatchDecoder()  # as the engine decodes: a gateway's roster is checked once
        return {"readings": sum(len(decoder.decode(p, key=g)) for g, p in batches)}

    def twins() -> dict[str, int]:
        state, raised = Twins(config.rules), 0
        for v in views:
            slots = state.slots(v.gateway_id, v.devices)[v.index]
            raised += len(state.ingest(slots, v.reading_ts, v.reading_seq, v.values).raised)
        return {"readings": n, "raised": raised}

    def columnar() -> dict[str, int]:
        engine, decoder = Engine(config), codec.BatchDecoder()
        for g, p in batches:
            view = decoder.decode(p, key=g)
            engine.handle(view, view.ts)
        return _outcome(engine.stats)

    def per_message() -> dict[str, int]:
        engine = Engine(config)
        for d, p in singles:
            message = codec.decode(Kind.TELEMETRY, p, key=d)
            engine.handle(message, message.ts)  # type: ignore[attr-defined]
        return _outcome(engine.stats)

    return [
        _best("in-process", name, n, [_timed(run) for _ in range(repeat)])
        for name, run in (("decode", decode), ("twins", twins), ("columnar", columnar), ("per-message", per_message))
    ]


class _Broker:
    """The broker and the engine's connection to it, in memory: at most ``window`` un-acknowledged
    deliveries; the engine is stopped once it has answered the last clock."""

    def __init__(self, window: int, topics: Topics, last_t: float) -> None:
        self.inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.version, self.session_present, self.receive_window = "5", False, window
        self.window, self.topics, self.last_t = window, topics, last_t
        self.service: EngineService | None = None
        self.acks = 0
        self._queued: list[tuple[str, bytes]] = []
        self._next = 0
        self._in_flight = 0
        self._mid = 0

    def offer(self, topic: str, payload: bytes) -> None:
        self._queued.append((topic, payload))

    def connect(self) -> None:
        self._pump()

    def subscribe(self, filters: list[str]) -> None:
        pass

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        if topic == self.topics.clock_ack and self.service is not None:
            ack = codec.decode(Kind.CLOCK_ACK, payload)
            if isinstance(ack, ClockAck) and ack.t >= self.last_t:
                self.service.stop()

    def ack(self, mid: int, qos: int) -> None:
        if qos > 0:
            self._in_flight -= 1
            self.acks += 1
            self._pump()

    def _pump(self) -> None:
        from support_engine.service import Delivery

        while self._next < len(self._queued) and self._in_flight < self.window:
            topic, payload = self._queued[self._next]
            self._next += 1
            self._in_flight += 1
            self._mid += 1
            self.inbox.put(Delivery(topic, payload, self._mid, 1, False))


BASELINE = "hand-written"
"""The storage layer the SQLAlchemy one is measured against: ``bench/_handwritten_storage.py``, the
engine's SQLite layer as it was before SQLAlchemy (main at ad05e72)."""
STORAGES: dict[str, Callable[[Path], Any]] = {"sqlalchemy": Storage, BASELINE: HandWrittenStorage}


def _service_steps(readings: Readings, batch: int, topics: Topics) -> dict[int, list[tuple[str, bytes]]]:
    steps: dict[int, list[tuple[str, bytes]]] = {}
    for gateway, payload in batch_payloads(readings, batch):
        steps.setdefault(round(codec.decode_batch(payload).ts / INTERVAL_S), []).append((gateway, payload))
    return steps


def _service_run(
    steps: dict[int, list[tuple[str, bytes]]],
    config: EngineConfig,
    window: int,
    topics: Topics,
    storage: Callable[[Path], Any],
    record: list[tuple[str, tuple[Any, ...]]] | None = None,
) -> Run:
    """One run; only :meth:`EngineService.run` is timed (not the database's creation). ``record``
    gets every storage call of the run (method, arguments), to replay."""
    with tempfile.TemporaryDirectory() as tmp:
        broker = _Broker(window, topics, last_t=max(steps) * INTERVAL_S)
        published = 0
        for tick, batches in sorted(steps.items()):
            for gateway, payload in batches:
                broker.offer(topics.batch(gateway), payload)
            published += len(batches)
            broker.offer(topics.clock, codec.encode(Clock(t=tick * INTERVAL_S, published=published)))
        opened = storage(Path(tmp) / "engine.sqlite")
        used = opened if record is None else _Recorder(opened, record)
        service = EngineService(config, broker, used, topics=topics, clock="event")  # type: ignore[arg-type]
        broker.service = service
        gc.collect()
        started, cpu = time.perf_counter(), time.thread_time()
        service.run()
        wall_s, thread_s = time.perf_counter() - started, time.thread_time() - cpu
        counts = _outcome(service.core.stats) | {"acknowledged": broker.acks}
        opened.close()
        return Run(wall_s, counts, thread_s=thread_s)


class _Recorder:
    """A storage that records the writes made to it (their arguments made lists) and passes everything on."""

    WRITES = (
        "record_ledger",
        "audit",
        "hold",
        "save_state",
        "release",
        "dead_letter",
        "apply",
        "set_counters",
        "commit",
    )

    def __init__(self, storage: Any, calls: list[tuple[str, tuple[Any, ...]]]) -> None:
        self._storage, self._calls = storage, calls

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._storage, name)
        if name not in self.WRITES:
            return found

        def write(*args: Any) -> Any:
            kept = tuple(
                list(a) if isinstance(a, Iterator) or name in ("apply", "hold", "record_ledger") else a for a in args
            )
            self._calls.append((name, kept))
            return found(*kept)

        return write


def measure_service(readings: Readings, batch: int, repeat: int, config: EngineConfig, window: int) -> Measure:
    """Time the engine service on ``readings`` in event time: a step a tick, through an in-memory broker."""
    topics = Topics("bench/service")
    steps = _service_steps(readings, batch, topics)
    runs = [_service_run(steps, config, window, topics, Storage) for _ in range(repeat)]
    return _best("in-process", "service", len(readings), runs)


def measure_storage(readings: Readings, batch: int, repeat: int, config: EngineConfig, window: int) -> list[Measure]:
    """The service on the SQLAlchemy storage and on the :data:`BASELINE`, runs alternating; then the
    storage writes of one service run (recorded) replayed on each into a new file, alternating."""
    topics = Topics("bench/storage")
    steps = _service_steps(readings, batch, topics)
    n = len(readings)
    runs: dict[str, list[Run]] = {name: [] for name in STORAGES}
    _service_run(steps, config, window, topics, Storage)  # compiles the statements (once a process), not timed
    for i in range(repeat):  # in pairs, which goes first alternating
        for name, storage in list(STORAGES.items())[:: 1 if i % 2 == 0 else -1]:
            runs[name].append(_service_run(steps, config, window, topics, storage))
    calls: list[tuple[str, tuple[Any, ...]]] = []
    _service_run(steps, config, window, topics, Storage, record=calls)
    writes: dict[str, list[Run]] = {name: [] for name in STORAGES}
    for i in range(repeat):
        for name, storage in list(STORAGES.items())[:: 1 if i % 2 == 0 else -1]:
            writes[name].append(_replay(calls, storage))
    return [_best("in-process", f"service, {name} storage", n, runs[name]) for name in STORAGES] + [
        _best("in-process", f"storage writes, {name}", n, writes[name]) for name in STORAGES
    ]


def _replay(calls: list[tuple[str, tuple[Any, ...]]], storage: Callable[[Path], Any]) -> Run:
    """The recorded storage calls made again on a new database; only the calls are timed."""
    with tempfile.TemporaryDirectory() as tmp:
        opened = storage(Path(tmp) / "engine.sqlite")
        methods = [(getattr(opened, name), args) for name, args in calls]
        gc.collect()
        started, cpu = time.perf_counter(), time.thread_time()
        for method, args in methods:
            method(*args)
        wall_s, thread_s = time.perf_counter() - started, time.thread_time() - cpu
        counts = {"calls": len(calls), "commits": sum(1 for name, _ in calls if name == "commit")}
        counts |= {"outbox": opened.count("outbox"), "cases": opened.count("cases")}
        opened.close()
        return Run(wall_s, counts, thread_s=thread_s)


# -- broker: the child processes ------------------------------------------------------------------
def broker_workload(messages: int, devices: int) -> list[tuple[str, bytes]]:
    """The broker part's messages: ``devices`` devices, one reading each per tick, ``messages`` in all."""
    return telemetry_payloads(make_readings(devices, math.ceil(messages / devices)), limit=messages)


def _connected(client_id: str, port: int, *, persistent: bool, inflight: int = 20) -> paho.Client:
    """A paho client (MQTT 5, ``TCP_NODELAY``) connected to the loopback broker, its network thread running."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    client.max_inflight_messages_set(inflight)
    client.on_socket_open = _nodelay
    connected = threading.Event()
    client.on_connect = lambda *args: connected.set()
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = 3600 if persistent else 0  # the engine's session kind, for the bare one
    client.connect("127.0.0.1", port, keepalive=60, clean_start=not persistent, properties=properties)
    client.loop_start()
    if not connected.wait(10):
        raise RuntimeError(f"no CONNACK from 127.0.0.1:{port}")
    return client


def _nodelay(client: paho.Client, userdata: Any, sock: Any) -> None:
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _publisher(port: int, prefix: str, messages: int, devices: int) -> None:
    """Child: encode the workload, say ``ready``, wait for ``go``, publish at QoS 1 with a bounded window."""
    topics = Topics(prefix)
    out = [(topics.telemetry(d), p) for d, p in broker_workload(messages, devices)]
    client = _connected(f"bench-pub-{os.getpid()}", port, persistent=False, inflight=PUBLISH_WINDOW)
    free = threading.Semaphore(PUBLISH_WINDOW)  # released by each PUBACK
    client.on_publish = lambda *args: free.release()
    print("ready", flush=True)
    sys.stdin.readline()
    started = time.monotonic()
    for topic, payload in out:
        if not free.acquire(timeout=_TIMEOUT_S):
            raise RuntimeError("the broker stopped acknowledging")
        info = client.publish(topic, payload, qos=1)
        if info.rc != 0:
            raise RuntimeError(f"publish refused: rc={info.rc}")
    for _ in range(PUBLISH_WINDOW):  # every slot back: every message acknowledged
        if not free.acquire(timeout=_TIMEOUT_S):
            raise RuntimeError("the broker stopped acknowledging")
    print(json.dumps({"started": started, "acked": time.monotonic()}), flush=True)
    client.disconnect()
    client.loop_stop()


def _subscriber(port: int, prefix: str, messages: int) -> None:
    """Child: the bare consumer: subscribe like the engine, count messages, report when the last came."""
    client = _connected(f"bench-bare-{prefix.rsplit('/', 1)[-1]}"[:64], port, persistent=True)
    done = threading.Event()
    subscribed = threading.Event()
    state = {"received": 0, "at": 0.0}

    def on_message(*args: Any) -> None:
        state["received"] += 1
        if state["received"] == messages:
            state["at"] = time.monotonic()
            done.set()

    client.on_message = on_message
    client.on_subscribe = lambda *args: subscribed.set()
    client.subscribe([(f, 1) for f in Topics(prefix).engine_subscriptions()])
    if not subscribed.wait(10):
        raise RuntimeError("no SUBACK")
    print("ready", flush=True)
    done.wait(_TIMEOUT_S)
    time.sleep(0.2)  # anything beyond the count would be a duplicate: count it too
    print(json.dumps({"done": state["at"], "received": state["received"]}), flush=True)
    client.disconnect()
    client.loop_stop()


# -- broker: the coordinator ----------------------------------------------------------------------
class _Child:
    """This script in another role, talking over its stdin and stdout, one line at a time."""

    def __init__(self, role: str, *args: str) -> None:
        self.role = role
        self._proc = subprocess.Popen(
            [sys.executable, __file__, "--role", role, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self._proc.pid

    def line(self) -> str:
        assert self._proc.stdout is not None
        text = self._proc.stdout.readline()
        if not text:
            raise RuntimeError(f"the {self.role} exited with code {self._proc.wait()} before answering")
        return text.strip()

    def result(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.line())
        return document

    def send(self, text: str) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.write(text + "\n")
        self._proc.stdin.flush()

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
        self._proc.wait(10)


def _cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` (all its threads) so far; None without /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _written(pid: int) -> int | None:
    """Bytes process ``pid`` has caused to be written to storage so far; None without /proc."""
    try:
        fields = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    except (OSError, ValueError):
        return None
    return int(fields["write_bytes"])


def _used(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else after - before


class _Meter:
    """The consumer's CPU time and the broker's storage writes between :meth:`start` and :meth:`stop`."""

    def __init__(self, consumer: int, broker: int) -> None:
        self.consumer, self.broker = consumer, broker

    def start(self) -> None:
        self._cpu, self._written = _cpu_s(self.consumer), _written(self.broker)

    def stop(self) -> None:
        self.cpu_s = _used(self._cpu, _cpu_s(self.consumer))
        written = _used(self._written, _written(self.broker))
        self.broker_bytes = None if written is None else int(written)


def _publisher_alone(port: int, prefix: str, messages: int, devices: int) -> Run:
    """Publish with nobody subscribed: the rate the publisher and the broker can offer."""
    publisher = _Child("publisher", "--port", str(port), "--prefix", prefix, *_sizes(messages, devices))
    try:
        publisher.line()
        publisher.send("go")
        sent = publisher.result()
    finally:
        publisher.stop()
    return Run(sent["acked"] - sent["started"], {"messages": messages})


def _bare_run(broker: RunningBroker, prefix: str, messages: int, devices: int) -> Run:
    """Publish to the bare subscriber: seconds from go to its Nth message, its CPU time, the broker's writes."""
    port = str(broker.url.port)
    subscriber = _Child("subscriber", "--port", port, "--prefix", prefix, "--messages", str(messages))
    publisher = _Child("publisher", "--port", port, "--prefix", prefix, *_sizes(messages, devices))
    meter = _Meter(subscriber.pid, broker.pid)
    try:
        subscriber.line()
        publisher.line()
        meter.start()
        publisher.send("go")
        got = subscriber.result()
        meter.stop()
        sent = publisher.result()
    finally:
        publisher.stop()
        subscriber.stop()
    if got["received"] != messages:
        raise RuntimeError(f"the bare subscriber received {got['received']:,} of {messages:,} messages")
    return Run(got["done"] - sent["started"], {"messages": got["received"]}, meter.cpu_s, meter.broker_bytes)


def _engine_run(broker: RunningBroker, prefix: str, messages: int, devices: int, workdir: Path) -> Run:
    """Publish to the engine process: seconds from go to N committed ingests, its counters, CPU, the broker's writes."""
    topics = Topics(prefix)
    name = prefix.rsplit("/", 1)[-1]
    config, db = workdir / "engine-config.json", workdir / f"{name}.sqlite"
    config.write_bytes(msgspec.json.encode(bench_config()))
    options = {
        "--broker": str(broker.url),
        "--db": str(db),
        "--config": str(config),
        "--prefix": prefix,
        "--client-id": f"bench-engine-{name}",
        "--clock": "wall",
        "--time-origin": repr(time.time()),  # engine time: seconds since it started
        "--protocol": "5",
        "--log-level": "WARNING",
    }
    engine = EngineProcess([x for pair in options.items() for x in pair], workdir / f"{name}.log")
    link = WorldTransport(broker.url.host, broker.url.port)
    publisher = _Child("publisher", "--port", str(broker.url.port), "--prefix", prefix, *_sizes(messages, devices))
    meter = _Meter(engine.pid, broker.pid)
    try:
        link.connect([topics.clock_ack])
        _ask(link, topics, engine)  # subscribed: it answers a clock
        publisher.line()
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as reader:
            meter.start()
            publisher.send("go")
            done = _await_ingested(reader, messages, engine)
            meter.stop()
        sent = publisher.result()
        stats = _ask(link, topics, engine)
    finally:
        publisher.stop()
        link.close()
        engine.stop()
    if stats.get("msg_ingested") != messages:
        raise RuntimeError(f"the engine ingested {stats.get('msg_ingested')} of {messages:,} messages")
    counts = {"messages": stats["msg_ingested"], "duplicates": stats.get("msg_duplicates", 0), **_outcome(stats)}
    return Run(done - sent["started"], counts, meter.cpu_s, meter.broker_bytes)


def _ask(link: WorldTransport, topics: Topics, engine: EngineProcess) -> dict[str, int]:
    """Send clocks until the engine answers one (a wall-clock engine answers at once); return its counters."""
    deadline = time.monotonic() + 60.0
    while time.monotonic() < deadline:
        if not engine.alive():
            raise RuntimeError(f"the engine exited; its log ends with:\n{engine.log_tail()}")
        link.publish(topics.clock, codec.encode(Clock(t=0.0, published=0)))
        with contextlib.suppress(queue.Empty):
            _, payload = link.inbox.get(timeout=0.3)
            ack = codec.decode(Kind.CLOCK_ACK, payload)
            assert isinstance(ack, ClockAck)
            return dict(ack.stats)
    raise RuntimeError(f"the engine did not answer within 60 s; its log ends with:\n{engine.log_tail()}")


def _await_ingested(reader: sqlite3.Connection, messages: int, engine: EngineProcess) -> float:
    """Poll the engine's committed ``msg_ingested`` counter; return the monotonic time it reached ``messages``."""
    deadline = time.monotonic() + _TIMEOUT_S
    while time.monotonic() < deadline:
        row = reader.execute("SELECT value FROM counters WHERE name = 'msg_ingested'").fetchone()
        if row is not None and row[0] >= messages:
            return time.monotonic()
        if not engine.alive():
            raise RuntimeError(f"the engine exited; its log ends with:\n{engine.log_tail()}")
        time.sleep(_POLL_S)
    raise RuntimeError(f"the engine did not ingest {messages:,} messages within {_TIMEOUT_S:g} s")


def _sizes(messages: int, devices: int) -> list[str]:
    return ["--messages", str(messages), "--devices", str(devices)]


@contextlib.contextmanager
def _mosquitto_default_autosave() -> Iterator[None]:
    """Start brokers with the project's configuration, its autosave lines set to Mosquitto's defaults.

    ``autosave_interval 1800``, ``autosave_on_changes false``: a broker that snapshots its database
    on every change writes and fsyncs its whole persistence file about once per message, which sets
    the rate of every QoS 1 consumer; this variant shows what the consumers themselves can do.
    """
    import re

    from harness import broker

    original = broker._mosquitto_conf
    default = {"autosave_interval": "1800", "autosave_on_changes": "false"}

    def conf(host: str, port: int, workdir: Path, max_queued_messages: int) -> str:
        text = original(host, port, workdir, max_queued_messages)
        for name, value in default.items():
            text, found = re.subn(rf"(?m)^{name} \S+$", f"{name} {value}", text)
            if found != 1:
                raise RuntimeError(f"the project's Mosquitto configuration has no {name} line: update this benchmark")
        return text

    broker._mosquitto_conf = conf
    try:
        yield
    finally:
        broker._mosquitto_conf = original


BROKER_CONFIGS: dict[str, Callable[[], contextlib.AbstractContextManager[None]]] = {
    "project": contextlib.nullcontext,
    "default-autosave": _mosquitto_default_autosave,
}


def measure_broker(messages: dict[str, int], max_devices: int, repeat: int) -> tuple[list[Measure], str]:
    """Per broker configuration (name -> messages a run): publisher alone, bare subscriber, engine, alternating.

    The messages come from ``messages // 10`` devices (at most ``max_devices``): ten readings or
    more a device, so that the rules' persistence elapses and some alerts fire in the engine.
    """
    measures: list[Measure] = []
    version = ""
    for name, n in messages.items():
        devices = max(1, min(max_devices, n // 10))
        with BROKER_CONFIGS[name](), start_broker("mosquitto") as broker, tempfile.TemporaryDirectory() as tmp:
            version = broker.version
            runs: dict[str, list[Run]] = {"publisher alone": [], "bare": [], "engine": []}
            for r in range(repeat):
                alone = _publisher_alone(broker.url.port, f"bench/ingest/r{r}-alone", n, devices)
                runs["publisher alone"].append(alone)
                runs["bare"].append(_bare_run(broker, f"bench/ingest/r{r}-bare", n, devices))
                runs["engine"].append(_engine_run(broker, f"bench/ingest/r{r}-engine", n, devices, Path(tmp)))
        measures += [_best("broker", f"{what} ({name})", n, runs[what]) for what in runs]
    return measures, version


# -- report ---------------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    """What the figures were measured on, and how busy it was when they were."""
    from importlib import metadata

    return {
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "msgspec": msgspec.__version__,
        "paho_mqtt": metadata.version("paho-mqtt"),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def ratios(measures: Sequence[Measure]) -> dict[str, dict[str, float]]:
    """Rates of engine/bare per broker configuration and of columnar/per-message: best runs and median runs."""
    by_name = {m.name: m for m in measures}
    pairs = {f"engine/bare ({n})": (f"engine ({n})", f"bare ({n})") for n in BROKER_CONFIGS}
    pairs["columnar/per-message"] = ("columnar", "per-message")
    pairs[f"service sqlalchemy/{BASELINE} storage"] = ("service, sqlalchemy storage", f"service, {BASELINE} storage")
    pairs[f"storage writes sqlalchemy/{BASELINE}"] = ("storage writes, sqlalchemy", f"storage writes, {BASELINE}")
    out: dict[str, dict[str, float]] = {}
    for label, (top, bottom) in pairs.items():
        a, b = by_name.get(top), by_name.get(bottom)
        if a is not None and b is not None:
            out[label] = {"best": a.per_s / b.per_s, "median": a.median_per_s / b.median_per_s}
            if a.thread_per_s is not None and b.thread_per_s is not None:
                out[label]["cpu"] = a.thread_per_s / b.thread_per_s
            if a.runs_thread_s and b.runs_thread_s and len(a.runs_thread_s) == len(b.runs_thread_s):
                # runs made in pairs (measure_storage): the median of the pairs' ratios, as a drifting machine leaves it
                pair = [tb / ta for ta, tb in zip(a.runs_thread_s, b.runs_thread_s, strict=True)]
                out[label]["paired_cpu"] = statistics.median(pair)
    return out


def _table(measures: Sequence[Measure]) -> str:
    head = (
        f"{'part':<10} {'measure':<32} {'count':>9} {'best s':>8} {'per s':>11} {'median/s':>10} "
        f"{'CPU us/1':>9} {'brk KB/1':>9}  counts"
    )
    rows = []
    for m in measures:
        cpu = "" if m.cpu_us_each is None else f"{m.cpu_us_each:.0f}"
        kb = "" if m.broker_kb_each is None else f"{m.broker_kb_each:.1f}"
        counts = " ".join(f"{k}={v:,}" for k, v in m.counts.items())
        rows.append(
            f"{m.part:<10} {m.name:<32} {m.count:>9,} {m.wall_s:>8.3f} {m.per_s:>11,.0f} {m.median_per_s:>10,.0f} "
            f"{cpu:>9} {kb:>9}  {counts}"
        )
    return "\n".join([head, *rows])


def _child_main(args: argparse.Namespace) -> int:
    if args.role == "publisher":
        _publisher(args.port, args.prefix, args.messages, args.devices)
    else:
        _subscriber(args.port, args.prefix, args.messages)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--messages", type=int, default=10000, help="broker part: messages a run, default autosave (default 10000)"
    )
    parser.add_argument(
        "--project-messages",
        type=int,
        default=2000,
        help="broker part: messages a run on the project's configuration, fsync-bound (default 2000)",
    )
    parser.add_argument("--devices", type=int, default=10000, help="in process: devices (default 10000)")
    parser.add_argument("--ticks", type=int, default=6, help="in process: readings a device (default 6)")
    parser.add_argument("--batch", type=int, default=1000, help="in process: devices a gateway batch (default 1000)")
    parser.add_argument(
        "--window", type=int, default=1000, help="in process: the broker's in-flight window, service (default 1000)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs a measure; the best counts (default 3)")
    parser.add_argument(
        "--storage-repeat",
        type=int,
        default=9,
        help=f"in process: runs of each storage layer (SQLAlchemy, {BASELINE}), alternating (default 9)",
    )
    parser.add_argument("--skip-broker", action="store_true", help="in-process part only (no Mosquitto needed)")
    parser.add_argument(
        "--broker-config",
        choices=["project", "default-autosave", "both"],
        default="both",
        help="Mosquitto with the project's configuration, with Mosquitto's default autosave instead, or both (default)",
    )
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the figures here")
    parser.add_argument("--role", choices=["publisher", "subscriber"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role is not None:
        return _child_main(args)
    for option in ("messages", "project_messages", "devices", "ticks", "batch", "window", "repeat", "storage_repeat"):
        if getattr(args, option) < 1:
            parser.error(f"--{option.replace('_', '-')} must be >= 1")

    sizes = {"project": args.project_messages, "default-autosave": args.messages}
    broker_runs = {} if args.skip_broker else {k: v for k, v in sizes.items() if args.broker_config in (k, "both")}
    info = machine()
    print(
        f"engine ingest: in process {args.devices:,} devices x {args.ticks} readings, batches of {args.batch:,}; "
        + (", ".join(f"{v:,} messages on {k}" for k, v in broker_runs.items()) or "no broker")
        + f"; best of {args.repeat}"
    )
    print(
        f"machine: {info['cpu_count']} CPUs ({info['processor']}), {info['platform']}; python {info['python']}, "
        f"numpy {info['numpy']}, msgspec {info['msgspec']}, paho-mqtt {info['paho_mqtt']}; "
        f"load average {info['load_average']}"
    )
    readings = make_readings(args.devices, args.ticks)
    measures = measure_in_process(readings, args.batch, args.repeat, bench_config())
    service = measure_service(readings, args.batch, args.repeat, bench_config(), args.window)
    measures.insert(3, service)
    single, columnar = (next(m for m in measures if m.name == n) for n in ("per-message", "columnar"))
    if single.counts != columnar.counts:
        raise RuntimeError(f"the two paths disagree: columnar {columnar.counts}, per-message {single.counts}")
    layers = measure_storage(readings, args.batch, args.storage_repeat, bench_config(), args.window)
    measures[4:4] = layers
    for m in (service, *layers[:2]):
        served = {k: v for k, v in m.counts.items() if k != "acknowledged"}
        if served != columnar.counts:
            raise RuntimeError(f"the service disagrees: columnar {columnar.counts}, {m.name} {served}")
    if layers[2].counts != layers[3].counts:
        raise RuntimeError(f"the storage layers disagree: {layers[2].counts} and {layers[3].counts}")
    broker_version = None
    if broker_runs:
        broker_measures, broker_version = measure_broker(broker_runs, args.devices, args.repeat)
        measures += broker_measures
        print(f"broker: {broker_version}; load average now {[round(x, 2) for x in os.getloadavg()]}")
    print(_table(measures))
    found = ratios(measures)
    for name, value in found.items():
        cpu = f", {value['cpu']:.2f}x (least thread CPU time)" if "cpu" in value else ""
        if "paired_cpu" in value:
            cpu += f", {value['paired_cpu']:.2f}x (median of {args.storage_repeat} pairs, thread CPU time)"
        print(f"ratio {name}: {value['best']:.2f}x (best runs), {value['median']:.2f}x (median runs){cpu}")

    if args.json is not None:
        document = {
            "benchmark": "engine_ingest",
            "command": " ".join(["python", "bench/engine_ingest.py", *(argv if argv is not None else sys.argv[1:])]),
            "broker_messages": broker_runs,
            "devices": args.devices,
            "ticks": args.ticks,
            "batch": args.batch,
            "window": args.window,
            "repeat": args.repeat,
            "storage_repeat": args.storage_repeat,
            "storage_baseline": "bench/_handwritten_storage.py (support_engine/storage.py of main at ad05e72)",
            "broker": broker_version,
            "machine": info,
            "measures": [
                asdict(m)
                | {
                    "per_s": m.per_s,
                    "median_per_s": m.median_per_s,
                    "cpu_us_each": m.cpu_us_each,
                    "broker_kb_each": m.broker_kb_each,
                    "thread_per_s": m.thread_per_s,
                }
                for m in measures
            ],
            "ratios": found,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
