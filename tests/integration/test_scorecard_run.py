"""The scorecard on real runs: a rule whose threshold lies inside the sensor's noise shows up as
false alarms and lost precision, against the same scenario and seed with the rule as shipped.

The freezer's compressor duty reads 0.45 with noise sd 0.03; the shipped rule fires above 0.8 for
three hours (a worn compressor). At 0.47 for an hour, a healthy freezer trips it now and then. The
runs last 15 days, longer than the compressor's 10-day window W, so that alerts in the first days
are decided (those in the last W are undecided by definition).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from contracts.counters import ENGINE_COUNTERS
from experiments.rundata import RunData, read_engine_log
from experiments.scorecard import score
from harness.runner import run_scenario
from sim.scenario import Scenario
from sim.scenario_file import validate_data, with_overrides

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DAYS = 15
DEVICES = 1000
NOISY_RULE = {"name": "freezer_compressor_overwork", "above": 0.47, "for_s": 3600}


def freezers(*, noisy: bool) -> Scenario:
    data = yaml.safe_load((ROOT / "scenarios" / "freezers.yaml").read_text(encoding="utf-8"))
    data["fleets"][0]["count"] = DEVICES
    if noisy:  # merged by name into the catalogue's rule: only the threshold and its duration change
        data["engine"]["rules"] = [NOISY_RULE]
    scenario, problems = validate_data(data)
    assert scenario is not None, problems
    return with_overrides(scenario, duration_days=DAYS)


def scored(scenario: Scenario, workdir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    outcome = run_scenario(scenario, broker_kind="mosquitto", workdir=workdir)
    run = RunData(
        scenario=scenario,
        policy=outcome.result["policy"],
        records=outcome.records,
        engine=read_engine_log(workdir / "engine.sqlite"),
        stats=outcome.result["engine"],
        end_s=scenario.duration_s,
        start_s=scenario.warmup_s,
    )
    return outcome.result, score(run)


def test_a_threshold_inside_the_noise_shows_as_false_alarms_and_lost_precision(tmp_path: Path) -> None:
    shipped = freezers(noisy=False)
    noisy = freezers(noisy=True)
    rule = next(r for r in noisy.engine.rules if r.name == NOISY_RULE["name"])
    assert (rule.sensor, rule.above, rule.for_s) == ("compressor_duty", 0.47, 3600.0)

    result, plain = scored(shipped, tmp_path / "shipped")
    _, loud = scored(noisy, tmp_path / "noisy")

    assert set(ENGINE_COUNTERS) <= set(result["engine"])  # every counter written, 0 where none
    assert result["warmup_days"] == 0.0
    base, bad = plain["overall"], loud["overall"]
    assert base["signals"] > 0 and base["precision"] is not None  # the shipped rules do fire, and are scored
    assert bad["false_alarms_per_1000_device_days"] > base["false_alarms_per_1000_device_days"] + 5.0
    assert bad["precision"] < base["precision"] - 0.3
    noisy_rule = loud["by_source"][NOISY_RULE["name"]]
    assert noisy_rule["false_alarms"] > 0.8 * bad["false_alarms"]  # the false alarms are that rule's
    assert loud["field"]["work_orders"] > plain["field"]["work_orders"]  # each one sends someone
