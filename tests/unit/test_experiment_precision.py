"""The sequential procedure: replications are added until every headline difference is precise enough."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import experiments.experiment as experiment
from experiments.execute import Done
from experiments.experiment import Precision, run_experiment
from experiments.plan import ReplicationSpec, compare_plan
from experiments.policies import read_policy
from sim.scenario_file import load

ROOT = Path(__file__).resolve().parents[2]


def _fake_execute(calls: list[int]):  # type: ignore[no-untyped-def]
    """Replications whose downtime is known: baseline ~ N(10, 2); the other 3 lower, paired by seed."""

    def execute(specs: Iterable[ReplicationSpec], root: Path, **_: Any) -> list[Done]:
        specs = list(specs)
        calls.append(len(specs))
        out = []
        for spec in specs:
            rng = np.random.default_rng(spec.seed)
            base, noise = rng.normal(10.0, 2.0), rng.normal(0.0, 0.5)
            value = base if spec.arm == "reactive" else base - 3.0 + noise
            path = root / spec.dirname
            path.mkdir(parents=True, exist_ok=True)
            kpis = {"downtime_hours_per_device_year": value, "contacts_per_1000_devices": 100.0 + value}
            (path / "result.json").write_text(json.dumps({"kpis": kpis}))
            (path / "replication.json").write_text(json.dumps({"key": spec.key, "restore_hours": [1.0, 2.0]}))
            out.append(Done(spec, True, path))
        return out

    return execute


@pytest.fixture
def plan():  # type: ignore[no-untyped-def]
    return compare_plan(load(ROOT / "scenarios" / "freezers.yaml"), [read_policy("reactive"), read_policy("proactive")])


def test_replications_are_added_until_the_headline_difference_is_precise(plan, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    calls: list[int] = []
    monkeypatch.setattr(experiment, "execute", _fake_execute(calls))
    outcome = run_experiment(plan, tmp_path, replications=3, precision=Precision(0.02, start=3, cap=60), render=False)
    doc = outcome.comparison
    precision = doc["replications"]["precision"]
    assert precision["reached"] is True
    n = precision["replications"]
    assert 3 < n < 60 and len(calls) >= 2 and calls[0] == 6
    d = doc["metrics"]["kpis.downtime_hours_per_device_year"]["differences"]["proactive"]
    baseline = doc["metrics"]["kpis.downtime_hours_per_device_year"]["arms"]["reactive"]["mean"]
    assert d["t_hi"] - d["mean"] <= 0.02 * abs(baseline)
    assert d["t_lo"] < -3.0 < d["t_hi"] or abs(d["mean"] + 3.0) < 0.5
    assert doc["replications"]["per_arm"] == {"reactive": n, "proactive": n}


def test_a_cap_stops_an_experiment_that_cannot_reach_its_precision(plan, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(experiment, "execute", _fake_execute([]))
    outcome = run_experiment(plan, tmp_path, replications=3, precision=Precision(0.0001, start=3, cap=8), render=False)
    precision = outcome.comparison["replications"]["precision"]
    assert precision == {"target": 0.0001, "reached": False, "replications": 8, "cap": 8}


def test_pairing_shows_as_variance_reduction(plan, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(experiment, "execute", _fake_execute([]))
    doc = run_experiment(plan, tmp_path, replications=20, render=False).comparison
    d = doc["metrics"]["kpis.downtime_hours_per_device_year"]["differences"]["proactive"]
    assert d["variance_reduction"] > 5  # sd 2 shared by both arms, 0.5 of their own: (4 + 4.25) / 0.25 = 33
    assert d["significant"] is True and d["p_holm"] < 0.05
