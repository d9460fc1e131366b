"""The comparison document: every figure of every replication, paired across arms, with intervals.

Every numeric figure of a replication's ``result.json`` (KPIs, cost, scorecard, ledger, checklist)
becomes a metric with a dotted key (``kpis.downtime_hours_per_device_year``). For each metric: each
arm's mean with a 95 % t-interval, and each arm's paired difference against the baseline (pairs are
replications on the same seed) with a t-interval, a BCa bootstrap interval, a p-value Holm-adjusted
across the arms, and the variance reduction that pairing bought. Nothing in the document depends
on wall time, paths or the executor, so the same experiment gives the same document on a process
pool and on a Dask cluster.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats as sps

from experiments.execute import Done
from experiments.metrics import HEADLINE, describe
from experiments.plan import Plan
from experiments.stats import holm, mean_ci, paired_difference

__all__ = ["Replication", "build_comparison", "flatten", "load_replications", "pareto", "replications_csv"]

MAX_POINTS = 400  # time-series points per series in the document


class Replication:
    """A stored replication read back: its arm, index, seed, flattened figures and level series."""

    def __init__(self, done: Done) -> None:
        assert done.path is not None
        self.arm, self.index, self.seed = done.spec.arm, done.spec.index, done.spec.seed
        self.policy = done.spec.policy
        self.result: dict[str, Any] = json.loads((done.path / "result.json").read_text(encoding="utf-8"))
        meta = json.loads((done.path / "replication.json").read_text(encoding="utf-8"))
        self.restore_hours: list[float] = meta.get("restore_hours", [])
        self.figures = flatten(self.result)
        self.levels = _read_levels(done.path / "timeseries.csv")


def _read_levels(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    if not path.exists():
        return {}
    rows: dict[str, tuple[list[float], list[float]]] = {}
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            t, v = rows.setdefault(row["series"], ([], []))
            t.append(float(row["t_days"]))
            v.append(float(row["value"]))
    return {k: (np.asarray(t), np.asarray(v)) for k, (t, v) in rows.items()}


def flatten(result: Mapping[str, Any]) -> dict[str, float | None]:
    """Every figure of a result document under a dotted key (lists, text and settings left out)."""
    out: dict[str, float | None] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(f"{prefix}.{key}", value)
        elif isinstance(node, bool):
            out[prefix] = float(node)
        elif isinstance(node, (int, float)):
            out[prefix] = float(node) if math.isfinite(node) else None
        elif node is None:
            out[prefix] = None

    for section in ("kpis", "scorecard", "ledger", "checklist"):
        walk(section, result.get(section, {}))
    return {k: v for k, v in out.items() if FIGURES.match(k)}


FIGURES = re.compile(
    r"kpis\."
    r"|scorecard\.(overall|by_mode|by_source|remote_fixes|field)\."
    r"|ledger\.(per_device_year\.|total$|cost_per_device_year$|revenue_per_device_year$|net_per_device_year$)"
    r"|checklist\.(points\.[^.]+\.share$|summary\.)"
)
"""Which numbers of a result are figures to compare (not prices, targets, periods or settings)."""


def load_replications(done: Sequence[Done]) -> list[Replication]:
    return [Replication(d) for d in done if d.ok and d.path is not None]


def _clean(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 6)


def _arm_values(reps: Sequence[Replication], arms: Sequence[str], n: int, key: str) -> dict[str, list[float | None]]:
    table: dict[str, list[float | None]] = {a: [None] * n for a in arms}
    for r in reps:
        if r.index < n:
            table[r.arm][r.index] = r.figures.get(key)
    return table


def _metric(key: str, values: dict[str, list[float | None]], baseline: str, level: float) -> dict[str, Any]:
    arms_out: dict[str, Any] = {}
    for arm, vals in values.items():
        got = [v for v in vals if v is not None]
        ci = mean_ci(got, level) if got else None
        arms_out[arm] = {
            "mean": _clean(ci.mean) if ci else None,
            "lo": _clean(ci.lo) if ci and ci.lo is not None else None,
            "hi": _clean(ci.hi) if ci and ci.hi is not None else None,
            "sd": _clean(ci.sd) if ci and ci.sd is not None else None,
            "n": len(got),
            "values": [_clean(v) for v in vals],
        }
    diffs: dict[str, Any] = {}
    for arm, vals in values.items():
        if arm == baseline:
            continue
        pairs = [(b, o) for b, o in zip(values[baseline], vals, strict=True) if b is not None and o is not None]
        if len(pairs) >= 2:
            diffs[arm] = paired_difference([p[0] for p in pairs], [p[1] for p in pairs], level=level).to_dict()
    return {**describe(key), "arms": arms_out, "differences": diffs}


def _adjust(metrics: Mapping[str, Any], headline: Sequence[str], level: float) -> None:
    """Holm-adjust the p-values: the headline figures of every arm as one family, any other figure across arms."""
    families: list[tuple[str, list[str]]] = [("headline", list(headline))]
    families += [("arms", [key]) for key in metrics if key not in headline]
    for family, keys in families:
        pvals = {
            f"{key}|{arm}": d["p_value"]
            for key in keys
            for arm, d in metrics[key]["differences"].items()
            if d.get("p_value") is not None
        }
        adjusted = holm(pvals) if pvals else {}
        for key in keys:
            for arm, d in metrics[key]["differences"].items():
                p = adjusted.get(f"{key}|{arm}")
                d["p_holm"] = _clean(p)
                d["significant"] = p is not None and p < 1.0 - level
                d["holm_family"] = family


def _series(reps: Sequence[Replication], arms: Sequence[str], level: float) -> dict[str, Any]:
    names = sorted({name for r in reps for name in r.levels})
    out: dict[str, Any] = {}
    for name in names:
        entry: dict[str, Any] = {"t_days": [], "arms": {}}
        every = [r.levels[name] for r in reps if name in r.levels]
        length = min(len(t) for t, _ in every)  # one time grid for every arm
        stride = max(1, math.ceil(length / MAX_POINTS))
        for arm in arms:
            runs = [r.levels[name] for r in reps if r.arm == arm and name in r.levels]
            if not runs:
                continue
            t = runs[0][0][:length:stride]
            matrix = np.vstack([v[:length:stride] for _, v in runs])
            mean = matrix.mean(axis=0)
            if len(runs) > 1:
                half = sps.t.ppf(0.5 + level / 2, len(runs) - 1) * matrix.std(axis=0, ddof=1) / math.sqrt(len(runs))
            else:
                half = np.zeros_like(mean)
            entry["t_days"] = [round(float(x), 4) for x in t]
            entry["arms"][arm] = {
                "mean": [round(float(x), 4) for x in mean],
                "lo": [round(float(x), 4) for x in mean - half],
                "hi": [round(float(x), 4) for x in mean + half],
            }
        out[name] = entry
    return out


def _checklist(metrics: Mapping[str, Any], reps: Sequence[Replication], arms: Sequence[str]) -> list[dict[str, Any]]:
    """The checklist's points, each with every arm's mean share and the verdict against its target."""
    if not reps:
        return []
    points = reps[0].result.get("checklist", {}).get("points", {})
    out = []
    for ident, p in points.items():
        key = f"checklist.points.{ident}.share"
        entry: dict[str, Any] = {
            "point": p.get("point"),
            "id": ident,
            "title": p.get("title", ident),
            "definition": p.get("definition", ""),
            "metric": key if key in metrics else None,
            "target": p.get("target"),
            "partial_from": p.get("partial_from"),
            "arms": {},
        }
        for arm in arms:
            m = metrics[key]["arms"].get(arm, {}) if key in metrics else {}
            mean = m.get("mean")
            entry["arms"][arm] = {
                "mean": mean,
                "lo": m.get("lo"),
                "hi": m.get("hi"),
                "verdict": _verdict(mean, p.get("target"), p.get("partial_from")),
            }
        out.append(entry)
    return sorted(out, key=lambda e: (e["point"] is None, e["point"] or 0))


def _verdict(mean: float | None, target: float | None, partial: float | None) -> str:
    from experiments.checklist import Target, verdict

    if target is None:
        return "not exercised"
    return verdict(mean, Target(0, "", "", target, target if partial is None else partial, ""))


def build_comparison(
    plan: Plan, done: Sequence[Done], n: int, level: float = 0.95, tradeoff: tuple[str, str] | None = None
) -> dict[str, Any]:
    """The comparison document for replications 0..n-1 of ``plan``'s arms."""
    reps = [r for r in load_replications(done) if r.index < n]
    arms = [a.label for a in plan.arms]
    keys = sorted({k for r in reps for k in r.figures})
    metrics = {key: _metric(key, _arm_values(reps, arms, n, key), plan.baseline, level) for key in keys}
    for metric in metrics.values():
        metric["unit"] = metric["unit"].replace("currency", plan.base.costs.currency)
    headline = [k for k in HEADLINE if k in metrics]
    _adjust(metrics, headline, level)
    failed = [
        {"arm": d.spec.arm, "seed": d.spec.seed, "index": d.spec.index, "error": d.error, "log_tail": d.log_tail}
        for d in done
        if not d.ok and d.spec.index < n
    ]
    scenario = plan.base
    ledger_lines = sorted({k.split(".")[2] for k in keys if k.startswith("ledger.per_device_year.")})
    doc: dict[str, Any] = {
        "kind": plan.kind,
        "scenario": {
            "name": scenario.name,
            "devices": scenario.device_count,
            "days": scenario.duration_days,
            "warmup_days": scenario.warmup_days,
            "seed": scenario.seed,
            "currency": scenario.costs.currency,
        },
        "baseline": plan.baseline,
        "arms": [
            {"label": a.label, "policy": a.policy, "source": a.source, "overrides": dict(a.overrides)}
            for a in plan.arms
        ],
        "seeds": plan.seeds(n),
        "level": level,
        "replications": {
            "requested": n,
            "per_arm": {a: sum(1 for r in reps if r.arm == a) for a in arms},
            "failed": failed,
            "missing": [{"arm": f["arm"], "seed": f["seed"]} for f in failed],
            "precision": None,
        },
        "headline": headline,
        "metrics": metrics,
        "checklist": _checklist(metrics, reps, arms),
        "timeseries": _series(reps, arms, level),
        "restore_hours": {a: [h for r in reps if r.arm == a for h in r.restore_hours] for a in arms},
        "cost_breakdown": {
            a: {
                line: metrics[f"ledger.per_device_year.{line}"]["arms"][a]["mean"]
                for line in ledger_lines
                if line not in ("total", "net")
            }
            for a in arms
        },
        "sweep": _sweep(plan, metrics, tradeoff or DEFAULT_TRADEOFF) if plan.kind == "sweep" else None,
    }
    return doc


DEFAULT_TRADEOFF = ("scorecard.overall.false_alarms_per_1000_device_days", "scorecard.overall.missed_failures")
"""A sweep's default trade-off: false alarms (each a needless action) against failures the engine missed."""

SWEEP_COLUMNS = (
    "scorecard.overall.missed_failures",
    "scorecard.overall.false_alarms_per_1000_device_days",
    "scorecard.overall.precision",
    "scorecard.overall.recall",
    "scorecard.overall.no_fault_found_visits",
    "kpis.truck_rolls_per_1000_devices",
    "kpis.downtime_hours_per_device_year",
    "ledger.per_device_year.net",
)


def pareto(points: Sequence[tuple[str, float, float]], lower_x: bool = True, lower_y: bool = True) -> list[str]:
    """Labels of the points no other point beats on both axes (ties kept)."""
    sx, sy = (1.0 if lower_x else -1.0), (1.0 if lower_y else -1.0)
    front = []
    for label, x, y in points:
        beaten = any(
            sx * ox <= sx * x and sy * oy <= sy * y and (sx * ox < sx * x or sy * oy < sy * y) for _, ox, oy in points
        )
        if not beaten:
            front.append(label)
    return front


def _sweep(plan: Plan, metrics: Mapping[str, Any], axes: tuple[str, str]) -> dict[str, Any]:
    columns = [k for k in (*axes, *SWEEP_COLUMNS) if k in metrics]
    columns = list(dict.fromkeys(columns))
    points: list[dict[str, Any]] = []
    for arm in plan.arms:
        values = {k: metrics[k]["arms"].get(arm.label, {}).get("mean") for k in columns}
        points.append({"label": arm.label, "values": dict(arm.overrides), "metrics": values})
    x, y = axes
    placed = [
        (p["label"], p["metrics"][x], p["metrics"][y])
        for p in points
        if p["metrics"].get(x) is not None and p["metrics"].get(y) is not None
    ]
    better = {k: metrics[k]["better"] if k in metrics else "lower" for k in axes}
    front = pareto(placed, better[x] != "higher", better[y] != "higher") if placed else []
    return {
        "parameters": [s.path for s in plan.settings],
        "points": points,
        "columns": columns,
        "tradeoff": {"x": x, "y": y, "pareto": front},
    }


def replications_csv(doc: Mapping[str, Any]) -> str:
    """One row per replication, arm and metric, for notebooks."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["arm", "policy", "replication", "seed", "metric", "value"])
    policy = {a["label"]: a["policy"] for a in doc["arms"]}
    for key, metric in doc["metrics"].items():
        for arm, entry in metric["arms"].items():
            for i, value in enumerate(entry["values"]):
                if value is not None:
                    writer.writerow([arm, policy.get(arm, ""), i, doc["seeds"][i], key, repr(value)])
    return buf.getvalue()
