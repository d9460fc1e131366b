"""Synthetic, deterministic comparison documents (``comparison.json``) for the report's tests.

:func:`comparison_document` builds a compare (reactive vs proactive vs a tuned proactive) or a sweep
(a detection threshold over seven grid points) whose statistics are computed from per-replication
values drawn with common random numbers, so means, intervals, paired differences, Holm-adjusted
p-values and variance reductions agree with each other as they would in a real document.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from scipy import stats

Kind = Literal["compare", "sweep"]

HEADLINE = [
    "kpis.downtime_hours_per_device_year",
    "kpis.contacts_per_1000_devices",
    "kpis.truck_rolls_per_1000_devices",
    "kpis.resolved_within_day_rate",
    "ledger.per_device_year.net",
]
PD = "currency per device-year"

# key: (label, unit, better, baseline mean, sd across replications, effect of full proactivity), the
# group being the key's first part (kpis.cost.* is "cost"). The effect is relative to the baseline
# mean; a baseline mean of None: the baseline cannot measure it (the reactive engine raises no alerts).
METRICS: dict[str, tuple[str, str, str | None, float | None, float, float]] = {
    "kpis.downtime_hours_per_device_year": ("downtime", "h per device-year", "lower", 14.2, 1.6, -0.28),
    "kpis.degraded_hours_per_device_year": ("degraded running", "h per device-year", "lower", 31.0, 3.1, -0.18),
    "kpis.mttr_hours": ("time to restore (MTTR)", "h", "lower", 19.5, 2.2, -0.22),
    "kpis.contacts_per_1000_devices": ("owner contacts", "per 1,000 devices", "lower", 412.0, 28.0, -0.31),
    "kpis.truck_rolls_per_1000_devices": ("truck rolls", "per 1,000 devices", "lower", 96.0, 7.0, 0.15),
    "kpis.first_time_fix_rate": ("first-time fix", "share", "higher", 0.74, 0.03, 0.12),
    "kpis.resolved_within_day_rate": ("restored within a day", "share", "higher", 0.58, 0.04, 0.21),
    "kpis.remote_resolution_rate": ("resolved remotely", "share", "higher", 0.21, 0.03, 0.9),
    "kpis.detected_before_owner_rate": ("detected before the owner", "share", "higher", 0.04, 0.01, 9.0),
    "kpis.owner_effort_steps_mean": ("owner effort", "steps", "lower", 3.4, 0.2, -0.3),
    "kpis.contact_wait_s_mean": ("contact wait", "s", "lower", 94.0, 21.0, -0.25),
    "kpis.churned_owners": ("owners churned", "owners", "lower", 17.0, 4.0, -0.35),
    "kpis.availability": ("availability", "share", "higher", 0.99838, 0.0002, 0.00045),
    "kpis.contact_centre.asa_s": ("contact centre · asa s", "", None, 88.0, 20.0, -0.3),
    "kpis.contact_centre.abandonment": ("contact centre · abandonment", "share", None, 0.06, 0.01, -0.4),
    "kpis.cost.total": ("cost (KPI total)", "currency", "lower", 412_000.0, 26_000.0, -0.12),
    "ledger.per_device_year.net": ("net cost", PD, "lower", 171.0, 9.5, -0.13),
    "ledger.per_device_year.downtime": ("per device year · downtime", PD, "lower", 71.0, 8.0, -0.28),
    "ledger.per_device_year.truck_rolls": ("per device year · truck rolls", PD, "lower", 38.4, 2.8, 0.15),
    "ledger.per_device_year.monitoring": ("per device year · monitoring", PD, "lower", 0.0, 0.0, 0.0),
    "scorecard.overall.precision": ("alert precision", "share", "higher", None, 0.04, 0.71),
    "scorecard.overall.recall": ("recall before the owner", "share", "higher", None, 0.05, 0.64),
    "scorecard.overall.false_alarms_per_1000_device_days": (
        "false alarms",
        "per 1,000 device-days",
        "lower",
        None,
        0.3,
        1.9,
    ),
    "scorecard.overall.missed_failures": ("overall · missed failures", "failures", "lower", 160.0, 12.0, -0.55),
    "scorecard.overall.lead_hours_median": ("lead time before failure (median)", "h", "higher", None, 5.0, 41.0),
    "scorecard.overall.right_issue_rate": ("right issue", "share", "higher", None, 0.04, 0.81),
    "scorecard.remote_fixes.confirmed_rate": ("remote-fix claims confirmed", "share", "higher", None, 0.03, 0.93),
    "scorecard.overall.no_fault_found_visits": ("no-fault-found visits", "visits", "lower", 9.0, 2.0, -0.4),
    "checklist.points.in_context.share": ("points · in context · share", "share", "higher", 0.31, 0.03, 1.4),
    "checklist.points.right_first_time.share": (
        "points · right first time · share",
        "share",
        "higher",
        0.71,
        0.03,
        0.15,
    ),
    "checklist.points.few_steps.share": ("points · few steps · share", "share", "higher", 0.62, 0.04, 0.3),
    "checklist.points.within_day.share": ("points · within day · share", "share", "higher", 0.58, 0.04, 0.21),
    "checklist.points.automatic_triage.share": (
        "points · automatic triage · share",
        "share",
        "higher",
        None,
        0.04,
        0.66,
    ),
    "checklist.points.instant_validation.share": (
        "points · instant validation · share",
        "share",
        "higher",
        0.12,
        0.03,
        5.5,
    ),
}

CHECKLIST = [  # point, id, title, target, partial from
    (1, "in_context", "Support is provided in context, through the owner's preferred channel", 0.8, 0.5),
    (2, "right_first_time", "The owner reaches the right person or expert the first time", 0.85, 0.6),
    (3, "few_steps", "Resolution takes fewer than four steps for the owner", 0.8, 0.6),
    (4, "within_day", "Resolution within a day, unless truly impossible", 0.8, 0.6),
    (5, "automatic_triage", "Automatic triage: the company contacts the owner when defined events occur", 0.6, 0.3),
    (6, "instant_validation", "Instant validation: the owner is told at once when the issue is resolved", 0.9, 0.6),
    (7, "contingency", "A contingency plan: during a major outage, the owner is told what support remains", 0.9, 0.6),
]

COST_LINES = {  # baseline EUR per device-year, effect of full proactivity
    "downtime": (71.0, -0.28),
    "truck_rolls": (38.4, 0.15),
    "technician_time": (27.5, -0.02),
    "agent_time": (16.5, -0.31),
    "parts": (12.8, 0.06),
    "sla_penalties": (6.1, -0.55),
    "churn": (9.2, -0.35),
    "monitoring": (0.0, 0.0),
    "consumable_sales": (-10.5, 0.18),
}
SATURATION = {"scorecard.overall.missed_failures": 2.0}
MONITORING_FEE = 4.0  # proactive arms pay for the monitoring service


def comparison_document(kind: Kind = "compare", *, replications: int = 12, seed: int = 20240) -> dict[str, Any]:
    """A realistic ``comparison.json`` document of the given kind, the same for the same arguments."""
    rng = np.random.default_rng(seed)
    if kind == "compare":
        arms = [
            {"label": "reactive", "policy": "reactive", "source": None, "overrides": {}},
            {"label": "proactive", "policy": "proactive", "source": None, "overrides": {}},
            {
                "label": "proactive-tuned",
                "policy": "proactive",
                "source": "policies/proactive_tuned.yaml",
                "overrides": {"engine.rules.compressor_temp.above": 6.5, "field.technicians": 14},
            },
        ]
        strength = {"reactive": 0.0, "proactive": 1.0, "proactive-tuned": 1.15}
        baseline = "reactive"
    else:
        thresholds = [0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85]
        path = "engine.rules.bearing_vibration.above"
        arms = [
            {"label": f"above={t:.2f}", "policy": "proactive", "source": None, "overrides": {path: t}}
            for t in thresholds
        ]
        # A lower threshold catches more (less downtime) and dispatches more (more truck rolls).
        strength = {f"above={t:.2f}": 1.6 - 1.2 * (t - 0.55) / 0.3 for t in thresholds}
        baseline = "above=0.70"
    labels = [a["label"] for a in arms]
    seeds = list(range(1, replications + 1))
    values = {key: _replicate(rng, key, labels, strength, replications) for key in METRICS}
    failed: list[dict[str, Any]] = []
    if kind == "compare" and replications >= 4:  # one crashed replication of one arm
        failed_label, failed_index = labels[-1], 2
        values = {key: {**v, failed_label: _drop(v[failed_label], failed_index)} for key, v in values.items()}
        failed.append(
            {
                "arm": failed_label,
                "seed": seeds[failed_index],
                "index": failed_index,
                "error": "EngineError: engine exited with code 137 during day 41.5",
                "log_tail": "day 41.4 step ok\nday 41.5 engine: MemoryError in fleet_patterns\nrunner: engine exited (137)",
            }
        )
    metrics = {key: _metric(key, METRICS[key], values[key], baseline) for key in METRICS}
    per_arm = {label: sum(v is not None for v in values[HEADLINE[0]][label]) for label in labels}
    timeseries = _timeseries(rng, labels, strength) if kind == "compare" else {}
    sweep = _sweep(arms, metrics) if kind == "sweep" else None
    return {
        "kind": kind,
        "scenario": {
            "name": "freezers" if kind == "compare" else "wind_farm",
            "file": "scenarios/freezers.yaml" if kind == "compare" else "scenarios/wind_farm.yaml",
            "hash": "9f2c4e1ab37d5c08e6f1a2b3c4d5e6f7a8b9c0d1",
            "devices": 2000 if kind == "compare" else 240,
            "days": 180.0,
            "warmup_days": 14.0,
            "seed": 7,
            "currency": "EUR",
        },
        "baseline": baseline,
        "arms": arms,
        "seeds": seeds,
        "level": 0.95,
        "replications": {
            "requested": replications,
            "per_arm": per_arm,
            "failed": failed,
            "missing": [{"arm": f["arm"], "seed": f["seed"]} for f in failed],
            "precision": {"target": 0.05, "reached": True, "replications": replications, "cap": 40},
        },
        "headline": list(HEADLINE),
        "metrics": metrics,
        "checklist": _checklist(metrics, labels),
        "timeseries": timeseries,
        "restore_hours": {label: _restore(rng, strength[label]) for label in labels},
        "cost_breakdown": {label: _costs(strength[label]) for label in labels},
        "sweep": sweep,
    }


def _replicate(
    rng: np.random.Generator, key: str, labels: list[str], strength: dict[str, float], n: int
) -> dict[str, list[float | None]]:
    """Per-replication values of one metric: a common part per seed (the same failures) plus each arm's own noise."""
    _, unit, _, base, sd, effect = METRICS[key]
    common = rng.normal(0.0, 1.0, n)
    out: dict[str, list[float | None]] = {}
    for label in labels:
        s = strength[label]
        own = rng.normal(0.0, 1.0, n)
        if base is None and s == 0.0:
            out[label] = [None] * n  # the reactive engine raises no alerts: nothing to score
            continue
        centre = (base * (1.0 + effect * s)) if base is not None else effect * s
        if base is not None and key in SATURATION:  # past a point, more alerts than the field can act on
            centre += base * SATURATION[key] * max(0.0, s - 1.3) ** 2
        raw = centre + sd * (0.85 * common + 0.5 * own)
        if unit == "share":
            raw = np.clip(raw, 0.0, 1.0)
        out[label] = [round(float(x), 6) for x in np.maximum(raw, 0.0)]
    return out


def _drop(values: list[float | None], index: int) -> list[float | None]:
    return [None if i == index else v for i, v in enumerate(values)]


def _summary(values: list[float | None], level: float = 0.95) -> dict[str, Any]:
    xs = np.array([v for v in values if v is not None], dtype=float)
    n = int(xs.size)
    if n == 0:
        return {"mean": None, "lo": None, "hi": None, "sd": None, "n": 0, "values": values}
    mean = float(xs.mean())
    if n < 2:
        return {"mean": mean, "lo": None, "hi": None, "sd": None, "n": n, "values": values}
    sd = float(xs.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return {"mean": mean, "lo": mean - half, "hi": mean + half, "sd": sd, "n": n, "values": values}


def _difference(base: list[float | None], other: list[float | None], base_mean: float | None) -> dict[str, Any] | None:
    """The paired difference (other - baseline) over the seeds both have; None under two pairs, as the builder does."""
    pairs = [(a, b) for a, b in zip(base, other, strict=True) if a is not None and b is not None]
    if len(pairs) < 2:
        return None
    a = np.array([pair[0] for pair in pairs])
    b = np.array([pair[1] for pair in pairs])
    d = b - a
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    half = float(stats.t.ppf(0.975, d.size - 1)) * sd / math.sqrt(d.size)
    p = float(stats.ttest_1samp(d, 0.0).pvalue) if sd > 0 else (0.0 if mean != 0 else 1.0)
    unpaired = float(a.var(ddof=1) + b.var(ddof=1))
    return {
        "mean": mean,
        "t_lo": mean - half,
        "t_hi": mean + half,
        "bca_lo": mean - 1.06 * half,  # close to the t interval, slightly skewed, as a bootstrap would be
        "bca_hi": mean + 0.97 * half,
        "p_value": p,
        "p_holm": p,
        "relative": mean / base_mean if base_mean else None,
        "variance_reduction": unpaired / sd**2 if sd > 0 else None,  # unpaired variance over paired variance
        "significant": False,
    }


def _metric(key: str, spec: tuple[Any, ...], values: dict[str, list[float | None]], baseline: str) -> dict[str, Any]:
    """One metric: each arm's summary and each other arm's difference, Holm-adjusted across the arms."""
    label, unit, better, *_ = spec
    group = "cost" if key.startswith("kpis.cost.") else key.split(".", 1)[0]
    arms = {arm: _summary(v) for arm, v in values.items()}
    base_mean = arms[baseline]["mean"]
    differences = {}
    for arm, v in values.items():
        d = _difference(values[baseline], v, base_mean) if arm != baseline else None
        if d is not None:
            differences[arm] = d
    running = 0.0
    ranked = sorted(differences.items(), key=lambda item: item[1]["p_value"])
    for rank, (_, d) in enumerate(ranked):
        running = max(running, min(1.0, (len(ranked) - rank) * d["p_value"]))
        d["p_holm"], d["significant"] = running, running < 0.05
    return {"label": label, "unit": unit, "better": better, "group": group, "arms": arms, "differences": differences}


def _checklist(metrics: dict[str, Any], labels: list[str]) -> list[dict[str, Any]]:
    """The checklist as the comparison writes it: the verdict from each arm's mean share against the target."""
    rows = []
    for point, ident, title, target, partial in CHECKLIST:
        key = f"checklist.points.{ident}.share"
        arms = {}
        for label in labels:
            s = metrics[key]["arms"][label] if key in metrics else {}
            mean = s.get("mean")
            verdict = (
                "not exercised"
                if mean is None
                else "pass"
                if mean >= target
                else "partial"
                if mean >= partial
                else "fail"
            )
            arms[label] = {"mean": mean, "lo": s.get("lo"), "hi": s.get("hi"), "verdict": verdict}
        rows.append(
            {"point": point, "title": title, "metric": key if key in metrics else None, "target": target, "arms": arms}
        )
    return rows


def _timeseries(rng: np.random.Generator, labels: list[str], strength: dict[str, float]) -> dict[str, Any]:
    t = np.round(np.arange(0.0, 180.0 + 1e-9, 0.5), 3)
    shapes = {
        "devices_down": 3.2,
        "devices_degraded": 7.5,
        "open_incidents": 11.0,
        "owners_waiting": 2.4,
        "work_orders_waiting": 4.1,
        "technicians_busy": 6.3,
    }
    season = 1.0 + 0.25 * np.sin(2 * np.pi * t / 60.0) + 0.15 * np.exp(-((t - 120.0) ** 2) / 40.0)
    out: dict[str, Any] = {}
    for name, level in shapes.items():
        wiggle = rng.normal(0.0, 0.06, t.size).cumsum() / 6.0
        arms = {}
        for label in labels:
            scale = (
                1.0 - 0.3 * min(strength[label], 1.3) if name != "technicians_busy" else 1.0 + 0.05 * strength[label]
            )
            ramp = 1.0 - np.exp(-t / 6.0)  # the fleet starts healthy
            mean = np.maximum(level * scale * season * ramp * (1.0 + wiggle), 0.0)
            half = 0.18 * mean + 0.2 * ramp
            arms[label] = {
                "mean": [round(float(x), 4) for x in mean],
                "lo": [round(float(x), 4) for x in np.maximum(mean - half, 0.0)],
                "hi": [round(float(x), 4) for x in mean + half],
            }
        out[name] = {"t_days": [float(x) for x in t], "arms": arms}
    return out


def _restore(rng: np.random.Generator, strength: float) -> list[float]:
    """Hours to restore per incident: many quick remote fixes, a long tail of visits waiting for a part."""
    n = 900
    remote = rng.random(n) < 0.2 + 0.35 * min(strength, 1.3)
    hours = np.where(remote, rng.lognormal(math.log(1.5), 0.7, n), rng.lognormal(math.log(20.0), 0.9, n))
    return [round(float(h), 3) for h in hours]


def _costs(strength: float) -> dict[str, float]:
    lines = {line: round(base * (1.0 + effect * strength), 2) for line, (base, effect) in COST_LINES.items()}
    lines["monitoring"] = MONITORING_FEE if strength > 0 else 0.0
    return lines


def _sweep(arms: list[dict[str, Any]], metrics: dict[str, Any]) -> dict[str, Any]:
    x, y = "scorecard.overall.false_alarms_per_1000_device_days", "scorecard.overall.missed_failures"
    columns = [x, y, "scorecard.overall.precision", "scorecard.overall.recall", *HEADLINE]
    points = []
    for arm in arms:
        means = {key: metrics[key]["arms"][arm["label"]]["mean"] for key in columns}
        points.append({"label": arm["label"], "values": dict(arm["overrides"]), "metrics": means})
    placed = [(p["label"], p["metrics"][x], p["metrics"][y]) for p in points]
    pareto = [
        label
        for label, px, py in placed
        if not any(ox <= px and oy <= py and (ox < px or oy < py) for _, ox, oy in placed)
    ]
    return {
        "parameters": list(arms[0]["overrides"]),
        "points": points,
        "columns": columns,
        "tradeoff": {"x": x, "y": y, "pareto": pareto},
    }
