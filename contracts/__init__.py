"""The wire protocol shared by the world, the engine and the load tests.

- :mod:`contracts.topics` — topic names under a prefix, and parsing them back;
- :mod:`contracts.messages` — one msgspec Struct per topic kind, each with ``schema_version``;
- :mod:`contracts.codec` — JSON and columnar msgpack codecs; garbage raises ``PayloadError``;
- :mod:`contracts.engine_config` — the policy and rules a run hands to the engine.

This package imports nothing of the project's and connects to nothing.
"""

from __future__ import annotations

from contracts.codec import BatchView, decode, decode_as, decode_batch, encode, encode_batch, message_type
from contracts.engine_config import POLICIES, EngineConfig, IssueType, Policy, Sla, ThresholdRule
from contracts.errors import ContractError, PayloadError, TopicError
from contracts.messages import (
    SCHEMA_VERSION,
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
    Message,
    Notification,
    Telemetry,
    WorkOrder,
    WorkOrderStatus,
)
from contracts.topics import DEFAULT_PREFIX, Kind, ParsedTopic, Topics, check_id

__all__ = [
    "DEFAULT_PREFIX",
    "POLICIES",
    "SCHEMA_VERSION",
    "BatchView",
    "Clock",
    "ClockAck",
    "Command",
    "ConsumableOrder",
    "Contact",
    "ContractError",
    "DeadLetter",
    "IngestAck",
    "DeviceEvent",
    "DeviceRecord",
    "EngineConfig",
    "GatewayBatch",
    "IssueType",
    "Kind",
    "Message",
    "Notification",
    "ParsedTopic",
    "PayloadError",
    "Policy",
    "Sla",
    "Telemetry",
    "ThresholdRule",
    "TopicError",
    "Topics",
    "WorkOrder",
    "WorkOrderStatus",
    "check_id",
    "decode",
    "decode_as",
    "decode_batch",
    "encode",
    "encode_batch",
    "message_type",
]
