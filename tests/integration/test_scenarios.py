"""Golden summaries: every scenario in scenarios/ runs through Mosquitto and the engine process, and its
KPIs and message accounting match the committed summary in tests/golden/.

Runs are shortened to ``GOLDEN_DAYS`` so that the suite stays quick; the full-length figures are in
docs/scenarios.md. After a deliberate change to the world or the engine, regenerate with
``SOT_UPDATE_GOLDEN=1 pytest tests/integration/test_scenarios.py`` and review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from harness.runner import run_scenario
from sim.scenario_file import load, with_overrides

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden"
SCENARIOS = sorted((ROOT / "scenarios").glob("*.yaml"))
GOLDEN_DAYS = {
    "cars": 7,
    "city": 7,
    "contact_centre_mmc": 1,
    "firmware_campaign": 7,
    "firmware_recall": 7,
    "freezers": 14,
    "freezers_preventive": 14,
    "hospital": 30,
    "printers": 14,
    "regional_outage": 7,
    "wind_farm": 30,
}
UPDATE = os.environ.get("SOT_UPDATE_GOLDEN") == "1"


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """What a golden file pins: the KPIs, the message accounting and the engine's counters."""
    messages = {k: v for k, v in result["messages"].items()}
    return {"sim_days": result["sim_days"], "messages": messages, "kpis": result["kpis"], "engine": result["engine"]}


def close(actual: Any, expected: Any, path: str = "") -> list[str]:
    """Differences between two summaries: counts exactly, floats to 1e-9 relative (platform last bits)."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        keys = sorted(set(expected) | set(actual))
        return [d for k in keys for d in close(actual.get(k), expected.get(k), f"{path}.{k}" if path else k)]
    if isinstance(expected, float) and isinstance(actual, float):
        return [] if actual == pytest.approx(expected, rel=1e-9, abs=1e-12) else [f"{path}: {actual} != {expected}"]
    return [] if actual == expected else [f"{path}: {actual!r} != {expected!r}"]


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario_runs_and_matches_its_golden_summary(path: Path, tmp_path: Path) -> None:
    scenario = load(path)
    assert scenario.name in GOLDEN_DAYS, f"add {scenario.name!r} to GOLDEN_DAYS and generate its golden file"
    short = with_overrides(scenario, duration_days=min(scenario.duration_days, GOLDEN_DAYS[scenario.name]))
    outcome = run_scenario(short, broker_kind="mosquitto", workdir=tmp_path)
    result = outcome.result
    messages = result["messages"]
    assert messages["lost"] == 0
    assert messages["published"] == messages["ingested"] + messages["rejected"]
    assert messages["engine_emitted"] == messages["engine_outputs_received"]
    assert messages["duplicates"] >= messages["duplicates_sent"]  # every batch sent twice was recognised
    assert result["kpis"]["devices"] == scenario.device_count
    # A scenario where nothing fails tests nothing, unless its owners get in touch anyway (contact streams).
    assert outcome.records.failures or outcome.records.enquiries, "a scenario where nothing happens tests nothing"
    golden_file = GOLDEN / f"{scenario.name}.json"
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        golden_file.write_text(json.dumps(summary(result), indent=1, sort_keys=True) + "\n", encoding="utf-8")
    assert golden_file.exists(), f"no golden summary for {scenario.name}: run with SOT_UPDATE_GOLDEN=1"
    differences = close(summary(result), json.loads(golden_file.read_text(encoding="utf-8")))
    assert not differences, "\n".join(differences[:40])
