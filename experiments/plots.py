"""Figures of the comparison report, drawn with matplotlib and returned as inline SVG markup.

Each function takes plain values that :mod:`experiments.report` picked out of the comparison
document and returns one ``<svg>`` element for the page. Figures are built on
:class:`matplotlib.figure.Figure` directly (no pyplot, no global backend) under a local
``rc_context``, so drawing a report changes nothing for anyone else in the process.

Text stays text (``svg.fonttype = 'none'``): it is searchable, selectable and read by screen
readers, and the files are a fraction of the size of glyph outlines. The font stack starts with
DejaVu Sans, the font matplotlib measures with, so labels keep the room they were laid out in; the
fallbacks are as wide or narrower. Element ids carry the figure's key (unique per page) and the
hash salt is the key too, so several figures share a page and the same input gives the same bytes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib import colormaps, rc_context
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, PercentFormatter

from support_engine.svg import inline_svg

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

__all__ = [
    "Band",
    "ForestRow",
    "PairedPanel",
    "SeriesPanel",
    "TradeoffPoint",
    "arm_colours",
    "cost_stack",
    "forest",
    "line_colours",
    "paired",
    "restore_ecdf",
    "timeseries",
    "tradeoff",
]

INK, MUTED, GRID, SHADE = "#1f2933", "#616e7c", "#e4e7eb", "#f4f6f8"
BASELINE_COLOUR = "#7b8794"
PALETTE = ("#1764ab", "#e07a10", "#13866f", "#b8408f", "#c23b22", "#4a9bd6", "#8a6d00", "#5b4cb0")
LINE_PALETTE = ("#264b73", "#3f7fbf", "#8cb4de", "#d9822b", "#f2b36f", "#a23b3b", "#7d6aa8", "#6d8f4e", "#3c9d8f")
ONE_DAY_H = 24.0
DASHED = (0, (5, 3))
SPOTS = ((9.0, 0.0, "left"), (-9.0, 0.0, "right"), (7.0, 11.0, "left"), (7.0, -11.0, "left"), (-7.0, 11.0, "right"))
Corner = tuple[float, float, str, str]
_CORNERS: dict[tuple[str | None, str | None], Corner] = {  # the better corner of a trade-off, by the axes' "better"
    ("lower", "lower"): (0.02, 0.04, "left", "\u2199 better"),
    ("higher", "lower"): (0.98, 0.04, "right", "better \u2198"),
    ("lower", "higher"): (0.02, 0.96, "left", "\u2196 better"),
    ("higher", "higher"): (0.98, 0.96, "right", "better \u2197"),
}
_LABEL: dict[str, Any] = {"textcoords": "offset points", "va": "center", "fontsize": 8.5}
_DOT: dict[str, Any] = {"edgecolor": "white", "linewidth": 0.5, "zorder": 3}

_RC: dict[RcKeyType, Any] = {
    "svg.fonttype": "none",
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Verdana", "Arial", "Helvetica"],
    "font.size": 9.5,
    "axes.edgecolor": "#9aa5b1",
    "axes.labelcolor": INK,
    "axes.titlesize": 10.5,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
    "axes.titlepad": 8.0,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.axisbelow": True,
    "grid.color": GRID,
    "grid.linewidth": 0.8,
    "xtick.color": MUTED,
    "ytick.color": MUTED,
    "xtick.labelcolor": INK,
    "ytick.labelcolor": INK,
    "text.color": INK,
    "legend.frameon": False,
    "figure.titlesize": 12,
    "figure.titleweight": "bold",
}


@dataclass(frozen=True)
class ForestRow:
    """One difference of the forest plot: relative to the baseline mean, with its absolute text."""

    metric: str
    arm: str
    relative: float | None
    lo: float | None
    hi: float | None
    text: str
    significant: bool


@dataclass(frozen=True)
class PairedPanel:
    """One headline metric's per-replication values per arm, in seed order (``None`` when missing)."""

    title: str
    ylabel: str
    values: Mapping[str, Sequence[float | None]]
    percent: bool = False


@dataclass(frozen=True)
class Band:
    """A mean line and its confidence band over time."""

    mean: Sequence[float | None]
    lo: Sequence[float | None]
    hi: Sequence[float | None]


@dataclass(frozen=True)
class SeriesPanel:
    """One level series (devices down, open incidents, ...) per arm."""

    title: str
    ylabel: str
    t_days: Sequence[float]
    arms: Mapping[str, Band]


@dataclass(frozen=True)
class TradeoffPoint:
    """One grid point of a sweep on the trade-off plane."""

    label: str
    x: float
    y: float
    pareto: bool
    baseline: bool


def arm_colours(labels: Sequence[str], baseline: str, *, sequential: bool = False) -> dict[str, str]:
    """One colour per arm, the same in every figure and table: grey baseline, or a ramp for grid points."""
    if sequential:
        ramp = colormaps["viridis"]
        n = max(len(labels) - 1, 1)
        return {label: to_hex(ramp(0.08 + 0.72 * i / n)) for i, label in enumerate(labels)}
    others = [label for label in labels if label != baseline]
    colours = {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(others)}
    return {label: colours.get(label, BASELINE_COLOUR) for label in labels}


def line_colours(lines: Sequence[str]) -> dict[str, str]:
    """One colour per cost-ledger line, in ledger order."""
    return {line: LINE_PALETTE[i % len(LINE_PALETTE)] for i, line in enumerate(lines)}


def forest(
    rows: Sequence[ForestRow], colours: Mapping[str, str], *, baseline: str, level: str, key: str, title: str
) -> str:
    """Differences against the baseline, relative to its mean, one row per (metric, arm)."""
    grouped = len({r.arm for r in rows}) > 1
    slots: list[tuple[str, ForestRow | None]] = []
    for r in rows:
        if grouped and (not slots or slots[-1][1] is None or slots[-1][1].metric != r.metric):
            slots.append((r.metric, None))
        slots.append((r.arm if grouped else r.metric, r))
    n = len(slots)
    with _style(key):
        fig = Figure(figsize=(10.0, 1.3 + 0.3 * n), layout="constrained")
        left, mid, right = fig.subplots(
            1, 3, sharey=True, gridspec_kw={"width_ratios": [2.3, 4.4, 3.3], "wspace": 0.01}
        )
        for ax in (left, right):
            ax.axis("off")
        band = 0
        for i, (name, row) in enumerate(slots):
            y = -i
            if row is None or not grouped:
                band += 1
            if band % 2 == 0:
                for ax in (left, mid, right):
                    ax.axhspan(y - 0.5, y + 0.5, color=SHADE, zorder=0, linewidth=0)
            if row is None:
                left.text(0.0, y, _short(name, 34), va="center", fontweight="bold")
                continue
            weight = "normal" if grouped else "bold"
            left.text(0.06 if grouped else 0.0, y, _short(name, 32), va="center", fontweight=weight)
            right.text(0.03, y, row.text, va="center", color=INK if row.significant else MUTED)
            if row.relative is None:
                continue
            colour = colours.get(row.arm, INK)
            if row.lo is not None and row.hi is not None:
                mid.plot([row.lo, row.hi], [y, y], color=colour, linewidth=2.2, solid_capstyle="butt", zorder=2)
            face = colour if row.significant else "white"
            mid.plot(
                [row.relative],
                [y],
                "o",
                markersize=7,
                color=colour,
                markerfacecolor=face,
                markeredgewidth=1.6,
                zorder=3,
            )
        left.text(0.0, 0.9, "Metric" if not grouped else "Metric / arm", color=MUTED, fontsize=8.5, va="center")
        right.text(0.03, 0.9, f"Difference vs {baseline} ({level} CI)", color=MUTED, fontsize=8.5, va="center")
        finite = [v for r in rows for v in (r.relative, r.lo, r.hi) if v is not None and math.isfinite(v)] + [0.0]
        lo, hi = min(finite), max(finite)
        pad = max((hi - lo) * 0.08, 0.01)
        mid.set_xlim(lo - pad, hi + pad)
        mid.set_ylim(-n + 0.5, 1.3)
        mid.axvline(0.0, color=INK, linewidth=1.0, zorder=1)
        mid.xaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))
        mid.set_yticks([])
        mid.spines["left"].set_visible(False)
        mid.grid(axis="y", visible=False)
        mid.set_xlabel(f"Change relative to the {baseline} mean")
        handles = [_marker(INK, "significant (Holm)"), _marker("white", "not significant")]
        if grouped:
            arms = list(dict.fromkeys(r.arm for r in rows))
            handles += [Line2D([], [], color=colours.get(a, INK), linewidth=3, label=a) for a in arms]
        fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 5), fontsize=8.5)
        return _svg(fig, key, title)


def paired(
    panels: Sequence[PairedPanel], arms: Sequence[str], colours: Mapping[str, str], *, key: str, title: str
) -> str:
    """Each replication's value per arm, the pairs (same seed, same failures) joined by a line."""
    ncols = min(len(panels), 3)
    nrows = math.ceil(len(panels) / ncols)
    rotate = len(arms) > 3 or max(len(a) for a in arms) > 12
    with _style(key):
        fig = Figure(figsize=(10.0, 0.5 + nrows * (3.3 if rotate else 2.9)), layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        xs = np.arange(len(arms))
        for ax, panel in zip(axes, panels, strict=False):
            seeds = max((len(panel.values.get(a, [])) for a in arms), default=0)
            table = np.vstack([_array([_float(v) for v in panel.values.get(a, [])], seeds) for a in arms])
            pairs = [
                np.column_stack([xs, table[:, j]]) for j in range(seeds)
            ]  # NaN breaks a line where a value is missing
            ax.add_collection(LineCollection(pairs, colors="#9aa5b1", linewidths=0.8, alpha=0.6, zorder=1))
            for i, arm in enumerate(arms):
                ys = table[i][~np.isnan(table[i])]
                ax.scatter(np.full(ys.size, i), ys, s=22, color=colours.get(arm, INK), **_DOT)
                if ys.size:
                    ax.plot([i - 0.22, i + 0.22], [ys.mean()] * 2, color=INK, linewidth=2.0, zorder=4)
            names = [_short(a, 16) for a in arms]
            ax.set_xticks(xs, names, rotation=35 if rotate else 0, ha="right" if rotate else "center")
            ax.set_xlim(-0.5, len(arms) - 0.5)
            ax.grid(axis="x", visible=False)
            ax.set_title(_short(panel.title, 34))
            ax.set_ylabel(panel.ylabel)
            if panel.percent:
                ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))
        for ax in axes[len(panels) :]:
            ax.set_visible(False)
        return _svg(fig, key, title)


def cost_stack(
    breakdown: Mapping[str, Mapping[str, float]],
    arms: Sequence[str],
    lines: Sequence[tuple[str, str]],
    *,
    unit: str,
    key: str,
    title: str,
) -> str:
    """Each arm's cost per device-year, stacked by ledger line; income (negative) stacks left of zero."""
    colours = line_colours([name for name, _ in lines])
    with _style(key):
        fig = Figure(figsize=(10.0, 1.6 + 0.5 * len(arms)), layout="constrained")
        ax = fig.subplots()
        right_edge = 0.0
        for y, arm in enumerate(arms):
            pos = neg = 0.0
            costs = breakdown.get(arm, {})
            for name, _ in lines:
                v = _float(costs.get(name))
                if v is None or v == 0.0:
                    continue
                start = pos if v > 0 else neg + v
                ax.barh(y, abs(v), left=start, height=0.62, color=colours[name], edgecolor="white", linewidth=0.7)
                pos, neg = (pos + v, neg) if v > 0 else (pos, neg + v)
            net = pos + neg
            right_edge = max(right_edge, pos)
            ax.plot([net], [y], marker="D", markersize=6, color=INK, linestyle="none", zorder=4)
            ax.annotate(f"net {net:,.1f}".replace("-", "\u2212"), (pos, y), xytext=(6, 0), **_LABEL)
        ax.set_yticks(range(len(arms)), [_short(a, 22) for a in arms])
        ax.invert_yaxis()
        ax.axvline(0.0, color=INK, linewidth=0.9)
        ax.set_xlim(right=right_edge * 1.14 + 1e-9)
        ax.grid(axis="y", visible=False)
        ax.set_xlabel(unit)
        handles = [Line2D([], [], color=colours[n], linewidth=7, label=label) for n, label in lines]
        handles.append(Line2D([], [], marker="D", color=INK, linestyle="none", label="net"))
        fig.legend(handles=handles, loc="outside lower center", ncol=5, fontsize=8.5)
        return _svg(fig, key, title)


def timeseries(
    panels: Sequence[SeriesPanel],
    arms: Sequence[str],
    colours: Mapping[str, str],
    *,
    warmup_days: float,
    key: str,
    title: str,
) -> str:
    """Level series over simulated time: each arm's mean line over its shaded confidence band."""
    ncols = min(len(panels), 2)
    nrows = math.ceil(len(panels) / ncols)
    with _style(key):
        fig = Figure(figsize=(10.0, 0.8 + 2.6 * nrows), layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True).ravel()
        for ax, panel in zip(axes, panels, strict=False):
            t = np.array(panel.t_days, dtype=float)
            if warmup_days > 0 and t.size and t.min() < warmup_days:
                ax.axvspan(t.min(), warmup_days, color=SHADE, linewidth=0, zorder=0)
            drawn = [(a, panel.arms[a]) for a in arms if a in panel.arms and len(panel.arms[a].mean)]
            for arm, band in drawn:  # every band first, so that no band veils another arm's line
                lo, hi = _array(band.lo, t.size), _array(band.hi, t.size)
                ax.fill_between(t, lo, hi, color=colours.get(arm, INK), alpha=0.13, linewidth=0)
            for arm, band in drawn:
                ax.plot(t, _array(band.mean, t.size), color=colours.get(arm, INK), linewidth=1.4)
            ax.set_title(panel.title)
            ax.set_ylabel(panel.ylabel)
            ax.set_ylim(bottom=0)
            if t.size > 1:
                ax.set_xlim(t.min(), t.max())
        for ax in axes[len(panels) :]:
            ax.set_visible(False)
        for ax in axes[max(len(panels) - ncols, 0) : len(panels)]:
            ax.set_xlabel("Simulated time (days)")
            ax.xaxis.set_tick_params(labelbottom=True)
        handles = [Line2D([], [], color=colours.get(a, INK), linewidth=2.2, label=a) for a in arms]
        if warmup_days > 0:
            handles.append(Line2D([], [], color=SHADE, linewidth=9, label="warm-up"))
        fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 6), fontsize=8.5)
        return _svg(fig, key, title)


def restore_ecdf(
    hours: Mapping[str, Sequence[float]], arms: Sequence[str], colours: Mapping[str, str], *, key: str, title: str
) -> tuple[str, bool]:
    """Share of incidents restored within x hours, per arm; a log x axis when the tail is long."""
    data = {a: np.sort(np.array([h for h in hours.get(a, []) if h is not None], dtype=float)) for a in arms}
    pooled = np.concatenate([d for d in data.values() if d.size] or [np.zeros(0)])
    positive = pooled[pooled > 0]
    log = bool(positive.size > 1 and np.quantile(positive, 0.95) / max(np.median(positive), 1e-9) > 8.0)
    with _style(key):
        fig = Figure(figsize=(10.0, 3.9), layout="constrained")
        ax = fig.subplots()
        for arm in arms:
            xs = data[arm]
            if not xs.size:
                continue
            if xs.size > 400:  # the curve at 400 quantiles is indistinguishable and far lighter
                xs, ys = np.quantile(xs, np.linspace(0.0, 1.0, 400)), np.linspace(0.0, 1.0, 400)
            else:
                ys = np.arange(1, xs.size + 1) / xs.size
            if log:  # zero hours has no place on a log axis; the shares above it stay as they are
                xs, ys = xs[xs > 0], ys[xs > 0]
            label = f"{arm} (n = {data[arm].size:,}, median {np.median(data[arm]):.1f} h)"
            ax.step(xs, ys, where="post", color=colours.get(arm, INK), linewidth=1.6, label=label)
        if log:
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.axvline(ONE_DAY_H, color=MUTED, linestyle=(0, (4, 3)), linewidth=1.0)
        ax.annotate("one day", (ONE_DAY_H, 0.02), xytext=(4, 0), textcoords="offset points", color=MUTED, fontsize=8.5)
        ax.set_ylim(0.0, 1.02)
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
        ax.set_xlabel("Time to restore (hours" + (", log scale)" if log else ")"))
        ax.set_ylabel("Incidents restored")
        ax.legend(loc="lower right", fontsize=8.5)
        return _svg(fig, key, title), log


def tradeoff(
    points: Sequence[TradeoffPoint],
    colours: Mapping[str, str],
    *,
    xlabel: str,
    ylabel: str,
    better: tuple[str | None, str | None],
    key: str,
    title: str,
) -> str:
    """The sweep's grid points on two metrics, the Pareto front joined and every point labelled."""
    with _style(key):
        fig = Figure(figsize=(10.0, 5.2), layout="constrained")
        ax = fig.subplots()
        front = sorted((p for p in points if p.pareto), key=lambda p: (p.x, p.y))
        if len(front) > 1:
            ax.plot([p.x for p in front], [p.y for p in front], color=INK, linewidth=1.2, linestyle=DASHED, zorder=2)
        for p in points:
            size, edge = (90, INK) if p.pareto else (55, "white")
            ax.scatter([p.x], [p.y], s=size, color=colours.get(p.label, INK), edgecolor=edge, linewidth=1.4, zorder=3)
            if p.baseline:  # a dashed ring around the baseline
                ax.scatter([p.x], [p.y], s=260, facecolor="none", edgecolor=MUTED, linewidth=1.0, linestyle="--")
        _pad_limits(ax, [p.x for p in points], [p.y for p in points])
        for p, (dx, dy, ha) in zip(points, _label_offsets(ax, points), strict=True):
            text, weight, colour = (
                p.label + (" (baseline)" if p.baseline else ""),
                "bold" if p.pareto else "normal",
                INK if p.pareto else MUTED,
            )
            ax.annotate(text, (p.x, p.y), xytext=(dx, dy), ha=ha, fontweight=weight, color=colour, **_LABEL)
        corner = _CORNERS.get(better)
        if corner is not None:
            cx, cy, ha, text = corner
            ax.text(cx, cy, text, transform=ax.transAxes, ha=ha, va="center", color=MUTED, fontsize=9)
        handles = [
            Line2D([], [], marker="o", linestyle=DASHED, color=INK, markerfacecolor="white", label="Pareto front")
        ]
        if not all(p.pareto for p in points):
            handles.append(_marker("#9aa5b1", "dominated", edge="white"))
        ax.legend(handles=handles, loc="best", fontsize=8.5)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        return _svg(fig, key, title)


def _pad_limits(ax: Axes, xs: Sequence[float], ys: Sequence[float]) -> None:
    for values, setter in ((xs, ax.set_xlim), (ys, ax.set_ylim)):
        lo, hi = min(values), max(values)
        pad = (hi - lo) * 0.12 or abs(hi) * 0.1 or 1.0
        setter(lo - pad, hi + pad)


def _label_offsets(ax: Axes, points: Sequence[TradeoffPoint]) -> list[tuple[float, float, str]]:
    """Greedy label placement: the first of four spots whose box clears earlier labels and every point."""
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    width_pt, height_pt = 10.0 * 72 * 0.86, 5.2 * 72 * 0.8  # the axes' size, near enough for spacing

    def to_pt(x: float, y: float) -> tuple[float, float]:
        return (x - x0) / (x1 - x0) * width_pt, (y - y0) / (y1 - y0) * height_pt

    dots = [to_pt(p.x, p.y) for p in points]
    boxes: list[tuple[float, float, float, float]] = []
    out: list[tuple[float, float, str]] = []
    for p, (px, py) in zip(points, dots, strict=True):
        w = 5.2 * (len(p.label) + (11 if p.baseline else 0)) + 4
        choice = (9.0, 0.0, "left")
        for dx, dy, ha in SPOTS:
            left = px + dx if ha == "left" else px + dx - w
            box = (left, py + dy - 6, left + w, py + dy + 6)
            clear = all(_disjoint(box, b) for b in boxes) and all(
                not (box[0] - 3 < qx < box[2] + 3 and box[1] - 3 < qy < box[3] + 3) for qx, qy in dots
            )
            if clear:
                choice = (dx, dy, ha)
                break
        dx, dy, ha = choice
        left = px + dx if ha == "left" else px + dx - w
        boxes.append((left, py + dy - 6, left + w, py + dy + 6))
        out.append(choice)
    return out


def _disjoint(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]


@contextmanager
def _style(key: str) -> Iterator[None]:
    with rc_context({**_RC, "svg.hashsalt": key}):
        yield


def _svg(fig: Figure, key: str, title: str) -> str:
    return inline_svg(fig, key, title)


def _marker(face: str, label: str, *, edge: str = INK) -> Line2D:
    return Line2D(
        [], [], marker="o", linestyle="none", color=edge, markerfacecolor=face, markeredgecolor=edge, label=label
    )


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "\u2026"


def _float(value: object) -> float | None:
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def _array(values: Sequence[float | None], size: int) -> np.ndarray:
    out = np.full(size, np.nan)
    clean = [np.nan if v is None else float(v) for v in values[:size]]
    out[: len(clean)] = clean
    return out
