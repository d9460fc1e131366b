"""The AsyncAPI document: committed copy up to date, one channel per topic kind, payloads = Structs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import numpy as np
import pytest
import yaml
from hypothesis import given

from contracts import GatewayBatch, Kind, Message, Topics, encode, encode_batch, message_type
from contracts.asyncapi import BATCH_COLUMNS, REGENERATE, build_document, channel_address
from tests import strategies as s

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "docs" / "asyncapi.yaml"
DOC = build_document()


def resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref"] + [r for v in node.values() for r in refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in refs(v)]
    return []


def mqtt_match(topic_filter: str, topic: str) -> bool:
    pattern = re.escape(topic_filter).replace(r"\+", "[^/]+").replace("/\\#", "(/.*)?")
    return re.fullmatch(pattern, topic) is not None


def concrete(address: str) -> str:
    """An address with every ``{param}`` replaced by an id."""
    return re.sub(r"\{[a-z_]+\}", "app", address)


def test_the_committed_document_is_up_to_date() -> None:
    committed = yaml.safe_load(COMMITTED.read_text(encoding="utf-8"))
    assert committed == DOC, f"docs/asyncapi.yaml is stale: run `{REGENERATE}` and commit it"


def test_the_module_prints_the_document() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "contracts.asyncapi"], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert yaml.safe_load(result.stdout) == DOC
    assert result.stdout.startswith("# Generated")


def test_asyncapi_version_and_info() -> None:
    assert DOC["asyncapi"] == "3.0.0"
    assert DOC["info"]["title"] and isinstance(DOC["info"]["version"], str)
    assert DOC["defaultContentType"] == "application/json"


def test_every_kind_has_a_channel_that_parses_back_to_it() -> None:
    by_address = {c["address"]: c for c in DOC["channels"].values()}
    assert len(by_address) == len(DOC["channels"]) == len(Kind)
    for kind in Kind:
        address, param = channel_address(kind)
        channel = by_address[address]
        assert list(channel["messages"]) == [message_type(kind).__name__]
        assert sorted(channel.get("parameters", {})) == ([param] if param else [])
        assert set(re.findall(r"\{([a-z_]+)\}", address)) == ({param} if param else set())
        assert Topics().parse(concrete(address)).kind is kind


def test_the_contact_channel_parameter_lists_the_channels() -> None:
    assert DOC["channels"]["contact"]["parameters"]["channel"]["enum"] == ["app", "phone", "chat", "self_service"]


def test_operations_take_the_engines_point_of_view() -> None:
    topics = Topics()
    operations = DOC["operations"]
    assert len(operations) == len(Kind)
    for op in operations.values():
        channel = resolve(DOC, op["channel"]["$ref"])
        topic = concrete(channel["address"])
        subscribed = any(mqtt_match(f, topic) for f in topics.engine_subscriptions())
        assert op["action"] == ("receive" if subscribed else "send"), channel["address"]
        if op["action"] == "send" and not topic.endswith(("/deadletter", "/ingested")):  # for operators and load tests
            assert any(mqtt_match(f, topic) for f in topics.world_subscriptions()), channel["address"]
    actions = {op["action"] for op in operations.values()}
    assert actions == {"send", "receive"}


def test_every_reference_resolves() -> None:
    all_refs = refs(DOC)
    assert len(all_refs) > 3 * len(Kind)
    for ref in all_refs:
        assert resolve(DOC, ref) is not None, ref


@pytest.mark.parametrize("kind", list(Kind), ids=lambda k: k.value)
def test_each_payload_schema_lists_exactly_the_structs_fields(kind: Kind) -> None:
    cls = message_type(kind)
    message = DOC["components"]["messages"][cls.__name__]
    schema = resolve(DOC, message["payload"]["$ref"])
    fields = msgspec.structs.fields(cls)
    assert set(schema["properties"]) == {f.encode_name for f in fields}
    assert set(schema.get("required", [])) == {f.encode_name for f in fields if f.required}
    assert schema["additionalProperties"] is False
    expected_type = "application/msgpack" if cls is GatewayBatch else "application/json"
    assert message["contentType"] == expected_type


@given(s.batch_columns(min_readings=1))
def test_the_documented_batch_dtypes_are_what_encode_batch_writes(cols: dict[str, Any]) -> None:
    raw = msgspec.msgpack.decode(encode_batch(**cols))
    properties = DOC["components"]["schemas"]["GatewayBatch"]["properties"]
    for name in ("index", "reading_ts", "reading_seq"):
        dtype = properties[name]["x-numpy-dtype"]
        assert dtype == BATCH_COLUMNS[name][0]
        np.testing.assert_array_equal(np.frombuffer(raw[name], dtype=dtype), cols[name])
    dtype = properties["values"]["additionalProperties"]["x-numpy-dtype"]
    for name, column in cols["values"].items():
        np.testing.assert_array_equal(np.frombuffer(raw["values"][name], dtype=dtype), column)


def payload_validator(kind: Kind) -> jsonschema.Validator:
    name = message_type(kind).__name__
    return jsonschema.Draft202012Validator({"$ref": f"#/components/schemas/{name}", "components": DOC["components"]})


VALIDATORS = {kind: payload_validator(kind) for kind in Kind if kind is not Kind.BATCH}


@given(s.messages.filter(lambda km: km[0] is not Kind.BATCH))
def test_every_encoded_message_satisfies_its_documented_schema(kind_and_message: tuple[Kind, Message]) -> None:
    kind, message = kind_and_message
    data = msgspec.json.decode(encode(message))
    VALIDATORS[kind].validate(data)
    assert not VALIDATORS[kind].is_valid({**data, "schema_version": 2})
    assert not VALIDATORS[kind].is_valid({**data, "unexpected": 1})
