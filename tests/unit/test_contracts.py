"""The wire contracts: codecs round-trip, garbage raises only PayloadError, topics build and parse back."""

from __future__ import annotations

import math

import msgspec
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts import (
    GatewayBatch,
    Kind,
    Message,
    PayloadError,
    Telemetry,
    TopicError,
    Topics,
    check_id,
    decode,
    decode_as,
    decode_batch,
    encode,
    encode_batch,
    message_type,
)
from contracts.codec import MAX_PAYLOAD_BYTES, encode_roster
from tests import strategies as s

REASONS = {
    "too_large",
    "encoding",
    "json",
    "json_depth",
    "msgpack",
    "schema",
    "batch_shape",
    "non_finite",
    "device_mismatch",
    "topic_mismatch",
}
"""The reasons :func:`contracts.decode` documents; nothing else may appear on a PayloadError."""

KEY_FIELD = {
    Kind.TELEMETRY: "device_id",
    Kind.EVENT: "device_id",
    Kind.COMMAND: "device_id",
    Kind.BATCH: "gateway_id",
    Kind.CONTACT: "channel",
    Kind.FIELD_STATUS: "work_order_id",
    Kind.REGISTRY: "device_id",
}
"""The payload field that must equal the id in the topic, per keyed kind."""

JSON_KINDS = [k for k in Kind if k is not Kind.BATCH]


def topic_for(topics: Topics, kind: Kind, key: str) -> str:
    """Build the topic of ``kind`` (``key`` is ignored by kinds without one)."""
    builder = getattr(topics, kind.name.lower())
    return builder(key) if callable(builder) else builder


def decoded_or_reason(kind: Kind, payload: bytes, key: str | None = None) -> Message | str:
    """Decode, returning the message or the PayloadError's reason; any other exception fails the test."""
    try:
        message = decode(kind, payload, key=key)
    except PayloadError as exc:
        assert exc.reason in REASONS, exc
        return exc.reason
    assert type(message) is message_type(kind)
    return message


def batch_or_reason(payload: bytes) -> str | None:
    """Decode a batch; if it decodes, its columns must be consistent. Return the reason or None."""
    try:
        view = decode_batch(payload)
    except PayloadError as exc:
        assert exc.reason in REASONS, exc
        return exc.reason
    n = len(view)
    assert view.reading_ts.shape == view.reading_seq.shape == (n,)
    assert all(col.shape == (n,) for col in view.values.values())
    assert n == 0 or int(view.index.max()) < len(view.devices)
    assert np.isfinite(view.reading_ts).all() and all(np.isfinite(c).all() for c in view.values.values())
    assert math.isfinite(view.ts)
    return None


# -- codec: round trips --------------------------------------------------------------------------------


@given(s.messages, s.prefixes)
def test_every_message_round_trips_through_its_topic(kind_and_message: tuple[Kind, Message], prefix: str) -> None:
    kind, message = kind_and_message
    field = KEY_FIELD.get(kind)
    topics = Topics(prefix)
    parsed = topics.parse(topic_for(topics, kind, getattr(message, field) if field else ""))
    assert parsed.kind is kind
    assert decode(parsed.kind, encode(message), key=parsed.key or None) == message


@given(s.messages.filter(lambda km: km[0] is not Kind.BATCH))
def test_decode_as_knows_the_type(kind_and_message: tuple[Kind, Message]) -> None:
    _, message = kind_and_message
    assert decode_as(type(message), encode(message)) == message


def test_decode_as_refuses_a_type_that_is_not_on_the_wire() -> None:
    with pytest.raises(TypeError, match="not a wire message type"):
        decode_as(Message, b"{}")


@given(s.batch_columns())
def test_batch_columns_round_trip(cols: dict[str, object]) -> None:
    view = decode_batch(s.encode_columns(cols), key=cols["gateway_id"])
    assert (view.gateway_id, view.ts, view.boot_id, view.seq, view.devices) == (
        cols["gateway_id"],
        cols["ts"],
        cols["boot_id"],
        cols["seq"],
        cols["devices"],
    )
    assert len(view) == len(cols["index"])
    for name in ("index", "reading_ts", "reading_seq"):
        assert getattr(view, name).dtype == cols[name].dtype
        np.testing.assert_array_equal(getattr(view, name), cols[name])
    assert view.values.keys() == cols["values"].keys()
    for name, column in cols["values"].items():
        np.testing.assert_array_equal(view.values[name], column)


# -- codec: garbage ------------------------------------------------------------------------------------


@given(st.sampled_from(list(Kind)), st.binary(max_size=512))
def test_arbitrary_bytes_raise_only_payload_error(kind: Kind, payload: bytes) -> None:
    decoded_or_reason(kind, payload)
    if kind is Kind.BATCH:
        batch_or_reason(payload)


@given(s.messages, st.data())
def test_damaged_payloads_raise_only_payload_error_for_every_kind(
    kind_and_message: tuple[Kind, Message], data: st.DataObject
) -> None:
    payload = data.draw(s.mutated(encode(kind_and_message[1])))
    for kind in Kind:
        decoded_or_reason(kind, payload, key=data.draw(s.ids))
    batch_or_reason(payload)


@given(st.sampled_from(list(Kind)).flatmap(lambda k: st.tuples(st.just(k), s.near_miss_payloads(k))))
def test_near_miss_payloads_raise_only_payload_error(kind_and_payload: tuple[Kind, bytes]) -> None:
    kind, payload = kind_and_payload
    decoded_or_reason(kind, payload)
    if kind is Kind.BATCH:
        batch_or_reason(payload)


@given(s.raw_gateway_batches)
def test_inconsistent_batch_columns_are_refused_with_a_reason(batch: GatewayBatch) -> None:
    reason = batch_or_reason(encode(batch))
    n, rem = divmod(len(batch.index), 4)
    ragged = rem or len(batch.reading_ts) != 8 * n or len(batch.reading_seq) != 4 * n
    ragged = ragged or any(len(col) != 8 * n for col in batch.values.values())
    if ragged:
        assert reason == "batch_shape"


@given(s.messages.filter(lambda km: km[0] in KEY_FIELD), s.ids)
def test_a_payload_disagreeing_with_its_topic_key_is_refused(
    kind_and_message: tuple[Kind, Message], other: str
) -> None:
    kind, message = kind_and_message
    own = getattr(message, KEY_FIELD[kind])
    payload = encode(message)
    assert decode(kind, payload, key=own) == message
    if other != own:
        expected = "device_mismatch" if KEY_FIELD[kind] == "device_id" else "topic_mismatch"
        assert decoded_or_reason(kind, payload, key=other) == expected
        if kind is Kind.BATCH:
            with pytest.raises(PayloadError) as info:
                decode_batch(payload, key=other)
            assert info.value.reason == expected


@given(
    s.batch_columns(min_readings=1),
    st.sampled_from([math.nan, math.inf, -math.inf]),
    st.data(),
)
def test_non_finite_batch_columns_are_refused(cols: dict[str, object], bad: float, data: st.DataObject) -> None:
    columns = ["reading_ts", *(f"values.{name}" for name in cols["values"])]
    where = data.draw(st.sampled_from(columns))
    column = cols["reading_ts"] if where == "reading_ts" else cols["values"][where.split(".", 1)[1]]
    column[data.draw(st.integers(0, len(column) - 1))] = bad
    with pytest.raises(PayloadError) as info:
        decode_batch(s.encode_columns(cols))
    assert info.value.reason == "non_finite"


@given(s.batch_columns())
def test_an_infinite_batch_timestamp_is_refused(cols: dict[str, object]) -> None:
    with pytest.raises(PayloadError) as info:
        decode_batch(s.encode_columns({**cols, "ts": math.inf}))
    assert info.value.reason == "non_finite"


def test_a_nan_reading_cannot_reach_telemetry() -> None:
    # JSON has no NaN; a decoder that let `NaN` or 1e400 through would hand the engine a non-finite reading.
    for literal in (b"NaN", b"Infinity", b"1e400", b"-1e400"):
        payload = b'{"device_id":"d","ts":0,"boot_id":0,"seq":0,"values":{"t":' + literal + b"}}"
        assert isinstance(decoded_or_reason(Kind.TELEMETRY, payload), str)


@pytest.mark.parametrize("kind", JSON_KINDS)
@pytest.mark.parametrize(
    "payload",
    [b"[" * 100_000, b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 100_000 + b"1" + b"}" * 100_000],
    ids=["open-arrays", "closed-arrays", "objects"],
)
def test_deep_json_nesting_is_refused_as_too_deep(kind: Kind, payload: bytes) -> None:
    assert decoded_or_reason(kind, payload) == "json_depth"


def test_deep_msgpack_nesting_is_refused() -> None:
    assert decoded_or_reason(Kind.BATCH, b"\x91" * 100_000) in REASONS
    assert batch_or_reason(b"\x91" * 100_000) in REASONS


INVALID_UTF8 = [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80", b"\xe2\x82"]


@given(s.messages.filter(lambda km: km[0] is not Kind.BATCH), st.sampled_from(INVALID_UTF8), st.data())
def test_invalid_utf8_is_refused_as_encoding(
    kind_and_message: tuple[Kind, Message], bad: bytes, data: st.DataObject
) -> None:
    kind, message = kind_and_message
    payload = encode(message)
    quotes = [i for i, b in enumerate(payload) if b == ord('"')]
    at = data.draw(st.sampled_from(quotes)) + 1  # inside a key or value string, or just after one
    assert decoded_or_reason(kind, payload[:at] + bad + payload[at:]) == "encoding"


@pytest.mark.parametrize("kind", list(Kind))
def test_oversized_payloads_are_refused_before_decoding(kind: Kind) -> None:
    assert decoded_or_reason(kind, b" " * (MAX_PAYLOAD_BYTES + 1)) == "too_large"
    assert decoded_or_reason(kind, b"{}" + b" " * (MAX_PAYLOAD_BYTES - 2)) != "too_large"


@given(s.messages)
def test_a_future_schema_version_is_refused(kind_and_message: tuple[Kind, Message]) -> None:
    kind, message = kind_and_message
    payload = encode(msgspec.structs.replace(message, schema_version=2))
    assert decoded_or_reason(kind, payload) == "schema"


def test_payload_error_is_a_value_error_with_reason_and_detail() -> None:
    with pytest.raises(ValueError, match=r"^json: ") as info:
        decode(Kind.CLOCK, b"{")
    assert isinstance(info.value, PayloadError)
    assert (info.value.reason, bool(info.value.detail)) == ("json", True)


# -- topics --------------------------------------------------------------------------------------------


@given(st.sampled_from(list(Kind)), s.ids, s.prefixes)
def test_every_topic_parses_back_to_its_kind_and_key(kind: Kind, key: str, prefix: str) -> None:
    topics = Topics(prefix)
    topic = topic_for(topics, kind, key)
    assert topic.startswith(prefix + "/")
    assert topics.parse(topic) == (kind, key if kind in KEY_FIELD else "", 0)


@given(s.prefixes, st.lists(s.topic_levels, max_size=4))
def test_parse_accepts_only_what_a_builder_would_build(prefix: str, levels: list[str]) -> None:
    topics = Topics(prefix)
    topic = "/".join([prefix, *levels])
    try:
        kind, key, _ = topics.parse(topic)
    except TopicError:
        return
    assert topic_for(topics, kind, key) == topic


@pytest.mark.parametrize("bad", s.BAD_IDS, ids=repr)
def test_bad_ids_are_refused_by_check_id_and_every_builder(bad: str) -> None:
    with pytest.raises(TopicError):
        check_id(bad)
    topics = Topics()
    for builder in (topics.telemetry, topics.event, topics.batch, topics.contact, topics.field_status, topics.command):
        with pytest.raises(TopicError):
            builder(bad)


@given(st.text(max_size=70) | st.text(s.ID_ALPHABET[-8:] + "\n\x00 /+#$", max_size=70))
def test_check_id_and_the_payload_id_field_agree_on_every_string(text: str) -> None:
    valid = 1 <= len(text) <= 64 and set(text) <= set(s.ID_ALPHABET)
    try:
        assert check_id(text) == text
        by_topic = True
    except TopicError:
        by_topic = False
    payload = msgspec.json.encode({"device_id": text, "ts": 0.0, "boot_id": 0, "seq": 0, "values": {}})
    by_payload = isinstance(decoded_or_reason(Kind.TELEMETRY, payload), Telemetry)
    assert by_topic == by_payload == valid


FOREIGN_TOPICS = [
    "other/v1/dev/d1/telemetry",
    "xsot/v1/clock",
    "sot/v1x/clock",
    "/sot/v1/clock",
    "sot/v1",
    "sot/v1/",
    "sot/v1/dev/d1",
    "sot/v1/dev/d1/telemetry/extra",
    "sot/v1/dev/+/telemetry",
    "sot/v1/dev/#",
    "sot/v1/dev//telemetry",
    "sot/v1/dev/d1/batch",
    "sot/v1/gw/g1/telemetry",
    "sot/v1/contact/app/extra",
    "sot/v1/field/w1",
    "sot/v1/engine/bogus",
    "sot/v1/engine/workorder/1",
    "sot/v1/clock/ack/extra",
    "sot/v1/clock/nack",
    "sot/v1/dev/d1\n/telemetry",
    f"sot/v1/dev/{'x' * 65}/telemetry",
    "",
]


@pytest.mark.parametrize("topic", FOREIGN_TOPICS, ids=repr)
def test_foreign_topics_are_refused(topic: str) -> None:
    with pytest.raises(TopicError):
        Topics().parse(topic)


@pytest.mark.parametrize("prefix", ["", "sot/", "sot/+", "#", "sot/\x00"], ids=repr)
def test_bad_prefixes_are_refused(prefix: str) -> None:
    with pytest.raises(TopicError):
        Topics(prefix)


def test_engine_and_world_subscriptions_cover_the_directions() -> None:
    topics = Topics()
    assert len(topics.engine_subscriptions()) == 7
    assert topics.clock in topics.engine_subscriptions()
    assert topics.clock_ack in topics.world_subscriptions()
    assert not set(topics.engine_subscriptions()) & set(topics.world_subscriptions())


def test_an_empty_batch_round_trips() -> None:
    payload = encode_batch(
        gateway_id="g1", ts=0.0, boot_id=0, seq=0, devices=["d"], index=[], reading_ts=[], reading_seq=[], values={}
    )
    assert len(decode_batch(payload, key="g1")) == 0


def test_a_roster_encoded_once_gives_the_same_batch_bytes_as_the_list() -> None:
    roster = ["fr-000001", "fr-000002", "fr-000003"]
    columns = {
        "gateway_id": "fr-gw000",
        "ts": 900.0,
        "boot_id": 0,
        "seq": 1,
        "index": np.array([2, 0], dtype=np.uint32),
        "reading_ts": np.array([900.0, 900.0]),
        "reading_seq": np.array([1, 1], dtype=np.uint32),
        "values": {"temp": np.array([-18.0, -17.5])},
    }
    plain = encode_batch(devices=roster, **columns)  # type: ignore[arg-type]
    once = encode_roster(roster)
    assert once.count == 3
    assert encode_batch(devices=once, **columns) == plain  # type: ignore[arg-type]
    view = decode_batch(plain)
    assert view.devices == roster and view.index.tolist() == [2, 0]
