"""Encode messages to bytes and decode bytes from the wire, with one error type for garbage.

JSON for every kind but the gateway batch, which is msgpack with little-endian numpy buffers so
that a receiver decodes a whole batch with ``numpy.frombuffer`` and no per-reading Python objects.
Decoding never raises anything but :class:`~contracts.errors.PayloadError` for bad bytes.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, NamedTuple, TypeVar

import msgspec
import numpy as np
import numpy.typing as npt

from contracts.errors import PayloadError
from contracts.messages import (
    ID_PATTERN,
    MAX_SENSORS,
    Clock,
    ClockAck,
    Command,
    ConsumableOrder,
    Contact,
    Count,
    DeadLetter,
    DeviceEvent,
    DeviceRecord,
    GatewayBatch,
    Id,
    IngestAck,
    Message,
    Name,
    Notification,
    Seconds,
    Telemetry,
    WorkOrder,
    WorkOrderStatus,
)
from contracts.topics import Kind

__all__ = [
    "MAX_PAYLOAD_BYTES",
    "BatchDecoder",
    "BatchView",
    "Roster",
    "encode_roster",
    "decode",
    "decode_batch",
    "encode",
    "encode_batch",
    "message_type",
]

MAX_PAYLOAD_BYTES = 4 * 1024 * 1024
"""Largest payload accepted (a 2,000-device batch with four sensors is about 60 KB)."""

M = TypeVar("M", bound=Message)

_TYPES: dict[Kind, type[Message]] = {
    Kind.TELEMETRY: Telemetry,
    Kind.BATCH: GatewayBatch,
    Kind.EVENT: DeviceEvent,
    Kind.COMMAND: Command,
    Kind.CONTACT: Contact,
    Kind.FIELD_STATUS: WorkOrderStatus,
    Kind.WORK_ORDER: WorkOrder,
    Kind.NOTIFY: Notification,
    Kind.ORDER: ConsumableOrder,
    Kind.CLOCK: Clock,
    Kind.CLOCK_ACK: ClockAck,
    Kind.DEAD_LETTER: DeadLetter,
    Kind.INGEST_ACK: IngestAck,
    Kind.REGISTRY: DeviceRecord,
}
_JSON_DECODERS: dict[type[Message], msgspec.json.Decoder[Any]] = {
    t: msgspec.json.Decoder(t) for t in _TYPES.values() if t is not GatewayBatch
}
_JSON_ENCODER = msgspec.json.Encoder()
_MSGPACK_ENCODER = msgspec.msgpack.Encoder()

# The field of each kind that must equal the key in its topic.
_TOPIC_KEY_FIELD: dict[Kind, str] = {
    Kind.TELEMETRY: "device_id",
    Kind.EVENT: "device_id",
    Kind.COMMAND: "device_id",
    Kind.BATCH: "gateway_id",
    Kind.CONTACT: "channel",
    Kind.FIELD_STATUS: "work_order_id",
    Kind.REGISTRY: "device_id",
}


def message_type(kind: Kind) -> type[Message]:
    """Return the Struct carried by topics of ``kind``."""
    return _TYPES[kind]


def encode(message: Message) -> bytes:
    """Encode ``message`` for the wire (msgpack for a :class:`GatewayBatch`, JSON otherwise)."""
    if isinstance(message, GatewayBatch):
        return _MSGPACK_ENCODER.encode(message)
    return _JSON_ENCODER.encode(message)


def decode(kind: Kind, payload: bytes, *, key: str | None = None) -> Message:
    """Decode ``payload`` of a topic of ``kind``; ``key`` is the id in the topic, checked if given.

    Raises :class:`PayloadError` with a ``reason`` of ``too_large``, ``encoding``, ``json``,
    ``json_depth``, ``msgpack``, ``schema``, ``batch_shape``, ``non_finite``,
    ``device_mismatch`` or ``topic_mismatch``; never anything else.
    """
    return _decode(kind, payload, key, None)


def _decode(kind: Kind, payload: bytes, key: str | None, rosters: BatchDecoder | None) -> Message:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise PayloadError("too_large", f"{len(payload)} bytes > {MAX_PAYLOAD_BYTES}")
    cls = _TYPES[kind]
    try:
        if cls is GatewayBatch:
            message: Message = _gateway_batch(payload, rosters)
        else:
            message = _JSON_DECODERS[cls].decode(payload)
    except msgspec.ValidationError as exc:
        raise PayloadError(
            _batch_reason(payload) if cls is GatewayBatch else _json_reason(payload, "schema"), str(exc)
        ) from exc
    except msgspec.DecodeError as exc:
        reason = "msgpack" if cls is GatewayBatch else _json_reason(payload, "json")
        raise PayloadError(reason, str(exc)) from exc
    except RecursionError as exc:
        raise PayloadError("json_depth", "nesting too deep") from exc
    except (ValueError, TypeError, OverflowError) as exc:  # defensive: msgspec edge cases (bad UTF-8 in a string)
        raise PayloadError("schema" if cls is GatewayBatch else _json_reason(payload, "schema"), str(exc)) from exc
    field = _TOPIC_KEY_FIELD.get(kind)
    if key is not None and field is not None and getattr(message, field) != key:
        reason = "device_mismatch" if field == "device_id" else "topic_mismatch"
        raise PayloadError(reason, f"{field}={getattr(message, field)!r} but topic says {key!r}")
    if isinstance(message, Telemetry) and not all(np.isfinite(v) for v in message.values.values()):
        raise PayloadError("non_finite", "a sensor value is NaN or infinite")
    if isinstance(message, GatewayBatch) and not np.isfinite(message.ts):  # msgpack, unlike JSON, carries inf
        raise PayloadError("non_finite", "the batch timestamp is infinite")
    return message


class _BatchIn(Message, frozen=True, kw_only=True):
    """:class:`GatewayBatch` with its roster left encoded: read with the same field checks, and
    written (same bytes) with a roster encoded once."""

    gateway_id: Id
    ts: Seconds
    boot_id: Count
    seq: Count
    devices: msgspec.Raw
    index: bytes
    reading_ts: bytes
    reading_seq: bytes
    values: Annotated[dict[Name, bytes], msgspec.Meta(max_length=MAX_SENSORS)]


_BATCH_IN = msgspec.msgpack.Decoder(_BatchIn)
_BATCH_STRICT = msgspec.msgpack.Decoder(GatewayBatch)  # a regular expression per device id: for the error only
_ROSTER = msgspec.msgpack.Decoder(list[str])
_ROSTER_MATCH = re.compile(rf"{ID_PATTERN}(?:\n{ID_PATTERN})*").fullmatch
_FAST_PATH_ERRORS = (msgspec.MsgspecError, RecursionError, ValueError, TypeError, OverflowError)


def _gateway_batch(payload: bytes, rosters: BatchDecoder | None) -> GatewayBatch:
    """Decode a batch, checking its roster in one pass; a batch refused is decoded again strictly, so
    that it raises exactly what a field-by-field check raises (the first bad device id named)."""
    try:
        raw = _BATCH_IN.decode(payload)
        devices = _roster(raw.devices) if rosters is None else rosters._roster(raw.gateway_id, raw.devices)
    except _FAST_PATH_ERRORS:
        devices = None
    if devices is None:
        return _BATCH_STRICT.decode(payload)
    return GatewayBatch(
        schema_version=raw.schema_version,
        gateway_id=raw.gateway_id,
        ts=raw.ts,
        boot_id=raw.boot_id,
        seq=raw.seq,
        devices=devices,
        index=raw.index,
        reading_ts=raw.reading_ts,
        reading_seq=raw.reading_seq,
        values=raw.values,
    )


def _roster(raw: msgspec.Raw) -> list[str] | None:
    """The roster's ids if every one is an :data:`~contracts.messages.Id`, else None.

    One regular expression over the ids joined by newlines checks them all; an id cannot hold a
    newline, so the joined string has exactly one fewer than there are ids, or one of them had one.
    """
    devices = _ROSTER.decode(raw)
    if not devices:
        return devices
    joined = "\n".join(devices)
    if joined.count("\n") != len(devices) - 1 or _ROSTER_MATCH(joined) is None:
        return None
    return devices


def _batch_reason(payload: bytes) -> str:
    """Say why a well-formed batch was refused: msgpack, unlike JSON, carries an infinite or NaN ``ts``."""
    try:
        ts = msgspec.msgpack.decode(payload, type=dict[str, Any]).get("ts")
    except _FAST_PATH_ERRORS:
        return "schema"
    return "non_finite" if isinstance(ts, float) and not np.isfinite(ts) else "schema"


def _json_reason(payload: bytes, default: str) -> str:
    """Say why JSON was refused: a typed decoder stops at the first wrong token, before bad UTF-8 or depth."""
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError:
        return "encoding"
    try:
        msgspec.json.decode(payload)
    except RecursionError:
        return "json_depth"
    except msgspec.DecodeError:
        return "json"
    return default


class BatchView(NamedTuple):
    """A decoded gateway batch: the roster plus numpy columns (views on the payload, read-only)."""

    gateway_id: str
    ts: float
    boot_id: int
    seq: int
    devices: list[str]
    index: npt.NDArray[np.uint32]  # type: ignore[assignment]  # shadows tuple.index, on purpose
    reading_ts: npt.NDArray[np.float64]
    reading_seq: npt.NDArray[np.uint32]
    values: dict[str, npt.NDArray[np.float64]]

    def __len__(self) -> int:  # type: ignore[override]
        return int(self.index.shape[0])


class Roster(msgspec.Struct, frozen=True):
    """A gateway's roster encoded once (msgpack), for senders that repeat it in every batch."""

    devices: msgspec.Raw
    count: int


def encode_roster(devices: list[str]) -> Roster:
    """Encode ``devices`` once; pass the result to :func:`encode_batch` as often as needed."""
    return Roster(msgspec.Raw(_MSGPACK_ENCODER.encode(devices)), len(devices))


def encode_batch(
    *,
    gateway_id: str,
    ts: float,
    boot_id: int,
    seq: int,
    devices: list[str] | Roster,
    index: npt.ArrayLike,
    reading_ts: npt.ArrayLike,
    reading_seq: npt.ArrayLike,
    values: dict[str, npt.ArrayLike],
) -> bytes:
    """Encode a columnar batch; every column must have the same length.

    ``devices`` is the roster, as a list or encoded once with :func:`encode_roster` (the bytes
    are the same either way).
    """
    msg = _BatchIn(
        gateway_id=gateway_id,
        ts=ts,
        boot_id=boot_id,
        seq=seq,
        devices=(devices if isinstance(devices, Roster) else encode_roster(devices)).devices,
        index=np.ascontiguousarray(index, dtype="<u4").tobytes(),
        reading_ts=np.ascontiguousarray(reading_ts, dtype="<f8").tobytes(),
        reading_seq=np.ascontiguousarray(reading_seq, dtype="<u4").tobytes(),
        values={k: np.ascontiguousarray(v, dtype="<f8").tobytes() for k, v in values.items()},
    )
    return _MSGPACK_ENCODER.encode(msg)


def decode_batch(payload: bytes, *, key: str | None = None) -> BatchView:
    """Decode a gateway batch into numpy columns, checking shapes, indices and finiteness."""
    return _decode_batch(payload, key, None)


class BatchDecoder:
    """Decodes gateway batches as :func:`decode_batch` does, checking a gateway's roster once while it
    sends the same one.

    A gateway repeats its roster in every batch: while the roster's encoded bytes equal the last ones
    seen from that gateway, the list decoded and checked then is handed out again (so a view's
    ``devices`` may be an earlier view's list: read-only). At most ``max_bytes`` of encoded rosters
    are kept, the gateway heard from longest ago dropped first.
    """

    def __init__(self, max_bytes: int = 64 * 2**20) -> None:
        self._last: dict[str, tuple[msgspec.Raw, list[str]]] = {}
        self._bytes = 0
        self._max_bytes = max_bytes

    def __len__(self) -> int:
        """Gateways whose roster is kept."""
        return len(self._last)

    def decode(self, payload: bytes, *, key: str | None = None) -> BatchView:
        """Decode ``payload`` (see :func:`decode_batch`)."""
        return _decode_batch(payload, key, self)

    def forget(self, gateway_id: str) -> None:
        """Drop the roster kept for ``gateway_id`` (a receiver refused its batch: keep no memory of it)."""
        last = self._last.pop(gateway_id, None)
        if last is not None:
            self._bytes -= len(last[0])

    def _roster(self, gateway_id: str, raw: msgspec.Raw) -> list[str] | None:
        last = self._last.pop(gateway_id, None)  # re-inserted below: the dict stays in order of last use
        if last is not None and last[0] == raw:
            self._last[gateway_id] = last
            return last[1]
        if last is not None:
            self._bytes -= len(last[0])
        devices = _roster(raw)
        if devices is not None and len(raw) <= self._max_bytes:
            kept = raw.copy()  # not a view that would keep the whole payload alive
            self._last[gateway_id] = (kept, devices)
            self._bytes += len(kept)
            while self._bytes > self._max_bytes:
                oldest = next(iter(self._last))
                self._bytes -= len(self._last.pop(oldest)[0])
        return devices


def _decode_batch(payload: bytes, key: str | None, rosters: BatchDecoder | None) -> BatchView:
    msg = _decode(Kind.BATCH, payload, key, rosters)
    assert isinstance(msg, GatewayBatch)
    n, rem = divmod(len(msg.index), 4)
    if rem:
        raise PayloadError("batch_shape", "index buffer is not a whole number of uint32")
    expected = {"reading_ts": 8 * n, "reading_seq": 4 * n}
    for name, size in expected.items():
        if len(getattr(msg, name)) != size:
            raise PayloadError("batch_shape", f"column {name} has {len(getattr(msg, name))} bytes, expected {size}")
    for name, buf in msg.values.items():
        if len(buf) != 8 * n:
            raise PayloadError("batch_shape", f"sensor column {name!r} has {len(buf)} bytes, expected {8 * n}")
    index = np.frombuffer(msg.index, dtype="<u4")
    if n and int(index.max()) >= len(msg.devices):
        raise PayloadError("batch_shape", f"index {int(index.max())} outside roster of {len(msg.devices)}")
    reading_ts = np.frombuffer(msg.reading_ts, dtype="<f8")
    values = {k: np.frombuffer(v, dtype="<f8") for k, v in msg.values.items()}
    if not (np.isfinite(reading_ts).all() and all(np.isfinite(v).all() for v in values.values())):
        raise PayloadError("non_finite", "a column holds NaN or infinite values")
    if n and float(reading_ts.min()) < 0:
        raise PayloadError("schema", "a reading timestamp is negative")
    return BatchView(
        gateway_id=msg.gateway_id,
        ts=msg.ts,
        boot_id=msg.boot_id,
        seq=msg.seq,
        devices=msg.devices,
        index=index,
        reading_ts=reading_ts,
        reading_seq=np.frombuffer(msg.reading_seq, dtype="<u4"),
        values=values,
    )


def decode_as(cls: type[M], payload: bytes) -> M:
    """Decode a JSON payload as ``cls`` (for callers that know the type rather than the topic)."""
    for kind, t in _TYPES.items():
        if t is cls:
            result = decode(kind, payload)
            assert isinstance(result, cls)
            return result
    raise TypeError(f"{cls.__name__} is not a wire message type")
