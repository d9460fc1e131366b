"""The JSON Schema of scenario files as people write them, for editors' completion, checking and hover help.

:func:`json_schema` starts from msgspec's schema of :class:`~sim.scenario.Scenario` (each Struct's
docstring is its description, each field's ``msgspec.Meta`` its description and examples) and
turns it from the merged form into the authoring form:

- an item of a fleet's ``sensors``, ``failure_modes`` or ``consumables``, and of the engine's
  ``rules``, ``trends`` or ``anomalies``, may be an override by name (only ``name`` required: it
  changes the keys it gives of the product's item of that name), and so may an item of a
  ``products`` entry with a ``base``;
- a distribution is checked by its ``dist`` first, then against that distribution alone, so that an
  editor says "'weibul' is not one of ..." or "'scale' is a required property" rather than "not
  valid under any of the given schemas".

``sot validate`` still checks what the schema cannot (a complete item where a name is new, every
cross-reference).
"""

from __future__ import annotations

import copy
from typing import Any

import msgspec

from sim import distributions
from sim.scenario import Scenario

__all__ = ["OVERRIDABLE", "json_schema"]

OVERRIDABLE = ("Sensor", "FailureMode", "Consumable", "ThresholdRule", "TrendRule", "AnomalyRule")
"""Items of named lists: where they merge by name over a product's, an override needs only ``name``."""
_FLEET_LISTS = ("sensors", "failure_modes", "consumables")
_RULE_LISTS = ("rules", "trends", "anomalies")
_OVERRIDE_NOTE = (
    "\n\nAn item with the `name` of one the product has changes only the keys given here (the"
    " others stay the product's); an item with a new `name` needs every required key."
)


def _tagged_unions(node: Any, unions: dict[str, Any]) -> Any:
    """``node`` with each ``anyOf`` that has a ``discriminator`` replaced by a reference to a
    definition (added to ``unions``) that checks the tag first and then the one member it names."""
    if isinstance(node, list):
        return [_tagged_unions(item, unions) for item in node]
    if not isinstance(node, dict):
        return node
    node = {k: _tagged_unions(v, unions) for k, v in node.items()}
    discriminator = node.get("discriminator")
    if not isinstance(discriminator, dict) or "anyOf" not in node:
        return node
    tag, mapping = discriminator["propertyName"], discriminator["mapping"]
    name = "Distribution" if tag == "dist" else f"{tag.title()}Union"
    unions[name] = {
        "title": name,
        "description": (distributions.__doc__ or "").split("\n\n", 1)[0] if tag == "dist" else name,
        "type": "object",
        "required": [tag],
        "properties": {
            tag: {
                "description": f"Which one: {', '.join(mapping)}; its own keys follow.",
                "enum": list(mapping),
                "examples": list(mapping)[:1],
            }
        },
        "allOf": [{"if": {"properties": {tag: {"const": v}}}, "then": {"$ref": ref}} for v, ref in mapping.items()],
    }
    rest = {k: v for k, v in node.items() if k not in ("anyOf", "discriminator")}
    return {**rest, "$ref": f"#/$defs/{name}"}


def _describe_tags(defs: dict[str, Any], unions: dict[str, Any]) -> None:
    """Give each member's own tag property (``dist: {enum: [weibull]}``) a description and example."""
    for union in unions.values():
        (tag,) = union["required"]
        for branch in union["allOf"]:
            value = branch["if"]["properties"][tag]["const"]
            member = defs[branch["then"]["$ref"].rsplit("/", 1)[1]]
            member["properties"][tag] = {"description": f"`{value}`.", "enum": [value], "examples": [value]}


def _override(definition: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(definition)
    out["title"] = f"{definition['title']} (or an override by name)"
    out["description"] = definition.get("description", "") + _OVERRIDE_NOTE
    out["required"] = ["name"]
    for prop in out["properties"].values():
        prop.pop("default", None)  # an override left out keeps the product's value, not the type's default
    return out


def _point_items(definition: dict[str, Any], keys: tuple[str, ...], suffix: str) -> None:
    for key in keys:
        items = definition["properties"][key]["items"]
        items["$ref"] = f"{items['$ref']}{suffix}"


def json_schema() -> dict[str, Any]:
    """The JSON Schema of scenario files in the authoring form (see the module's docstring)."""
    schema: dict[str, Any] = msgspec.json.schema(Scenario)
    unions: dict[str, Any] = {}
    schema = _tagged_unions(schema, unions)
    defs: dict[str, Any] = schema["$defs"]
    _describe_tags(defs, unions)
    defs.update(unions)
    for name in OVERRIDABLE:
        defs[f"{name}Override"] = _override(defs[name])
    _point_items(defs["Fleet"], _FLEET_LISTS, "Override")
    _point_items(defs["EngineConfig"], _RULE_LISTS, "Override")
    product = defs["Product"]
    complete = {key: copy.deepcopy(product["properties"][key]) for key in _FLEET_LISTS}
    _point_items(product, _FLEET_LISTS, "Override")
    product["if"] = {"required": ["base"]}
    product["else"] = {"properties": complete}  # no base: the entry is a whole product
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "sot scenario"
    schema["description"] = defs["Scenario"]["description"]
    return schema
