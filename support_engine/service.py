"""The engine as a service: transport in, core, storage, transport out.

Event clock (the harness): messages wait until the world's ``clock(t, published)`` says every
message stamped ≤ t is out and all of them are here; then they are handled in a deterministic order
(timestamp, kind, source, seq), committed, and the engine's outputs are published before
``ack(t)``. While they wait, received messages are written to the database's inbox in groups and
acknowledged once committed, so a step may hold any number of messages (the broker's in-flight
window does not bound it) and a restarted engine finds them there. Wall clock (production, live runs): messages are handled as they come, committed
in groups every few milliseconds, then acknowledged; the timers run at least every
``_TIMER_TICK_S`` even when nothing arrives, and a ``clock`` message is answered at once with the
counters (nothing is held back for it). Wall-clock ``now`` is ``(time.time() - time_origin) * speed``:
Unix time by default, a world's simulated seconds when a live run sets the origin and the speed.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

import msgspec

from contracts import codec
from contracts.codec import BatchView
from contracts.engine_config import EngineConfig
from contracts.errors import PayloadError, TopicError
from contracts.messages import Clock, ClockAck, DeadLetter, DeviceRecord, IngestAck, Message, Telemetry
from contracts.topics import Kind, Topics
from support_engine.core.actions import Action, CreateWorkOrder, Notify, OrderConsumable, SendCommand
from support_engine.core.engine import Engine, Snapshot
from support_engine.core.ledger import Key, Ledger, key_of
from support_engine.errors import ConfigError
from support_engine.metrics import EngineMetrics
from support_engine.mqtt_transport import Delivery, MqttTransport
from support_engine.ratelimit import RateLimiter
from support_engine.storage import Storage

__all__ = ["EngineService"]

log = logging.getLogger("sot.engine")

ClockMode = Literal["event", "wall"]
_KIND_ORDER = {Kind.BATCH: 0, Kind.TELEMETRY: 1, Kind.EVENT: 2, Kind.CONTACT: 3, Kind.FIELD_STATUS: 4}
_GROUP_COMMIT_S = 0.02
_HOLD_GROUP = 500  # event time: write and acknowledge received messages at least this often
_TIMER_TICK_S = 0.1
_RECEIPT_KINDS: dict[str, Literal["telemetry", "batch", "event"]] = {
    "telemetry": "telemetry",
    "batch": "batch",
    "event": "event",
}


@dataclass
class _Pending:
    order: tuple[float, int, str, int, int]
    message: Message | BatchView
    key: Key | None


@dataclass
class _Step:
    pending: list[_Pending] = field(default_factory=list)
    acks: list[Delivery] = field(default_factory=list)
    keys: set[Key] = field(default_factory=set)
    unheld: list[Delivery] = field(default_factory=list)  # received, to be written to the inbox
    clocks: list[Delivery] = field(default_factory=list)  # acknowledged once the step is handled
    records: list[DeviceRecord] = field(default_factory=list)  # registry entries, applied first


class EngineService:
    """Runs one engine against one broker until :meth:`stop` is called."""

    def __init__(
        self,
        config: EngineConfig,
        transport: MqttTransport,
        storage: Storage,
        *,
        topics: Topics | None = None,
        clock: ClockMode = "event",
        time_origin: float = 0.0,
        speed: float = 1.0,
        metrics: EngineMetrics | None = None,
        ack_every: int = 0,
    ) -> None:
        if not (math.isfinite(time_origin) and math.isfinite(speed) and speed > 0):
            raise ConfigError(f"wall clock needs a finite origin and a speed > 0, not {time_origin!r} and {speed!r}")
        self.core = Engine(config)
        self.transport = transport
        self.storage = storage
        self.topics = topics or Topics()
        self.clock = clock
        self.time_origin, self.speed = time_origin, speed
        self.metrics = metrics
        if ack_every < 0:
            raise ConfigError(f"ack_every must be >= 0 (0: no ingest receipts), not {ack_every}")
        self.ack_every = ack_every
        limit = config.rate_limit
        self.limiter = RateLimiter(limit.per_s, limit.burst) if limit is not None else None
        self.ledger = Ledger(storage.ledger_keys())
        saved = storage.counters()
        self.counters: Counter[str] = Counter({k: v for k, v in saved.items() if k.startswith("msg_")})
        for device, record, reported, desired, offline in storage.devices():  # the registry and the twins' state
            if record is not None:
                self.core.provision([record])
            self.core.restore_twins(device, reported, desired, offline)
        state = storage.state()
        if state is not None:  # a restart: open cases, alerts and pending commands as they were committed
            core_stats = {k: v for k, v in saved.items() if not k.startswith("msg_")}
            self.core.restore(msgspec.json.decode(state, type=Snapshot), core_stats)
            log.info("resumed %d open cases from the database", len(self.core.open_case_of))
        self._step = _Step()
        self._clock: Clock | None = None
        self._stop = threading.Event()
        self._arrival = 0
        held = storage.inbox() if clock == "event" else []
        for topic, payload in held:  # received and acknowledged before a restart, not yet handled
            self._receive(Delivery(topic, payload, 0, 0, False), recovered=True)
        if held:
            log.info("resumed %d held messages from the inbox", len(held))

    @property
    def received(self) -> int:
        """Unique messages received (ingested + rejected), as the world's clock counts them."""
        return self.counters["msg_ingested"] + self.counters["msg_rejected"]

    def provision(self, records: list[DeviceRecord]) -> None:
        """Register devices now (a registry file at start): applied, stored and committed."""
        actions = self.core.provision(records, ts=self.wall_now() if self.clock == "wall" else 0.0)
        self.storage.apply(actions)
        self.storage.set_counters(self._all_counters())
        self.storage.commit()

    def stop(self) -> None:
        self._stop.set()

    def wall_now(self) -> float:
        """The wall clock in engine seconds: ``(time.time() - time_origin) * speed``."""
        return (time.time() - self.time_origin) * self.speed

    def run(self) -> None:
        """Connect, subscribe, and serve until stopped."""
        self.transport.connect()
        if self.transport.version == "5" and not self.transport.session_present and self.ledger:
            self.counters["broker_session_lost"] += 1
            log.error("broker has no session for us although we ingested before: queued messages may be lost")
        self.transport.subscribe(self.topics.engine_subscriptions())
        log.info(
            "engine connected (MQTT %s, session_present=%s)", self.transport.version, self.transport.session_present
        )
        last_commit = time.monotonic()
        try:
            while not self._stop.is_set():
                try:
                    delivery = self.transport.inbox.get(timeout=0.05)
                except queue.Empty:
                    delivery = None
                if delivery is not None:
                    self._receive(delivery)
                if self.clock == "event":
                    self._maybe_step()
                    step = self._step
                    if step.unheld and (self.transport.inbox.empty() or len(step.unheld) >= _HOLD_GROUP):
                        self._hold()
                    continue
                since = time.monotonic() - last_commit
                # Commit as soon as nothing else is waiting; under load, group commits.
                batch_due = self._step.acks and (
                    self.transport.inbox.empty() or since > _GROUP_COMMIT_S or len(self._step.acks) > 1000
                )
                if self._clock is not None:
                    self._answer_clock(self._clock)
                    last_commit = time.monotonic()
                elif batch_due or since > _TIMER_TICK_S:
                    self._flush(now=self.wall_now())
                    last_commit = time.monotonic()
        finally:
            self.storage.set_counters(self._all_counters())
            self.storage.commit()

    # -- intake ---------------------------------------------------------------------------------
    def _hold(self) -> None:
        """Write received messages to the inbox, commit, and acknowledge them (a group commit)."""
        step = self._step
        self.storage.hold((d.topic, d.payload) for d in step.unheld)
        self.storage.set_counters(self._all_counters())
        self.storage.commit()
        for d in [*step.unheld, *step.acks]:
            self.transport.ack(d.mid, d.qos)
        step.unheld, step.acks = [], []
        if self.metrics is not None:
            self.metrics.counted(self._all_counters())

    def _receive(self, d: Delivery, recovered: bool = False) -> None:
        try:
            kind, key = self.topics.parse(d.topic)
        except TopicError as exc:
            self._reject(d, "topic", str(exc))
            return
        if kind is Kind.REGISTRY:  # the operator's, not the fleet's: not counted among device messages
            try:
                record = codec.decode(kind, d.payload, key=key)
            except PayloadError as exc:
                self._reject(d, exc.reason, exc.detail)
                return
            assert isinstance(record, DeviceRecord)
            self.counters["registry_received"] += 1
            self._step.records.append(record)
            self._step.acks.append(d)
            return
        if kind is Kind.CLOCK:
            try:
                clock = codec.decode(kind, d.payload)
            except PayloadError as exc:
                self._reject(d, exc.reason, exc.detail)
                return
            assert isinstance(clock, Clock)
            self._clock = clock
            self._step.clocks.append(d)
            return
        try:
            message: Message | BatchView = (
                codec.decode_batch(d.payload, key=key) if kind is Kind.BATCH else codec.decode(kind, d.payload, key=key)
            )
        except PayloadError as exc:
            self._reject(d, exc.reason, exc.detail)
            return
        dedup = key_of(message)
        if self.limiter is not None and dedup is not None and dedup[0] in _RECEIPT_KINDS:
            # Message time in event time (the same stream is limited the same way every run), arrival on the wall clock.
            now = float(message.ts) if self.clock == "event" else time.monotonic()  # type: ignore[union-attr]
            if not self.limiter.allow(dedup[1], now):
                self._reject(d, "rate_limited", f"{dedup[1]} sent more than {self.limiter.per_s:g}/s")
                return
        if dedup is not None and (dedup in self.ledger or dedup in self._step.keys):
            self.counters["msg_duplicates"] += 1
            self._step.acks.append(d)
            return
        if dedup is not None:
            self._step.keys.add(dedup)
        if not recovered:  # a recovered message was counted before the restart
            self.counters["msg_ingested"] += 1
        self._arrival += 1
        source = dedup[1] if dedup else ""
        seq = dedup[3] if dedup else 0
        ts = float(message.ts)  # type: ignore[union-attr]  # every ingested kind carries ts
        order = (ts, _KIND_ORDER.get(kind, 9), source, seq, self._arrival if self.clock == "wall" else 0)
        self._step.pending.append(_Pending(order, message, dedup))
        if self.clock == "event" and not recovered:
            self._step.unheld.append(d)
        elif not recovered:
            self._step.acks.append(d)

    def _reject(self, d: Delivery, reason: str, detail: str) -> None:
        self.counters["msg_rejected"] += 1
        self.counters[f"msg_rejected_{reason}"] += 1
        log.warning("rejected message on %s: %s (%s)", d.topic, reason, detail[:200])
        self.storage.dead_letter(d.topic, reason, detail[:1000], d.payload[:65536])
        letter = DeadLetter(
            topic=d.topic[:1000], reason=reason, detail=detail[:1000], payload_hex=d.payload[:200].hex()
        )
        self.transport.publish(self.topics.dead_letter, codec.encode(letter), qos=0)
        self._step.acks.append(d)

    # -- processing -----------------------------------------------------------------------------
    def _maybe_step(self) -> None:
        clock = self._clock
        if clock is None or self.received < clock.published:
            return
        self._answer_clock(clock)

    def _answer_clock(self, clock: Clock) -> None:
        """Handle what is pending and publish ``ack(clock.t)`` with the counters.

        In event time the caller has waited for every counted message and ``now`` is the clock's
        ``t``; on the wall clock nothing waits and ``now`` is the wall clock.
        """
        self._clock = None
        self._flush(now=clock.t if self.clock == "event" else self.wall_now())
        ack = ClockAck(
            t=clock.t, received=self.received, emitted=self.counters["msg_emitted"], stats=self._all_counters()
        )
        self.transport.publish(self.topics.clock_ack, codec.encode(ack))

    def _flush(self, now: float) -> None:
        """Handle pending messages in order, run timers, commit, acknowledge, publish the outputs."""
        step, self._step = self._step, _Step()
        started = time.monotonic()
        step.pending.sort(key=lambda p: p.order)
        actions: list[Action] = self.core.provision(step.records, ts=now) if step.records else []
        readings: list[Telemetry] = []  # consecutive single readings go to the twins as one column batch
        for p in step.pending:
            if isinstance(p.message, Telemetry):
                readings.append(p.message)
                continue
            actions += self.core.handle_readings(readings)
            readings = []
            actions += self.core.handle(p.message, p.order[0] if self.clock == "event" else now)
        actions += self.core.handle_readings(readings)
        actions += self.core.advance(now)
        if not (step.pending or step.acks or step.clocks or actions or step.records):
            return  # an idle timer tick: nothing to commit
        self.storage.record_ingest((p.key, p.order[0]) for p in step.pending if p.key is not None)
        for p in step.pending:
            if p.key is not None:
                self.ledger.add(p.key)
        self.storage.apply(actions)
        if actions:
            self.storage.save_state(msgspec.json.encode(self.core.snapshot()))
        outbound = [a for a in actions if isinstance(a, (CreateWorkOrder, Notify, SendCommand, OrderConsumable))]
        self.counters["msg_emitted"] += len(outbound)
        self.storage.set_counters(self._all_counters())
        if self.clock == "event":
            self.storage.release()  # what the inbox held is handled in this very transaction
        self.storage.commit()
        for d in [*step.unheld, *step.acks, *step.clocks]:
            self.transport.ack(d.mid, d.qos)
        for a in outbound:
            self.transport.publish(self._topic_of(a), codec.encode(a.message))
        if self.ack_every:
            self._receipts(step.pending)
        if self.metrics is not None:
            ts, step_s = [p.order[0] for p in step.pending], time.monotonic() - started
            self.metrics.committed(self.core, self._all_counters(), outbound, ts=ts, now=now, step_s=step_s)

    def _receipts(self, handled: list[_Pending]) -> None:
        """Publish an :class:`IngestAck` for every committed device message whose seq is a multiple of
        ``ack_every`` (load tests sample publish → ingest latency from them)."""
        committed = self.wall_now()
        for p in handled:
            if p.key is None or p.key[0] not in _RECEIPT_KINDS or p.key[3] % self.ack_every:
                continue
            kind, source, boot_id, seq = p.key
            receipt = IngestAck(
                kind=_RECEIPT_KINDS[kind], source=source, boot_id=boot_id, seq=seq, ts=p.order[0], committed_s=committed
            )
            self.transport.publish(self.topics.ingest_ack, codec.encode(receipt), qos=0)

    def _topic_of(self, action: CreateWorkOrder | Notify | SendCommand | OrderConsumable) -> str:
        if isinstance(action, CreateWorkOrder):
            return self.topics.work_order
        if isinstance(action, Notify):
            return self.topics.notify
        if isinstance(action, SendCommand):
            return self.topics.command(action.message.device_id)
        return self.topics.order

    def _all_counters(self) -> dict[str, int]:
        merged = Counter(self.core.stats)
        merged.update(self.counters)
        return dict(sorted(merged.items()))
