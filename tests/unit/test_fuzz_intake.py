"""Fuzzing the intake: hostile payloads and topics against the decoders and a live in-process engine.

0 crashes: a decoder raises nothing but :class:`PayloadError`; the engine refuses by reason, counts
every message it was handed exactly once (taken in, duplicate, refused, registry entry or clock),
acknowledges all of them, raises nothing and has no ``handler_error`` (that would be a bug caught by
the safety net); and a normal reading after the fuzz is still taken in.

The default run feeds 10,000 payloads (a fixed corpus of boundary integers, huge names, deep
nesting, duplicate keys, NaN/Infinity, far-future times and odd ids in every field of every kind,
then seeded random damage); ``-m fuzz_long`` feeds 200,000 and runs the hypothesis tests longer.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts import EngineConfig, Kind, Topics, codec
from contracts.errors import PayloadError, TopicError
from contracts.messages import ID_PATTERN, Clock, ClockAck, Message
from support_engine.service import EngineService
from support_engine.storage import Storage
from support_engine.transport import MemoryTransport
from tests import strategies as s
from tests.unit.test_engine_hold import CONFIG

TOPICS = Topics("fuzz/v1")
INBOUND = [Kind.TELEMETRY, Kind.BATCH, Kind.EVENT, Kind.CONTACT, Kind.FIELD_STATUS, Kind.REGISTRY, Kind.CLOCK]
"""What the engine subscribes to."""
FUZZ_CONFIG = msgspec.structs.replace(
    CONFIG,
    fault_codes={"E1": "cooling"},
    symptoms={"warm": "cooling"},
    limits=msgspec.structs.replace(CONFIG.limits, max_future_s=None),  # let far-future times reach the core
)
DECODE_REASONS = {
    "too_large", "encoding", "json", "json_depth", "msgpack", "schema", "batch_shape", "non_finite",
    "device_mismatch", "topic_mismatch",
}  # fmt: skip
ENGINE_REASONS = DECODE_REASONS | {
    "topic", "shards", "too_many_sensors", "roster_too_large", "unknown_sensor", "device_budget", "future_ts",
}  # fmt: skip
LONG = 200_000


def decoded(kind: Kind, payload: bytes, key: str | None) -> Message | str:
    """The message, or the reason it was refused; anything but a PayloadError escapes and fails the test."""
    try:
        if kind is Kind.BATCH:
            codec.decode_batch(payload, key=key)
            return codec.decode(kind, payload, key=key)
        return codec.decode(kind, payload, key=key)
    except PayloadError as exc:
        assert exc.reason in DECODE_REASONS, exc.reason
        return exc.reason


# -- the decoders ------------------------------------------------------------------------------
@given(st.sampled_from(INBOUND).flatmap(lambda k: st.tuples(st.just(k), s.hostile_payloads(k), s.ids | st.none())))
def test_the_decoders_raise_nothing_but_payload_errors(case: tuple[Kind, bytes, str | None]) -> None:
    decoded(*case)


@pytest.mark.fuzz_long
@settings(max_examples=20_000)
@given(st.sampled_from(INBOUND).flatmap(lambda k: st.tuples(st.just(k), s.hostile_payloads(k), s.ids | st.none())))
def test_the_decoders_raise_nothing_but_payload_errors_long(case: tuple[Kind, bytes, str | None]) -> None:
    decoded(*case)


@given(s.hostile_topics(TOPICS.prefix))
def test_a_hostile_topic_parses_or_raises_a_topic_error(topic: str) -> None:
    try:
        _, key, _ = TOPICS.parse(topic)
    except TopicError:
        return
    assert key == "" or is_id(key)  # parsed: a known shape with an id-shaped key


# -- the corpus and the seeded fuzzer -----------------------------------------------------------
def valid_messages() -> dict[Kind, list[dict[str, object]]]:
    """Valid messages of every inbound kind, as builtins (batches with their byte columns)."""
    reading = {"device_id": "d-1", "ts": 60.0, "boot_id": 0, "seq": 1, "values": {"temp": 20.0}}
    fault = {"device_id": "d-1", "ts": 61.0, "boot_id": 0, "seq": 2, "kind": "fault", "code": "E1", "detail": "x"}
    contact = {"contact_id": "c-1", "owner_id": "o-1", "device_id": "d-1", "channel": "app", "ts": 62.0,
               "symptom": "warm"}  # fmt: skip
    status = {"work_order_id": "wo-1", "device_id": "d-1", "ts": 63.0, "seq": 1, "status": "accepted",
              "technician_id": "t-1", "visit": 1, "note": ""}  # fmt: skip
    record = {"device_id": "d-9", "product": "freezer", "cohorts": {"batch": "b-1"}, "interval_s": 60.0}
    clock = {"t": 64.0, "published": 3, "final": False, "shards": []}
    batch = msgspec.msgpack.decode(
        codec.encode_batch(
            gateway_id="gw-1", ts=65.0, boot_id=0, seq=1, devices=["d-1", "d-2"], index=[0, 1],
            reading_ts=[65.0, 65.0], reading_seq=[3, 1], values={"temp": [4.0, 30.0]},
        )
    )  # fmt: skip
    out: dict[Kind, list[dict[str, object]]] = {
        Kind.TELEMETRY: [reading, {**reading, "seq": 2, "values": {}}],
        Kind.EVENT: [fault, {**fault, "kind": "firmware", "code": "1.2"}],
        Kind.CONTACT: [contact, {**contact, "contact_id": "c-2", "resolved": True}],
        Kind.FIELD_STATUS: [status, {**status, "status": "closed", "seq": 2}],
        Kind.REGISTRY: [record],
        Kind.CLOCK: [clock],
        Kind.BATCH: [batch],
    }
    return out


def topic_for(kind: Kind, obj: dict[str, object]) -> str:
    key = {
        Kind.TELEMETRY: "device_id", Kind.EVENT: "device_id", Kind.BATCH: "gateway_id", Kind.CONTACT: "channel",
        Kind.FIELD_STATUS: "work_order_id", Kind.REGISTRY: "device_id",
    }.get(kind)  # fmt: skip
    value = obj.get(key) if key else None
    ident = value if isinstance(value, str) and is_id(value) else "k-1"
    return {
        Kind.TELEMETRY: lambda: TOPICS.telemetry(ident), Kind.EVENT: lambda: TOPICS.event(ident),
        Kind.BATCH: lambda: TOPICS.batch(ident), Kind.CONTACT: lambda: TOPICS.contact(ident),
        Kind.FIELD_STATUS: lambda: TOPICS.field_status(ident), Kind.REGISTRY: lambda: TOPICS.registry(ident),
        Kind.CLOCK: lambda: TOPICS.clock,
    }[kind]()  # fmt: skip


def is_id(value: str) -> bool:
    return re.fullmatch(ID_PATTERN, value) is not None


def encoded(kind: Kind, obj: dict[str, object]) -> bytes:
    if kind is Kind.BATCH:
        try:
            return msgspec.msgpack.encode(obj)
        except OverflowError:  # an integer msgpack cannot carry: as a string, still wrong
            return msgspec.msgpack.encode({k: str(v) if isinstance(v, int) else v for k, v in obj.items()})
    return json.dumps(obj, default=bytes.hex).encode()


def corpus() -> list[tuple[str, bytes]]:
    """Every hostile value and token in every field of every inbound kind, plus duplicate keys and garbage."""
    out: list[tuple[str, bytes]] = []
    for kind, examples in valid_messages().items():
        for obj in examples[:1]:
            topic = topic_for(kind, obj)
            out.append((topic, encoded(kind, obj)))
            for field in [*obj, "extra"]:
                for value in s.HOSTILE_VALUES:
                    out.append((topic, encoded(kind, {**obj, field: value})))
                if kind is not Kind.BATCH:
                    for literal in s.HOSTILE_LITERALS:
                        out.append((topic, s.put_literal(obj, field, literal)))
                    body = json.dumps(obj, default=bytes.hex).encode()
                    out.append((topic, body[:-1] + b"," + json.dumps({field: 2**64}).encode()[1:]))  # a key twice
            out += [(topic, b""), (topic, b"\xff\xfe\x00"), (topic, b"\xc1" * 8), (topic, b"\x91" * 100_000)]
    for level in ["..", ".", "", "+", "#", "$SYS", "x" * 65, "a b", "\u00fc"]:
        out.append((f"{TOPICS.prefix}/dev/{level}/telemetry", b"{}"))
        out.append((f"{TOPICS.prefix}/{level}", b"{}"))
    return out


def damaged(rng: random.Random, base: list[tuple[str, bytes]], n: int) -> list[tuple[str, bytes]]:
    """``n`` payloads of ``base`` damaged at random: bytes flipped, cut, spliced or repeated."""
    out = []
    for _ in range(n):
        topic, payload = rng.choice(base)
        how = rng.randrange(5)
        at = rng.randrange(len(payload) + 1)
        if how == 0:
            payload = payload[:at]
        elif how == 1 and payload:
            i = min(at, len(payload) - 1)
            payload = payload[:i] + bytes([payload[i] ^ (1 << rng.randrange(8))]) + payload[i + 1 :]
        elif how == 2:
            payload = payload[:at] + rng.randbytes(rng.randrange(1, 9)) + payload[at:]
        elif how == 3:
            other = rng.choice(base)[1]
            payload = payload[:at] + other[rng.randrange(len(other) + 1) :]
        else:
            payload = payload[:at] + payload[at : at + 16] * rng.randrange(2, 5) + payload[at + 16 :]
        out.append((topic, payload))
    return out


def fuzz_payloads(n: int, seed: int = 12) -> list[tuple[str, bytes]]:
    rng = random.Random(seed)
    base = corpus()
    valid = [(topic_for(k, o), encoded(k, o)) for k, objs in valid_messages().items() for o in objs]
    return (base + damaged(rng, base + valid, max(n - len(base), 0)))[:n]


# -- the engine --------------------------------------------------------------------------------
def fuzzed_engine(payloads: list[tuple[str, bytes]]) -> tuple[EngineService, MemoryTransport]:
    """A wall-clock engine handed every payload, all handled and committed."""
    broker = MemoryTransport(window=None)
    engine = EngineService(FUZZ_CONFIG, broker, Storage(":memory:"), topics=TOPICS, clock="wall")
    engine.start()
    for topic, payload in payloads:
        broker.offer(topic, payload)
        while not broker.inbox.empty():
            engine.poll(timeout_s=0)
    engine._flush(now=engine.wall_now())
    return engine, broker


def check_accounts(engine: EngineService, broker: MemoryTransport, handed: int) -> Counter[str]:
    """Every message handed is accounted for once and acknowledged; every refusal is counted by a known reason."""
    c = Counter(engine._all_counters())
    clocks = sum(1 for t, _, _ in broker.published if t == TOPICS.clock_ack)
    assert c["msg_ingested"] + c["msg_duplicates"] + c["msg_rejected"] + c["registry_received"] + clocks == handed
    reasons = Counter({k.removeprefix("msg_rejected_"): v for k, v in c.items() if k.startswith("msg_rejected_")})
    assert sum(reasons.values()) == c["msg_rejected"]
    assert set(reasons) <= ENGINE_REASONS, set(reasons) - ENGINE_REASONS  # no handler_error: nothing crashed
    assert broker.unacked == 0
    return reasons


def still_serves(engine: EngineService, broker: MemoryTransport) -> None:
    before = engine.counters["msg_ingested"]
    broker.offer(TOPICS.telemetry("after-fuzz"), b'{"device_id":"after-fuzz","ts":1,"boot_id":0,"seq":1,"values":{}}')
    broker.offer(TOPICS.clock, codec.encode(Clock(t=1.0, published=0)))
    while not broker.inbox.empty():
        engine.poll(timeout_s=0)
    engine._flush(now=engine.wall_now())
    assert engine.counters["msg_ingested"] == before + 1 and "after-fuzz" in engine.core.twins.slot_of
    ack = codec.decode(Kind.CLOCK_ACK, broker.published[-1][1])
    assert isinstance(ack, ClockAck)


def test_ten_thousand_fuzzed_payloads_crash_nothing_and_are_all_counted_by_reason() -> None:
    payloads = fuzz_payloads(10_000)
    assert len(payloads) == 10_000
    engine, broker = fuzzed_engine(payloads)
    reasons = check_accounts(engine, broker, len(payloads))
    assert {"schema", "json", "encoding", "json_depth", "msgpack", "topic"} <= set(reasons)
    still_serves(engine, broker)


@pytest.mark.fuzz_long
def test_two_hundred_thousand_fuzzed_payloads_crash_nothing() -> None:
    payloads = fuzz_payloads(LONG, seed=34)
    engine, broker = fuzzed_engine(payloads)
    check_accounts(engine, broker, len(payloads))
    still_serves(engine, broker)


@settings(max_examples=50)
@given(
    st.lists(
        st.sampled_from(INBOUND[:-1]).flatmap(
            lambda k: st.tuples(s.hostile_topics(TOPICS.prefix) | st.just(topic_for(k, {})), s.hostile_payloads(k))
        ),
        min_size=1,
        max_size=30,
    )
)
def test_a_stream_of_hostile_topics_and_payloads_crashes_nothing(stream: list[tuple[str, bytes]]) -> None:
    engine, broker = fuzzed_engine(stream)
    check_accounts(engine, broker, len(stream))
    still_serves(engine, broker)


def test_an_engine_config_cannot_be_made_to_take_more_than_the_wire_allows() -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"limits": {"max_sensors": 2_000}}, EngineConfig)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"limits": {"max_payload_bytes": 2**30}}, EngineConfig)
