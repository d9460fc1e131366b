"""The built-in product catalogue: every entry validates, its modes reach issues, and fleets override it."""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from harness.cli import app
from harness.lint import Report, lint
from sim import catalogue
from sim.distributions import Weibull
from sim.errors import Problem
from sim.scenario import Fleet, Scenario
from sim.scenario_file import validate_data

ROOT = Path(__file__).resolve().parents[2]
CORE = {"freezer", "car", "printer", "mri_scanner", "wind_turbine", "vending_machine"}
ENTRIES = catalogue.names()


def minimal(product: str, **fleet: Any) -> dict[str, Any]:
    """The smallest scenario around one fleet of ``product`` (plain data, as read from YAML)."""
    return {
        "name": "t",
        "duration_days": 1,
        "sync_interval_s": 3600,
        "fleets": [{"name": "f", "product": product, "count": 10, **fleet}],
        "contact_centre": {"agents": 2},
        "technicians": {"count": 2},
    }


def valid(data: dict[str, Any]) -> Scenario:
    scenario, problems = validate_data(data)
    assert scenario is not None, "\n".join(f"{p.path}: {p.message}" for p in problems)
    return scenario


def invalid(data: dict[str, Any]) -> list[Problem]:
    scenario, problems = validate_data(data)
    assert scenario is None
    return problems


def fleet_of_data(data: dict[str, Any]) -> tuple[Fleet, Scenario]:
    scenario = valid(data)
    return scenario.fleets[0], scenario


def fleet_of(product: str) -> tuple[Fleet, Scenario]:
    return fleet_of_data(minimal(product))


def mode_index(product: str, mode: str) -> int:
    """Where ``mode`` sits in the entry's list (a fleet's override keeps that place)."""
    return [m["name"] for m in catalogue.builtin()[product]["failure_modes"]].index(mode)


# -- every entry ---------------------------------------------------------------------------------


def test_the_catalogue_has_the_core_products() -> None:
    assert set(ENTRIES) >= CORE


@pytest.mark.parametrize("product", ENTRIES)
def test_every_entry_validates_in_a_minimal_scenario(product: str, tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(minimal(product)), encoding="utf-8")
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert "ok" in result.output
    fleet, scenario = fleet_of(product)
    assert fleet.sensors
    assert fleet.failure_modes
    assert scenario.engine.issues
    assert catalogue.builtin()[product]["description"]


@pytest.mark.parametrize("product", ENTRIES)
def test_every_mode_and_consumable_resolves_to_an_issue(product: str) -> None:
    fleet, scenario = fleet_of(product)
    engine = scenario.engine
    for mode in fleet.failure_modes:
        assert engine.symptoms[mode.symptom] in engine.issues, mode.name
        if mode.fault_code is not None:
            assert engine.fault_codes[mode.fault_code] in engine.issues, mode.name
    for consumable in fleet.consumables:
        issue = engine.issues[engine.symptoms[consumable.symptom]]
        assert issue.consumable == consumable.name
        assert engine.issues[engine.fault_codes[consumable.name]].consumable == consumable.name
    for name, issue in engine.issues.items():
        if issue.consumable is not None:
            assert issue.consumable in {c.name for c in fleet.consumables}, name


@pytest.mark.parametrize("product", ENTRIES)
def test_remote_fixes_are_answered_remotely(product: str) -> None:
    """A remotely fixable mode's issue tries the same command first; an OTA goes to a version without the bug."""
    fleet, scenario = fleet_of(product)
    for mode in fleet.failure_modes:
        if mode.remote_fix is None:
            continue
        issue = scenario.engine.issues[scenario.engine.symptoms[mode.symptom]]
        assert issue.remote == mode.remote_fix.action, mode.name
        if issue.remote == "ota":
            assert issue.ota_version in fleet.firmware
            assert issue.ota_version not in mode.firmware


@pytest.mark.parametrize("product", ENTRIES)
def test_firmware_bound_modes_name_versions_the_fleet_runs(product: str) -> None:
    fleet, _ = fleet_of(product)
    for mode in fleet.failure_modes:
        assert set(mode.firmware) <= set(fleet.firmware), mode.name


@pytest.mark.parametrize("product", ENTRIES)
def test_every_repair_part_has_a_price(product: str) -> None:
    fleet, scenario = fleet_of(product)
    for mode in fleet.failure_modes:
        if mode.repair.part is not None:
            assert scenario.costs.parts[mode.repair.part] > 0, mode.name


@functools.cache
def linted(product: str) -> Report:
    """``sot lint`` of the entry in a minimal scenario: its rules dry-run on its own sensor model."""
    return lint(fleet_of(product)[1])


@pytest.mark.parametrize("product", ENTRIES)
def test_rules_stay_quiet_on_healthy_devices_and_catch_every_precursor(product: str) -> None:
    """No rule raises a false alarm on healthy devices in the dry run; a rule fires on each precursor before the failure."""
    report = linted(product)
    assert [f for f in report.findings if f.code in ("false_alarms", "missed_precursor", "never_fires")] == []
    assert all(r.false_alarms_per_1000_device_days == 0 for r in report.rules)
    fleet, _ = fleet_of(product)
    with_precursor = {m.name for m in fleet.failure_modes if m.precursor is not None}
    assert {m.mode for m in report.modes if m.caught_early_by} >= with_precursor


@pytest.mark.parametrize("product", ENTRIES)
def test_every_failure_is_detectable_or_passes_on_its_own(product: str) -> None:
    """A rule fires on the mode, or the device reports a fault code, or it self-restores (a note, not a warning)."""
    fleet, _ = fleet_of(product)
    restoring = {m.name for m in fleet.failure_modes if m.self_restore_h is not None}
    for finding in linted(product).findings:
        assert finding.code != "undetected" or finding.severity == "info", finding
    for mode in linted(product).modes:
        assert mode.caught_by or mode.fault_code or mode.mode in restoring, mode


@pytest.mark.parametrize("product", ENTRIES)
def test_every_way_to_a_modes_issue_brings_its_part(product: str) -> None:
    """Symptom, fault code and precursor rule all lead to an issue predicting the mode's part (first-time fix)."""
    fleet, scenario = fleet_of(product)
    engine = scenario.engine
    early = {m.mode: m.caught_early_by for m in linted(product).modes}
    rules = {r.name: r for r in engine.all_rules}
    for mode in fleet.failure_modes:
        if mode.repair.part is None:
            continue
        issues = [engine.symptoms[mode.symptom]]
        if mode.fault_code is not None:
            issues.append(engine.fault_codes[mode.fault_code])
        issues += [rules[name].issue for name in early[mode.name]]
        for issue in issues:
            assert mode.repair.part in engine.issues[issue].parts, (mode.name, issue)


def test_remote_fixes_and_consumables_where_the_products_have_them() -> None:
    def remote(product: str) -> bool:
        return any(m.remote_fix is not None for m in fleet_of(product)[0].failure_modes)

    def consumables(product: str) -> set[str]:
        return {c.name for c in fleet_of(product)[0].consumables}

    assert remote("car")
    assert remote("printer")
    assert remote("freezer")
    assert {"toner_black"} <= consumables("printer")
    assert len(consumables("vending_machine")) >= 2
    assert consumables("mri_scanner") == {"helium"}
    assert consumables("car") == {"oil_life"}


def test_a_mixed_fleet_keeps_every_products_own_mapping() -> None:
    """Issue, rule, symptom and fault-code names do not clash: each product's answer survives the merge."""
    scenario = valid(
        {
            **minimal("car"),
            "fleets": [{"name": product, "product": product, "count": 5} for product in ENTRIES],
        }
    )
    engine = scenario.engine
    for product, entry in catalogue.builtin().items():
        own = entry["engine"]
        assert {k: engine.symptoms[k] for k in own["symptoms"]} == own["symptoms"], product
        assert {k: engine.fault_codes[k] for k in own.get("fault_codes", {})} == own.get("fault_codes", {}), product
        for name, issue in own["issues"].items():
            assert engine.issues[name].skill == issue["skill"], product
    rule_names = [r.name for r in engine.rules]
    assert len(rule_names) == sum(len(e["engine"]["rules"]) for e in catalogue.builtin().values())


def test_the_mri_scanner_prices_downtime_at_about_14600_a_day() -> None:
    fleet, _ = fleet_of("mri_scanner")
    assert fleet.downtime_per_hour is not None
    assert fleet.downtime_per_hour * 24 == pytest.approx(14_600, abs=1)


def test_the_freezer_entry_keeps_the_original_freezer_numbers() -> None:
    """The numbers scenarios/freezers.yaml had before it used the catalogue."""
    fleet, scenario = fleet_of("freezer")
    compressor = next(m for m in fleet.failure_modes if m.name == "compressor_wear")
    assert compressor.life_days == Weibull(shape=2.5, scale=1800)
    assert compressor.precursor is not None
    assert (compressor.precursor.sensor, compressor.precursor.lead_time_days) == ("compressor_duty", 10)
    assert {k: scenario.costs.parts[k] for k in ("compressor", "control_board", "door_seal")} == {
        "compressor": 320.0,
        "control_board": 140.0,
        "door_seal": 45.0,
    }
    assert (fleet.downtime_per_hour, fleet.degraded_per_hour) == (25.0, 3.0)


def test_a_self_restoring_power_loss_gets_advice_not_a_visit() -> None:
    fleet, scenario = fleet_of("freezer")
    power = next(m for m in fleet.failure_modes if m.name == "power_loss")
    assert power.self_restore_h is not None
    assert power.repair.part is None
    assert scenario.engine.issues[scenario.engine.symptoms[power.symptom]].advice


# -- overrides -----------------------------------------------------------------------------------


def test_a_fleet_overrides_one_mode_by_name_and_keeps_the_others() -> None:
    base, _ = fleet_of("car")
    longer = {"dist": "weibull", "shape": 3.0, "scale": 2000}
    fleet, _ = fleet_of_data(minimal("car", failure_modes=[{"name": "brake_pad_wear", "life_days": longer}]))
    assert [m.name for m in fleet.failure_modes] == [m.name for m in base.failure_modes]
    for old, new in zip(base.failure_modes, fleet.failure_modes, strict=True):
        if new.name == "brake_pad_wear":
            assert new.life_days == Weibull(shape=3.0, scale=2000)
            assert new.precursor == old.precursor  # the rest of the mode is the catalogue's
            assert new.repair == old.repair
        else:
            assert new == old
    assert fleet.sensors == base.sensors
    assert fleet.consumables == base.consumables


def test_a_fleet_adds_a_mode_and_overrides_plain_fields() -> None:
    extra = {
        "name": "wiper_motor",
        "life_days": {"dist": "exponential", "mean": 4000},
        "severity": "degraded",
        "symptom": "brake_warning",
        "repair": {"skill": "automotive"},
    }
    fleet, _ = fleet_of_data(minimal("car", failure_modes=[extra], count=3, firmware={"7.2": 1.0}))
    assert fleet.failure_modes[-1].name == "wiper_motor"
    assert len(fleet.failure_modes) == len(fleet_of("car")[0].failure_modes) + 1
    assert fleet.firmware == {"7.2": 1.0}
    assert fleet.count == 3


def test_without_removes_a_mode_or_a_consumable() -> None:
    fleet, scenario = fleet_of_data(minimal("car", without=["slow_tyre_leak", "oil_life"]))
    assert "slow_tyre_leak" not in {m.name for m in fleet.failure_modes}
    assert "brake_pad_wear" in {m.name for m in fleet.failure_modes}
    assert fleet.consumables == []
    assert "tyre_pressure_kpa" in {s.name for s in fleet.sensors}  # sensors stay unless named
    assert "car_tyre" in scenario.engine.issues


def test_without_removes_a_sensor_and_the_rules_on_it() -> None:
    fleet, _ = fleet_of_data(minimal("freezer", without=["defrost_fault", "defrost_cycle_min"]))
    assert "defrost_cycle_min" not in {s.name for s in fleet.sensors}


def test_a_product_with_base_extends_the_catalogue_entry() -> None:
    data = minimal("taxi")
    data["products"] = {
        "taxi": {
            "base": "car",
            "description": "a car driven around the clock",
            "usage": {"dist": "lognormal", "mean": 4.0, "sd": 1.0},
            "sensors": [{"name": "odometer_km", "unit": "km", "baseline": 0.0}],
            # a products entry is checked as a whole Product before the merge, so a mode needs its
            # required fields (life_days, symptom) even when it only changes the base's mode
            "failure_modes": [
                {
                    "name": "brake_pad_wear",
                    "life_days": {"dist": "weibull", "shape": 3.0, "scale": 500},
                    "symptom": "brake_warning",
                }
            ],
        }
    }
    fleet, scenario = fleet_of_data(data)
    car, _ = fleet_of("car")
    assert [s.name for s in fleet.sensors] == [s.name for s in car.sensors] + ["odometer_km"]
    assert [m.name for m in fleet.failure_modes] == [m.name for m in car.failure_modes]
    brakes = next(m for m in fleet.failure_modes if m.name == "brake_pad_wear")
    assert brakes.life_days == Weibull(shape=3.0, scale=500)
    assert brakes.precursor is not None
    assert brakes.precursor.sensor == "brake_pad_mm"  # kept from the car
    assert fleet.usage.mean == 4.0
    assert "car_battery" in scenario.engine.issues
    assert scenario.costs.parts["brake_pads"] > 0


def test_a_product_with_base_changes_one_field_of_a_mode() -> None:
    data = minimal("taxi")
    life = {"dist": "weibull", "shape": 3.0, "scale": 500}
    data["products"] = {"taxi": {"base": "car", "failure_modes": [{"name": "brake_pad_wear", "life_days": life}]}}
    fleet, _ = fleet_of_data(data)
    assert next(m for m in fleet.failure_modes if m.name == "brake_pad_wear").life_days == Weibull(shape=3.0, scale=500)


def test_the_scenarios_own_engine_and_prices_win_over_the_entry() -> None:
    data = minimal("car")
    data["engine"] = {"issues": {"car_battery": {"skill": "automotive", "parts": [], "priority": 1}}}
    data["costs"] = {"parts": {"battery_12v": 150.0}}
    _, scenario = fleet_of_data(data)
    assert scenario.engine.issues["car_battery"].priority == 1  # the scenario's own engine wins
    assert scenario.costs.parts["battery_12v"] == 150.0
    assert scenario.costs.parts["brake_pads"] > 0  # the other prices come from the entry


def test_an_unknown_product_without_sensors_names_the_catalogue() -> None:
    problems = invalid(minimal("hovercraft"))
    (problem,) = (p for p in problems if p.path == "fleets[0].product")
    assert "'hovercraft' is not in the catalogue" in problem.message
    assert all(name in problem.message for name in CORE)
    assert "did you mean" not in problem.message  # nothing is close to a hovercraft


def test_a_bad_override_is_reported_under_the_fleet() -> None:
    bad = {"name": "brake_pad_wear", "life_days": {"dist": "weibull", "shape": -1.0, "scale": 1000}}
    problems = invalid(minimal("car", failure_modes=[bad]))
    assert [p.path for p in problems] == ["fleets[0].failure_modes[0].life_days.shape"]  # the user's own index

    problems = invalid(minimal("car", sensors=[{"name": "battery_rest_v", "baseline": 12.6, "colour": "red"}]))
    assert [p.path for p in problems] == ["fleets[0].sensors[0].colour"]


def test_an_override_naming_an_unknown_sensor_is_reported_under_the_fleet() -> None:
    drift = {"name": "slow_tyre_leak", "precursor": {"sensor": "tyre_temp_c", "lead_time_days": 5, "delta": 10}}
    problems = invalid(minimal("car", failure_modes=[drift]))
    assert [p.path for p in problems] == ["fleets[0].failure_modes[0].precursor.sensor"]  # the user's own item


def test_a_problem_in_what_the_catalogue_gave_names_the_item_and_the_product() -> None:
    problems = invalid(minimal("car", without=["tyre_pressure_kpa"]))
    assert [(p.path, p.message.rsplit(" (", 1)[-1]) for p in problems] == [
        ("fleets[0].failure_modes[slow_tyre_leak].precursor.sensor", "in catalogue product 'car')"),
        ("fleets[0].failure_modes[slow_tyre_leak].effects[0].sensor", "in catalogue product 'car')"),
    ]


def test_builtin_returns_copies() -> None:
    entries = catalogue.builtin()
    before = copy.deepcopy(entries["car"])
    entries["car"]["failure_modes"].clear()
    assert catalogue.builtin()["car"] == before


def test_the_complete_scenarios_in_the_products_guide_validate() -> None:
    text = (ROOT / "docs" / "products.md").read_text(encoding="utf-8")
    blocks = [b.split("```", 1)[0] for b in text.split("```yaml\n")[1:]]
    complete = [yaml.safe_load(b) for b in blocks if "contact_centre:" in b]
    assert len(complete) >= 2
    for data in complete:
        valid(data)
    coffee = next(d for d in complete if "products" in d)
    assert "coffee_machine" not in ENTRIES  # the guide's example is a product the catalogue lacks
    fleet = valid(coffee).fleets[0]
    assert any(m.remote_fix is not None and m.remote_fix.action == "ota" for m in fleet.failure_modes)
    assert fleet.consumables
    assert fleet.cohorts


def test_a_products_rules_watch_that_product_only() -> None:
    data = minimal("freezer")
    data["fleets"].append({"name": "v", "product": "vending_machine", "count": 10})
    scenario = valid(data)
    for rule in scenario.engine.all_rules:
        assert len(rule.products) == 1, rule.name
    freezer_rules = {r.name for r in scenario.engine.all_rules if r.products == ["freezer"]}
    assert freezer_rules and all(r.startswith("freezer") for r in freezer_rules)


def test_a_rule_scoped_to_a_product_without_that_sensor_is_refused() -> None:
    data = minimal("freezer")
    data["fleets"].append({"name": "p", "product": "printer", "count": 10})
    sensor = valid(minimal("freezer")).fleets[0].sensors[0].name
    data["engine"] = {
        "rules": [
            {"name": "mine", "sensor": sensor, "above": 1.0, "issue": "x", "products": ["printer"]},
            {"name": "other", "sensor": sensor, "above": 1.0, "issue": "x", "products": ["car"]},
        ],
        "issues": {"x": {"skill": "general"}},
    }
    problems = [(p.path, p.message) for p in invalid(data)]
    assert [m for path, m in problems if path.endswith(".products[0]")] == [
        f"product 'printer' does not report {sensor!r}",
        "no fleet is of product 'car' (fleets: ['freezer', 'printer'])",
    ]
