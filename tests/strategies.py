"""Every hypothesis strategy of the test suite, and the settings profiles.

Pick a profile with ``HYPOTHESIS_PROFILE=dev`` (20 examples) or leave the default ``ci`` (100).
"""

from __future__ import annotations

import json
import os
import string
from typing import Any

import msgspec
import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from contracts import (
    Clock,
    ClockAck,
    Command,
    ConsumableOrder,
    Contact,
    DeadLetter,
    DeviceEvent,
    DeviceRecord,
    GatewayBatch,
    IngestAck,
    Kind,
    Message,
    Notification,
    Telemetry,
    WorkOrder,
    WorkOrderStatus,
    encode,
    encode_batch,
    message_type,
)
from contracts.messages import MAX_COUNT, MAX_SECONDS

__all__ = [
    "BAD_IDS",
    "BOUNDARY_INTEGERS",
    "HOSTILE_LITERALS",
    "HOSTILE_VALUES",
    "FIELD_NAMES",
    "ID_ALPHABET",
    "batch_columns",
    "clock_acks",
    "clocks",
    "commands",
    "consumable_orders",
    "contacts",
    "dead_letters",
    "device_events",
    "encode_columns",
    "finite_floats",
    "gateway_batches",
    "hostile_payloads",
    "hostile_topics",
    "ids",
    "messages",
    "messages_by_kind",
    "mutated",
    "names",
    "near_miss_payloads",
    "notifications",
    "p_value_maps",
    "paired_replications",
    "prefixes",
    "put_literal",
    "raw_gateway_batches",
    "replication_values",
    "seconds",
    "telemetry",
    "topic_levels",
    "wire_values",
    "work_order_statuses",
    "work_orders",
]

settings.register_profile("ci", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=20, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

ID_ALPHABET = string.ascii_letters + string.digits + "_.:-"
BAD_IDS = ["", "a+b", "a#", "dev/1", "$SYS", "a b", "a\x00b", "x" * 65, "abc\n", "ümlaut"]
"""Ids no topic level may hold: wildcards, separators, ``$``, blanks, NUL, too long, a trailing newline."""

ids = st.text(ID_ALPHABET, min_size=1, max_size=64)
"""Ids and names valid as one topic level and as ``Id``/``Name`` fields."""
names = ids
seconds = st.floats(min_value=0.0, max_value=MAX_SECONDS, allow_nan=False, allow_infinity=False)
"""Event times and durations: finite, not negative, within the wire's range."""
finite_floats = st.floats(allow_nan=False, allow_infinity=False)
counts = st.integers(min_value=0, max_value=MAX_COUNT)
uint32s = st.integers(min_value=0, max_value=2**32 - 1)
# No NUL (PostgreSQL text refuses it) and no lone surrogates (no UTF-8 wire text decodes to one).
texts = st.text(st.characters(exclude_characters="\x00", exclude_categories=("Cs",)), max_size=1000)
channels = st.sampled_from(["app", "phone", "chat", "self_service"])
optional_ids = st.none() | ids

telemetry = st.builds(
    Telemetry,
    device_id=ids,
    ts=seconds,
    boot_id=counts,
    seq=counts,
    values=st.dictionaries(names, finite_floats, max_size=8),
)
device_events = st.builds(
    DeviceEvent,
    device_id=ids,
    ts=seconds,
    boot_id=counts,
    seq=counts,
    kind=st.sampled_from(["fault", "diagnosis", "firmware", "consumable_low", "command_result"]),
    code=names,
    detail=texts,
    command_id=optional_ids,
)
commands = st.builds(
    Command,
    command_id=ids,
    device_id=ids,
    ts=seconds,
    action=st.sampled_from(["reset", "diagnostic", "ota"]),
    version=st.none() | names,
    case_id=optional_ids,
)
contacts = st.builds(Contact, contact_id=ids, owner_id=ids, device_id=ids, channel=channels, ts=seconds, symptom=names)
work_orders = st.builds(
    WorkOrder,
    work_order_id=ids,
    case_id=ids,
    device_id=ids,
    ts=seconds,
    issue=names,
    skill=names,
    parts=st.lists(names, max_size=5),
    duration_s=seconds,
    priority=st.integers(min_value=1, max_value=5),
)
work_order_statuses = st.builds(
    WorkOrderStatus,
    work_order_id=ids,
    device_id=ids,
    ts=seconds,
    seq=counts,
    status=st.sampled_from(["accepted", "arrived", "fixed", "part_missing", "no_fault_found", "closed"]),
    technician_id=ids,
    visit=st.integers(min_value=1, max_value=100),
    note=texts,
)
notifications = st.builds(
    Notification,
    notification_id=ids,
    device_id=ids,
    ts=seconds,
    kind=st.sampled_from(["case_opened", "visit_scheduled", "resolved", "outreach", "outage"]),
    case_id=optional_ids,
    text=texts,
)
consumable_orders = st.builds(
    ConsumableOrder,
    order_id=ids,
    device_id=ids,
    ts=seconds,
    consumable=names,
    quantity=st.floats(min_value=1e-6, max_value=1e9, allow_nan=False, allow_infinity=False),
)
clocks = st.builds(Clock, t=seconds, published=counts, final=st.booleans())
clock_acks = st.builds(
    ClockAck,
    t=seconds,
    received=counts,
    emitted=counts,
    stats=st.dictionaries(names, st.integers(min_value=-(2**63), max_value=2**63 - 1), max_size=8),
)
dead_letters = st.builds(
    DeadLetter,
    topic=texts,
    reason=names,
    detail=texts,
    payload_hex=st.binary(max_size=256).map(bytes.hex),
)
device_records = st.builds(
    DeviceRecord,
    device_id=ids,
    product=st.none() | names,
    owner_id=st.none() | ids,
    region=st.none() | names,
    firmware=st.none() | names,
    cohorts=st.dictionaries(names, names, max_size=3),
    contract=st.none() | names,
    warranty_until_s=st.none() | st.floats(min_value=-MAX_SECONDS, max_value=MAX_SECONDS),
    interval_s=st.none() | st.floats(min_value=1e-3, max_value=1e9),
)
ingest_acks = st.builds(
    IngestAck,
    kind=st.sampled_from(["telemetry", "batch", "event"]),
    source=ids,
    boot_id=counts,
    seq=counts,
    ts=seconds,
    committed_s=st.floats(min_value=-MAX_SECONDS, max_value=MAX_SECONDS),
)


@st.composite
def batch_columns(draw: st.DrawFn, *, min_readings: int = 0, max_readings: int = 40) -> dict[str, Any]:
    """Keyword arguments for :func:`contracts.encode_batch`: a roster and numpy columns of one length."""
    devices = draw(st.lists(ids, min_size=1, max_size=10, unique=True))
    n = draw(st.integers(min_value=min_readings, max_value=max_readings))
    sensors = draw(st.lists(names, max_size=4, unique=True))
    column = hnp.arrays(np.float64, n, elements=finite_floats)
    return {
        "gateway_id": draw(ids),
        "ts": draw(seconds),
        "boot_id": draw(counts),
        "seq": draw(counts),
        "devices": devices,
        "index": draw(hnp.arrays(np.uint32, n, elements=st.integers(0, len(devices) - 1))),
        "reading_ts": draw(hnp.arrays(np.float64, n, elements=seconds)),
        "reading_seq": draw(hnp.arrays(np.uint32, n, elements=uint32s)),
        "values": {name: draw(column) for name in sensors},
    }


gateway_batches = batch_columns().map(
    lambda cols: GatewayBatch(
        gateway_id=cols["gateway_id"],
        ts=cols["ts"],
        boot_id=cols["boot_id"],
        seq=cols["seq"],
        devices=cols["devices"],
        index=cols["index"].astype("<u4").tobytes(),
        reading_ts=cols["reading_ts"].astype("<f8").tobytes(),
        reading_seq=cols["reading_seq"].astype("<u4").tobytes(),
        values={k: v.astype("<f8").tobytes() for k, v in cols["values"].items()},
    )
)
"""Gateway batches as Structs (what :func:`batch_columns` encodes to)."""

messages_by_kind: dict[Kind, st.SearchStrategy[Any]] = {
    Kind.TELEMETRY: telemetry,
    Kind.BATCH: gateway_batches,
    Kind.EVENT: device_events,
    Kind.COMMAND: commands,
    Kind.CONTACT: contacts,
    Kind.FIELD_STATUS: work_order_statuses,
    Kind.WORK_ORDER: work_orders,
    Kind.NOTIFY: notifications,
    Kind.ORDER: consumable_orders,
    Kind.CLOCK: clocks,
    Kind.CLOCK_ACK: clock_acks,
    Kind.DEAD_LETTER: dead_letters,
    Kind.INGEST_ACK: ingest_acks,
    Kind.REGISTRY: device_records,
}

messages: st.SearchStrategy[tuple[Kind, Message]] = st.sampled_from(list(Kind)).flatmap(
    lambda kind: st.tuples(st.just(kind), messages_by_kind[kind])
)
"""A kind and a valid message of that kind."""


@st.composite
def mutated(draw: st.DrawFn, payload: bytes) -> bytes:
    """``payload`` damaged the way wires and fuzzers damage bytes: cut, flipped, spliced or extended."""
    how = draw(st.sampled_from(["truncate", "flip", "insert", "append", "delete"]))
    if how == "truncate" or not payload:
        return payload[: draw(st.integers(0, max(len(payload) - 1, 0)))]
    at = draw(st.integers(0, len(payload) - 1))
    if how == "flip":
        mask = draw(st.integers(1, 255))
        return payload[:at] + bytes([payload[at] ^ mask]) + payload[at + 1 :]
    if how == "insert":
        return payload[:at] + draw(st.binary(min_size=1, max_size=8)) + payload[at:]
    if how == "delete":
        return payload[:at] + payload[at + draw(st.integers(1, 8)) :]
    return payload + draw(st.binary(min_size=1, max_size=16))


def encode_columns(cols: dict[str, Any]) -> bytes:
    """Encode the output of :func:`batch_columns`."""
    return encode_batch(**cols)


raw_gateway_batches = st.builds(
    GatewayBatch,
    gateway_id=ids,
    ts=seconds,
    boot_id=counts,
    seq=counts,
    devices=st.lists(ids, max_size=4),
    index=st.binary(max_size=24),
    reading_ts=st.binary(max_size=48),
    reading_seq=st.binary(max_size=24),
    values=st.dictionaries(names, st.binary(max_size=48), max_size=3),
)
"""Well-typed batches whose byte columns have any length and content (ragged, NaN, out-of-roster)."""

FIELD_NAMES = sorted({f.encode_name for t in messages_by_kind for f in msgspec.structs.fields(message_type(t))})


def _scalars_with(integers: st.SearchStrategy[int]) -> st.SearchStrategy[Any]:
    return st.none() | st.booleans() | integers | st.floats() | st.text(max_size=20) | ids | st.binary(max_size=16)


_scalars = _scalars_with(st.integers(min_value=-(2**70), max_value=2**70))  # JSON carries any int
_msgpack_scalars = _scalars_with(st.integers(min_value=-(2**63), max_value=2**64 - 1))  # msgpack: 64 bits


def _nested(scalars: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(FIELD_NAMES) | names, inner, max_size=6)
        ),
        max_leaves=20,
    )


wire_values = _nested(_scalars)
"""Nested values built from the messages' own field names: garbage that gets past the first token."""
_msgpack_values = _nested(_msgpack_scalars)


@st.composite
def near_miss_payloads(draw: st.DrawFn, kind: Kind) -> bytes:
    """A valid message of ``kind`` with one field replaced, removed or added, re-encoded as on the wire."""
    obj = msgspec.to_builtins(draw(messages_by_kind[kind]), builtin_types=(bytes,))
    field = draw(st.sampled_from(FIELD_NAMES))
    if draw(st.booleans()):
        obj.pop(field, None)
    else:
        obj[field] = draw(_msgpack_values if kind is Kind.BATCH else wire_values)
    if kind is Kind.BATCH:
        return msgspec.msgpack.encode(obj)
    return json.dumps(obj, default=bytes.hex).encode()


_LEVELS = "dev gw contact field engine clock ack telemetry event cmd batch status workorder notify order deadletter"
topic_levels = st.sampled_from([*_LEVELS.split(), "app", "d-1", "", "+", "#", "$SYS", "a b", "x\n", "x" * 65])
"""Topic levels, real and hostile, to assemble topics that may or may not have a known shape."""
prefixes = st.lists(ids, min_size=1, max_size=3).map("/".join)
"""Topic prefixes a test run might use (``sot/v1``, ``run-42/sot``)."""


_replication_floats = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
replication_values = st.lists(_replication_floats, min_size=1, max_size=40)
"""One metric over replications: finite values, repeats and near-cancelling spreads included."""


@st.composite
def paired_replications(draw: st.DrawFn, *, min_size: int = 1) -> tuple[list[float], list[float]]:
    """One metric over the same replications under two policies, as (baseline, other)."""
    baseline = draw(st.lists(_replication_floats, min_size=min_size, max_size=40))
    other = draw(st.lists(_replication_floats, min_size=len(baseline), max_size=len(baseline)))
    return baseline, other


p_value_maps = st.dictionaries(names, st.floats(min_value=0.0, max_value=1.0), max_size=12)
"""p-values of a family of tests, by metric name."""


BOUNDARY_INTEGERS = [
    *(2**k + d for k in (31, 32, 53, 63, 64) for d in (-1, 0)),
    -1,
    -(2**31),
    -(2**63),
    -(2**63) - 1,
    -(2**64),
]
"""Integers at the edges of int32, uint32, float64's exact integers, int64 and uint64 (and past them)."""
HOSTILE_VALUES: list[Any] = [
    *BOUNDARY_INTEGERS,
    1e308, -1e308, 1e11, 1e11 * (1 + 1e-12), 2e9, 4e9, 0.0, -0.0, -1e-300,
    "", ".", "..", "../..", "x" * 65, "x" * 70_000, "a/b", "+", "#", "$SYS", "a b", "a\x00b", "\u00fc", "a\nb",
    None, True, False, [], {}, [[[[[[]]]]]], {"a": {"b": {"c": {}}}},
    {f"s{i}": 1.0 for i in range(2_000)},
    [f"d{i}" for i in range(3_000)],
]  # fmt: skip
"""Field values a fuzzer puts in place of a valid one: boundary numbers, far-future times, odd and huge
ids and names, wrong types, nesting, more sensors or devices than any limit."""
HOSTILE_LITERALS: list[bytes] = [
    b"NaN", b"-NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400", b"1" * 5_000, b"0.1e-99999",
    b"1" + b"0" * 400, b"[" * 100_000, b"{\"a\":" * 50_000, b"\"\\ud800\"", b"\"\xff\xfe\"", b"00", b"+1", b"0x10",
]  # fmt: skip
"""JSON tokens no encoder writes: NaN and infinities, numbers too long or too big, deep nesting,
lone surrogates, invalid UTF-8, malformed numbers."""
_MSGPACK_HOSTILE = [v for v in HOSTILE_VALUES if not isinstance(v, int) or -(2**63) <= v < 2**64]  # msgpack: 64 bits
_SENTINEL = "__hostile_literal__"


def put_literal(obj: dict[str, Any], field: str, literal: bytes) -> bytes:
    """``obj`` as JSON with ``field`` set to the raw token ``literal``."""
    return json.dumps({**obj, field: _SENTINEL}).encode().replace(f'"{_SENTINEL}"'.encode(), literal, 1)


@st.composite
def hostile_payloads(draw: st.DrawFn, kind: Kind) -> bytes:
    """A payload for a topic of ``kind`` as an attacker or a broken device writes one: a valid message
    with a field set to a hostile value or token, a key given twice, damaged bytes, or garbage."""
    message = draw(messages_by_kind[kind])
    obj = msgspec.to_builtins(message, builtin_types=(bytes,))
    fields = [*obj, *FIELD_NAMES[:4]]
    how = draw(st.sampled_from(["value", "literal", "duplicate", "mutated", "near_miss", "garbage"]))
    if how == "value":
        obj[draw(st.sampled_from(fields))] = draw(
            st.sampled_from(_MSGPACK_HOSTILE if kind is Kind.BATCH else HOSTILE_VALUES)
        )
    elif how == "literal" and kind is not Kind.BATCH:
        return put_literal(obj, draw(st.sampled_from(fields)), draw(st.sampled_from(HOSTILE_LITERALS)))
    elif how == "duplicate" and kind is not Kind.BATCH:  # JSON objects with a key twice: the last one wins
        field = draw(st.sampled_from(list(obj)))
        again = json.dumps({field: draw(st.sampled_from(HOSTILE_VALUES))}).encode()
        body = json.dumps(obj, default=bytes.hex).encode()
        return again[:-1] + b"," + body[1:] if draw(st.booleans()) else body[:-1] + b"," + again[1:]
    elif how == "mutated":
        return draw(mutated(encode(message)))
    elif how == "near_miss":
        return draw(near_miss_payloads(kind))
    elif how == "garbage":
        return draw(st.binary(max_size=64) | (_msgpack_values if kind is Kind.BATCH else wire_values).map(_encode_any))
    if kind is Kind.BATCH:
        return msgspec.msgpack.encode(obj)
    return json.dumps(obj, default=bytes.hex).encode()


def _encode_any(value: Any) -> bytes:
    if isinstance(value, (dict, list)) and not isinstance(value, bytes):
        try:
            return json.dumps(value, default=bytes.hex).encode()
        except ValueError:  # NaN, infinities: JSON has none
            return msgspec.msgpack.encode(value)
    return msgspec.msgpack.encode(value)


def hostile_topics(prefix: str) -> st.SearchStrategy[str]:
    """Topics under ``prefix``, of known shapes with odd keys and of no known shape at all."""
    shaped = st.tuples(st.sampled_from(["dev/{}/telemetry", "dev/{}/event", "gw/{}/batch", "contact/{}",
                                        "field/{}/status", "registry/{}", "dev/{}/cmd", "s/0/dev/{}/telemetry"]),
                       ids | st.sampled_from([*BAD_IDS, "..", ".", "+", "#"]))  # fmt: skip
    assembled = st.lists(topic_levels, min_size=1, max_size=5).map("/".join)
    return st.one_of(shaped.map(lambda fk: fk[0].format(fk[1])), assembled).map(lambda rest: f"{prefix}/{rest}")
