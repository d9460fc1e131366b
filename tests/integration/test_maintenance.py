"""A preventive-maintenance plan and a warm-up change the freezers' KPIs in the expected direction.

Two runs of a shortened freezers scenario through Mosquitto and the engine process, same seed, both
reactive (no telemetry rules: the plan is the only proactive thing): without a plan, and with a
compressor service every 60 days that renews the compressor (the catalogue's freezer has no
``service`` for it, so the service is its repair done ahead of time: a new compressor). Common
random numbers make the comparison sharp: a freezer fails at the same moment in both runs until
a visit renews its compressor. Both runs have a warm-up: their KPIs count only what began after
it, which the ground truth of the runs checks.
"""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.runner import RunOutcome, run_scenario
from sim.kpis import compute_kpis
from sim.scenario import Scenario
from sim.scenario_file import validate_data

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DAYS = 30
WARMUP_DAYS = 5
DEVICES = 1000
PLAN = {
    "name": "compressor_service",
    "products": ["freezer"],
    "every_days": 60,
    "services": ["compressor_wear"],
    "skill": "refrigeration",
    "parts": ["compressor"],
    "duration_s": 10800,
}


def freezers(*, plan: bool) -> Scenario:
    data = yaml.safe_load((ROOT / "scenarios" / "freezers.yaml").read_text(encoding="utf-8"))
    data.update(duration_days=DAYS, warmup_days=WARMUP_DAYS)
    data["fleets"][0]["count"] = DEVICES
    data["technicians"]["count"] = 6  # room for about 17 services a day besides the repairs
    data["engine"]["policy"] = "reactive"
    if plan:
        data["engine"]["maintenance"] = [PLAN]
    scenario, problems = validate_data(data)
    assert scenario is not None, problems
    return scenario


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, RunOutcome]:
    root = tmp_path_factory.mktemp("maintenance")
    return {
        name: run_scenario(freezers(plan=name == "plan"), broker_kind="mosquitto", workdir=root / name)
        for name in ("none", "plan")
    }


def compressor_failures(outcome: RunOutcome) -> int:
    """Compressors that really failed (not caught while wearing out), over the whole run."""
    return sum(f.mode == "compressor_wear" and not f.prevented for f in outcome.records.failures)


def kpis(outcome: RunOutcome) -> dict[str, Any]:
    result: dict[str, Any] = outcome.result["kpis"]
    return result


def test_both_runs_account_for_every_message(runs: dict[str, RunOutcome]) -> None:
    for outcome in runs.values():
        messages = outcome.result["messages"]
        assert messages["lost"] == 0 and messages["published"] == messages["ingested"] + messages["rejected"]
        assert messages["engine_emitted"] == messages["engine_outputs_received"]


def test_a_compressor_service_plan_means_fewer_compressor_failures_and_more_truck_rolls(
    runs: dict[str, RunOutcome],
) -> None:
    none, plan = kpis(runs["none"]), kpis(runs["plan"])
    assert "maintenance" not in none  # no plan: the result keeps its keys
    assert compressor_failures(runs["plan"]) < compressor_failures(runs["none"])
    assert plan["failures_by_mode"]["compressor_wear"] < none["failures_by_mode"]["compressor_wear"]
    assert plan["downtime_hours_per_device_year"] < none["downtime_hours_per_device_year"]
    m = plan["maintenance"]
    assert m["work_orders"] > 0.3 * DEVICES * (DAYS - WARMUP_DAYS) / PLAN["every_days"]
    assert m["serviced"]["compressor_wear"] > 0.8 * m["work_orders"]
    assert plan["truck_rolls_per_1000_devices"] > none["truck_rolls_per_1000_devices"] + 100
    assert plan["truck_rolls_per_1000_devices"] == pytest.approx(
        m["truck_rolls_per_1000_devices"] + m["corrective_truck_rolls_per_1000_devices"]
    )
    assert plan["cost"]["field"] > none["cost"]["field"] and plan["cost"]["parts"] > none["cost"]["parts"]
    # preventive visits are not corrective work: first-time fix counts the repairs alone
    jobs = runs["plan"].records.jobs.values()
    assert all(
        j.outcome in ("serviced", "inspected", "service_incomplete", "open") for j in jobs if j.kind == "preventive"
    )
    assert not math.isnan(plan["first_time_fix_rate"])


def test_the_engine_sent_the_preventive_work_orders_without_opening_cases(runs: dict[str, RunOutcome]) -> None:
    outcome = runs["plan"]
    with sqlite3.connect(outcome.workdir / "engine.sqlite") as db:
        sent = [json.loads(p) for (p,) in db.execute("SELECT payload FROM outbox WHERE kind = 'CreateWorkOrder'")]
        cases = {c for (c,) in db.execute("SELECT case_id FROM cases")}
    preventive = [w for w in sent if "maintenance" in w]
    assert preventive and all(
        w["maintenance"] == {"plan": "compressor_service", "services": ["compressor_wear"]} for w in preventive
    )
    assert all(w["priority"] == 5 and w["case_id"].startswith("pm-") and w["case_id"] not in cases for w in preventive)
    assert len(preventive) == sum(j.kind == "preventive" for j in outcome.records.jobs.values())
    assert outcome.result["engine"]["work_orders"] == len(sent)


def test_a_warm_up_counts_only_what_began_after_it(runs: dict[str, RunOutcome]) -> None:
    outcome = runs["none"]
    scenario, result = freezers(plan=False), outcome.result
    assert result["warmup_days"] == WARMUP_DAYS
    start, end = scenario.warmup_s, scenario.duration_s
    truth = outcome.records
    after = [f for f in truth.failures if not f.prevented and f.onset_s >= start]
    before = [f for f in truth.failures if not f.prevented and f.onset_s < start]
    k = kpis(outcome)
    assert before and k["failures"] == len(after)
    assert k["incidents"] == sum(i.onset_s >= start for i in truth.incidents)
    assert k["work_orders"] == sum(j.created_s >= start for j in truth.jobs.values())
    device_years = DEVICES * (end - start) / (365 * 86400.0)
    assert k["failures_per_device_year"] == pytest.approx(len(after) / device_years, abs=1e-6)
    everything = compute_kpis(scenario, truth, result["engine"], end, start_s=0.0)
    assert k["failures"] < everything["failures"] and k["work_orders"] < everything["work_orders"]


def test_a_usage_plan_reads_the_devices_counters(tmp_path: Path) -> None:
    """A plan every 480 running hours on freezers that count them (about 24 a day): in 10 days about
    half the fleet has passed its point on its own grid, through the gateways' batches."""
    data = yaml.safe_load((ROOT / "scenarios" / "freezers.yaml").read_text(encoding="utf-8"))
    data.update(duration_days=10)
    fleet = data["fleets"][0]
    fleet["count"] = 200
    fleet["sensors"] = [{"name": "run_hours", "unit": "h", "baseline": 0.0, "rises_per_day": 24.0}]  # merged by name
    data["engine"].update(policy="reactive")
    data["engine"]["maintenance"] = [
        {**PLAN, "name": "hours_service", "every_days": None, "usage_sensor": "run_hours", "every_usage": 480}
    ]
    scenario, problems = validate_data(data)
    assert scenario is not None, problems
    outcome = run_scenario(scenario, broker_kind="mosquitto", workdir=tmp_path)
    m = kpis(outcome)["maintenance"]
    assert 60 <= m["work_orders"] <= 140 and m["serviced"]["compressor_wear"] >= m["work_orders"] - 5
    first = {}
    for t, actor, kind, device, _, detail in outcome.records.events:
        if actor == "engine" and kind == "work_order" and detail == "hours_service":
            first.setdefault(device, t)
    assert min(first.values()) > 0.0 and len(first) == m["work_orders"]  # one visit each, none at the start
