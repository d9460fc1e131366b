"""Everything a run is scored on besides its KPIs: the scorecard, the cost ledger and the checklist.

``sot run`` and every replication of ``sot compare`` / ``sot sweep`` add these blocks to their
``result.json``, so a single run is scored exactly as an experiment's replications are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from experiments.checklist import evaluate
from experiments.ledger import cost_ledger
from experiments.rundata import RunData, engine_databases, read_engine_logs
from experiments.scorecard import score
from sim.records import Records
from sim.scenario import Scenario

__all__ = ["assess", "assess_outcome"]


def assess(run: RunData) -> dict[str, Any]:
    """The ``scorecard``, ``ledger`` and ``checklist`` blocks of one run's ``result.json``."""
    return {"scorecard": score(run), "ledger": cost_ledger(run), "checklist": evaluate(run)}


def assess_outcome(scenario: Scenario, result: dict[str, Any], records: Records, workdir: Path) -> dict[str, Any]:
    """Score a finished harness run whose engine database (or partitions' databases) is in ``workdir``."""
    run = RunData(
        scenario=scenario,
        policy=str(result["policy"]),
        records=records,
        engine=read_engine_logs(engine_databases(workdir)),
        stats=result.get("engine", {}),
        end_s=scenario.duration_s,
        start_s=scenario.warmup_s,
    )
    return assess(run)
