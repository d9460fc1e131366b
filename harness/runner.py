"""One run through a real broker and the real engine, in event time with the clock/ack barrier.

At each sync boundary t the world has published every message stamped ≤ t; the runner publishes
``clock(t, published)``, waits for the engine's ``ack(t)`` and for every message the ack counts,
hands those messages to the world in a fixed order, and moves on. Same scenario and seed, same
result, whatever the broker's timing.

The world keeps the step's messages until the ack: the engine has committed everything before it
(it acknowledges only what it has committed), so the open step is all a broker that lost its
state can have lost. After a reconnect the barrier sends the step and its clock again; the engine
counts the copies it already holds as duplicates and drops them.
"""

from __future__ import annotations

import contextlib
import math
import platform
import queue
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import msgspec

from contracts import codec
from contracts.counters import engine_counters
from contracts.engine_config import Policy
from contracts.messages import Clock, ClockAck, Message
from contracts.topics import Kind, Topics
from harness.broker import BrokerUrl, RunningBroker, probe, start_broker
from harness.engine_process import EngineProcess
from harness.errors import HarnessError
from harness.mqtt_transport import WorldTransport
from sim.kpis import compute_kpis
from sim.records import Records
from sim.scenario import Scenario
from sim.world import World

__all__ = ["RunOutcome", "run_scenario"]

Progress = Callable[[float, float], None]
_OUT_ORDER = {Kind.WORK_ORDER: 0, Kind.NOTIFY: 1, Kind.COMMAND: 2, Kind.ORDER: 3}


@dataclass
class RunOutcome:
    """What a run returns: the result document and the records behind it."""

    result: dict[str, Any]
    records: Records
    workdir: Path


def _versions() -> dict[str, str]:
    names = ["sot-twin", "simpy", "numpy", "scipy", "paho-mqtt", "msgspec", "amqtt"]
    found = {}
    for name in names:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    found["python"] = platform.python_version()
    return found


class _Barrier:
    """The world's side of the clock/ack protocol."""

    def __init__(self, transport: WorldTransport, topics: Topics, engine: EngineProcess, timeout_s: float) -> None:
        self.transport, self.topics, self.engine, self.timeout_s = transport, topics, engine, timeout_s
        self.outputs: list[tuple[Kind, Message]] = []
        self.received = 0
        self.last_ack: ClockAck | None = None
        self.resent = 0  # messages sent again after a reconnect
        self._step: list[tuple[str, bytes]] = []
        self._clock = b""
        self._connects = transport.connects

    def handshake(self) -> None:
        """Wait until the engine is subscribed: repeat clock(0) until it answers."""
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            self._check_engine()
            self.transport.publish(self.topics.clock, codec.encode(Clock(t=0.0, published=0)))
            with contextlib.suppress(TimeoutError):
                self._await_ack(0.0, wait_s=0.3)
                return
        raise HarnessError(f"the engine did not answer within {self.timeout_s} s\n{self.engine.log_tail()}")

    def send(self, messages: list[tuple[str, bytes]]) -> None:
        """Publish the world's messages of the open step (kept until its ack, to send again if need be)."""
        for topic, payload in messages:
            self.transport.publish(topic, payload)
        self._step = messages

    def sync(self, t: float, published: int, final: bool = False) -> list[Message]:
        """Publish clock(t), wait for ack(t) and every output it counts; return them in a fixed order."""
        self._clock = codec.encode(Clock(t=t, published=published, final=final))
        self.transport.publish(self.topics.clock, self._clock)
        self._await_ack(t, wait_s=self.timeout_s)
        self._step = []
        out = sorted(self.outputs, key=lambda x: (x[1].ts, _OUT_ORDER.get(x[0], 9), _id_of(x[1])))  # type: ignore[attr-defined]
        self.outputs = []
        return [m for _, m in out]

    def _await_ack(self, t: float, wait_s: float) -> None:
        deadline = time.monotonic() + wait_s
        acked = False
        while True:
            if acked and self.last_ack is not None and self.received >= self.last_ack.emitted:
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if wait_s >= self.timeout_s:
                    self._check_engine()
                    raise HarnessError(
                        f"no complete ack for t={t} within {wait_s} s (received {self.received} of "
                        f"{self.last_ack.emitted if self.last_ack else '?'} engine messages)\n{self.engine.log_tail()}"
                    )
                raise TimeoutError
            if self.transport.connects != self._connects:
                self._resend()
            try:
                topic, payload = self.transport.inbox.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                self._check_engine()
                continue
            kind, _ = self.topics.parse(topic)
            message = codec.decode(kind, payload)
            if isinstance(message, ClockAck):
                if message.t >= t:
                    self.last_ack = message
                    acked = True
            else:
                self.outputs.append((kind, message))
                self.received += 1

    def _resend(self) -> None:
        """The connection came back: send the open step and its clock again (the engine drops copies)."""
        self._connects = self.transport.connects
        for topic, payload in self._step:
            self.transport.publish(topic, payload)
        if self._clock:
            self.transport.publish(self.topics.clock, self._clock)
        self.resent += len(self._step)

    def _check_engine(self) -> None:
        if not self.engine.alive():
            raise HarnessError(f"the engine process exited unexpectedly; its log ends with:\n{self.engine.log_tail()}")


def _id_of(message: Message) -> str:
    for name in ("work_order_id", "notification_id", "command_id", "order_id"):
        value = getattr(message, name, None)
        if value is not None:
            return str(value)
    return ""


@contextlib.contextmanager
def _broker_for(
    url: BrokerUrl | None, kind: str, workdir: Path
) -> Iterator[tuple[BrokerUrl, str, int, RunningBroker | None]]:
    if url is not None:
        probe(url)
        yield url, f"external {url}", 5, None
        return
    broker = start_broker(kind, workdir=workdir / "broker")  # type: ignore[arg-type]
    try:
        yield broker.url, broker.version, broker.protocol, broker
    finally:
        broker.stop()


@dataclass
class _Services:
    """A broker, the engine process and the world's connection to the broker, all running."""

    broker_version: str
    protocol: int
    engine: EngineProcess
    transport: WorldTransport


def _prepare(
    scenario: Scenario, seed: int | None, policy: Policy | None, topics: Topics | None, workdir: Path | None
) -> tuple[int, Policy, Topics, Path]:
    """Fill the run's defaults; write the engine's configuration into a fresh workdir."""
    seed = scenario.seed if seed is None else seed
    policy = policy or scenario.engine.policy
    topics = topics or Topics()
    workdir = Path(tempfile.mkdtemp(prefix="sot-run-")) if workdir is None else workdir
    workdir.mkdir(parents=True, exist_ok=True)
    config = msgspec.structs.replace(scenario.engine, policy=policy)
    (workdir / "engine-config.json").write_bytes(msgspec.json.encode(config))
    for stale in workdir.glob("engine.sqlite*"):
        stale.unlink()
    return seed, policy, topics, workdir


def _start_services(
    stack: contextlib.ExitStack,
    *,
    workdir: Path,
    topics: Topics,
    broker_url: BrokerUrl | None,
    broker_kind: str,
    on_broker: Callable[[str], None] | None,
    clock_args: Callable[[], list[str]],
    world: World,
) -> _Services:
    """Start (or reach) the broker, start the engine with ``clock_args()``, connect the world.

    Everything started is stopped by ``stack``. ``clock_args`` is called just before the engine
    starts (a live run computes its time origin then).
    """
    url, broker_version, protocol, _ = stack.enter_context(_broker_for(broker_url, broker_kind, workdir))
    devices = workdir / "devices.jsonl"  # the engine's device registry: what the support organisation knows
    world.write_registry(devices)
    if on_broker is not None:
        on_broker(broker_version)
    engine = EngineProcess(
        [
            "--broker", str(url), "--db", str(workdir / "engine.sqlite"), *clock_args(),
            "--config", str(workdir / "engine-config.json"), "--devices", str(devices),
            "--prefix", topics.prefix, "--client-id", f"sot-engine-{workdir.name}"[:64],
            "--protocol", "5" if protocol == 5 else "3.1.1", "--log-level", "WARNING",
        ],
        workdir / "engine.log",
    )  # fmt: skip
    stack.callback(engine.stop)
    transport = WorldTransport(url.host, url.port, protocol=protocol)
    transport.connect(topics.world_subscriptions())
    stack.callback(transport.close)
    return _Services(broker_version, protocol, engine, transport)


def _result(
    scenario: Scenario,
    *,
    seed: int,
    policy: Policy,
    world: World,
    services: _Services,
    stats: dict[str, int],
    outputs_received: int,
    timing: dict[str, float | int],
    mode: dict[str, Any],
) -> dict[str, Any]:
    """The result document of a run: manifest, reconciled message counts, KPIs, engine counters."""
    end = scenario.duration_s
    ingested = stats.get("msg_ingested", 0)
    rejected = stats.get("msg_rejected", 0)
    sent = world.published - world.unsent  # device answers to the engine's last commands stay unsent
    return {
        "scenario": scenario.name,
        "seed": seed,
        "policy": policy,
        "sim_days": round(end / 86400.0, 6),
        "warmup_days": scenario.warmup_days,
        "manifest": {
            **mode,
            "versions": _versions(),
            "broker": services.broker_version,
            "transport": "mqtt",
            "mqtt_protocol": "5" if services.protocol == 5 else "3.1.1",
            "platform": platform.platform(),
        },
        "messages": {
            "published": sent,
            "ingested": ingested,
            "duplicates": stats.get("msg_duplicates", 0),
            "rejected": rejected,
            "lost": max(0, sent - ingested - rejected),
            "unsent_at_end": world.unsent,
            "duplicates_sent": world.duplicates_sent,
            "readings": world.readings,
            "engine_emitted": stats.get("msg_emitted", 0),
            "engine_outputs_received": outputs_received,
        },
        "kpis": compute_kpis(scenario, world.records, stats, end, world.summary(), start_s=scenario.warmup_s),
        "engine": engine_counters(stats),
        "timing": timing,
    }


def run_scenario(
    scenario: Scenario,
    *,
    seed: int | None = None,
    policy: Policy | None = None,
    broker_url: BrokerUrl | None = None,
    broker_kind: str = "auto",
    workdir: Path | None = None,
    topics: Topics | None = None,
    progress: Progress | None = None,
    on_broker: Callable[[str], None] | None = None,
    step_timeout_s: float = 120.0,
) -> RunOutcome:
    """Run ``scenario`` through a broker and the engine process; stop everything started, always."""
    seed, policy, topics, workdir = _prepare(scenario, seed, policy, topics, workdir)
    world = World(scenario, seed=seed, topics=topics)
    with contextlib.ExitStack() as stack:
        services = _start_services(
            stack,
            workdir=workdir,
            topics=topics,
            broker_url=broker_url,
            broker_kind=broker_kind,
            on_broker=on_broker,
            clock_args=lambda: ["--clock", "event"],
            world=world,
        )
        transport = services.transport
        barrier = _Barrier(transport, topics, services.engine, step_timeout_s)
        barrier.handshake()
        started = time.monotonic()
        end = scenario.duration_s
        steps = math.ceil(end / scenario.sync_interval_s)
        for k in range(1, steps + 1):
            t = min(k * scenario.sync_interval_s, end)
            barrier.send(world.advance(t))
            for message in barrier.sync(t, world.published, final=k == steps):
                world.deliver(message)
            if progress is not None:
                progress(t, end)
        transport.flush()
        wall_s = time.monotonic() - started
        stats = dict(barrier.last_ack.stats) if barrier.last_ack else {}
    timing = {
        "wall_s": round(wall_s, 3),
        "readings_per_s": round(world.readings / wall_s) if wall_s else 0,
        "broker_reconnects": transport.connects - 1,  # what a broker restart cost: time, not data
        "messages_resent": barrier.resent,
    }
    result = _result(
        scenario,
        seed=seed,
        policy=policy,
        world=world,
        services=services,
        stats=stats,
        outputs_received=barrier.received,
        timing=timing,
        mode={"mode": "event"},
    )
    return RunOutcome(result, world.records, workdir)
