"""The AsyncAPI 3.0 document of the wire protocol, generated from the topics and the message Structs.

Channels come from :class:`~contracts.topics.Topics` (one per :class:`~contracts.topics.Kind`), the
direction of each operation from the engine's subscriptions, payload schemas from the Structs, so
the document cannot drift from the code. ``docs/asyncapi.yaml`` is this module's output, committed;
regenerate it with ``python -m contracts.asyncapi > docs/asyncapi.yaml``.
"""

from __future__ import annotations

import inspect
import sys
import typing
from typing import Any, Literal

import msgspec
import yaml

from contracts.codec import _TOPIC_KEY_FIELD, message_type  # the field each keyed topic's id must equal
from contracts.messages import SCHEMA_VERSION, Channel, GatewayBatch
from contracts.topics import DEFAULT_PREFIX, Kind, Topics

__all__ = ["ASYNCAPI_VERSION", "BATCH_COLUMNS", "build_document", "channel_address", "main", "render"]

ASYNCAPI_VERSION = "3.0.0"
REGENERATE = "python -m contracts.asyncapi > docs/asyncapi.yaml"

BATCH_COLUMNS: dict[str, tuple[str, str]] = {
    "index": ("<u4", "position in `devices` of each reading's device"),
    "reading_ts": ("<f8", "event time of each reading, seconds"),
    "reading_seq": ("<u4", "per-device sequence number of each reading"),
    "values": ("<f8", "one column per sensor: the reading of each device"),
}
"""The byte columns of a gateway batch: numpy dtype and meaning (all of one length, in readings)."""

_PARAMETERS: dict[str, str] = {
    "device_id": "The device's id; a payload's `device_id` must equal it.",
    "gateway_id": "The gateway's id; a payload's `gateway_id` must equal it.",
    "work_order_id": "The work order's id; a payload's `work_order_id` must equal it.",
    "channel": "How the owner reached support; a payload's `channel` must equal it.",
}
_ID_RULE = " Ids are 1-64 letters, digits or `_.:-`."

_DESCRIPTION = f"""\
Topics between the simulated world (devices, owners, technicians), the support engine and load
generators. Operations are described from the **engine's** point of view: it receives what devices,
owners and technicians publish; it sends commands, work orders, notifications, orders, clock acks
and dead letters.

Addresses are shown under the default prefix `{DEFAULT_PREFIX}`; a run may choose another prefix
so that several runs can share one broker. Identity comes from the topic: a payload whose id
disagrees with its topic is rejected. Every payload carries `schema_version`; device messages
carry `(boot_id, seq)` for de-duplication and gap detection. Times are event-time seconds.

A deployment whose engine runs in partitions splits the device topics into shards: every topic a
device's messages travel on to the engine (telemetry, events, batches, contacts, field statuses,
registry entries) then carries its shard as two more levels after the prefix, `{DEFAULT_PREFIX}/s/{{shard}}/...`,
where the shard is CRC-32 of the device's gateway id (or its own id, without a gateway) modulo the
number of shards. Commands, the engine's topics and the clock carry none. The addresses below are
those of a deployment with one shard, which has no shard level."""


def channel_address(kind: Kind, topics: Topics | None = None) -> tuple[str, str | None]:
    """Return the address template of ``kind`` (``sot/v1/dev/{device_id}/telemetry``) and its parameter."""
    topics = topics or Topics()
    builder_name = kind.name.lower()
    builder = getattr(topics, builder_name, None)
    if builder is None:
        raise LookupError(f"Topics has no builder {builder_name!r} for Kind.{kind.name}")
    param = _TOPIC_KEY_FIELD.get(kind)
    placeholder = f"__{param}__"
    address: str = builder(placeholder) if param else builder
    if topics.parse(address)[:2] != (kind, placeholder if param else ""):
        raise LookupError(f"Topics.{builder_name} builds {address!r}, which does not parse back as {kind}")
    return address.replace(placeholder, "{" + param + "}") if param else address, param


def _matches(topic_filter: str, topic: str) -> bool:
    """Whether an MQTT topic filter (with ``+`` and ``#``) matches ``topic``."""
    levels = topic.split("/")
    for i, want in enumerate(topic_filter.split("/")):
        if want == "#":
            return True
        if i >= len(levels) or want not in ("+", levels[i]):
            return False
    return len(levels) == len(topic_filter.split("/"))


def _engine_action(topics: Topics, kind: Kind) -> Literal["send", "receive"]:
    """``receive`` if the engine subscribes to topics of ``kind``, else ``send``."""
    address, param = channel_address(kind, topics)
    topic = address.replace("{" + param + "}", "x") if param else address
    return "receive" if any(_matches(f, topic) for f in topics.engine_subscriptions()) else "send"


def _summary(cls: type) -> str:
    doc = inspect.getdoc(cls)
    return doc.splitlines()[0] if doc else cls.__name__


def _schemas() -> dict[str, Any]:
    """Payload schemas of every message Struct, with the batch's byte columns described as msgpack bins."""
    types = [message_type(kind) for kind in Kind]
    _, components = msgspec.json.schema_components(types, ref_template="#/components/schemas/{name}")
    for schema in components.values():
        if "description" in schema:
            schema["description"] = inspect.cleandoc(schema["description"])
    properties = components[GatewayBatch.__name__]["properties"]
    for name, (dtype, meaning) in BATCH_COLUMNS.items():
        column = {
            "format": "binary",
            "description": f"msgpack bin: little-endian `{dtype}` values, {meaning}.",
            "x-numpy-dtype": dtype,
        }
        if name == "values":
            properties[name]["additionalProperties"] = column
        else:
            properties[name] = column
    return dict(components)


def build_document() -> dict[str, Any]:
    """Return the AsyncAPI document of every topic kind, as plain data."""
    topics = Topics()
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for kind in Kind:
        cls = message_type(kind)
        name = cls.__name__
        channel_id = kind.name.lower()
        address, param = channel_address(kind, topics)
        channel: dict[str, Any] = {
            "address": address,
            "summary": _summary(cls),
            "messages": {name: {"$ref": f"#/components/messages/{name}"}},
        }
        if param == "channel":
            channel["parameters"] = {param: {"description": _PARAMETERS[param], "enum": list(typing.get_args(Channel))}}
        elif param is not None:
            channel["parameters"] = {param: {"description": _PARAMETERS[param] + _ID_RULE}}
        channels[channel_id] = channel
        action = _engine_action(topics, kind)
        operations[f"{action}{name}"] = {
            "action": action,
            "channel": {"$ref": f"#/channels/{channel_id}"},
            "summary": f"The engine {'receives' if action == 'receive' else 'sends'} {name} messages.",
            "messages": [{"$ref": f"#/channels/{channel_id}/messages/{name}"}],
        }
        messages[name] = {
            "name": name,
            "title": name,
            "summary": _summary(cls),
            "contentType": "application/msgpack" if cls is GatewayBatch else "application/json",
            "payload": {"$ref": f"#/components/schemas/{name}"},
        }
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "Support-of-Things wire protocol",
            "version": f"{SCHEMA_VERSION}.0.0",
            "description": _DESCRIPTION,
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "localhost:1883",
                "protocol": "mqtt",
                "description": "Any MQTT broker; the harness starts Mosquitto or its embedded broker.",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": _schemas()},
    }


class _Dumper(yaml.SafeDumper):
    """Writes multi-line strings as literal blocks, so that descriptions read as they were written."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _represent_str)


def render() -> str:
    """Return the document as YAML, as committed in ``docs/asyncapi.yaml``."""
    header = f"# Generated from contracts/ by `{REGENERATE}`; do not edit by hand.\n"
    return header + yaml.dump(build_document(), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=120)


def main() -> None:
    """Print the document as YAML."""
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
