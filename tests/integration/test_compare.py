"""``sot compare`` and ``sot sweep`` as a user runs them: real runs, resumable, the same on Dask."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from experiments.experiment import run_experiment
from experiments.plan import compare_plan
from experiments.policies import read_policy
from sim.scenario_file import load, with_overrides
from tests.integration.cli import FREEZERS, ROOT, SOT, processes_mentioning, sot

pytestmark = pytest.mark.integration

DAYS = "3"


def _dirs(out: Path) -> list[Path]:
    root = out / "replications"
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) if root.exists() else []


def test_compare_writes_the_comparison_the_table_and_the_report(tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    done = sot("compare", str(FREEZERS), "-p", "reactive", "-p", "proactive", "-r", "2", "--days", DAYS, "--jobs", "2",
               "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads((out / "comparison.json").read_text())
    assert [a["label"] for a in doc["arms"]] == ["reactive", "proactive"]
    assert doc["replications"]["per_arm"] == {"reactive": 2, "proactive": 2}
    assert doc["seeds"] == doc["seeds"][:2] and len(set(doc["seeds"])) == 2
    contacts = doc["metrics"]["kpis.contacts_per_1000_devices"]
    assert set(contacts["differences"]) == {"proactive"}
    d = contacts["differences"]["proactive"]
    assert d["t_lo"] <= d["mean"] <= d["t_hi"]
    # Paired on the same seeds: each replication's devices fail alike under both policies.
    failures = doc["metrics"]["kpis.failures"]["arms"]
    assert failures["reactive"]["n"] == failures["proactive"]["n"] == 2
    assert len(_dirs(out)) == 4
    for rep in _dirs(out):
        result = json.loads((rep / "result.json").read_text())
        assert {"kpis", "scorecard", "ledger", "checklist", "replication"} <= set(result)
        assert (rep / "timeseries.csv").exists()
    with open(out / "replications.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["arm"] for r in rows} == {"reactive", "proactive"}
    assert {r["replication"] for r in rows} == {"0", "1"}
    assert (out / "report.html").read_text().startswith("<!DOCTYPE html>")
    manifest = json.loads((out / "experiment.json").read_text())
    assert (manifest["ran"], manifest["reused"]) == (4, 0)
    assert "proactive" in done.stdout and "wrote" in done.stdout

    # The same command again runs nothing; one more replication runs only the new pair.
    again = sot("compare", str(FREEZERS), "-p", "reactive", "-p", "proactive", "-r", "3", "--days", DAYS,
                "--jobs", "2", "--out", str(out))  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    manifest = json.loads((out / "experiment.json").read_text())
    assert (manifest["ran"], manifest["reused"]) == (2, 4)
    assert json.loads((out / "comparison.json").read_text())["seeds"][:2] == doc["seeds"]


def test_a_killed_compare_resumes_with_only_the_missing_replications(tmp_path: Path) -> None:
    out = tmp_path / "killed"
    args = [*SOT, "compare", str(FREEZERS), "-p", "reactive", "-p", "proactive", "-r", "2", "--days", DAYS,
            "--jobs", "1", "--out", str(out)]  # fmt: skip
    scratch = tmp_path / "scratch"  # the replications' scratch directories, to find their processes by
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch)}
    proc = subprocess.Popen(
        args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env
    )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and len(_dirs(out)) < 1:
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err.decode()[-2000:]
    assert "run the same command again" in err.decode()
    kept = len(_dirs(out))
    assert 1 <= kept < 4
    assert not (out / "comparison.json").exists()
    assert processes_mentioning(str(scratch)) == []  # every broker and engine of the killed run stopped

    resumed = sot(*args[len(SOT) :])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    manifest = json.loads((out / "experiment.json").read_text())
    assert manifest["reused"] == kept
    assert manifest["ran"] == 4 - kept
    assert len(_dirs(out)) == 4


def test_the_dask_path_gives_the_same_comparison_as_the_local_pool(tmp_path: Path) -> None:
    from distributed import LocalCluster

    scenario = with_overrides(load(FREEZERS), duration_days=float(DAYS))
    plan = compare_plan(scenario, [read_policy("reactive"), read_policy("proactive")])
    local = run_experiment(plan, tmp_path / "local", replications=2, jobs=2, render=False)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        remote = run_experiment(
            plan, tmp_path / "dask", replications=2, scheduler=cluster.scheduler_address, render=False
        )
    assert remote.ran == 4 and remote.failed == 0
    assert remote.comparison == local.comparison
    assert json.loads((tmp_path / "dask" / "experiment.json").read_text())["executor"].startswith("dask")


def test_a_sweep_pairs_its_points_and_marks_the_pareto_front(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    done = sot("sweep", str(FREEZERS), "--set", "engine.rules[compressor_duty].above=0.55,0.8", "-r", "2",
               "--days", DAYS, "--jobs", "2", "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads((out / "comparison.json").read_text())
    assert doc["kind"] == "sweep"
    labels = [p["label"] for p in doc["sweep"]["points"]]
    assert labels == ["compressor_duty.above=0.55", "compressor_duty.above=0.8"]
    assert doc["sweep"]["tradeoff"]["pareto"] and set(doc["sweep"]["tradeoff"]["pareto"]) <= set(labels)
    assert doc["seeds"] == json.loads((out / "comparison.json").read_text())["seeds"]
    assert "Pareto" in done.stdout


def test_a_bad_policy_or_setting_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("sla: {resolution_s: soon}\n")
    done = sot("compare", str(FREEZERS), "-p", "reactive", "-p", str(bad), "--out", str(tmp_path / "x"))
    assert done.returncode == 2
    assert "bad.yaml" in done.stderr and "sla.resolution_s" in done.stderr
    done = sot("sweep", str(FREEZERS), "--set", "engine.rules[nothing].above=1", "--out", str(tmp_path / "y"))
    assert done.returncode == 2
    assert "nothing" in done.stderr
