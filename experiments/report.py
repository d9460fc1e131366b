"""The comparison report: one self-contained HTML page from a ``comparison.json`` document.

:func:`render_report` picks what each section needs out of the document, draws the figures as
inline SVG (:mod:`experiments.plots`) and fills the Jinja2 template ``templates/report.html``
(autoescaped; numbers are formatted by the filters defined here, prose lives in the template). The
page needs nothing but itself: no scripts, fonts, images or styles from anywhere else, so it opens
offline and prints as it shows. The same document gives the same bytes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
from markupsafe import Markup

from experiments import plots

__all__ = ["render_report"]

GROUPS = {
    "kpis": "Service KPIs",
    "cost": "Cost of the run",
    "ledger": "Cost ledger",
    "scorecard": "Scorecard",
    "checklist": "Checklist",
}
SERIES = {  # series name: (panel title, y axis)
    "devices_down": ("Devices down", "devices"),
    "open_incidents": ("Open incidents", "incidents"),
    "devices_degraded": ("Devices degraded", "devices"),
    "owners_waiting": ("Owners waiting", "owners"),
    "work_orders_waiting": ("Work orders waiting", "work orders"),
    "technicians_busy": ("Technicians busy", "technicians"),
}
LEDGER_LINES = {
    "downtime": "Downtime",
    "truck_rolls": "Truck rolls",
    "technician_time": "Technician time",
    "agent_time": "Agent time",
    "parts": "Parts",
    "sla_penalties": "SLA penalties",
    "churn": "Churn",
    "monitoring": "Monitoring",
    "consumable_sales": "Consumable sales",
}
# The verb of a headline sentence, by the metric's "better" and the sign of the difference.
VERBS = {("lower", -1): "cuts", ("lower", 1): "increases", ("higher", 1): "raises", ("higher", -1): "reduces"}
MINUS, DASH, EN_DASH = "\u2212", "\u2014", "\u2013"


def render_report(comparison: Mapping[str, Any], out_path: Path) -> Path:
    """Write the report of ``comparison`` (a ``comparison.json`` document) to ``out_path`` and return the path."""
    html = _environment().get_template("report.html").render(**_view(comparison))
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(html, encoding="utf-8")
    return out_path


# --- formatting: the template's filters ----------------------------------------------------------


def number(
    value: Any, unit: str = "", spread: float | None = None, *, signed: bool = False, decimals: int | None = None
) -> str:
    """``value`` for reading: shares as percent, a true minus sign, thousands separated, ``—`` when unknown.

    Without ``decimals``, two significant digits of ``spread`` (an interval's half-width), or three
    of the value itself: a figure is written as precisely as it is known.
    """
    x = _finite(value)
    if x is None:
        return DASH
    scale = 100.0 if unit == "share" else 1.0
    if decimals is None:
        ref = spread * scale if spread is not None and spread > 0 else abs(x * scale) / 10 or None
        decimals = 1 if ref is None or not math.isfinite(ref) else min(4, max(0, 1 - math.floor(math.log10(ref))))
    return f"{x * scale:{'+' if signed else ''},.{decimals}f}".replace("-", MINUS)


def stats_cell(s: Mapping[str, Any] | None, unit: str, part: str = "both") -> str:
    """One arm's summary as ``mean [lo, hi]``, or only its ``mean`` or its ``ci`` (empty without an interval)."""
    s = s or {}
    mean, lo, hi = _finite(s.get("mean")), _finite(s.get("lo")), _finite(s.get("hi"))
    if lo is None or hi is None:
        return "" if part == "ci" else number(mean, unit)
    half = (hi - lo) / 2
    ci = f"[{number(lo, unit, half)}, {number(hi, unit, half)}]"
    return {"mean": number(mean, unit, half), "ci": ci}.get(part, f"{number(mean, unit, half)} {ci}")


def diff_part(d: Mapping[str, Any] | None, unit: str, part: str) -> str:
    """A paired difference's ``mean`` (signed) or its ``t`` or ``bca`` interval as ``[lo, hi]``."""
    d = d or {}
    t_lo, t_hi = _finite(d.get("t_lo")), _finite(d.get("t_hi"))
    half = (t_hi - t_lo) / 2 if t_lo is not None and t_hi is not None else None
    if part == "mean":
        return number(d.get("mean"), unit, half, signed=True)
    lo, hi = _finite(d.get(f"{part}_lo")), _finite(d.get(f"{part}_hi"))
    if lo is None or hi is None:
        return "" if part == "t" else DASH
    spread = half if half is not None else (hi - lo) / 2
    return f"[{number(lo, unit, spread)}, {number(hi, unit, spread)}]"


def pvalue(p: Any) -> str:
    x = _finite(p)
    if x is None:
        return DASH
    return "<0.001" if x < 0.001 else f"{x:.3f}" if x < 0.1 else f"{x:.2f}"


def percent(x: Any) -> str:
    v = _finite(x)
    return DASH if v is None else f"{v * 100:.0f} %".replace("-", MINUS)


def unit_text(unit: str, *, difference: bool = False) -> str:
    """The unit as written next to a value (``%`` for shares) or a difference (percentage points)."""
    if unit == "share":
        return "percentage points" if difference else "%"
    return unit


def ratio(x: Any) -> str:
    v = _finite(x)
    return DASH if v is None else f"{v:.1f}\u00d7"


def capfirst(text: Any) -> str:
    s = str(text)
    return s[:1].upper() + s[1:]


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("experiments", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(
        number=number,
        stats=stats_cell,
        diff=diff_part,
        pvalue=pvalue,
        percent=percent,
        ratio=ratio,
        unit=unit_text,
        capfirst=capfirst,
    )
    return env


# --- the page's content --------------------------------------------------------------------------


def _view(doc: Mapping[str, Any]) -> dict[str, Any]:
    scenario: Mapping[str, Any] = doc.get("scenario") or {}
    arm_docs = list(doc.get("arms") or [])
    arms = [str(a["label"]) for a in arm_docs]
    baseline = str(doc.get("baseline") or (arms[0] if arms else ""))
    others = [a for a in arms if a != baseline]
    currency = str(scenario.get("currency") or "")
    metrics = {k: _metric(m, baseline, others, currency) for k, m in (doc.get("metrics") or {}).items()}
    reps: dict[str, Any] = {"per_arm": {}, "failed": [], "missing": [], "requested": None, "precision": None}
    reps |= {k: v for k, v in (doc.get("replications") or {}).items() if v is not None}
    failed = {(f.get("arm"), f.get("seed")) for f in reps["failed"]}
    reps["missing"] = [m for m in reps["missing"] if (m.get("arm"), m.get("seed")) not in failed]
    colours = plots.arm_colours(arms, baseline, sequential=doc.get("kind") == "sweep")
    level = f"{round(float(doc.get('level') or 0.95) * 100):g} %"
    headline = [k for k in doc.get("headline") or [] if k in metrics]
    name = str(scenario.get("name") or "Scenario")
    if doc.get("kind") == "sweep":
        title = f"{name}: sweep of {', '.join((doc.get('sweep') or {}).get('parameters') or []) or 'overrides'}"
    else:
        title = f"{name}: {' vs '.join(arms)}" if arms else name
    view: dict[str, Any] = {
        "kind": doc.get("kind") or "compare",
        "title": title,
        "scenario": scenario,
        "facts": _facts(doc, scenario, level),
        "arms": [{**a, "colour": colours[a["label"]], "overrides": a.get("overrides") or {}} for a in arm_docs],
        "baseline": baseline,
        "others": others,
        "colours": colours,
        "level": level,
        "replications": reps,
        "headline": [_arm_headline(arm, headline, metrics, level) for arm in others],
        "kpi_groups": _kpi_groups({k: m for k, m in metrics.items() if not _constant(m)}),
        "constant": [(str(m.get("label") or k), m) for k, m in metrics.items() if _constant(m)],
        "scorecard": [(k, m) for k, m in metrics.items() if m.get("group") == "scorecard"],
        "checklist": _checklist(doc.get("checklist") or [], metrics),
        "cost": _cost(doc.get("cost_breakdown") or {}, arms, baseline),
        "restore": _restore_table(doc.get("restore_hours") or {}, arms),
        "tradeoff": _tradeoff_table(doc.get("sweep"), metrics, baseline),
    }
    view["figures"] = _figures(doc, view, headline, metrics, arms)
    return view


def _metric(metric: Mapping[str, Any], baseline: str, others: Sequence[str], currency: str) -> dict[str, Any]:
    """The metric with its unit in the scenario's currency and, where the document has no paired
    difference (a single pair), the difference of the arms' means, without an interval."""
    unit = str(metric.get("unit") or "")
    out = {
        **metric,
        "unit": unit.replace("currency", currency) if currency else unit,
        "differences": dict(metric.get("differences") or {}),
    }
    arms = metric.get("arms") or {}
    base = _finite((arms.get(baseline) or {}).get("mean"))
    for arm in others:
        mean = _finite((arms.get(arm) or {}).get("mean"))
        if arm not in out["differences"] and base is not None and mean is not None:
            out["differences"][arm] = {"mean": mean - base, "significant": False}
    return out


def _facts(doc: Mapping[str, Any], scenario: Mapping[str, Any], level: str) -> list[tuple[str, str]]:
    days, warm = _finite(scenario.get("days")), _finite(scenario.get("warmup_days"))
    where = f" ({scenario['file']})" if scenario.get("file") else ""
    facts = [
        ("Scenario", f"{scenario.get('name', DASH)}{where}"),
        ("Scenario hash", str(scenario.get("hash") or "")[:12]),
        ("Devices", number(scenario.get("devices"), decimals=0)),
        ("Simulated time", f"{days:g} days" if days is not None else DASH),
        ("Warm-up", f"{warm:g} days, not counted" if warm else "none"),
        ("Scenario seed", str(scenario.get("seed", DASH))),
        ("Seeds", _ranges(doc.get("seeds") or [])),
        ("Confidence", f"{level}, paired by seed"),
        ("Currency", str(scenario.get("currency") or "")),
    ]
    return [(k, v) for k, v in facts if v]


def _ranges(seeds: Sequence[int]) -> str:
    """Seeds as runs: ``1-12, 15``."""
    runs: list[list[int]] = []
    for seed in seeds:
        if runs and seed == runs[-1][-1] + 1:
            runs[-1].append(seed)
        else:
            runs.append([seed])
    return ", ".join(f"{r[0]}{EN_DASH}{r[-1]}" if len(r) > 2 else ", ".join(map(str, r)) for r in runs) or DASH


def _sentence(arm: str, key: str, metric: Mapping[str, Any], level: str) -> dict[str, Any]:
    """One headline difference in words, as the parts the template joins and emphasises."""
    d = (metric.get("differences") or {}).get(arm) or {}
    unit, better = str(metric.get("unit") or ""), metric.get("better")
    label = str(metric.get("label") or key)
    words = {
        "arm": arm,
        "key": key,
        "metric": label if label[1:2].isupper() else label[:1].lower() + label[1:],
        "unit": unit_text(unit, difference=True),
        "note": "",
        "tone": "neutral",
    }
    mean = _finite(d.get("mean"))
    lo, hi = _finite(d.get("t_lo")), _finite(d.get("t_hi"))
    if lo is None or hi is None:
        lo, hi = _finite(d.get("bca_lo")), _finite(d.get("bca_hi"))
    if mean is None:
        return {**words, "kind": "missing"}
    sign = (mean > 0) - (mean < 0)
    verb = VERBS.get((str(better), sign), "raises" if sign > 0 else "lowers")
    if lo is None or hi is None:
        return {**words, "kind": "single", "verb": verb, "amount": number(abs(mean), unit)}
    half = (hi - lo) / 2
    p = pvalue(d.get("p_holm"))
    p_text = "" if p == DASH else f"p < {p[1:]}" if p.startswith("<") else f"p = {p}"
    if lo <= 0.0 <= hi:
        ci = f"{level} CI {number(lo, unit, half)} to {number(hi, unit, half)}"
        note = f"{p_text} after Holm adjustment" if p_text else ""
        return {**words, "kind": "none", "amount": number(mean, unit, half, signed=True), "ci": ci, "note": note}
    a, b = sorted((abs(lo), abs(hi)))
    ci = f"{level} CI {number(a, unit, half)}{EN_DASH}{number(b, unit, half)}"
    if d.get("significant"):
        note = f"significant after Holm adjustment ({p_text})" if p_text else "significant after Holm adjustment"
        good = (better == "lower" and sign < 0) or (better == "higher" and sign > 0)
        tone = ("better" if good else "worse") if better in ("lower", "higher") else "neutral"
    else:
        note, tone = f"not significant after Holm adjustment ({p_text or 'no p-value'})", "uncertain"
    return {
        **words,
        "kind": "change",
        "verb": verb,
        "amount": number(abs(mean), unit, half),
        "ci": ci,
        "note": note,
        "tone": tone,
    }


def _arm_headline(arm: str, headline: Sequence[str], metrics: Mapping[str, Any], level: str) -> dict[str, Any]:
    sentences = [_sentence(arm, key, metrics[key], level) for key in headline]
    tones = [s["tone"] for s in sentences]
    counts = {"better": tones.count("better"), "worse": tones.count("worse")}
    return {"arm": arm, "sentences": sentences, "counts": counts, "unclear": len(tones) - sum(counts.values())}


def _constant(metric: Mapping[str, Any]) -> bool:
    """Whether a figure took one and the same value in every replication of every arm (nothing to compare)."""
    values = {v for entry in (metric.get("arms") or {}).values() for v in entry.get("values") or []}
    return len(values) == 1 and None not in values


def _kpi_groups(metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Metrics by group, then by the second part of a longer key (``kpis.contact_centre.asa_s``: contact centre)."""
    order = list(GROUPS) + sorted({str(m.get("group")) for m in metrics.values()} - set(GROUPS))
    sections: dict[tuple[str, str], list[tuple[str, Mapping[str, Any], str]]] = {}
    for group in order:
        for key, m in metrics.items():
            if str(m.get("group")) == group:
                parts = key.split(".")
                sub = parts[1].replace("_", " ") if len(parts) > 2 and parts[1] != group else ""
                label = str(m.get("label") or key)
                sections.setdefault((group, sub), []).append(
                    (key, m, label.removeprefix(f"{sub} · ") if sub else label)
                )
    ordered = sorted(sections.items(), key=lambda item: (order.index(item[0][0]), item[0][1] != ""))
    return [
        {"name": GROUPS.get(g, g.capitalize()) + (f" · {sub}" if sub else ""), "rows": rows}
        for (g, sub), rows in ordered
    ]


def _checklist(points: Sequence[Mapping[str, Any]], metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for point in points:
        metric = metrics.get(str(point.get("metric"))) or {}
        unit = str(metric.get("unit") or "share")
        target, sign = _finite(point.get("target")), "\u2264" if metric.get("better") == "lower" else "\u2265"
        shown = (
            DASH if target is None else f"{sign} {target * 100:g} %" if unit == "share" else f"{sign} {target:g} {unit}"
        )
        rows.append({**point, "unit": unit, "target_text": shown})
    return rows


def _cost(breakdown: Mapping[str, Mapping[str, Any]], arms: Sequence[str], baseline: str) -> dict[str, Any]:
    present = {line for arm in arms for line in breakdown.get(arm) or {}}
    lines = [line for line in LEDGER_LINES if line in present] + sorted(present - set(LEDGER_LINES))
    shown = [a for a in arms if a in breakdown]
    totals = {a: sum(_finite(v) or 0.0 for v in breakdown[a].values()) for a in shown}
    biggest = max(
        [abs(_finite(v) or 0.0) for a in shown for v in breakdown[a].values()]
        + [abs(t) for t in totals.values()]
        + [0.0]
    )
    return {
        "lines": [(line, LEDGER_LINES.get(line, line.replace("_", " ").capitalize())) for line in lines],
        "line_colours": plots.line_colours(lines),
        "arms": shown,
        "values": {a: dict(breakdown[a]) for a in shown},
        "totals": totals,
        "decimals": 0 if biggest >= 1000 else 1 if biggest >= 10 else 2,
        # Differences against the baseline fit beside a few arms only; a sweep has its trade-off table.
        "deltas": [a for a in shown if a != baseline] if baseline in breakdown and len(shown) <= 4 else [],
    }


def _restore_table(hours: Mapping[str, Sequence[Any]], arms: Sequence[str]) -> list[dict[str, Any]]:
    rows = []
    for arm in arms:
        xs = np.array([h for h in hours.get(arm) or [] if _finite(h) is not None], dtype=float)
        if xs.size:
            row = dict(
                zip(("median", "p90", "p95"), (float(q) for q in np.quantile(xs, [0.5, 0.9, 0.95])), strict=True)
            )
            rows.append({"arm": arm, "n": xs.size, "within_day": float((xs <= 24.0).mean()), **row})
    return rows


def _tradeoff_table(
    sweep: Mapping[str, Any] | None, metrics: Mapping[str, Any], baseline: str
) -> dict[str, Any] | None:
    if not sweep or not sweep.get("points"):
        return None
    trade = sweep.get("tradeoff") or {}
    pareto = set(trade.get("pareto") or [])
    keys = dict.fromkeys(
        [trade.get("x"), trade.get("y"), *(k for p in sweep["points"] for k in p.get("metrics") or {})]
    )
    keys.pop(None, None)
    columns = [(k, (metrics.get(k) or {}).get("label", k), (metrics.get(k) or {}).get("unit", "")) for k in keys]
    points = [{**p, "pareto": p["label"] in pareto, "baseline": p["label"] == baseline} for p in sweep["points"]]
    return {
        "parameters": sweep.get("parameters") or [],
        "columns": columns,
        "points": points,
        "x": trade.get("x"),
        "y": trade.get("y"),
    }


# --- figures -------------------------------------------------------------------------------------


def _figures(
    doc: Mapping[str, Any],
    view: Mapping[str, Any],
    headline: Sequence[str],
    metrics: Mapping[str, Any],
    arms: Sequence[str],
) -> dict[str, dict[str, Any]]:
    """Every figure the document has data for, by its key; the page gives each the id ``fig-<key>``."""
    baseline, others, level, colours = view["baseline"], view["others"], view["level"], view["colours"]
    figures: dict[str, dict[str, Any]] = {}

    def add(key: str, title: str, svg: str, **extra: Any) -> None:
        figures[key] = {"id": f"fig-{key}", "title": title, "svg": Markup(svg), **extra}

    rows = [_forest_row(arm, metrics[k], baseline) for k in headline for arm in others]
    if rows:
        title = f"Headline differences against {baseline}"
        add("forest", title, plots.forest(rows, colours, baseline=baseline, level=level, key="forest", title=title))
        title = "Every replication, paired by seed"
        add(
            "paired",
            title,
            plots.paired([_paired_panel(metrics[k], arms) for k in headline], arms, colours, key="paired", title=title),
        )
    cost = view["cost"]
    if cost["arms"] and cost["lines"]:
        unit = f"{(doc.get('scenario') or {}).get('currency') or ''} per device-year".strip()
        title = "Cost per device-year by ledger line"
        add(
            "cost",
            title,
            plots.cost_stack(cost["values"], cost["arms"], cost["lines"], unit=unit, key="cost", title=title),
            unit=unit,
        )
    series = _series_panels(doc.get("timeseries") or {})
    if series:
        warm = _finite((doc.get("scenario") or {}).get("warmup_days")) or 0.0
        title = "Fleet levels over simulated time"
        add(
            "timeseries",
            title,
            plots.timeseries(series, arms, colours, warmup_days=warm, key="timeseries", title=title),
            warmup=warm,
        )
    hours = doc.get("restore_hours") or {}
    if any(_finite(h) is not None for a in arms for h in hours.get(a) or []):
        title = "Time to restore, every incident"
        svg, log = plots.restore_ecdf(hours, arms, colours, key="restore", title=title)
        add("restore", title, svg, log=log)
    trade = view["tradeoff"]
    if trade and trade["x"] in metrics and trade["y"] in metrics:
        mx, my = metrics[trade["x"]], metrics[trade["y"]]
        points = []
        for p in trade["points"]:
            x, y = (_finite((p.get("metrics") or {}).get(k)) for k in (trade["x"], trade["y"]))
            if x is not None and y is not None:
                points.append(plots.TradeoffPoint(p["label"], x, y, p["pareto"], p["baseline"]))
        if points:
            title = f"Trade-off: {mx.get('label')} against {my.get('label')}"
            better = (mx.get("better"), my.get("better"))
            svg = plots.tradeoff(
                points,
                colours,
                xlabel=_axis_label(mx),
                ylabel=_axis_label(my),
                better=better,
                key="tradeoff",
                title=title,
            )
            add("tradeoff", title, svg)
    return figures


def _forest_row(arm: str, metric: Mapping[str, Any], baseline: str) -> plots.ForestRow:
    d = (metric.get("differences") or {}).get(arm) or {}
    unit = str(metric.get("unit") or "")
    base = _finite(((metric.get("arms") or {}).get(baseline) or {}).get("mean"))
    mean, lo, hi = _finite(d.get("mean")), _finite(d.get("t_lo")), _finite(d.get("t_hi"))
    scale = abs(base) if base else None
    short = "pp" if unit == "share" else unit
    if mean is None:
        text = "not measured"
    elif lo is None or hi is None:
        text = f"{diff_part(d, unit, 'mean')} {short} (no interval)"
    else:
        text = f"{diff_part(d, unit, 'mean')} {diff_part(d, unit, 't')} {short}"
    if mean is not None and scale is None:
        text += " (baseline 0: not scaled)"
    return plots.ForestRow(
        metric=capfirst(metric.get("label") or ""),
        arm=arm,
        relative=mean / scale if mean is not None and scale is not None else None,
        lo=lo / scale if scale is not None and lo is not None else None,
        hi=hi / scale if scale is not None and hi is not None else None,
        text=text,
        significant=bool(d.get("significant")),
    )


def _paired_panel(metric: Mapping[str, Any], arms: Sequence[str]) -> plots.PairedPanel:
    unit = str(metric.get("unit") or "")
    values = {a: ((metric.get("arms") or {}).get(a) or {}).get("values") or [] for a in arms}
    return plots.PairedPanel(
        title=capfirst(metric.get("label") or ""), ylabel=unit_text(unit), values=values, percent=unit == "share"
    )


def _series_panels(timeseries: Mapping[str, Any]) -> list[plots.SeriesPanel]:
    panels = []
    for name in [n for n in SERIES if n in timeseries] + sorted(set(timeseries) - set(SERIES)):
        s = timeseries[name] or {}
        t = [float(x) for x in s.get("t_days") or []]
        bands = {
            a: plots.Band(b.get("mean") or [], b.get("lo") or [], b.get("hi") or [])
            for a, b in (s.get("arms") or {}).items()
        }
        if t and any(len(b.mean) for b in bands.values()):
            title, ylabel = SERIES.get(name, (name.replace("_", " ").capitalize(), "count"))
            panels.append(plots.SeriesPanel(title, ylabel, t, bands))
    return panels


def _axis_label(metric: Mapping[str, Any]) -> str:
    unit = unit_text(str(metric.get("unit") or ""))
    label = capfirst(metric.get("label") or "")
    return f"{label} ({unit})" if unit else label
