"""`sot schema`: a JSON Schema of the files people write, which every shipped scenario and catalogue
entry passes, whose every field has a description and an example, and whose messages say what is wrong."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from harness.cli import app
from sim import catalogue
from sim.scenario_file import json_schema

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json_schema()
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def first_error(data: Any) -> jsonschema.ValidationError | None:
    return jsonschema.exceptions.best_match(VALIDATOR.iter_errors(data))


def errors(data: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in VALIDATOR.iter_errors(data)]


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


@pytest.mark.parametrize("path", sorted((ROOT / "scenarios").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_scenario_passes_the_schema(path: Path) -> None:
    assert errors(yaml.safe_load(path.read_text(encoding="utf-8"))) == []


@pytest.mark.parametrize("product", catalogue.names())
def test_every_catalogue_entry_passes_as_a_scenarios_own_product(product: str) -> None:
    entry = catalogue.builtin()[product]
    data = {
        "name": "t",
        "duration_days": 1,
        "products": {"mine": entry, "overridden": {"base": product, "failure_modes": [{"name": "x"}]}},
        "fleets": [{"name": "f", "product": "mine", "count": 1}],
        "contact_centre": {"agents": 1},
        "technicians": {"count": 1},
    }
    assert errors(data) == []


def _properties(schema: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(f"{name}.{key}", prop) for name, d in schema["$defs"].items() for key, prop in d["properties"].items()]


def test_every_property_has_a_description_and_an_example() -> None:
    properties = _properties(SCHEMA)
    assert len(properties) > 250
    assert [name for name, prop in properties if not prop.get("description")] == []
    assert [name for name, prop in properties if not prop.get("examples")] == []
    assert all(d.get("description") for name, d in SCHEMA["$defs"].items() if not name[0].islower()), "structs"


def test_examples_are_valid_values_of_their_fields() -> None:
    """An example that the field itself would refuse is a wrong hint (overrides may be partial)."""
    wrong = []
    for name, prop in _properties(SCHEMA):
        if name.split(".", 1)[0].endswith("Override") or name.startswith(("Fleet.", "EngineConfig.")):
            continue  # their named lists hold overrides: a partial example is right there
        schema = {"$defs": SCHEMA["$defs"], **{k: v for k, v in prop.items() if k != "examples"}}
        for example in prop["examples"]:
            if not jsonschema.Draft202012Validator(schema).is_valid(example):
                wrong.append((name, example))
    assert wrong == []


def test_partial_overrides_by_name_are_allowed_where_the_file_merges_them() -> None:
    data = yaml.safe_load((ROOT / "scenarios" / "freezers.yaml").read_text(encoding="utf-8"))
    assert data["fleets"][0]["failure_modes"] == [
        {"name": "power_loss", "life_days": {"dist": "exponential", "mean": 1500}}
    ]
    assert errors(data) == []  # it once failed: "'symptom' is a required property"
    data["engine"]["rules"] = [{"name": "freezer_cabinet_hot", "above": -4.0}]
    assert errors(data) == []
    data["products"] = {"new": {"failure_modes": [{"name": "x"}]}}  # no base: a whole product
    assert errors(data) == [
        "products/new/failure_modes/0: 'life_days' is a required property",
        "products/new/failure_modes/0: 'symptom' is a required property",
    ]


@pytest.mark.parametrize(
    ("change", "where", "message"),
    [
        (lambda d: d["fleets"][0].update(count="lots"), "fleets/0/count", "'lots' is not of type 'integer'"),
        (
            lambda d: d["fleets"][0].update(age_days={"dist": "unifrom", "low": 0, "high": 10}),
            "fleets/0/age_days/dist",
            "'unifrom' is not one of ['exponential', 'weibull', 'lognormal', 'gamma', 'uniform', 'fixed', 'wiener']",
        ),
        (
            lambda d: d["fleets"][0].update(age_days={"dist": "weibull", "shape": 2}),
            "fleets/0/age_days",
            "'scale' is a required property",
        ),
        (
            lambda d: d["fleets"][0].update(colour="white"),
            "fleets/0",
            "Additional properties are not allowed ('colour' was unexpected)",
        ),
    ],
    ids=["type", "dist", "parameter", "unknown-key"],
)
def test_a_bad_file_fails_with_a_message_that_says_what_and_where(change: Any, where: str, message: str) -> None:
    data = copy.deepcopy(yaml.safe_load((ROOT / "scenarios" / "freezers.yaml").read_text(encoding="utf-8")))
    change(data)
    error = first_error(data)
    assert error is not None
    assert ("/".join(map(str, error.absolute_path)), error.message) == (where, message)


def test_sot_schema_writes_the_same_schema(tmp_path: Path) -> None:
    out = tmp_path / "sot.json"
    result = CliRunner().invoke(app, ["schema", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text(encoding="utf-8")) == SCHEMA
