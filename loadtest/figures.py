"""Figures of ``loadtest.html``, drawn with matplotlib and returned as inline SVG markup.

Each function takes one part of the report's ``timeline`` and returns one ``<svg>`` element, or None
when that part holds nothing to draw. As in :mod:`experiments.plots`: figures are built on
:class:`matplotlib.figure.Figure` directly (no pyplot, no global backend) under a local
``rc_context``; text stays text (``svg.fonttype = 'none'``) in a font stack that starts with DejaVu
Sans, the font matplotlib measures with; element ids carry the figure's key and the hash salt is the
key too, so that figures share a page and the same report gives the same bytes. Every figure has
the same x axis, seconds since the run started, so that they line up down the page.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from support_engine.svg import inline_svg

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

__all__ = ["Span", "broker_counters", "connections", "engine_lag", "latency", "throughput"]

INK, MUTED, SHADE = "#1f2933", "#616e7c", "#eef1f4"
QUANTILE_COLOURS = {"p50": "#8cb4de", "p95": "#3f7fbf", "p99": "#a3231b", "max": "#9aa5b1"}
COLOURS = ("#1764ab", "#e07a10", "#13866f", "#b8408f", "#c23b22", "#5b4cb0")
WIDTH_IN = 10.0
_MARKERS_BELOW = 40  # points: a short run's few intervals show as dots on their line

_RC: dict[RcKeyType, Any] = {
    "svg.fonttype": "none",
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Verdana", "Arial", "Helvetica"],
    "font.size": 9.5,
    "axes.edgecolor": "#9aa5b1",
    "axes.labelcolor": INK,
    "axes.titlesize": 10.0,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.axisbelow": True,
    "grid.color": "#e4e7eb",
    "grid.linewidth": 0.8,
    "xtick.color": MUTED,
    "ytick.color": MUTED,
    "xtick.labelcolor": INK,
    "ytick.labelcolor": INK,
    "text.color": INK,
    "legend.frameon": False,
    "figure.titlesize": 11.5,
    "figure.titleweight": "bold",
}


@dataclass(frozen=True)
class Span:
    """What every figure marks on its time axis: the page's x range, the warm-up, the start of the drain."""

    end_s: float
    warmup: tuple[float, float] | None = None
    drain_s: float | None = None


def latency(series: Mapping[str, Mapping[str, Sequence[Any]]], span: Span, *, key: str, title: str) -> str | None:
    """One panel per request type: p50, p95 and p99 of each interval (ms), log scale when they spread."""
    panels = [(name, s) for name, s in series.items() if isinstance(s, Mapping) and any(_values(s.get("p50", [])))]
    if not panels:
        return None
    with _style(key):
        fig = Figure(figsize=(WIDTH_IN, 0.9 + 2.3 * len(panels)), layout="constrained")
        axes = fig.subplots(len(panels), 1, squeeze=False, sharex=True).ravel()
        for ax, (name, s) in zip(axes, panels, strict=True):
            t = _array(s["t_s"])
            for q in ("p50", "p95", "p99"):
                _line(ax, t, s.get(q, []), f"{q}", QUANTILE_COLOURS[q])
            _marks(ax, span)
            counted = sum(int(n) for n in s.get("count", []) if n)
            ax.set_title(f"{name} ({counted:,} timed requests)")
            ax.set_ylabel("ms")
            _log_if_spread(ax, [v for q in ("p50", "p99") for v in _values(s.get(q, []))])
            _legend(ax)
        axes[-1].set_xlabel("Seconds since the run started")
        return _svg(fig, key, title)


def throughput(
    lines: Mapping[str, tuple[Sequence[Any], Sequence[Any]]], span: Span, *, key: str, title: str
) -> str | None:
    """Messages per second by witness: label -> (t_s, per second)."""
    drawn = {label: tv for label, tv in lines.items() if any(_values(tv[1]))}
    if not drawn:
        return None
    return _single(drawn, span, key=key, title=title, ylabel="messages per second")


def connections(
    lines: Mapping[str, tuple[Sequence[Any], Sequence[Any]]], span: Span, *, key: str, title: str
) -> str | None:
    """Locust's users and the broker's connected clients over the run."""
    drawn = {label: tv for label, tv in lines.items() if any(v is not None for v in tv[1])}
    if not drawn:
        return None
    return _single(drawn, span, key=key, title=title, ylabel="users / clients", steps=True)


def engine_lag(engine: Mapping[str, Sequence[Any]], span: Span, *, key: str, title: str) -> str | None:
    """The engine's own ingest lag per interval (its histogram's quantiles, interpolated) and its mean."""
    if not any(_values(engine.get("lag_p50_ms", []))):
        return None
    with _style(key):
        fig = Figure(figsize=(WIDTH_IN, 3.1), layout="constrained")
        ax = fig.subplots()
        t = _array(engine["t_s"])
        for column, label, colour in (
            ("lag_p50_ms", "p50", QUANTILE_COLOURS["p50"]),
            ("lag_p95_ms", "p95", QUANTILE_COLOURS["p95"]),
            ("lag_p99_ms", "p99", QUANTILE_COLOURS["p99"]),
            ("lag_mean_ms", "mean", INK),
        ):
            _line(ax, t, engine.get(column, []), label, colour, dashed=column == "lag_mean_ms")
        _marks(ax, span)
        _log_if_spread(ax, [v for c in ("lag_p50_ms", "lag_p99_ms") for v in _values(engine.get(c, []))])
        ax.set_ylabel("ms")
        ax.set_xlabel("Seconds since the run started")
        _legend(ax)
        return _svg(fig, key, title)


def broker_counters(broker: Mapping[str, Sequence[Any]], span: Span, *, key: str, title: str) -> str | None:
    """The broker's PUBLISH packets received, sent and dropped per second ($SYS)."""
    t = broker.get("t_s", [])
    lines = {
        "received": (t, broker.get("received_per_s", [])),
        "sent": (t, broker.get("sent_per_s", [])),
        "dropped": (t, broker.get("dropped_per_s", [])),
    }
    if not any(v is not None for _, values in lines.values() for v in values):
        return None
    return _single(lines, span, key=key, title=title, ylabel="PUBLISH packets per second")


# -- drawing ---------------------------------------------------------------------------------------
def _single(
    lines: Mapping[str, tuple[Sequence[Any], Sequence[Any]]],
    span: Span,
    *,
    key: str,
    title: str,
    ylabel: str,
    steps: bool = False,
) -> str:
    with _style(key):
        fig = Figure(figsize=(WIDTH_IN, 3.1), layout="constrained")
        ax = fig.subplots()
        for i, (label, (t, values)) in enumerate(lines.items()):
            _line(ax, _array(t), values, label, COLOURS[i % len(COLOURS)], steps=steps)
        _marks(ax, span)
        ax.set_ylim(bottom=0)
        ax.set_ylabel(ylabel)
        ax.set_xlabel("Seconds since the run started")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if abs(v) >= 10 else f"{v:g}"))
        _legend(ax)
        return _svg(fig, key, title)


def _line(
    ax: Axes,
    t: np.ndarray,
    values: Sequence[Any],
    label: str,
    colour: str,
    *,
    dashed: bool = False,
    steps: bool = False,
) -> None:
    y = _array(values, t.size)
    if not np.isfinite(y).any():
        return
    few = int(np.isfinite(y).sum()) < _MARKERS_BELOW
    style: dict[str, Any] = {
        "color": colour,
        "linewidth": 1.5,
        "label": label,
        "linestyle": (0, (4, 2)) if dashed else "-",
    }
    if steps:
        ax.step(t, y, where="post", **style)
    else:
        ax.plot(t, y, marker="o" if few else None, markersize=3.5, **style)


def _legend(ax: Axes) -> None:
    """The legend in one row above the axes, on the right: clear of the lines and of the drain's mark."""
    handles, labels = ax.get_legend_handles_labels()
    ax.legend(
        handles, labels, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=len(labels), fontsize=8.5,
        borderaxespad=0.2, handlelength=1.6, columnspacing=1.2,
    )  # fmt: skip


def _marks(ax: Axes, span: Span) -> None:
    if span.warmup is not None:
        ax.axvspan(*span.warmup, color=SHADE, linewidth=0, zorder=0, label="warm-up")
    if span.drain_s is not None:
        ax.axvline(span.drain_s, color=MUTED, linewidth=1.0, linestyle=(0, (3, 3)))
        ax.annotate(
            "drain", (span.drain_s, 1.0), xycoords=("data", "axes fraction"), xytext=(3, -10),
            textcoords="offset points", color=MUTED, fontsize=8, zorder=5,
            bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.5, "alpha": 0.85},
        )  # fmt: skip
    ax.set_xlim(0.0, max(span.end_s, 1.0))


def _log_if_spread(ax: Axes, values: Sequence[float]) -> None:
    positive = [v for v in values if v > 0]
    if positive and max(positive) / min(positive) > 30:
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    else:
        ax.set_ylim(bottom=0)


def _values(values: Sequence[Any]) -> list[float]:
    return [float(v) for v in values if isinstance(v, int | float) and math.isfinite(v)]


def _array(values: Sequence[Any], size: int | None = None) -> np.ndarray:
    clean = [float(v) if isinstance(v, int | float) and math.isfinite(v) else np.nan for v in values]
    out = np.full(len(clean) if size is None else size, np.nan)
    n = min(len(clean), out.size)
    out[:n] = clean[:n]
    return out


@contextmanager
def _style(key: str) -> Iterator[None]:
    with rc_context({**_RC, "svg.hashsalt": key}):
        yield


def _svg(fig: Figure, key: str, title: str) -> str:
    return inline_svg(fig, key, title)
