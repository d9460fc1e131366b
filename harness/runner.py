"""One run through a real broker and the real engine, in event time with the clock/ack barrier.

At each sync boundary t the world has published every message stamped ≤ t; the runner publishes
``clock(t, published)``, waits for the engine's ``ack(t)`` and for every message the ack counts,
hands those messages to the world in a fixed order, and moves on. Same scenario and seed, same
result, whatever the broker's timing.

The world keeps the step's messages until the ack: the engine has committed everything before it
(it acknowledges only what it has committed), so the open step is all a broker that lost its
state can have lost. After a reconnect the barrier sends the step and its clock again; the engine
counts the copies it already holds as duplicates and drops them.

With ``engines=N`` the device topics are split into N shards and N engine processes run, partition
K owning shard K (:mod:`contracts.partitions`); the clock counts the step's messages per shard,
the barrier waits for every partition's ack, and the run's engine counters are their sums.
"""

from __future__ import annotations

import contextlib
import math
import platform
import queue
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import Any

import msgspec

from contracts import codec
from contracts.counters import engine_counters
from contracts.engine_config import Policy
from contracts.errors import ContractError, PartitionError
from contracts.messages import Clock, ClockAck, Message
from contracts.partitions import Partition, check_partitionable
from contracts.topics import DEFAULT_PREFIX, Kind, Topics
from harness.accounting import Accounting, read_effects
from harness.broker import BrokerUrl, RunningBroker, probe, speaks, start_broker
from harness.engine_process import EngineHttp, EngineProcess
from harness.errors import HarnessError
from harness.faults import Fault, FaultProxy
from harness.mqtt_transport import WorldTransport
from harness.secure_broker import (
    SECURE_KIND,
    ServiceLogins,
    logins_for_deployment,
    logins_for_url,
    start_secure_broker,
)
from sim.kpis import compute_kpis
from sim.records import Records
from sim.scenario import Scenario
from sim.world import World

__all__ = ["RunOutcome", "run_scenario"]

Progress = Callable[[float, float], None]
_PARTITION_COUNTS = ("msg_ingested", "readings", "devices_provisioned", "cases_opened", "msg_emitted")
_OUT_ORDER = {Kind.WORK_ORDER: 0, Kind.NOTIFY: 1, Kind.COMMAND: 2, Kind.ORDER: 3}
_DROP_QUIET_S = 2.0  # the broker's dropped count still this long: the overflow is over, send the step again
_MAX_DROP_RESENDS = 10  # per step: a broker that drops every time is one whose limit is too small


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
    """The world's side of the clock/ack protocol, with one engine or several partitions."""

    def __init__(
        self, transport: WorldTransport, topics: Topics, engines: EngineProcess | list[EngineProcess], timeout_s: float
    ) -> None:
        self.transport, self.topics, self.timeout_s = transport, topics, timeout_s
        self.engines = engines if isinstance(engines, list) else [engines]
        self.outputs: list[tuple[Kind, Message]] = []
        self.received = 0
        self.acks: dict[int, ClockAck] = {}  # each partition's latest answer
        self.resent = 0  # messages sent again after a reconnect
        self.foreign: Counter[str] = Counter()  # messages on the engine's topics that it did not send, by why
        self.repeated = 0  # outputs delivered again (a redelivery after a reconnect): dropped
        self._clocks: set[float] = set()  # the times of every clock sent
        self._answers: dict[tuple[int, float], tuple[int, int]] = {}  # (partition, t) -> (received, emitted)
        self._ids: set[tuple[Kind, str]] = set()  # every output taken, by kind and id
        self._step: list[tuple[str, bytes]] = []
        self._clock = b""
        self._connects = transport.connects
        self.accounting: Accounting | None = None  # every message sent, by key, when the run is audited
        self._drops_handled = 0  # the broker's dropped count when the step was last sent again for it
        self._drop_resends = 0  # this step's

    def handshake(self) -> None:
        """Wait until the engine is subscribed: repeat clock(0) until it answers."""
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            self._check_engine()
            self.transport.publish(self.topics.clock, self._encode_clock(0.0, 0, [0] * self.shards))
            with contextlib.suppress(TimeoutError):
                self._await_ack(0.0, wait_s=0.3)
                return
        silent = [k for k in range(len(self.engines)) if k not in self.acks]
        raise HarnessError(
            f"the engine{'' if len(self.engines) == 1 else f' partitions {silent}'} did not answer within "
            f"{self.timeout_s} s\n{self._log_tails(silent)}"
        )

    @property
    def shards(self) -> int:
        return self.topics.shards

    @property
    def last_ack(self) -> ClockAck | None:
        """The partitions' latest answers as one: counters summed (None before every partition answered)."""
        if len(self.acks) < len(self.engines):
            return None
        acks = list(self.acks.values())
        stats: Counter[str] = Counter()
        for ack in acks:
            stats.update(ack.stats)
        return ClockAck(
            t=min(a.t for a in acks),
            received=sum(a.received for a in acks),
            emitted=sum(a.emitted for a in acks),
            stats=dict(sorted(stats.items())),
        )

    def _encode_clock(self, t: float, published: int, shards: list[int], final: bool = False) -> bytes:
        self._clocks.add(t)
        return codec.encode(Clock(t=t, published=published, final=final, shards=shards if self.shards > 1 else []))

    def send(self, messages: list[tuple[str, bytes]]) -> None:
        """Publish the world's messages of the open step (kept until its ack, to send again if need be)."""
        for topic, payload in messages:
            self.transport.publish(topic, payload)
        self._step = messages
        self._drop_resends = 0
        if self.accounting is not None:
            self.accounting.add(messages)

    def sync(self, t: float, published: int, final: bool = False, shards: list[int] | None = None) -> list[Message]:
        """Publish clock(t), wait for ack(t) and every output it counts; return them in a fixed order.

        The order is (time, kind, device, id): the same whichever partition made a message."""
        self._clock = self._encode_clock(t, published, shards or [], final)
        self.transport.publish(self.topics.clock, self._clock)
        self._await_ack(t, wait_s=self.timeout_s)
        self._step = []
        out = sorted(self.outputs, key=_output_order)
        self.outputs = []
        return [m for _, m in out]

    def _complete(self, t: float) -> bool:
        """Every partition has answered clock(t), and every output their answers count is here."""
        acks = self.acks.values()
        if len(self.acks) < len(self.engines) or any(a.t < t for a in acks):
            return False
        emitted = sum(a.emitted for a in acks)
        if self.received > emitted:
            self._forged("outputs", self.received - emitted)
        return self.received >= emitted

    def _await_ack(self, t: float, wait_s: float) -> None:
        deadline = time.monotonic() + wait_s
        while True:
            if self._complete(t):
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if wait_s >= self.timeout_s:
                    self._check_engine()
                    late = [k for k in range(len(self.engines)) if k not in self.acks or self.acks[k].t < t]
                    emitted = sum(a.emitted for a in self.acks.values())
                    who = f" from partitions {late}" if len(self.engines) > 1 and late else ""
                    raise HarnessError(
                        f"no complete ack for t={t}{who} within {wait_s} s (received {self.received} of "
                        f"{emitted if self.acks else '?'} engine messages{self._dropped_note()})\n"
                        f"{self._log_tails(late or None)}"
                    )
                raise TimeoutError
            if self.transport.connects != self._connects:
                self._resend()
            elif self._dropped_meanwhile():
                self._resend_dropped()
            try:
                topic, payload = self.transport.inbox.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                self._check_engine()
                continue
            self._take(topic, payload, t)

    def _take(self, topic: str, payload: bytes, t: float) -> None:
        """One message from the engine's topics: an ack, an output, a copy, or something foreign."""
        try:
            kind = self.topics.parse(topic).kind
            message = codec.decode(kind, payload)
        except ContractError:
            self.foreign["undecodable"] += 1  # cannot be acted on: dropped, and reported in the result
            return
        if isinstance(message, ClockAck):
            self._answer(message, t)
            return
        key = (kind, _id_of(message))
        if key in self._ids:
            self.repeated += 1
            return
        self._ids.add(key)
        self.outputs.append((kind, message))
        self.received += 1

    def _answer(self, ack: ClockAck, t: float) -> None:
        """An ack: it must answer a clock this run sent, from a partition of this run, and agree with
        any other answer of that partition to that clock."""
        if ack.partition >= len(self.engines) or ack.t not in self._clocks:
            self._forged("clock acks", 1)
        seen = self._answers.setdefault((ack.partition, ack.t), (ack.received, ack.emitted))
        if seen != (ack.received, ack.emitted):
            self._forged("clock acks", 1)
        if ack.t >= t:
            self.acks[ack.partition] = ack

    def _forged(self, what: str, n: int) -> None:
        """Messages the engine did not send change what the world is told: the run cannot be trusted."""
        self.foreign[what] += n
        raise HarnessError(
            f"{n} {what} on the engine's topics ({self.topics.prefix}/engine/..., {self.topics.prefix}/clock/ack) "
            "that this run's engine did not send: another client publishes on this broker. "
            "Run with a topic prefix of your own (--prefix), or on a broker that only this run can use."
        )

    def _resend(self) -> None:
        """The connection came back: send the open step and its clock again (the engine drops copies)."""
        self._connects = self.transport.connects
        for topic, payload in self._step:
            self.transport.publish(topic, payload)
        if self._clock:
            self.transport.publish(self.topics.clock, self._clock)
        self.resent += len(self._step)

    def _dropped_meanwhile(self) -> bool:
        """The broker has dropped messages since the step was last sent, and its count has held
        still for :data:`_DROP_QUIET_S` (the queue that overflowed has room again)."""
        drops = self.transport.broker_drops
        return drops.total > self._drops_handled and time.monotonic() - self.transport.dropped_at >= _DROP_QUIET_S

    def _resend_dropped(self) -> None:
        """Send the open step again after the broker dropped messages: the engine takes each once."""
        drops = self.transport.broker_drops
        self._drops_handled = drops.total
        self._drop_resends += 1
        if self._drop_resends > _MAX_DROP_RESENDS:
            raise HarnessError(
                f"the broker at {self.transport.host}:{self.transport.port} keeps dropping this run's messages "
                f"({drops.total:,} so far, by its $SYS count) although the step was sent {_MAX_DROP_RESENDS} times "
                f"more: its queue limit (max_queued_messages) is below a step's {len(self._step):,} messages. "
                "Raise it, or drop --broker to run on a broker of the run's own"
            )
        self._resend()

    def _dropped_note(self) -> str:
        total = self.transport.broker_drops.total
        return f"; the broker dropped {total:,} messages meanwhile (its $SYS count)" if total else ""

    def _check_engine(self) -> None:
        for k, engine in enumerate(self.engines):
            if not engine.alive():
                which = "the engine process" if len(self.engines) == 1 else f"engine partition {k}"
                raise HarnessError(f"{which} exited unexpectedly; its log ends with:\n{engine.log_tail()}")

    def _log_tails(self, which: list[int] | None = None) -> str:
        if len(self.engines) == 1:
            return self.engines[0].log_tail()
        chosen = range(len(self.engines)) if which is None else which
        return "\n".join(f"[partition {k}] {self.engines[k].log_tail(8)}" for k in chosen)


class _Chaos:
    """Injects a run's faults at the first sync step at or after their simulated time."""

    def __init__(self, faults: Sequence[Fault], services: _Services) -> None:
        self.pending = sorted(faults, key=lambda f: f.at_s)
        self.services = services
        self.done: list[dict[str, Any]] = []
        self._heals: list[tuple[threading.Timer, Callable[[], None]]] = []

    def inject_due(self, t: float, *, before_send: bool = False) -> None:
        """Inject the faults due at step ``t``: with ``before_send``, only those that strike before the
        step's messages go out (an engine pause: the whole step meets a frozen engine)."""
        while True:
            due = [f for f in self.pending if f.at_s <= t and (not before_send or f.kind == "engine-pause")]
            if not due:
                return
            fault = due[0]
            self.pending.remove(fault)
            started = time.monotonic()
            self._inject(fault)
            self.done.append({"fault": str(fault), "at_s": t, "took_s": round(time.monotonic() - started, 3)})

    def _inject(self, fault: Fault) -> None:
        s = self.services
        if fault.kind in ("broker-kill", "broker-restart"):
            if s.broker is None:
                raise HarnessError(f"{fault}: the run's broker is external")
            if fault.kind == "broker-kill":
                s.broker.kill()
                time.sleep(fault.for_s)
            s.broker.restart()
        elif fault.kind in ("engine-kill", "engine-pause"):
            chosen = range(len(s.engines)) if fault.partition is None else [fault.partition]
            if any(k >= len(s.engines) for k in chosen):
                raise HarnessError(f"{fault}: the run has {len(s.engines)} engine partitions")
            for k in chosen:
                if fault.kind == "engine-pause":
                    s.engines[k].pause()
                    self._later(fault.for_s, s.engines[k].resume)
                else:
                    s.engines[k].kill()
                    s.engines[k].restart()  # same database, same session: it takes up where it was
        elif fault.kind == "partition":
            assert s.proxy is not None
            s.proxy.cut()
            self._later(fault.for_s, s.proxy.heal)

    def _later(self, after_s: float, undo: Callable[[], None]) -> None:
        """End a lasting fault ``after_s`` wall seconds from now (in a timer: the run goes on meanwhile)."""
        timer = threading.Timer(after_s, undo)
        timer.daemon = True
        timer.start()
        self._heals.append((timer, undo))

    def settle(self) -> None:
        """End every lasting fault still on (the run stopped early): no engine is left frozen."""
        for timer, undo in self._heals:
            if timer.is_alive():
                timer.cancel()
                with contextlib.suppress(Exception):
                    undo()

    def report(self) -> dict[str, Any]:
        """What was injected, and what was not (a fault past the run's end)."""
        return {"injected": self.done, "not_reached": [str(f) for f in self.pending]}


def _output_order(item: tuple[Kind, Message]) -> tuple[float, int, str, str]:
    kind, message = item
    return (message.ts, _OUT_ORDER.get(kind, 9), getattr(message, "device_id", ""), _id_of(message))  # type: ignore[attr-defined]


def _id_of(message: Message) -> str:
    for name in ("work_order_id", "notification_id", "command_id", "order_id"):
        value = getattr(message, name, None)
        if value is not None:
            return str(value)
    return ""


@contextlib.contextmanager
def _broker_for(
    url: BrokerUrl | None,
    kind: str,
    workdir: Path,
    prefix: str = DEFAULT_PREFIX,
    engines: int = 1,
    protocol: str = "auto",
) -> Iterator[tuple[BrokerUrl, str, int, RunningBroker | None, ServiceLogins]]:
    """The run's broker and how the world and the engines log in (``kind`` secure: :mod:`harness.secure_broker`);
    an external broker's MQTT version as ``protocol`` says (``auto``: 5 if it speaks it, else 3.1.1)."""
    if url is not None:
        probe(url)
        version = speaks(url, protocol)
        logins = logins_for_url(url, engines, workdir)
        try:
            yield url, f"external {url}", version, None, logins
        finally:
            for secret in {f for f in logins.password_files if f is not None}:
                secret.unlink(missing_ok=True)
        return
    if kind == SECURE_KIND:
        broker, deployment = start_secure_broker(workdir / "broker", prefix=prefix, engines=engines)
        logins = logins_for_deployment(deployment, engines)
    else:
        broker = start_broker(kind, workdir=workdir / "broker")  # type: ignore[arg-type]
        logins = logins_for_url(broker.url, engines, workdir)
    try:
        yield broker.url, broker.version + (" (secure)" if kind == SECURE_KIND else ""), broker.protocol, broker, logins
    finally:
        broker.stop()


@dataclass
class _Services:
    """A broker, the engine process and the world's connection to the broker, all running."""

    broker_version: str
    protocol: int
    engines: list[EngineProcess]
    transport: WorldTransport
    broker: RunningBroker | None = None  # the run's own broker (None: an external one)
    proxy: FaultProxy | None = None  # between the engines and the broker, for partition faults

    @property
    def engine(self) -> EngineProcess:
        """The engine (the first partition's, when there are several)."""
        return self.engines[0]


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
    for stale in [*workdir.glob("engine.sqlite*"), *workdir.glob("engine-p*.sqlite*")]:
        stale.unlink()
    return seed, policy, topics, workdir


def _engine_name(k: int, engines: int) -> str:
    """What partition ``k``'s files are called in the run's directory (``.sqlite``, ``.log``)."""
    return "engine" if engines == 1 else f"engine-p{k}"


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
    engines: int = 1,
    proxied: bool = False,
    engine_args: Sequence[str] = (),
    mqtt: str = "auto",
    http: EngineHttp | None = None,
) -> _Services:
    """Start (or reach) the broker, start the engine with ``clock_args()``, connect the world.

    Everything started is stopped by ``stack``. ``clock_args`` is called just before the engine
    starts (a live run computes its time origin then). ``mqtt``: an external broker's MQTT version.
    ``http``: the engine serves its HTTP API and console (one engine only).
    """
    if http is not None and engines > 1:
        raise HarnessError(
            f"--http serves one engine's API, and the run has {engines} partitions, each with a database of "
            "its own: drop --engines, or inspect a partition's database afterwards (sot engine --inspect)"
        )
    url, broker_version, protocol, broker, logins = stack.enter_context(
        _broker_for(broker_url, broker_kind, workdir, topics.prefix, engines, mqtt)
    )
    proxy = None
    if proxied:  # the engines reach the broker through a proxy that can cut them off
        proxy = FaultProxy(url.host, url.port)
        stack.callback(proxy.close)
        via = tuple(replace(u, host="127.0.0.1", port=proxy.port) for u in logins.engines)
        logins = replace(logins, engines=via)
    devices = workdir / "devices.jsonl"  # the engine's device registry: what the support organisation knows
    world.write_registry(devices)
    if on_broker is not None:
        on_broker(broker_version)
    clock = clock_args()
    processes = []
    for k in range(engines):
        name = _engine_name(k, engines)
        client = f"sot-engine-{workdir.name}"[: 64 - 4] + ("" if engines == 1 else f"-p{k}")
        process = EngineProcess(
            [
                *logins.engine_args(k), "--db", str(workdir / f"{name}.sqlite"), *clock,
                "--config", str(workdir / "engine-config.json"), "--devices", str(devices),
                "--prefix", topics.prefix, "--client-id", client, "--partition", f"{k}/{engines}",
                "--protocol", "5" if protocol == 5 else "3.1.1", "--log-level", "WARNING", *engine_args,
            ],
            workdir / f"{name}.log",
            http,
        )  # fmt: skip
        stack.callback(process.stop)
        processes.append(process)
    transport = WorldTransport(logins.world.host, logins.world.port, protocol=protocol, login=logins.world)
    transport.connect(topics.world_subscriptions())
    stack.callback(transport.close)
    return _Services(broker_version, protocol, processes, transport, broker, proxy)


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
    engines: int = 1,
    faults: Sequence[Fault] = (),
    audit: bool | None = None,
    protocol: str = "auto",
    http: EngineHttp | None = None,
    on_http: Callable[[str], None] | None = None,
) -> RunOutcome:
    """Run ``scenario`` through a broker and the engine process (``engines`` partitions of it),
    injecting ``faults`` (:mod:`harness.faults`) at their simulated times; stop everything started, always.

    ``protocol`` is an external broker's MQTT version (``auto``: 5 if it speaks it, else 3.1.1).
    ``http``: the engine serves its HTTP API and console while the run lasts; ``on_http`` is told its URL.
    ``audit`` (default: when there are faults) accounts for every message the world sent against
    the engine's record of what it took in (:mod:`harness.accounting`), in the result's ``accounting``."""
    audit = bool(faults) if audit is None else audit
    if broker_url is not None and any(f.kind.startswith("broker") for f in faults):
        raise HarnessError("broker faults need the run's own broker: drop --broker")
    topics = topics or Topics(shards=engines)
    if topics.shards != engines:
        raise HarnessError(f"{engines} engine partitions need topics in {engines} shards, not {topics.shards}")
    try:
        check_partitionable(
            msgspec.structs.replace(scenario.engine, policy=policy or scenario.engine.policy),
            Partition(0, engines, engines),
        )
    except PartitionError as exc:
        raise HarnessError(f"--engines {engines}: {exc}") from exc
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
            engines=engines,
            proxied=any(f.kind == "partition" for f in faults),
            engine_args=["--audit"] if audit else [],
            mqtt=protocol,
            http=http,
        )
        transport = services.transport
        barrier = _Barrier(transport, topics, services.engines, step_timeout_s)
        barrier.accounting = Accounting(topics) if audit else None
        chaos = _Chaos(faults, services)
        stack.callback(chaos.settle)
        barrier.handshake()
        if http is not None and on_http is not None:  # the engine serves before it subscribes: it listens now
            on_http(services.engine.url())
        started = time.monotonic()
        end = scenario.duration_s
        steps = math.ceil(end / scenario.sync_interval_s)
        for k in range(1, steps + 1):
            t = min(k * scenario.sync_interval_s, end)
            messages = world.advance(t)
            chaos.inject_due(t, before_send=True)  # an engine frozen before the step goes out
            barrier.send(messages)
            chaos.inject_due(t)  # the step's messages are on their way, its clock not yet
            for message in barrier.sync(t, world.published, final=k == steps, shards=world.published_by_shard.tolist()):
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
        mode={"mode": "event", "engines": engines},
    )
    if barrier.foreign:  # undecodable messages on the engine's topics: dropped, not acted on
        result["messages"]["foreign_dropped"] = dict(sorted(barrier.foreign.items()))
    if transport.broker_drops.total:  # the broker's own count: a step it dropped was sent again
        result["messages"]["broker_dropped"] = transport.broker_drops.total
    if barrier.repeated:  # the engine's outputs delivered again after a reconnect: taken once
        result["messages"]["engine_outputs_repeated"] = barrier.repeated
    if barrier.accounting is not None:  # the engines have stopped: their records are complete
        dbs = (workdir / f"{_engine_name(k, engines)}.sqlite" for k in range(engines))
        tally = barrier.accounting.check(read_effects(dbs))
        result["accounting"] = tally.as_dict()
    if faults:
        result["chaos"] = chaos.report()
    if engines > 1:  # how the work split: each partition's own counts
        result["engine_partitions"] = [
            {"partition": k, **{name: ack.stats.get(name, 0) for name in _PARTITION_COUNTS}}
            for k, ack in sorted(barrier.acks.items())
        ]
    return RunOutcome(result, world.records, workdir)
