"""Topic names: build them from ids, parse them back into (kind, key, shard).

Every topic lives under a prefix (``sot/v1`` by default) so that tests and parallel runs can share
one broker without hearing each other.

A deployment may split its device topics into ``shards`` (engine partitions own shards; see
``docs/design.md``, "Engine partitions"). A device's shard is :func:`shard_of` its gateway's id
(devices behind one gateway share it), or of its own id without a gateway. With more than one
shard, every topic a device's messages travel on (telemetry, events, batches, contacts, field
statuses, registry entries) carries it as two levels after the prefix, ``s/{shard}/``; commands,
the engine's outputs and the clock do not. With one shard (the default) there is no shard level.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable
from enum import StrEnum
from typing import NamedTuple

from contracts.errors import TopicError

__all__ = [
    "DEFAULT_PREFIX",
    "Kind",
    "ParsedTopic",
    "Topics",
    "check_id",
    "shard_of",
]

DEFAULT_PREFIX = "sot/v1"
_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


class Kind(StrEnum):
    """What a topic carries; the value is the last topic level."""

    TELEMETRY = "telemetry"
    BATCH = "batch"
    EVENT = "event"
    COMMAND = "cmd"
    CONTACT = "contact"
    FIELD_STATUS = "status"
    WORK_ORDER = "workorder"
    NOTIFY = "notify"
    ORDER = "order"
    CLOCK = "clock"
    CLOCK_ACK = "ack"
    DEAD_LETTER = "deadletter"
    INGEST_ACK = "ingested"
    REGISTRY = "registry"


class ParsedTopic(NamedTuple):
    kind: Kind
    key: str  # device, gateway, channel or work-order id; "" for engine topics
    shard: int = 0  # the topic's shard (0 without shards)


def shard_of(key: str, shards: int) -> int:
    """The shard of a gateway or device id: CRC-32 of its UTF-8 bytes modulo ``shards`` (0 for one shard).

    Stable across processes, machines and Python versions, so that devices, the world and every
    engine partition agree without asking each other."""
    return zlib.crc32(key.encode()) % shards if shards > 1 else 0


def check_id(value: str) -> str:
    """Return ``value`` if it is safe as one topic level, else raise :class:`TopicError`."""
    if not _ID.fullmatch(value):
        raise TopicError(
            f"id {value!r} is not 1-64 characters of letters, digits and '_.:-' "
            "(MQTT wildcards, '/', '$', spaces and NUL are never allowed in ids)"
        )
    return value


class Topics:
    """Topic names under one prefix."""

    def __init__(self, prefix: str = DEFAULT_PREFIX, shards: int = 1) -> None:
        if not prefix or any(c in prefix for c in "+#\x00") or prefix.endswith("/"):
            raise TopicError(f"bad topic prefix {prefix!r}")
        if not 1 <= shards <= 4096:
            raise TopicError(f"shards must be 1-4096, not {shards}")
        self.prefix = prefix
        self.shards = shards
        self._depth = prefix.count("/") + 1

    def shard_of(self, key: str) -> int:
        """:func:`shard_of` ``key`` among this deployment's shards."""
        return shard_of(key, self.shards)

    def _under(self, shard: int) -> str:
        """The prefix of a device topic in ``shard``: ``{prefix}/s/{shard}``, or the prefix alone unsharded."""
        if self.shards == 1:
            return self.prefix
        if not 0 <= shard < self.shards:
            raise TopicError(f"shard {shard} is not one of 0-{self.shards - 1}")
        return f"{self.prefix}/s/{shard}"

    # -- device to engine (``shard``: the device's, see :func:`shard_of`) -------------------------
    def telemetry(self, device_id: str, shard: int = 0) -> str:
        return f"{self._under(shard)}/dev/{check_id(device_id)}/telemetry"

    def event(self, device_id: str, shard: int = 0) -> str:
        return f"{self._under(shard)}/dev/{check_id(device_id)}/event"

    def batch(self, gateway_id: str, shard: int | None = None) -> str:
        """A gateway's batch topic; its shard is the gateway's own unless given."""
        return f"{self._under(self.shard_of(gateway_id) if shard is None else shard)}/gw/{check_id(gateway_id)}/batch"

    def contact(self, channel: str, shard: int = 0) -> str:
        return f"{self._under(shard)}/contact/{check_id(channel)}"

    def registry(self, device_id: str, shard: int = 0) -> str:
        return f"{self._under(shard)}/registry/{check_id(device_id)}"

    def field_status(self, work_order_id: str, shard: int = 0) -> str:
        return f"{self._under(shard)}/field/{check_id(work_order_id)}/status"

    # -- engine to world -------------------------------------------------------------------------
    def command(self, device_id: str) -> str:
        return f"{self.prefix}/dev/{check_id(device_id)}/cmd"

    @property
    def work_order(self) -> str:
        return f"{self.prefix}/engine/workorder"

    @property
    def notify(self) -> str:
        return f"{self.prefix}/engine/notify"

    @property
    def order(self) -> str:
        return f"{self.prefix}/engine/order"

    @property
    def dead_letter(self) -> str:
        return f"{self.prefix}/engine/deadletter"

    @property
    def ingest_ack(self) -> str:
        return f"{self.prefix}/engine/ingested"

    # -- event-time barrier ----------------------------------------------------------------------
    @property
    def clock(self) -> str:
        return f"{self.prefix}/clock"

    @property
    def clock_ack(self) -> str:
        return f"{self.prefix}/clock/ack"

    # -- subscriptions ---------------------------------------------------------------------------
    def engine_subscriptions(self, shards: Iterable[int] | None = None) -> list[str]:
        """Topic filters the engine subscribes to: the device topics of ``shards`` (all by default) and the clock."""
        owned = range(self.shards) if shards is None else shards
        under = [self.prefix] if self.shards == 1 else [self._under(s) for s in owned]
        leaves = ["dev/+/telemetry", "dev/+/event", "gw/+/batch", "contact/+", "field/+/status", "registry/+"]
        return [f"{u}/{leaf}" for u in under for leaf in leaves] + [f"{self.prefix}/clock"]

    def world_subscriptions(self) -> list[str]:
        """Topic filters the world (or any device fleet) subscribes to."""
        p = self.prefix
        return [f"{p}/dev/+/cmd", f"{p}/engine/workorder", f"{p}/engine/notify", f"{p}/engine/order", f"{p}/clock/ack"]

    def parse(self, topic: str) -> ParsedTopic:
        """Split ``topic`` into its kind, key and shard; raise :class:`TopicError` for any other shape
        (a device topic without its shard level when there are shards, or with one when there are not)."""
        head, sep, rest = topic.partition(self.prefix + "/")
        if head or not sep:
            raise TopicError(f"topic {topic!r} is not under prefix {self.prefix!r}")
        levels = rest.split("/")
        shard = 0
        sharded = levels[0] == "s" and len(levels) > 2
        if sharded:
            if self.shards == 1:
                raise TopicError(f"topic {topic!r} names a shard, but this deployment has none")
            number = levels[1]
            if not (number.isascii() and number.isdigit() and len(number) <= 4 and int(number) < self.shards):
                raise TopicError(f"topic {topic!r}: shard {number!r} is not one of 0-{self.shards - 1}")
            shard, levels = int(number), levels[2:]
            if levels[-1] == "cmd" or levels[0] in ("engine", "clock"):
                raise TopicError(f"topic {topic!r}: only device messages to the engine carry a shard")
        match levels:
            case ["dev", key, ("telemetry" | "event" | "cmd") as leaf] if _ID.fullmatch(key):
                parsed = ParsedTopic(Kind(leaf), key, shard)
            case ["gw", key, "batch"] if _ID.fullmatch(key):
                parsed = ParsedTopic(Kind.BATCH, key, shard)
            case ["contact", key] if _ID.fullmatch(key):
                parsed = ParsedTopic(Kind.CONTACT, key, shard)
            case ["registry", key] if _ID.fullmatch(key):
                parsed = ParsedTopic(Kind.REGISTRY, key, shard)
            case ["field", key, "status"] if _ID.fullmatch(key):
                parsed = ParsedTopic(Kind.FIELD_STATUS, key, shard)
            case ["engine", ("workorder" | "notify" | "order" | "deadletter" | "ingested") as leaf]:
                return ParsedTopic(Kind(leaf), "")
            case ["clock"]:
                return ParsedTopic(Kind.CLOCK, "")
            case ["clock", "ack"]:
                return ParsedTopic(Kind.CLOCK_ACK, "")
            case _:
                raise TopicError(f"topic {topic!r} has no known shape")
        if self.shards > 1 and not sharded and parsed.kind is not Kind.COMMAND:
            raise TopicError(f"topic {topic!r} has no shard level (s/N/), and this deployment has {self.shards} shards")
        return parsed
