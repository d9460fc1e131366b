"""Validation that means it: each mistake that once passed or was misplaced is caught, in one pass,
at the place in the author's own file (line and column) and with a "did you mean" for a near miss.

The files in tests/scenarios/invalid/ are the product guide's coffee machine (docs/products.md)
with one mistake each (two in ``merged_paths.yaml`` and ``one_pass.yaml``).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from harness.cli import app
from sim.errors import Problem, ScenarioError
from sim.scenario_file import load, validate_data, with_overrides

ROOT = Path(__file__).resolve().parents[2]
CASES = ROOT / "tests" / "scenarios" / "invalid"


def problems(name: str) -> list[Problem]:
    with pytest.raises(ScenarioError) as info:
        load(CASES / name)
    return info.value.problems


def at(name: str, text: str, part: str = "") -> tuple[int, int]:
    """Line and column (from 1) of ``part`` (default: all) of the first line of the case that has ``text``."""
    for number, line in enumerate((CASES / name).read_text(encoding="utf-8").splitlines(), 1):
        if text in line and not line.startswith("#"):
            return number, line.index(part or text) + 1
    raise AssertionError(text)


def test_a_product_rule_on_a_sensor_the_product_lacks_is_an_error_not_dropped() -> None:
    (p,) = problems("product_rule_unknown_sensor.yaml")
    assert p.path == "products.coffee_machine.engine.rules[2].sensor"
    assert p.message.startswith("product 'coffee_machine' has no sensor 'water_tank_pct' (it has: beans_g,")
    assert "never fire" in p.message
    assert (p.line, p.column) == at("product_rule_unknown_sensor.yaml", "sensor: water_tank_pct")


def test_a_typo_in_a_fault_code_key_says_which_consumable_is_never_reordered() -> None:
    (p,) = problems("fault_code_typo.yaml")
    assert p.path == "products.coffee_machine.engine.fault_codes.coffee_bean"
    assert "reports fault code 'coffee_bean'" in p.message
    assert "did you mean 'coffee_beans'?" in p.message
    assert "consumable 'coffee_beans' is never re-ordered" in p.message
    assert (p.line, p.column) == at("fault_code_typo.yaml", "coffee_bean: coffee_beans")


def test_a_typo_in_a_modes_firmware_list_is_caught_at_the_version() -> None:
    (p,) = problems("firmware_typo.yaml")
    assert p.path == "products.coffee_machine.failure_modes[2].firmware[0]"
    assert "firmware version '2.l' is in no firmware mix and no OTA installs it" in p.message
    assert "did you mean '2.1'?" in p.message
    assert (p.line, p.column) == at("firmware_typo.yaml", 'firmware: ["2.l"]', '"2.l"')


def test_problems_after_the_merge_are_named_where_the_author_wrote_them() -> None:
    scope, rule = problems("merged_paths.yaml")
    assert scope.path == "products.coffee_machine.engine.rules[0].products[0]"  # not engine.rules[0].products[0]
    assert scope.message == (
        "no fleet is of product 'coffee_machin' (fleets: ['coffee_machine']); did you mean 'coffee_machine'?"
    )
    assert rule.path == "engine.rules[0].sensor"  # the scenario's only rule, not engine.rules[2]
    assert rule.message == "no fleet has a sensor 'boiler_temperature_c'; did you mean 'boiler_temp_c'?"
    assert (rule.line, rule.column) == at("merged_paths.yaml", "sensor: boiler_temperature_c")


def test_a_misspelt_product_is_one_problem_with_a_suggestion() -> None:
    (p,) = problems("misspelt_product.yaml")  # no false "unknown region" for the crews
    assert p.path == "fleets[0].product"
    assert p.message.startswith("product 'coffee_machin' is not in the catalogue (car, freezer,")
    assert p.message.endswith("did you mean 'coffee_machine'?")
    assert (p.line, p.column) == at("misspelt_product.yaml", "product: coffee_machin")


def test_every_problem_is_reported_in_one_pass() -> None:
    noise, count = problems("one_pass.yaml")
    assert (noise.path, noise.message) == ("products.coffee_machine.sensors[1].noise_sd", "must be >= 0")
    assert (count.path, count.message) == ("fleets[0].count", "expected int, got str")


def test_the_fallback_issues_skill_is_checked_against_the_crews() -> None:
    (p,) = problems("fallback_skill.yaml")
    assert p.path == "technicians.crews"
    assert p.message.startswith("no technician crew has skill 'general', which the engine's fallback issue `unknown`")
    assert "map `other` in engine.symptoms" in p.message


def test_sot_validate_prints_file_line_column_and_path() -> None:
    path = CASES / "firmware_typo.yaml"
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    line, column = at("firmware_typo.yaml", 'firmware: ["2.l"]', '"2.l"')
    assert f"{path}:{line}:{column} products.coffee_machine.failure_modes[2].firmware[0]: firmware version" in (
        result.output
    )


@pytest.mark.parametrize("path", sorted((ROOT / "scenarios").glob("*.yaml")), ids=lambda p: p.name)
def test_a_shipped_scenario_stays_valid_when_revalidated_after_the_merge(path: Path) -> None:
    """`sot run --days`, policies and overrides validate the merged scenario again."""
    scenario = load(path)
    assert with_overrides(scenario, duration_days=1).fleets == scenario.fleets


# -- every other kind of reference ------------------------------------------------------------------


def freezers() -> dict[str, Any]:
    return {
        "name": "t",
        "duration_days": 1,
        "fleets": [{"name": "f", "product": "freezer", "count": 10, "regions": {"north": 1.0}}],
        "contact_centre": {"agents": 2},
        "technicians": {"count": 2},
        "depots": [{"name": "d", "stock": {"compressor": 2}}],
    }


def _engine(d: dict[str, Any], **keys: Any) -> None:
    d.setdefault("engine", {}).update(keys)


@pytest.mark.parametrize(
    ("change", "path", "message"),
    [
        (
            lambda d: d["fleets"][0].update(without=["defrost_faults"]),
            "fleets[0].without[0]",
            "product 'freezer' has no sensor, failure mode or consumable 'defrost_faults' to leave out;"
            " did you mean 'defrost_fault'?",
        ),
        (
            lambda d: d["depots"][0].update(stock={"compresor": 2}),
            "depots[0].stock.compresor",
            "did you mean 'compressor'?",
        ),
        (
            lambda d: d["depots"][0].update(region="nrth"),
            "depots[0].region",
            "unknown region 'nrth' (fleets have: north); did you mean 'north'?",
        ),
        (
            lambda d: d["contact_centre"].update(routing={"freezr": "general"}),
            "contact_centre.routing.freezr",
            "no fleet is of product 'freezr' (fleets: freezer); did you mean 'freezer'?",
        ),
        (
            lambda d: _engine(d, symptoms={"not_colling": "freezer_cooling"}),
            "engine.symptoms.not_colling",
            "did you mean 'not_cooling'?",
        ),
        (
            lambda d: _engine(d, diagnoses={"compressor_wer": "freezer_compressor"}),
            "engine.diagnoses.compressor_wer",
            "did you mean 'compressor_wear'?",
        ),
        (
            lambda d: _engine(d, symptoms={"not_cooling": "freezer_coolng"}),
            "engine.symptoms.not_cooling",
            "did you mean 'freezer_cooling'?",
        ),
        (
            lambda d: _engine(d, issues={"refill": {"skill": "general", "consumable": "ice"}}),
            "engine.issues.refill.consumable",
            "no fleet has a consumable 'ice' (consumables: none)",
        ),
        (
            lambda d: _engine(d, issues={"seal": {"skill": "general", "parts": ["door_sael"]}}),
            "engine.issues.seal.parts[0]",
            "did you mean 'door_seal'?",
        ),
        (
            lambda d: _engine(d, rules=[{"name": "freezer_cabinet_hot", "sensor": "cabinet_temp", "above": 1}]),
            "engine.rules[0].sensor",
            "no fleet has a sensor 'cabinet_temp'; did you mean 'cabinet_temp_c'?",
        ),
        (
            lambda d: _engine(d, campaigns=[{"name": "c", "by": "climat", "ota_version": "2.4"}]),
            "engine.campaigns[0].by",
            "did you mean 'climate'?",
        ),
        (
            lambda d: _engine(d, default_issue="freezer_colling"),
            "engine.default_issue",
            "did you mean 'freezer_cooling'?",
        ),
        (
            lambda d: d.update(products={"freezer": {"base": "frezer"}}),
            "products.freezer.base",
            "did you mean 'freezer'?",
        ),
        (
            lambda d: _engine(
                d, maintenance=[{"name": "m", "products": ["frezer"], "every_days": 90, "skill": "general"}]
            ),
            "engine.maintenance[0].products[0]",
            "no fleet is of product 'frezer' (fleets: freezer); did you mean 'freezer'?",
        ),
        (
            lambda d: _engine(
                d, maintenance=[{"name": "m", "every_days": 90, "skill": "general", "services": ["compresor_wear"]}]
            ),
            "engine.maintenance[0].services[0]",
            "no fleet has a failure mode 'compresor_wear'",
        ),
        (
            lambda d: _engine(
                d, maintenance=[{"name": "m", "every_days": 90, "skill": "general", "cohorts": {"climat": ["hot"]}}]
            ),
            "engine.maintenance[0].cohorts.climat",
            "did you mean 'climate'?",
        ),
        (
            lambda d: _engine(
                d, maintenance=[{"name": "m", "every_usage": 500, "usage_sensor": "cabinet_temp", "skill": "general"}]
            ),
            "engine.maintenance[0].usage_sensor",
            "no fleet has a sensor 'cabinet_temp'; did you mean 'cabinet_temp_c'?",
        ),
        (
            lambda d: _engine(
                d, maintenance=[{"name": "m", "every_usage": 500, "usage_sensor": "cabinet_temp_c", "skill": "general"}]
            ),
            "engine.maintenance[0].usage_sensor",
            "sensor 'cabinet_temp_c' is not a counter (no `rises_per_day`)",
        ),
        (
            lambda d: _engine(
                d, maintenance=[{"name": "m", "every_days": 90, "skill": "general", "parts": ["door_sael"]}]
            ),
            "engine.maintenance[0].parts[0]",
            "did you mean 'door_seal'?",
        ),
    ],
    ids=[
        "without",
        "depot-part",
        "region",
        "routing",
        "symptom-key",
        "diagnosis-key",
        "symptom-issue",
        "issue-consumable",
        "issue-part",
        "rule-override-sensor",
        "campaign-by",
        "default-issue",
        "base",
        "plan-product",
        "plan-service",
        "plan-cohort",
        "plan-usage-sensor",
        "plan-not-a-counter",
        "plan-part",
    ],
)
def test_every_reference_is_checked(change: Any, path: str, message: str) -> None:
    data = copy.deepcopy(freezers())
    assert validate_data(data)[0] is not None
    change(data)
    scenario, found = validate_data(data)
    assert scenario is None
    assert [p.path for p in found] == [path], found
    assert message in found[0].message


def test_a_plan_of_one_product_is_checked_against_that_products_modes() -> None:
    data = copy.deepcopy(freezers())
    data["fleets"].append({"name": "c", "product": "car", "count": 5, "regions": {"north": 1.0}})
    plan = {"name": "m", "products": ["car"], "every_days": 90, "skill": "general", "services": ["compressor_wear"]}
    _engine(data, maintenance=[plan])
    scenario, found = validate_data(data)
    assert scenario is None and [p.path for p in found] == ["engine.maintenance[0].services[0]"], found
    assert "no fleet of product car has a failure mode 'compressor_wear'" in found[0].message


def test_a_rule_override_that_only_changes_a_threshold_keeps_the_products_rule() -> None:
    data = freezers()
    _engine(data, rules=[{"name": "freezer_cabinet_hot", "above": -4.0}])
    scenario, found = validate_data(data)
    assert scenario is not None, found
    (rule,) = (r for r in scenario.engine.rules if r.name == "freezer_cabinet_hot")
    assert (rule.above, rule.sensor, rule.products) == (-4.0, "cabinet_temp_c", ["freezer"])


def test_a_version_only_an_update_brings_is_known() -> None:
    data = freezers()
    data["fleets"][0]["failure_modes"] = [{"name": "defrost_fault", "firmware": ["2.5"]}]
    assert validate_data(data)[0] is None
    _engine(data, issues={"freezer_defrost": {"skill": "refrigeration", "remote": "ota", "ota_version": "2.5"}})
    assert validate_data(data)[0] is not None
