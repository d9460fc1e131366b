"""One live run: the world paced in real time against an engine on the wall clock, with no barrier.

The world runs in a ``simpy.rt.RealtimeEnvironment`` at ``factor`` simulated seconds per wall second
and publishes what each short step produced at once; the engine runs with ``--clock wall`` and a
time origin and speed chosen so that its ``now`` is the world's simulated time. Whatever the engine
has sent by the end of a step is handed to the world then, at its current time: answers take effect
within one step (at most a tenth of a wall second) instead of at a barrier. For demos and soak
tests; not reproducible, since the broker's and the machine's timing decide what happens when.

Simulated time 0 is the wall time ``origin``, a few seconds after the engine is started (its
start-up allowance). At the end the runner asks the engine for its counters with a ``clock``
message, which a wall-clock engine answers at once, until it has ingested everything published or
a bounded time has passed.
"""

from __future__ import annotations

import contextlib
import math
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import simpy.rt

from contracts import codec
from contracts.engine_config import Policy
from contracts.errors import PayloadError, TopicError
from contracts.messages import Clock, ClockAck, Message
from contracts.topics import Kind, Topics
from harness.broker import BrokerUrl
from harness.engine_process import EngineHttp, EngineProcess
from harness.errors import HarnessError
from harness.mqtt_transport import WorldTransport
from harness.runner import (
    _OUT_ORDER,
    Progress,
    RunOutcome,
    _Barrier,
    _id_of,
    _prepare,
    _result,
    _start_services,
)
from sim.scenario import Scenario
from sim.world import World

__all__ = ["run_live", "step_s"]

_MAX_STEP_WALL_S = 0.1
_POLL_S = 0.1


def step_s(scenario: Scenario, factor: float) -> float:
    """Simulated seconds per live step: a sync interval, or a tenth of a wall second if shorter."""
    return min(scenario.sync_interval_s, factor * _MAX_STEP_WALL_S)


@dataclass
class _EngineLink:
    """The world's side of a live run: drains the engine's messages without waiting for any."""

    transport: WorldTransport
    topics: Topics
    engine: EngineProcess
    received: int = 0
    acks: int = 0
    last_ack: ClockAck | None = None

    def drain(self, wait_s: float = 0.0) -> list[Message]:
        """Every engine message that has arrived, in a fixed order (time, kind, id).

        Never blocks unless ``wait_s`` is given: then it waits that long for the first message.
        """
        got: list[tuple[Kind, Message]] = []
        inbox = self.transport.inbox
        with contextlib.suppress(queue.Empty):
            topic, payload = inbox.get(timeout=wait_s) if wait_s > 0 else inbox.get_nowait()
            while True:
                self._take(topic, payload, got)
                topic, payload = inbox.get_nowait()
        got.sort(key=lambda x: (x[1].ts, _OUT_ORDER.get(x[0], 9), _id_of(x[1])))  # type: ignore[attr-defined]
        return [m for _, m in got]

    def ask(self, t: float, published: int) -> None:
        """Ask for the engine's counters: a wall-clock engine answers ``clock`` at once."""
        self.transport.publish(self.topics.clock, codec.encode(Clock(t=t, published=published, final=True)))

    def check_engine(self) -> None:
        if not self.engine.alive():
            raise HarnessError(f"the engine process exited unexpectedly; its log ends with:\n{self.engine.log_tail()}")

    def _take(self, topic: str, payload: bytes, into: list[tuple[Kind, Message]]) -> None:
        try:
            kind = self.topics.parse(topic).kind
            message = codec.decode(kind, payload)
        except (TopicError, PayloadError) as exc:
            raise HarnessError(f"the engine sent an undecodable message on {topic}: {exc}") from exc
        if isinstance(message, ClockAck):
            self.last_ack = message
            self.acks += 1
        else:
            into.append((kind, message))
            self.received += 1


def run_live(
    scenario: Scenario,
    *,
    factor: float,
    seed: int | None = None,
    policy: Policy | None = None,
    broker_url: BrokerUrl | None = None,
    broker_kind: str = "auto",
    workdir: Path | None = None,
    topics: Topics | None = None,
    progress: Progress | None = None,
    on_broker: Callable[[str], None] | None = None,
    start_lead_s: float = 2.0,
    catch_up_s: float = 30.0,
    handshake_timeout_s: float = 120.0,
    protocol: str = "auto",
    http: EngineHttp | None = None,
    on_http: Callable[[str], None] | None = None,
) -> RunOutcome:
    """Run ``scenario`` live at ``factor`` simulated seconds per wall second; stop everything started.

    ``start_lead_s`` is the engine's start-up allowance (simulated time 0 is that long after it is
    started; a slower start is caught up). ``catch_up_s`` bounds the wait, after the last step, for
    the engine to ingest everything published and for its answers to arrive. ``protocol``: an
    external broker's MQTT version, and ``http`` and ``on_http`` the engine's HTTP API, as for
    :func:`~harness.runner.run_scenario`.
    """
    if not (math.isfinite(factor) and factor > 0):
        raise ValueError(f"factor must be a finite number > 0, not {factor!r}")
    seed, policy, topics, workdir = _prepare(scenario, seed, policy, topics, workdir)
    env = simpy.rt.RealtimeEnvironment(factor=1.0 / factor, strict=False)
    world = World(scenario, seed=seed, topics=topics, env=env)
    origin = 0.0

    def clock_args() -> list[str]:
        nonlocal origin
        origin = time.time() + start_lead_s
        return ["--clock", "wall", "--time-origin", repr(origin), "--speed", repr(factor)]

    end = scenario.duration_s
    with contextlib.ExitStack() as stack:
        services = _start_services(
            stack,
            workdir=workdir,
            topics=topics,
            broker_url=broker_url,
            broker_kind=broker_kind,
            on_broker=on_broker,
            clock_args=clock_args,
            world=world,
            mqtt=protocol,
            http=http,
        )
        transport = services.transport
        _Barrier(transport, topics, services.engine, handshake_timeout_s).handshake()
        if http is not None and on_http is not None:
            on_http(services.engine.url())
        link = _EngineLink(transport, topics, services.engine)
        # Simulated 0 is wall `origin` for the engine; make it so for the world (which waits, or
        # catches up if the engine took longer than its allowance).
        start_lag_s = max(0.0, time.time() - origin)
        env.real_start = time.monotonic() + (origin - time.time())
        dt = step_s(scenario, factor)
        steps = math.ceil(end / dt)
        for k in range(1, steps + 1):
            t = min(k * dt, end)
            for topic, payload in world.advance(t):
                transport.publish(topic, payload)
            for message in link.drain():
                world.deliver(message)
            if progress is not None:
                progress(t, end)
            if k % 64 == 0:
                link.check_engine()
        paced_s = time.time() - origin
        complete = _catch_up(world, link, end, catch_up_s)
        wall_s = time.time() - origin
    stats = dict(link.last_ack.stats) if link.last_ack else {}
    timing: dict[str, Any] = {
        "wall_s": round(wall_s, 3),
        "expected_wall_s": round(end / factor, 3),
        "paced_s": round(paced_s, 3),
        "catch_up_s": round(wall_s - paced_s, 3),
        "start_lag_s": round(start_lag_s, 3),
        "readings_per_s": round(world.readings / wall_s) if wall_s > 0 else 0,
    }
    result = _result(
        scenario,
        seed=seed,
        policy=policy,
        world=world,
        services=services,
        stats=stats,
        outputs_received=link.received,
        timing=timing,
        mode={"mode": "live", "live_factor": factor, "caught_up": complete},
    )
    return RunOutcome(result, world.records, workdir)


def _catch_up(world: World, link: _EngineLink, end: float, timeout_s: float) -> bool:
    """Until the engine has taken everything and its answers are in (or ``timeout_s``): True if so."""
    transport = link.transport
    deadline = time.monotonic() + timeout_s
    while True:
        for topic, payload in world.advance(world.now):  # anything the last answers made the world say
            transport.publish(topic, payload)
        transport.flush()
        link.ask(end, world.published)
        asked, acks = time.monotonic(), link.acks
        while link.acks == acks and time.monotonic() - asked < _POLL_S:
            for message in link.drain(wait_s=0.02):
                world.deliver(message)
        ack = link.last_ack
        if ack is not None and ack.received >= world.published and link.received >= ack.emitted:
            return True
        if time.monotonic() > deadline:
            return False
        link.check_engine()
