"""``sot lint``: each rule dry-run on its product's own sensor model, and what it reports."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import msgspec
import pytest
import yaml
from typer.testing import CliRunner

from harness.cli import app
from harness.dry_run import dry_run, rules_for
from harness.lint import ERROR_PER_1000, Finding, Report, lint
from harness.noise import expected_false_alarms, healthy_level, quiet_level
from sim.scenario import Scenario
from sim.scenario_file import load, validate_data

ROOT = Path(__file__).resolve().parents[2]
CASES = ROOT / "tests" / "scenarios" / "lint"
SHIPPED = sorted((ROOT / "scenarios").glob("*.yaml"))

# tests/integration/test_scorecard_run.py runs the rule of noisy_threshold.yaml (compressor_duty
# above 0.47 for 1 h) on 1,000 freezers for 15 days through Mosquitto and the engine. Its scorecard
# counts 377 false alarms (25 per 1,000 device-days), but only alerts outside the last 10 days (the
# compressor's window) are decided: 736 more are undecided, nearly all of them noise too. A healthy
# freezer's alerts are the two together: 1,113 in 15,000 device-days.
REAL_RUN_PER_1000 = 1000.0 * (377 + 736) / 15_000


@functools.cache
def linted(name: str) -> Report:
    return lint(load(CASES / name))


def only(report: Report, code: str, path: str) -> Finding:
    (finding,) = (f for f in report.findings if f.code == code and f.path == path)
    return finding


def test_a_threshold_inside_the_noise_is_an_error_with_its_false_alarm_rate() -> None:
    report = linted("noisy_threshold.yaml")
    finding = only(report, "false_alarms", "engine.rules[freezer_compressor_overwork]")
    assert finding.severity == "error"
    assert "within 1 sd of the healthy mean 0.45" in finding.hint
    assert "raise it above ~0.58" in finding.hint  # quiet on a single reading: 4.3 sd
    (figures,) = (r for r in report.rules if r.rule == "freezer_compressor_overwork")
    rate = figures.false_alarms_per_1000_device_days
    assert REAL_RUN_PER_1000 / 2 < rate < REAL_RUN_PER_1000 * 2
    assert figures.expected_per_1000_device_days is not None
    assert rate == pytest.approx(figures.expected_per_1000_device_days, rel=0.3)  # the noise model agrees
    assert "compressor_wear" in figures.fires_on
    assert report.count("error") == 1


def test_the_dry_run_is_the_engines_persistence_on_the_worlds_noise() -> None:
    """Over more device-days the dry run's rate closes in on the closed form (1 - p) p^k per reading."""
    scenario = load(CASES / "noisy_threshold.yaml")
    fleet = scenario.fleets[0]
    rules = rules_for(scenario.engine, fleet)
    (run,) = dry_run([fleet], rules, device_days=5000, seed=1)
    rule = next(r for r in scenario.engine.rules if r.name == "freezer_compressor_overwork")
    expected = expected_false_alarms(rule, *healthy_level(fleet, "compressor_duty"), fleet.telemetry_interval_s)
    assert expected == pytest.approx(73.6, abs=0.5)
    assert run.per_1000_device_days(rule.name) == pytest.approx(expected, rel=0.15)


def test_the_suggested_threshold_is_quiet() -> None:
    scenario = load(CASES / "noisy_threshold.yaml")
    fleet = scenario.fleets[0]
    mean, sd = healthy_level(fleet, "compressor_duty")
    level = quiet_level(True, mean, sd, fleet.telemetry_interval_s, 3600.0)
    rule = next(r for r in scenario.engine.rules if r.name == "freezer_compressor_overwork")
    quiet = msgspec.structs.replace(rule, above=level)
    rate = expected_false_alarms(quiet, mean, sd, fleet.telemetry_interval_s)
    assert rate is not None and 0.8 < rate <= 1.0  # just under one false alarm per 1,000 device-days


def test_a_rule_that_can_never_fire_is_reported_with_the_sensors_reach() -> None:
    report = linted("never_fires.yaml")
    finding = only(report, "never_fires", "engine.rules[pump_pressure_high]")
    assert finding.severity == "warning"
    assert "reads at most 12" in finding.hint
    assert "between ~10.3 and 12" in finding.hint
    precursor = only(report, "missed_precursor", "fleets[0].failure_modes[impeller_wear]")
    assert "`above: 10.3, for_s: 3600`" in precursor.hint
    assert not [f for f in report.findings if f.code == "undetected"]  # its fault code reports it
    assert report.count("error") == 0


def test_a_mode_no_rule_or_fault_code_detects_is_reported_with_a_rule_that_would() -> None:
    report = linted("undetected_mode.yaml")
    finding = only(report, "undetected", "fleets[0].failure_modes[pressure_leak]")
    assert finding.severity == "warning"
    assert "only the owner's call" in finding.message
    assert "`below: 1.28, for_s: 3600`" in finding.hint
    assert [f.path for f in report.findings] == [finding.path]  # the seized pump is caught
    (pump,) = (m for m in report.modes if m.mode == "pump_seized")
    assert pump.caught_by == ["boiler_flow_hot"] and pump.caught_early_by == []


def test_a_consumable_nothing_reorders_is_reported() -> None:
    finding = only(linted("unordered_consumable.yaml"), "undetected", "fleets[0].consumables[salt]")
    assert finding.severity == "warning"
    assert "engine.fault_codes" in finding.hint


def test_a_self_restoring_mode_nothing_detects_is_a_note() -> None:
    finding = only(linted("noisy_threshold.yaml"), "undetected", "fleets[0].failure_modes[power_loss]")
    assert finding.severity == "info"
    assert "ends on its own" in finding.message


def with_engine(base: str, **engine: object) -> Scenario:
    data = yaml.safe_load((ROOT / "scenarios" / base).read_text(encoding="utf-8"))
    data["engine"] = {**data.get("engine", {}), **engine}
    scenario, problems = validate_data(data)
    assert scenario is not None, problems
    return scenario


def test_trend_and_anomaly_rules_are_dry_run_too() -> None:
    scenario = with_engine(
        "freezers.yaml",
        trends=[
            {"name": "duty_rising", "sensor": "compressor_duty", "issue": "freezer_compressor", "slope_above": 0.002}
        ],
        anomalies=[{"name": "duty_odd", "sensor": "compressor_duty", "issue": "freezer_compressor"}],
    )
    report = lint(scenario)
    figures = {r.rule: r for r in report.rules}
    assert figures["duty_rising"].kind == "trend" and figures["duty_odd"].kind == "anomaly"
    assert figures["duty_odd"].fires_on["power_loss"] == 1.0  # the duty drops: a departure from its normal
    assert figures["duty_rising"].false_alarms_per_1000_device_days > ERROR_PER_1000
    assert only(report, "false_alarms", "engine.trends[duty_rising]").severity == "error"
    notes = [f for f in report.findings if f.code == "undetected"]
    assert notes == []  # the anomaly rule sees the power cut


def test_the_printers_run_out_forecasts_fire_before_the_toner_is_empty() -> None:
    report = lint(load(ROOT / "scenarios" / "printers.yaml"))
    toner = next(m for m in report.modes if m.mode == "toner_black")
    assert toner.caught_early_by == ["printer_toner_black_running_out"]
    assert toner.lead_h is not None and 24.0 < toner.lead_h < 96.0  # `within_s`: three days


def test_the_same_seed_gives_the_same_report() -> None:
    scenario = load(CASES / "noisy_threshold.yaml")
    assert lint(scenario, seed=4) == lint(scenario, seed=4)
    assert lint(scenario).seed == scenario.seed


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_shipped_scenario_lints_clean(path: Path) -> None:
    """No errors and no warnings; the notes are documented in docs/products.md ("Lint")."""
    report = lint(load(path))
    assert [f for f in report.findings if f.severity != "info"] == []
    for note in report.findings:
        assert (note.code, note.path.rsplit(".", 1)[-1]) == ("undetected", "failure_modes[power_loss]"), note


def test_the_documented_notes_are_in_the_guide() -> None:
    text = (ROOT / "docs" / "products.md").read_text(encoding="utf-8")
    assert "## Lint" in text
    assert "power_loss" in text.split("## Lint", 1)[1]


# -- the command -----------------------------------------------------------------------------------


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_lint_exits_0_when_clean_or_with_warnings_only() -> None:
    code, output = invoke("lint", str(ROOT / "scenarios" / "freezers.yaml"))
    assert code == 0, output
    assert "lint ok: 0 error(s), 0 warning(s)" in output
    code, output = invoke("lint", str(CASES / "never_fires.yaml"))
    assert code == 0, output
    assert "engine.rules[pump_pressure_high]" in output
    assert "2 warning(s)" in output


def test_lint_exits_1_on_an_error_and_writes_the_report_as_json(tmp_path: Path) -> None:
    out = tmp_path / "lint.json"
    code, output = invoke(
        "lint", str(CASES / "noisy_threshold.yaml"), "--json", str(out), "--device-days", "500", "--seed", "3"
    )
    assert code == 1, output
    assert "engine.rules[freezer_compressor_overwork]" in output
    report = json.loads(out.read_text(encoding="utf-8"))
    assert (report["seed"], report["device_days"]) == (3, 500.0)
    (error,) = (f for f in report["findings"] if f["severity"] == "error")
    assert error["code"] == "false_alarms" and error["hint"]


def test_lint_of_an_invalid_file_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nduration_days: -1\n", encoding="utf-8")
    code, _ = invoke("lint", str(bad))
    assert code == 2


def test_validate_strict_also_lints() -> None:
    noisy = str(CASES / "noisy_threshold.yaml")
    assert invoke("validate", noisy)[0] == 0  # valid as a file; only the lint sees the noise
    code, output = invoke("validate", "--strict", noisy)
    assert code == 1
    assert "engine.rules[freezer_compressor_overwork]" in output
    code, output = invoke("validate", "--strict", str(ROOT / "scenarios" / "freezers.yaml"))
    assert code == 0, output
    assert "lint ok" in output


def test_the_complete_scenarios_in_the_products_guide_lint_clean() -> None:
    text = (ROOT / "docs" / "products.md").read_text(encoding="utf-8")
    blocks = [b.split("```", 1)[0] for b in text.split("```yaml\n")[1:]]
    complete = [yaml.safe_load(b) for b in blocks if "contact_centre:" in b]
    assert complete
    for data in complete:
        scenario, problems = validate_data(data)
        assert scenario is not None, problems
        assert lint(scenario).findings == [], scenario.name
