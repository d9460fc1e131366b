"""An experiment from start to report: run the replications (adding more until precise enough), compare, write.

Files under the output directory: ``replications/`` (one directory per replication),
``comparison.json`` (every figure, interval and difference), ``replications.csv`` (one row per
replication, arm and metric), ``report.html`` (one self-contained page) and ``experiment.json``
(how it ran: executor, jobs, wall time, replications run and reused — everything that may differ
between two runs of the same experiment, kept out of the comparison).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from experiments.compare import build_comparison, replications_csv
from experiments.execute import Done, Listener, execute
from experiments.plan import Plan
from experiments.stats import Difference, precision_reached, replications_needed

__all__ = ["Outcome", "Precision", "run_experiment"]


@dataclass(frozen=True)
class Precision:
    """Keep adding replications until every headline difference's half-width ≤ ``target`` times |baseline mean|."""

    target: float  # 0.05 for 5 %
    start: int = 5
    cap: int = 40


@dataclass
class Outcome:
    """What an experiment produced."""

    comparison: dict[str, Any]
    done: list[Done]
    out_dir: Path
    ran: int = 0
    reused: int = 0
    failed: int = 0
    files: list[Path] = field(default_factory=list)


def _headline_differences(doc: dict[str, Any]) -> tuple[dict[str, Difference], dict[str, float], bool]:
    """Every headline difference of the document, the baseline means, and whether none is missing."""
    names = {f.name for f in fields(Difference)}
    diffs: dict[str, Difference] = {}
    means: dict[str, float] = {}
    complete = bool(doc["headline"])
    base = doc["baseline"]
    for key in doc["headline"]:
        metric = doc["metrics"][key]
        for arm in metric["arms"]:
            if arm == base:
                continue
            entry = metric["differences"].get(arm)
            if entry is None:  # fewer than two complete pairs: not precise, whatever the others say
                complete = False
                continue
            diffs[f"{key}|{arm}"] = Difference(**{k: v for k, v in entry.items() if k in names})
            means[f"{key}|{arm}"] = float(metric["arms"][base]["mean"] or 0.0)
    return diffs, means, complete


def run_experiment(
    plan: Plan,
    out_dir: Path,
    *,
    replications: int,
    jobs: int = 1,
    scheduler: str | None = None,
    precision: Precision | None = None,
    broker_kind: str = "auto",
    on_event: Listener | None = None,
    on_round: Callable[[int], None] | None = None,
    render: bool = True,
    tradeoff: tuple[str, str] | None = None,
) -> Outcome:
    """Run ``plan`` and write its files; with ``precision``, add replications until precise or capped."""
    started = time.monotonic()
    root = out_dir / "replications"
    n = precision.start if precision is not None else replications
    counts = {"reused": 0, "done": 0, "failed": 0}

    def listen(kind: str, spec: Any, done: Done | None) -> None:
        if kind in counts:
            counts[kind] += 1
        if on_event is not None:
            on_event(kind, spec, done)

    known: dict[str, Done] = {}  # replications finished in earlier rounds of this invocation
    while True:
        if on_round is not None:
            on_round(n * len(plan.arms))
        specs = plan.replications(n)
        fresh = [s for s in specs if s.dirname not in known]
        for d in execute(fresh, root, jobs=jobs, scheduler=scheduler, broker_kind=broker_kind, on_event=listen):
            known[d.spec.dirname] = d
        done = [known[s.dirname] for s in specs]
        doc = build_comparison(plan, done, n, tradeoff=tradeoff)
        if precision is None:
            break
        diffs, means, complete = _headline_differences(doc)
        reached = complete and precision_reached(diffs, means, precision.target)
        doc["replications"]["precision"] = {
            "target": precision.target,
            "reached": reached,
            "replications": n,
            "cap": precision.cap,
        }
        if reached or n >= precision.cap:
            break
        needed = max((replications_needed(d, means[k], precision.target) for k, d in diffs.items()), default=n + 1)
        n = min(precision.cap, max(n + 1, needed, n + max(1, jobs // max(1, len(plan.arms)))))
    out_dir.mkdir(parents=True, exist_ok=True)
    files = [out_dir / "comparison.json", out_dir / "replications.csv", out_dir / "experiment.json"]
    (out_dir / "comparison.json").write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    (out_dir / "replications.csv").write_text(replications_csv(doc), encoding="utf-8")
    if render:
        from experiments.report import render_report

        files.append(render_report(doc, out_dir / "report.html"))
    wall = time.monotonic() - started
    manifest = {
        "kind": plan.kind,
        "executor": f"dask {scheduler}" if scheduler else f"process pool, {jobs} job(s)",
        "jobs": jobs,
        "replications": n,
        "arms": len(plan.arms),
        "ran": counts["done"] + counts["failed"],
        "reused": counts["reused"],
        "failed": counts["failed"],
        "wall_s": round(wall, 1),
        "replications_per_hour": round(3600.0 * (counts["done"]) / wall, 1) if wall > 0 and counts["done"] else None,
    }
    (out_dir / "experiment.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    failed = sum(1 for d in done if not d.ok)
    return Outcome(doc, done, out_dir, counts["done"], counts["reused"], failed, files)
