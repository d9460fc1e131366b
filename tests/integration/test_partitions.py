"""Engine partitions through a real broker: N engine processes, each owning shards of the device
topics in its own session and database, decide what one engine decides.

Every section a run is judged on (KPIs, scorecard, cost ledger, checklist, engine counters, message
accounting) must be identical; the work must really be split (each partition ingests readings, and
their counts add up); and a configuration that decides for the whole fleet at once is refused
before anything starts.
"""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from experiments.assess import assess_outcome
from harness.errors import HarnessError
from harness.runner import run_scenario
from sim.scenario import Scenario
from sim.scenario_file import load, with_overrides
from tests.integration.cli import FREEZERS, ROOT, processes_mentioning, sot

JUDGED = ("kpis", "scorecard", "ledger", "checklist", "engine", "messages")


def _scenario(name: str, days: float, per_gateway: int = 40) -> Scenario:
    """A scenario with gateways small enough that both shards get some."""
    s = load(ROOT / "scenarios" / f"{name}.yaml")
    fleets = [{**msgspec.to_builtins(f), "devices_per_gateway": per_gateway} for f in s.fleets]
    return with_overrides(s, fleets=fleets, duration_days=days)


def _run(s: Scenario, engines: int, workdir: Path) -> dict:
    outcome = run_scenario(s, engines=engines, workdir=workdir)
    outcome.result.update(assess_outcome(s, outcome.result, outcome.records, workdir))
    return outcome.result


@pytest.mark.parametrize(("name", "days"), [("freezers", 4.0), ("hospital", 10.0)])
def test_two_partitions_decide_what_one_engine_decides(name: str, days: float, tmp_path: Path) -> None:
    s = _scenario(name, days)
    one = _run(s, 1, tmp_path / "one")
    two = _run(s, 2, tmp_path / "two")
    for section in JUDGED:
        assert two[section] == one[section], f"{section} differs between 2 partitions and one engine"
    assert one["kpis"]["work_orders"] > 0 and one["engine"]["cases_opened"] > 0, "a run with nothing to decide"
    parts = two["engine_partitions"]
    assert [p["partition"] for p in parts] == [0, 1]
    assert all(p["readings"] > 0 and p["devices_provisioned"] > 0 for p in parts), parts
    assert sum(p["readings"] for p in parts) == one["engine"]["readings"]
    assert sum(p["devices_provisioned"] for p in parts) == s.device_count
    assert two["messages"]["lost"] == 0 and two["messages"]["rejected"] == 0  # every message on its right shard
    assert two["manifest"]["engines"] == 2
    assert sorted(p.name for p in (tmp_path / "two").glob("engine-p*.sqlite")) == [
        "engine-p0.sqlite",
        "engine-p1.sqlite",
    ]


def test_sot_run_engines_runs_partitions_and_refuses_fleet_wide_decisions(tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = sot("run", str(FREEZERS), "--days", "1", "--engines", "3", "--out", str(out), "-q")
    assert done.returncode == 0, done.stderr + done.stdout
    result = json.loads((out / "result.json").read_text())
    assert result["manifest"]["engines"] == 3 and len(result["engine_partitions"]) == 3
    assert result["messages"]["lost"] == 0 and result["messages"]["ingested"] == result["messages"]["published"]
    assert "scorecard" in result  # scored from the three databases
    assert processes_mentioning(str(out)) == []  # every partition stopped

    refused = sot(
        "run", str(ROOT / "scenarios" / "firmware_recall.yaml"), "--engines", "2", "--out", str(tmp_path / "r")
    )
    assert refused.returncode == 1
    said = refused.stdout + refused.stderr
    assert "rollout_after" in said and "run it with one engine" in said
    assert not (tmp_path / "r" / "engine-p0.sqlite").exists()  # refused before anything started


def test_run_scenario_refuses_a_fleet_wide_configuration(tmp_path: Path) -> None:
    s = load(ROOT / "scenarios" / "firmware_campaign.yaml")
    with pytest.raises(HarnessError, match=r"campaigns\): run it with one engine"):
        run_scenario(s, engines=2, workdir=tmp_path)
