"""Topic names: build them from ids, parse them back into (kind, key).

Every topic lives under a prefix (``sot/v1`` by default) so that tests and parallel runs can share
one broker without hearing each other.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import NamedTuple

from contracts.errors import TopicError

__all__ = [
    "DEFAULT_PREFIX",
    "Kind",
    "ParsedTopic",
    "Topics",
    "check_id",
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

    def __init__(self, prefix: str = DEFAULT_PREFIX) -> None:
        if not prefix or any(c in prefix for c in "+#\x00") or prefix.endswith("/"):
            raise TopicError(f"bad topic prefix {prefix!r}")
        self.prefix = prefix
        self._depth = prefix.count("/") + 1

    # -- device to engine ------------------------------------------------------------------------
    def telemetry(self, device_id: str) -> str:
        return f"{self.prefix}/dev/{check_id(device_id)}/telemetry"

    def event(self, device_id: str) -> str:
        return f"{self.prefix}/dev/{check_id(device_id)}/event"

    def batch(self, gateway_id: str) -> str:
        return f"{self.prefix}/gw/{check_id(gateway_id)}/batch"

    def contact(self, channel: str) -> str:
        return f"{self.prefix}/contact/{check_id(channel)}"

    def registry(self, device_id: str) -> str:
        return f"{self.prefix}/registry/{check_id(device_id)}"

    def field_status(self, work_order_id: str) -> str:
        return f"{self.prefix}/field/{check_id(work_order_id)}/status"

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
    def engine_subscriptions(self) -> list[str]:
        """Topic filters the engine subscribes to."""
        p = self.prefix
        return [
            f"{p}/dev/+/telemetry",
            f"{p}/dev/+/event",
            f"{p}/gw/+/batch",
            f"{p}/contact/+",
            f"{p}/field/+/status",
            f"{p}/registry/+",
            f"{p}/clock",
        ]

    def world_subscriptions(self) -> list[str]:
        """Topic filters the world (or any device fleet) subscribes to."""
        p = self.prefix
        return [f"{p}/dev/+/cmd", f"{p}/engine/workorder", f"{p}/engine/notify", f"{p}/engine/order", f"{p}/clock/ack"]

    def parse(self, topic: str) -> ParsedTopic:
        """Split ``topic`` into its kind and key; raise :class:`TopicError` for any other shape."""
        head, sep, rest = topic.partition(self.prefix + "/")
        if head or not sep:
            raise TopicError(f"topic {topic!r} is not under prefix {self.prefix!r}")
        levels = rest.split("/")
        match levels:
            case ["dev", key, ("telemetry" | "event" | "cmd") as leaf] if _ID.fullmatch(key):
                return ParsedTopic(Kind(leaf), key)
            case ["gw", key, "batch"] if _ID.fullmatch(key):
                return ParsedTopic(Kind.BATCH, key)
            case ["contact", key] if _ID.fullmatch(key):
                return ParsedTopic(Kind.CONTACT, key)
            case ["registry", key] if _ID.fullmatch(key):
                return ParsedTopic(Kind.REGISTRY, key)
            case ["field", key, "status"] if _ID.fullmatch(key):
                return ParsedTopic(Kind.FIELD_STATUS, key)
            case ["engine", ("workorder" | "notify" | "order" | "deadletter" | "ingested") as leaf]:
                return ParsedTopic(Kind(leaf), "")
            case ["clock"]:
                return ParsedTopic(Kind.CLOCK, "")
            case ["clock", "ack"]:
                return ParsedTopic(Kind.CLOCK_ACK, "")
        raise TopicError(f"topic {topic!r} has no known shape")
