"""The engine as a service: transport in, core, storage, transport out.

Event clock (the harness): messages wait until the world's ``clock(t, published)`` says every
message stamped ≤ t is out and all of them are here; then they are handled in a deterministic order
(timestamp, kind, source, seq), committed, and the engine's outputs are published before
``ack(t)``. While they wait, received messages are held in memory, un-acknowledged, and
acknowledged once the step that handled them is committed; the broker redelivers them if the engine
dies first. A step may hold more messages than the broker hands out un-acknowledged (its in-flight
window: the MQTT 5 Receive Maximum the transport asked for): before the window fills, or when
nothing more comes while messages are held, the held messages are *spilled*: written to the
database's inbox, committed and acknowledged, so that no step can stall the broker and a restarted
engine finds them there. When the window is unknown (MQTT 3.1.1) every group of received messages
is spilled so. Wall clock (production, live runs): messages are handled as they come and committed
in groups, then acknowledged; a group is committed as soon as nothing else is waiting, when its
first message has waited ``_GROUP_COMMIT_S``, or when it holds ``_GROUP_MAX`` messages (fewer than
the broker's window); the timers run at least every ``_TIMER_TICK_S`` even when nothing arrives, and
a ``clock`` message is answered at once with the counters (nothing is held back for it). Wall-clock
``now`` is ``(time.time() - time_origin) * speed``: Unix time by default, a world's simulated seconds
when a live run sets the origin and the speed.

Either way an acknowledged message is a committed one: its effects, or its copy in the inbox.

Remote garbage never stops the stream: a message refused (undecodable, out of range, over the
configuration's ``limits``) is counted by reason, dead-lettered and acknowledged with the next
commit; so is a message whose handling raises (``handler_error``), in intake or in its step, so
that the broker never redelivers it into a crash loop.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

import msgspec

from contracts import codec
from contracts.codec import BatchDecoder, BatchView
from contracts.engine_config import EngineConfig
from contracts.errors import PartitionError, PayloadError, TopicError
from contracts.messages import Clock, ClockAck, DeadLetter, DeviceRecord, IngestAck, Message, Telemetry
from contracts.partitions import Partition, check_partitionable
from contracts.topics import Kind, Topics
from support_engine.core.actions import Action, CreateWorkOrder, Notify, OrderConsumable, Provisioned, SendCommand
from support_engine.core.engine import Engine
from support_engine.core.ledger import Key, Ledger, key_of
from support_engine.errors import ConfigError
from support_engine.inspection import restore
from support_engine.intake import Budgets, over_limits
from support_engine.metrics import EngineMetrics
from support_engine.ratelimit import RateLimiter
from support_engine.storage import Storage
from support_engine.transport import Delivery, Transport
from support_engine.watch import LossWatch

__all__ = ["EngineService"]

log = logging.getLogger("sot.engine")

ClockMode = Literal["event", "wall"]
_KIND_ORDER = {Kind.BATCH: 0, Kind.TELEMETRY: 1, Kind.EVENT: 2, Kind.CONTACT: 3, Kind.FIELD_STATUS: 4}
_GROUP_COMMIT_S = 0.02  # wall clock: the longest a message waits for its group's commit under load
_GROUP_MAX = 1000  # wall clock: the most messages in one commit group (and fewer than the broker's window)
_IDLE_S = 0.05  # nothing came for this long: commit or spill what is waiting
_SPILL_GROUP = 500  # event time, broker window unknown: spill received messages at least this often
_TIMER_TICK_S = 0.1
_SHARDED = frozenset({Kind.TELEMETRY, Kind.BATCH, Kind.EVENT, Kind.CONTACT, Kind.FIELD_STATUS, Kind.REGISTRY})
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
    delivery: Delivery  # what came: dead-lettered as is if its handling raises


@dataclass
class _Step:
    pending: list[_Pending] = field(default_factory=list)
    acks: list[Delivery] = field(default_factory=list)  # acknowledged at the next commit
    held: list[Delivery] = field(default_factory=list)  # event time: counted, acknowledged at the step's commit
    clocks: list[Delivery] = field(default_factory=list)  # acknowledged once the step is handled
    records: list[DeviceRecord] = field(default_factory=list)  # registry entries, applied first
    again: list[tuple[Key, float]] = field(default_factory=list)  # copies of committed messages: receipted again
    opened: float | None = None  # wall clock: when the group's first message came (time.monotonic)

    @property
    def unacked(self) -> int:
        return len(self.acks) + len(self.held) + len(self.clocks)


def _limit_for(window: int | None) -> int:
    """Un-acknowledged messages the engine keeps at most, for a broker window of ``window`` (0: unknown).

    A tenth of the window (at least one) is left free, so that the step's clock can still come.
    """
    return 0 if window is None else max(window - max(window // 10, 1), 1)


class EngineService:
    """Runs one engine against one broker until :meth:`stop` is called."""

    def __init__(
        self,
        config: EngineConfig,
        transport: Transport,
        storage: Storage,
        *,
        topics: Topics | None = None,
        clock: ClockMode = "event",
        time_origin: float = 0.0,
        speed: float = 1.0,
        metrics: EngineMetrics | None = None,
        ack_every: int = 0,
        partition: Partition | None = None,
        audit: bool = False,
    ) -> None:
        """``audit``: record the key of every message taken in (:meth:`Storage.audit`), for fault tests."""
        if not (math.isfinite(time_origin) and math.isfinite(speed) and speed > 0):
            raise ConfigError(f"wall clock needs a finite origin and a speed > 0, not {time_origin!r} and {speed!r}")
        self.partition = partition or Partition()
        try:
            check_partitionable(config, self.partition)
        except PartitionError as exc:
            raise ConfigError(str(exc)) from exc
        self.topics = topics or Topics(shards=self.partition.shards)
        if self.topics.shards != self.partition.shards:
            raise ConfigError(f"the topics have {self.topics.shards} shards and the partition {self.partition.shards}")
        self.core = Engine(config, id_scope=self.partition.id_scope)
        self.transport = transport
        self.storage = storage
        self.clock = clock
        self.time_origin, self.speed = time_origin, speed
        self.metrics = metrics
        if ack_every < 0:
            raise ConfigError(f"ack_every must be >= 0 (0: no ingest receipts), not {ack_every}")
        self.ack_every = ack_every
        self.audit = audit
        limit = config.rate_limit
        self.limiter = RateLimiter(limit.per_s, limit.burst) if limit is not None else None
        self.limits = config.limits
        self.budgets = Budgets(self.core, config)
        self._batches = BatchDecoder()  # a gateway's roster is checked when it changes, not in every batch
        self.ledger = Ledger()
        self.ledger.restore(storage.ledger())
        state = storage.state()  # a restart: open cases, alerts and pending commands as they were committed
        self.counters: Counter[str] = Counter(restore(self.core, storage.counters(), storage.devices(), state))
        if state is not None:
            log.info("resumed %d open cases from the database", len(self.core.open_case_of))
        self.subscribed = False  # ready: connected and subscribed once
        self._answered_t: float | None = None  # event time: the last clock answered, and what its step sent
        self._answered_outputs: list[tuple[str, bytes]] = []
        self._sessions_lost = 0  # the transport's count, as last seen
        self.loss = LossWatch()  # the broker's dropped count and sequence gaps, logged as they grow
        self._drops_seen = 0
        self._missing_seen = self.core.stats.get("readings_missing", 0)
        self._next_watch = 0.0
        self._step = _Step()
        self._clock: Clock | None = None
        self._stop = threading.Event()
        self._arrival = 0
        self._hold_limit = 0  # set on connecting, from the broker's window
        self._group_max = _GROUP_MAX
        self._last_commit = time.monotonic()
        self.spills = 0  # event time: times held messages went to the inbox
        held = storage.inbox() if clock == "event" else []
        self._spilled = bool(held)  # the inbox has rows that the next step's commit must delete
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
        self.provision_chunks([records])

    def provision_chunks(self, chunks: Iterable[list[DeviceRecord]]) -> None:
        """Register devices a list at a time (:func:`~support_engine.registry.iter_devices`): each
        applied and stored as it comes, all committed once at the end, as one :meth:`provision` of
        them all would (an exception before the end leaves nothing committed)."""
        ts = self.wall_now() if self.clock == "wall" else 0.0
        part = self.partition
        for chunk in chunks:
            actions = self.core.provision(chunk if part.alone else [r for r in chunk if part.owns_record(r)], ts=ts)
            # Registry rows, then twin rows: two runs of one statement each. The rows come out the
            # same: the two statements set different columns, and a device's row is made by its first.
            self.storage.apply(sorted(actions, key=lambda a: not isinstance(a, Provisioned)))
        self.storage.set_counters(self._all_counters())
        self.storage.commit()

    def stop(self) -> None:
        self._stop.set()

    def wall_now(self) -> float:
        """The wall clock in engine seconds: ``(time.time() - time_origin) * speed``."""
        return (time.time() - self.time_origin) * self.speed

    def run(self) -> None:
        """Connect, subscribe, and serve until stopped."""
        self.start()
        try:
            while not self._stop.is_set():
                self.poll()
        finally:
            self.finish()

    def start(self) -> None:
        """Connect and subscribe; learn the broker's window (what :meth:`run` does first)."""
        self.transport.connect()
        if self.transport.version == "5" and not self.transport.session_present and self.ledger:
            self.counters["broker_session_lost"] += 1
            log.error("broker has no session for us although we ingested before: queued messages may be lost")
        self.transport.subscribe(self.topics.engine_subscriptions(self.partition.owned))
        self.subscribed = True
        window = self.transport.receive_window
        self._hold_limit = _limit_for(window)
        self._group_max = min(_GROUP_MAX, self._hold_limit) if self._hold_limit else _GROUP_MAX
        self._last_commit = time.monotonic()
        log.info(
            "engine connected (MQTT %s, session_present=%s, window %s, partition %d/%d of %d shards)",
            self.transport.version,
            self.transport.session_present,
            "unknown" if window is None else window,
            self.partition.index,
            self.partition.count,
            self.partition.shards,
        )

    def poll(self, timeout_s: float = _IDLE_S) -> None:
        """Take the next delivery (waiting up to ``timeout_s``), then do what is due: a step, a spill, a commit."""
        inbox = self.transport.inbox
        try:
            delivery: Delivery | None = inbox.get(timeout=timeout_s) if timeout_s > 0 else inbox.get_nowait()
        except queue.Empty:
            delivery = None
        if delivery is not None:
            self._receive(delivery)
        lost = getattr(self.transport, "sessions_lost", 0)
        if lost != self._sessions_lost:  # reconnected to a broker that had lost our session
            self.counters["broker_session_lost"] += lost - self._sessions_lost
            self._sessions_lost = lost
            log.error(
                "reconnected to a broker that had lost our session: subscribed again; queued messages may be lost"
            )
        if time.monotonic() >= self._next_watch:
            self._watch_loss()
        if self.clock == "event":
            self._maybe_step()
            if (self._step.held or self._step.acks) and self._spill_due(idle=delivery is None):
                self._spill()
            return
        if self._clock is not None:
            self._answer_clock(self._clock)
            self._last_commit = time.monotonic()
        elif self._group_due() or time.monotonic() - self._last_commit > _TIMER_TICK_S:
            self._flush(now=self.wall_now())
            self._last_commit = time.monotonic()

    def _watch_loss(self) -> None:
        """Twice a second: what the broker says it dropped, and new sequence gaps, logged and counted."""
        self._next_watch = time.monotonic() + 0.5
        drops = getattr(self.transport, "broker_drops", None)
        if drops is not None and drops.total != self._drops_seen:
            grown, self._drops_seen = drops.total - self._drops_seen, drops.total
            self.counters["broker_dropped"] += grown
            self.loss.dropped(grown, drops.total)
            if self.metrics is not None:
                self.metrics.counted(self._all_counters())
        missing = self.core.stats.get("readings_missing", 0)
        if missing != self._missing_seen:
            twins = self.core.twins
            gap = twins.last_gap
            example = None if gap is None else (twins.ids[gap[0]], gap[1], gap[2])
            self.loss.gaps(missing - self._missing_seen, example)
            self._missing_seen = missing

    def held_up(self) -> str | None:
        """What holds the engine up beyond its database, for ``/healthz``: a broker dropping messages."""
        return self.loss.held_up()

    def finish(self) -> None:
        """Commit what is counted (what :meth:`run` does last); event time, held messages go to the
        inbox and are acknowledged (a restart finds them there)."""
        if self.clock == "event" and (self._step.held or self._step.acks):
            self._spill()
        else:
            self.storage.set_counters(self._all_counters())
            self.storage.commit()

    # -- intake ---------------------------------------------------------------------------------
    def _spill_due(self, *, idle: bool) -> bool:
        """Event time: whether the held messages must go to the inbox now.

        With a known window: when the un-acknowledged messages reach the hold limit, or when nothing
        came for ``_IDLE_S`` (a broker whose window is smaller than asked for has stopped sending).
        With an unknown one: whenever nothing else is waiting, and every ``_SPILL_GROUP`` messages.
        """
        step = self._step
        if self._hold_limit:
            return idle or step.unacked >= self._hold_limit
        return self.transport.inbox.empty() or len(step.held) >= _SPILL_GROUP

    def _spill(self) -> None:
        """Write the held messages to the inbox, commit, and acknowledge them, and the duplicates and
        rejects waiting (their counts and dead letters are in this commit)."""
        step = self._step
        self.storage.hold((d.topic, d.payload) for d in step.held)
        self.storage.set_counters(self._all_counters())
        self.storage.commit()
        self._spilled = True
        self.spills += 1
        for d in [*step.held, *step.acks]:
            self.transport.ack(d.mid, d.qos)
        step.held, step.acks = [], []
        if self.metrics is not None:
            self.metrics.counted(self._all_counters())

    def _group_due(self) -> bool:
        """Wall clock: whether the open commit group must be committed now."""
        step = self._step
        if step.opened is None:
            return False
        return (
            self.transport.inbox.empty()
            or len(step.acks) >= self._group_max
            or time.monotonic() - step.opened >= _GROUP_COMMIT_S
        )

    def _receive(self, d: Delivery, recovered: bool = False) -> None:
        """Take ``d`` in, or refuse it by reason; a message whose intake raises is refused as ``handler_error``."""
        if len(d.payload) > self.limits.max_payload_bytes:
            self._reject(d, "too_large", f"{len(d.payload)} bytes > {self.limits.max_payload_bytes}")
            return
        try:
            self._intake(d, recovered)
        except Exception as exc:  # our bug or an input no check foresaw: never a crash loop
            log.exception("intake of a message on %s raised", d.topic)
            self._reject(d, "handler_error", f"{type(exc).__name__}: {exc}")

    def _intake(self, d: Delivery, recovered: bool) -> None:
        """:meth:`_receive`'s work; everything that can raise comes before the message is held."""
        try:
            kind, key, shard = self.topics.parse(d.topic)
        except TopicError as exc:
            self._reject(d, "topic", str(exc))
            return
        if self.topics.shards > 1 and kind in _SHARDED and not self._ours(kind, key, shard):
            self._reject(
                d, "topic", f"topic {d.topic!r} is not on one of this partition's shards {self.partition.owned}"
            )
            return
        if kind is Kind.REGISTRY:  # the operator's, not the fleet's: not counted among device messages
            try:
                record = codec.decode(kind, d.payload, key=key)
            except PayloadError as exc:
                self._reject(d, exc.reason, exc.detail)
                return
            assert isinstance(record, DeviceRecord)
            self._step.records.append(record)
            if not recovered:
                self.counters["registry_received"] += 1
                self._take(d)
            return
        if kind is Kind.CLOCK:
            try:
                clock = codec.decode(kind, d.payload)
            except PayloadError as exc:
                self._reject(d, exc.reason, exc.detail)
                return
            assert isinstance(clock, Clock)
            if clock.shards and len(clock.shards) != self.partition.shards:
                detail = f"the world counts {len(clock.shards)} shards, this engine {self.partition.shards}"
                self._reject(d, "shards", f"{detail}: start the engine with the world's number of shards")
                return
            self._clock = clock
            self._step.clocks.append(d)
            return
        try:
            message: Message | BatchView = (
                self._batches.decode(d.payload, key=key)
                if kind is Kind.BATCH
                else codec.decode(kind, d.payload, key=key)
            )
        except PayloadError as exc:
            self._reject(d, exc.reason, exc.detail)
            return
        ts = float(message.ts)  # type: ignore[union-attr]  # every ingested kind carries ts
        ahead = ts - self.wall_now() if self.clock == "wall" else None
        refused = over_limits(self.limits, message, ahead, self.speed)
        dedup = key_of(message)
        if refused is None and self.limiter is not None and dedup is not None and dedup[0] in _RECEIPT_KINDS:
            # Message time in event time (the same stream is limited the same way every run), arrival on the wall clock.
            now = ts if self.clock == "event" else time.monotonic()
            if not self.limiter.allow(dedup[1], now):
                refused = "rate_limited", f"{dedup[1]} sent more than {self.limiter.per_s:g}/s"
        refused = refused or self.budgets.take(message)
        if refused is not None:
            if kind is Kind.BATCH:
                self._batches.forget(key)  # a refused roster is not kept
            self._reject(d, *refused)
            return
        if dedup is not None:
            verdict = self.ledger.take(dedup, ts)
            if verdict != "new":
                self.counters["msg_duplicates"] += 1
                if verdict == "stale":  # older than the ledger's window: taken for a duplicate
                    self.counters["msg_duplicates_stale"] += 1
                elif self.ack_every:  # its receipt may be what was lost: a device waiting for it gets it now
                    self._step.again.append((dedup, ts))
                self._acknowledge_later(d)
                return
        if not recovered:  # a recovered message was counted before the restart
            self.counters["msg_ingested"] += 1
        self._arrival += 1
        source = dedup[1] if dedup else ""
        seq = dedup[3] if dedup else 0
        order = (ts, _KIND_ORDER.get(kind, 9), source, seq, self._arrival if self.clock == "wall" else 0)
        self._step.pending.append(_Pending(order, message, dedup, d))
        if not recovered:
            self._take(d)

    def _ours(self, kind: Kind, key: str, shard: int) -> bool:
        """Whether a device topic is this partition's: its shard is, and a gateway publishes on its own."""
        return self.partition.owns(shard) and (kind is not Kind.BATCH or self.topics.shard_of(key) == shard)

    def _take(self, d: Delivery) -> None:
        """``d`` will have an effect: event time, hold it until its step's commit; wall clock, its group's."""
        if self.clock == "event":
            self._step.held.append(d)
        else:
            self._acknowledge_later(d)

    def _acknowledge_later(self, d: Delivery) -> None:
        """Acknowledge ``d`` at the next commit (wall clock: it opens a commit group if none is open)."""
        step = self._step
        if step.opened is None and self.clock == "wall":
            step.opened = time.monotonic()
        step.acks.append(d)

    def _reject(self, d: Delivery, reason: str, detail: str) -> None:
        """Refuse ``d``: count it by reason, dead-letter it, acknowledge it at the next commit."""
        self.counters["msg_rejected"] += 1
        self._dead_letter(d, reason, detail)
        self._acknowledge_later(d)

    def _dead_letter(self, d: Delivery, reason: str, detail: str) -> None:
        """Count, store and publish a refusal; its topic and detail without NUL (a text column cannot hold one)."""
        self.counters[f"msg_rejected_{reason}"] += 1
        topic, detail = d.topic[:1000].replace("\x00", "\\0"), detail[:1000].replace("\x00", "\\0")
        log.warning("rejected message on %s: %s (%s)", topic, reason, detail[:200])
        self.storage.dead_letter(topic, reason, detail, d.payload[:65536])
        letter = DeadLetter(topic=topic, reason=reason, detail=detail, payload_hex=d.payload[:200].hex())
        self.transport.publish(self.topics.dead_letter, codec.encode(letter), qos=0)

    def _handler_error(self, p: _Pending, exc: Exception) -> None:
        """A held message whose handling raised: counted as refused instead of taken in, dead-lettered,
        and acknowledged with its step (it is among the step's deliveries, or in the inbox)."""
        log.error("handling a message on %s raised", p.delivery.topic, exc_info=exc)
        self.counters["msg_ingested"] -= 1
        self.counters["msg_rejected"] += 1
        self._dead_letter(p.delivery, "handler_error", f"{type(exc).__name__}: {exc}")

    # -- processing -----------------------------------------------------------------------------
    def _maybe_step(self) -> None:
        clock = self._clock
        if clock is None or self.received < self.partition.expected(clock):
            return
        self._answer_clock(clock)

    def _answer_clock(self, clock: Clock) -> None:
        """Handle what is pending and publish ``ack(clock.t)`` with the counters.

        In event time the caller has waited for every counted message and ``now`` is the clock's
        ``t``; on the wall clock nothing waits and ``now`` is the wall clock.
        """
        self._clock = None
        again = self.clock == "event" and clock.t == self._answered_t
        published = self._flush(now=clock.t if self.clock == "event" else self.wall_now())
        if again:
            # The same clock once more: the world reconnected and sent its step again. The outputs of
            # that step may have reached a broker that has since lost them: send them again (the
            # world takes each once, by id), then the ack.
            for topic, payload in self._answered_outputs:
                self.transport.publish(topic, payload)
            self._answered_outputs += published
        else:
            self._answered_t, self._answered_outputs = clock.t, published
        ack = ClockAck(
            t=clock.t,
            received=self.received,
            emitted=self.counters["msg_emitted"],
            stats=self._all_counters(),
            partition=self.partition.index,
        )
        self.transport.publish(self.topics.clock_ack, codec.encode(ack))

    def _flush(self, now: float) -> list[tuple[str, bytes]]:
        """Handle pending messages in order, run timers, commit, acknowledge, publish the outputs;
        return the outputs published (topic, payload)."""
        step, self._step = self._step, _Step()
        started = time.monotonic()
        step.pending.sort(key=lambda p: p.order)
        actions: list[Action] = self._provision(step.records, now) if step.records else []
        handled: list[_Pending] = []  # the pending messages whose handling did not raise
        readings: list[_Pending] = []  # consecutive single readings go to the twins as one column batch
        for p in step.pending:
            if isinstance(p.message, Telemetry):
                readings.append(p)
                continue
            actions += self._readings(readings, handled)
            readings = []
            actions += self._handle(p, p.order[0] if self.clock == "event" else now, handled)
        actions += self._readings(readings, handled)
        self.budgets.step_done()  # the devices taken in have their twins now
        actions += self.core.advance(now)
        if not (step.pending or step.acks or step.clocks or actions or step.records):
            return []  # an idle timer tick: nothing to commit
        self.storage.record_ledger(self.ledger.drain())  # the streams this step's messages moved
        if self.audit:  # in the same transaction as the effects: a crash loses both or neither
            self.storage.audit(p.key for p in handled if p.key is not None)
        self.storage.apply(actions)
        if actions:
            self.storage.save_state(msgspec.json.encode(self.core.snapshot()))
        outbound = [a for a in actions if isinstance(a, (CreateWorkOrder, Notify, SendCommand, OrderConsumable))]
        self.counters["msg_emitted"] += len(outbound)
        self.storage.set_counters(self._all_counters())
        if self._spilled:
            self.storage.release()  # what the inbox held is handled in this very transaction
            self._spilled = False
        self.storage.commit()
        for d in [*step.held, *step.acks, *step.clocks]:
            self.transport.ack(d.mid, d.qos)
        published = [(self._topic_of(a), codec.encode(a.message)) for a in outbound]
        for topic, payload in published:
            self.transport.publish(topic, payload)
        if self.ack_every:
            self._receipts([(p.key, p.order[0]) for p in handled if p.key is not None] + step.again)
        if self.metrics is not None:
            ts, step_s = [p.order[0] for p in handled], time.monotonic() - started
            self.metrics.committed(self.core, self._all_counters(), outbound, ts=ts, now=now, step_s=step_s)
        return published

    # A message whose handling raises is dead-lettered and the step goes on, before anything is written:
    # what the step commits is every other message's effects and that one's dead letter. The core is
    # not transactional: what the failed call had changed in its state before raising stays (and is
    # in the snapshot committed), and the actions it would have returned are lost; it is a bug to fix,
    # found in the dead letters (`handler_error`) and the log, not a reason to stop the stream.
    def _handle(self, p: _Pending, now: float, handled: list[_Pending]) -> list[Action]:
        """The core's actions for one pending message; none if its handling raises (then dead-lettered)."""
        try:
            actions = self.core.handle(p.message, now)
        except Exception as exc:
            self._handler_error(p, exc)
            return []
        handled.append(p)
        return actions

    def _readings(self, group: list[_Pending], handled: list[_Pending]) -> list[Action]:
        """The core's actions for consecutive single readings, as one batch; if that raises, one at a
        time, so that only the readings that raise on their own are dead-lettered (those handled in
        the failed attempt before it raised may count twice in ``readings``)."""
        if not group:
            return []
        try:
            actions = self.core.handle_readings([p.message for p in group if isinstance(p.message, Telemetry)])
        except Exception as exc:
            if len(group) == 1:
                self._handler_error(group[0], exc)
                return []
            log.error("a batch of %d readings raised; handling them one at a time", len(group), exc_info=exc)
            return [a for p in group for a in self._readings([p], handled)]
        handled += group
        return actions

    def _provision(self, records: list[DeviceRecord], now: float) -> list[Action]:
        """Registry entries' actions; if applying them raises, one at a time, dead-lettering those that
        raise (counted as ``msg_rejected_handler_error`` only: registry entries are not device messages)."""
        try:
            return self.core.provision(records, ts=now)
        except Exception as exc:
            if len(records) > 1:
                return [a for record in records for a in self._provision([record], now)]
            log.error("provisioning %s raised", records[0].device_id, exc_info=exc)
            shard = self.topics.shard_of(records[0].gateway_id or records[0].device_id)
            topic = self.topics.registry(records[0].device_id, shard)
            self._dead_letter(Delivery(topic, codec.encode(records[0]), 0, 0, False), "handler_error", repr(exc))
            return []

    def _receipts(self, committed_keys: list[tuple[Key, float]]) -> None:
        """Publish an :class:`IngestAck` for every committed device message (and every copy of one
        committed before) whose seq is a multiple of ``ack_every``: load tests sample publish → ingest
        latency from them, and devices that keep messages until their receipt resend the others."""
        committed = self.wall_now()
        for key, ts in committed_keys:
            if key[0] not in _RECEIPT_KINDS or key[3] % self.ack_every:
                continue
            kind, source, boot_id, seq = key
            receipt = IngestAck(
                kind=_RECEIPT_KINDS[kind], source=source, boot_id=boot_id, seq=seq, ts=ts, committed_s=committed
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
