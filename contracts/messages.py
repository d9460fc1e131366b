"""Message types on the wire, one msgspec Struct per topic kind.

Every message carries ``schema_version``. Device messages carry ``(boot_id, seq)`` so that a
receiver can de-duplicate and detect gaps. Times are seconds (event time) as floats. Every number
has a range (:data:`MAX_COUNT`, :data:`MAX_SECONDS`, :data:`MAX_SENSORS`), so that a schema-valid
message is also one that storage, numpy and JSON readers elsewhere hold exactly.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

__all__ = [
    "ID_PATTERN",
    "MAX_COUNT",
    "MAX_SECONDS",
    "MAX_SENSORS",
    "SCHEMA_VERSION",
    "Channel",
    "Clock",
    "ClockAck",
    "Command",
    "CommandAction",
    "ConsumableOrder",
    "Contact",
    "DeadLetter",
    "DeviceEvent",
    "DeviceRecord",
    "GatewayBatch",
    "IngestAck",
    "Message",
    "Notification",
    "PreventiveVisit",
    "Telemetry",
    "WorkOrder",
    "WorkOrderStatus",
]

SCHEMA_VERSION = 1

ID_PATTERN = r"[A-Za-z0-9_.:-]{1,64}"
"""What an id or a name is, whole (for ``re.fullmatch``): 1 to 64 letters, digits, ``_ . : -``."""
# `(?!\n)`: msgspec applies the pattern with re.search, whose `$` also matches before a final newline.
Id = Annotated[str, msgspec.Meta(pattern=rf"^{ID_PATTERN}(?!\n)$")]
Name = Annotated[str, msgspec.Meta(pattern=rf"^{ID_PATTERN}(?!\n)$")]
Text = Annotated[str, msgspec.Meta(max_length=1000, pattern=r"^[^\x00]*$")]  # no NUL: PostgreSQL text cannot hold it

MAX_COUNT = 2**53 - 1
"""The largest ``seq``, ``boot_id`` or count on the wire.

2^53 - 1 is the largest integer every JSON reader holds exactly (JavaScript and many others read
numbers as float64: beyond it two sequence numbers can read as one), and it leaves room below what
SQLite's INTEGER, PostgreSQL's BIGINT and numpy's int64 hold (2^63 - 1), so that the engine's
arithmetic on them (gaps, sums of counts) cannot overflow either."""
MAX_SECONDS = 1e11
"""The largest time on the wire, in seconds: event time from 0 (about 3,170 years of simulation) or
Unix time (the year 5138; now is about 1.8e9). It excludes infinity and keeps every time an exact
float64 far below the precision limit of the engine's arithmetic on times."""
Seconds = Annotated[float, msgspec.Meta(ge=0.0, le=MAX_SECONDS)]
Count = Annotated[int, msgspec.Meta(ge=0, le=MAX_COUNT)]
MAX_SENSORS = 1024
"""The most sensor columns one telemetry message or batch may carry (an engine's limits take fewer)."""
Readings = Annotated[dict[Name, float], msgspec.Meta(max_length=MAX_SENSORS)]
Counter = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]  # an engine counter: what SQLite stores
Version = Annotated[int, msgspec.Meta(ge=1, le=SCHEMA_VERSION)]
Channel = Literal["app", "phone", "chat", "self_service"]
CommandAction = Literal["reset", "diagnostic", "ota", "configure"]


class Message(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of every wire message."""

    schema_version: Version = SCHEMA_VERSION


class Telemetry(Message, frozen=True, kw_only=True):
    """One reading set of one device (`dev/{device_id}/telemetry`, JSON)."""

    device_id: Id
    ts: Seconds
    boot_id: Count
    seq: Count
    values: Readings


class GatewayBatch(Message, frozen=True, kw_only=True):
    """Readings of many devices, columnar (`gw/{gateway_id}/batch`, msgpack).

    ``devices`` is the roster; the columns are little-endian buffers of equal length:
    ``index`` (uint32 into ``devices``), ``reading_ts`` (float64), ``reading_seq`` (uint32, per
    device) and one float64 column per sensor in ``values``. Decode with :func:`contracts.codec.decode_batch`.
    """

    gateway_id: Id
    ts: Seconds
    boot_id: Count
    seq: Count
    devices: list[Id]
    index: bytes
    reading_ts: bytes
    reading_seq: bytes
    values: Annotated[dict[Name, bytes], msgspec.Meta(max_length=MAX_SENSORS)]


class DeviceEvent(Message, frozen=True, kw_only=True):
    """Something a device reports on its own (`dev/{device_id}/event`, JSON).

    ``firmware``: ``code`` is the version now running; ``config``: ``code`` is a setting's name and
    ``detail`` its value; ``command_result``: ``code`` says what the command really did: ``fixed``
    (it fixed a fault, failed or on its way, and none it acts on is left), ``not_fixed`` (a fault
    is left), ``no_fault`` (there was nothing for it to fix), or ``failed`` (the command itself did
    not run, such as an update that did not install).
    """

    device_id: Id
    ts: Seconds
    boot_id: Count
    seq: Count
    kind: Literal["fault", "diagnosis", "firmware", "config", "consumable_low", "consumable_refilled", "command_result"]
    code: Name
    detail: Text = ""
    command_id: Id | None = None


class DeviceRecord(Message, frozen=True, kw_only=True):
    """A device's entry in the engine's registry (`registry/{device_id}`, JSON; or a file given to
    ``sot engine --devices``): what it is, whose it is, and the terms it is serviced under.

    ``cohorts`` names the device's groups (``batch: B-2024-07``) that fleet-pattern campaigns compare;
    ``firmware`` is the version it shipped with (its own firmware events update it); ``interval_s``
    its reporting interval, if known (offline detection learns it otherwise); ``warranty_until_s``
    the engine time its warranty ends; ``gateway_id`` the gateway it reports through, if any (its
    shard is the gateway's: :func:`contracts.topics.shard_of`).
    """

    device_id: Id
    product: Name | None = None
    owner_id: Id | None = None
    region: Name | None = None
    firmware: Name | None = None
    cohorts: dict[Name, Name] = {}
    contract: Name | None = None
    warranty_until_s: Annotated[float, msgspec.Meta(ge=-MAX_SECONDS, le=MAX_SECONDS)] | None = None
    interval_s: Annotated[float, msgspec.Meta(gt=0.0, le=MAX_SECONDS)] | None = None
    gateway_id: Id | None = None


class Command(Message, frozen=True, kw_only=True):
    """An instruction to a device (`dev/{device_id}/cmd`, JSON); ``ts`` is its effective time."""

    command_id: Id
    device_id: Id
    ts: Seconds
    action: CommandAction
    version: Name | None = None
    case_id: Id | None = None
    settings: dict[Name, Annotated[str, msgspec.Meta(max_length=200)]] = {}  # action `configure`: desired values


class Contact(Message, frozen=True, kw_only=True):
    """An owner reaching support about a device (`contact/{channel}`, JSON).

    A contact about a fault describes it by ``symptom``. One about something else (a how-to
    question, billing, set-up help) names that ``reason`` (and repeats it as ``symptom``): support
    answers it on the contact, with no case and no visit. ``reason`` is left out of a fault
    contact's JSON, so that its wire form is what it was before such contacts existed.
    """

    contact_id: Id
    owner_id: Id
    device_id: Id
    channel: Channel
    ts: Seconds
    symptom: Name
    resolved: bool = False  # the agent (or self-service) fixed it (or answered the question) during the contact
    reason: Name | msgspec.UnsetType = msgspec.UNSET

    @property
    def about_a_fault(self) -> bool:
        """Whether the owner got in touch about a fault of the device (else about ``reason``)."""
        return not isinstance(self.reason, str)


class PreventiveVisit(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What a preventive work order is for: the maintenance ``plan`` that made it due, and the
    failure modes the technician services on the visit (``services``; none: an inspection only)."""

    plan: Name
    services: Annotated[list[Name], msgspec.Meta(max_length=64)] = []


class WorkOrder(Message, frozen=True, kw_only=True):
    """A field job the engine dispatches (`engine/workorder`, JSON).

    A corrective work order answers a case (``case_id``). A preventive one (``maintenance`` set) is
    due by a maintenance plan, whatever the device's state: no case is opened for it, and
    ``case_id`` is the visit's own id. ``maintenance`` is left out of a corrective work order's
    JSON, so that its wire form is what it was before preventive work orders existed.
    """

    work_order_id: Id
    case_id: Id
    device_id: Id
    ts: Seconds
    issue: Name
    skill: Name
    parts: list[Name]
    duration_s: Seconds
    priority: Annotated[int, msgspec.Meta(ge=1, le=5)] = 3
    technician_id: Id | None = None  # assigned by the engine (when it knows the technicians), else by the field
    billable: bool = False  # out of warranty
    maintenance: PreventiveVisit | msgspec.UnsetType = msgspec.UNSET

    @property
    def preventive(self) -> bool:
        """Whether this is a preventive visit (due by a maintenance plan), not an answer to a case."""
        return isinstance(self.maintenance, PreventiveVisit)


class WorkOrderStatus(Message, frozen=True, kw_only=True):
    """A technician's report on a work order (`field/{work_order_id}/status`, JSON)."""

    work_order_id: Id
    device_id: Id
    ts: Seconds
    seq: Count
    status: Literal["accepted", "arrived", "fixed", "part_missing", "incomplete", "no_fault_found", "closed"]
    technician_id: Id
    visit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 1
    note: Text = ""


class Notification(Message, frozen=True, kw_only=True):
    """A message to a device's owner (`engine/notify`, JSON)."""

    notification_id: Id
    device_id: Id
    ts: Seconds
    kind: Literal["case_opened", "visit_scheduled", "resolved", "outreach", "outage"]
    case_id: Id | None = None
    text: Text = ""


class ConsumableOrder(Message, frozen=True, kw_only=True):
    """A replenishment order for a device's consumable (`engine/order`, JSON)."""

    order_id: Id
    device_id: Id
    ts: Seconds
    consumable: Name
    quantity: Annotated[float, msgspec.Meta(gt=0, le=1e9)]


class Clock(Message, frozen=True, kw_only=True):
    """Event-time barrier from the world (`clock`): all ``published`` messages stamped ≤ t are out.

    With sharded topics ``shards`` counts them per shard (``published`` is their sum plus any
    unsharded ones), so that an engine partition knows how many of them are its own."""

    t: Seconds
    published: Count
    final: bool = False
    shards: Annotated[list[Count], msgspec.Meta(max_length=4096)] = []


class ClockAck(Message, frozen=True, kw_only=True):
    """The engine's answer to a :class:`Clock` (`clock/ack`).

    ``emitted`` counts every message the engine has published to the world so far; ``stats`` are
    the engine's cumulative counters (ingested, duplicates, rejected, ...); ``partition`` is the
    answering engine partition's number (0 for an engine alone).
    """

    t: Seconds
    received: Count
    emitted: Count
    stats: dict[Name, Counter] = {}
    partition: Annotated[int, msgspec.Meta(ge=0, le=4095)] = 0


class DeadLetter(Message, frozen=True, kw_only=True):
    """A rejected message, republished with the reason (`engine/deadletter`, JSON)."""

    topic: Text
    reason: Name
    detail: Text
    payload_hex: Annotated[str, msgspec.Meta(max_length=512)]


class IngestAck(Message, frozen=True, kw_only=True):
    """The engine's receipt for a sampled device message (`engine/ingested`, JSON), published once the
    message is committed: load tests measure publish → ingest latency from it.

    ``kind`` is ``telemetry`` or ``batch``; ``source`` the device or gateway; ``ts`` the message's own
    timestamp; ``committed_s`` the engine's clock when it was committed.
    """

    kind: Literal["telemetry", "batch", "event"]
    source: Id
    boot_id: Count
    seq: Count
    ts: Seconds
    committed_s: Annotated[float, msgspec.Meta(ge=-MAX_SECONDS, le=MAX_SECONDS)]
