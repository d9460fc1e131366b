"""The console's figures, drawn with matplotlib and returned as inline ``<svg>`` markup.

Figures are built on :class:`matplotlib.figure.Figure` (no pyplot, no global backend) under a
local ``rc_context``; since that context is matplotlib's global state, drawing is serialised by a
lock (the server answers on several threads). Text stays text (``svg.fonttype = 'none'``) in the
system's sans-serif font: nothing to download. The same input gives the same bytes (the hash salt
is the figure's key), and each figure is kept for its input, so a page refreshed every few seconds
draws again only when the figures changed.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from matplotlib import rc_context
from matplotlib.figure import Figure

from support_engine.svg import inline_svg

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

__all__ = ["open_by_priority", "opened_per_day"]

INK, MUTED, GRID = "#1f2933", "#616e7c", "#e4e7eb"
ORIGIN_COLOURS = {
    "telemetry": "#1764ab",
    "device": "#13866f",
    "contact": "#e07a10",
    "offline": "#7b8794",
    "campaign": "#b8408f",
}
STATE_COLOURS = {"open": "#c23b22", "in_progress": "#4a9bd6"}
_LOCK = threading.Lock()
_RC: dict[RcKeyType, Any] = {
    "svg.fonttype": "none",
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Verdana", "Arial", "Helvetica"],
    "font.size": 9.0,
    "axes.edgecolor": "#9aa5b1",
    "axes.labelcolor": INK,
    "axes.titlesize": 10.0,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.grid.axis": "y",
    "axes.axisbelow": True,
    "grid.color": GRID,
    "xtick.color": MUTED,
    "ytick.color": MUTED,
    "xtick.labelcolor": INK,
    "ytick.labelcolor": INK,
    "text.color": INK,
    "legend.frameon": False,
}


def _svg(fig: Figure, key: str, title: str) -> str:
    return inline_svg(fig, key, title, suptitle=False, round_paths=False)


@lru_cache(maxsize=16)
def opened_per_day(days: tuple[str, ...], series: tuple[tuple[str, tuple[int, ...]], ...], title: str) -> str:
    """Cases opened per day (``days``: ISO dates), stacked by origin (``series``: origin, count per day)."""
    key = "fig-opened"
    with _LOCK, rc_context({**_RC, "svg.hashsalt": key}):
        fig = Figure(figsize=(6.4, 2.6), layout="constrained")
        ax = fig.subplots()
        x = list(range(len(days)))
        bottom = [0] * len(days)
        for origin, counts in series:
            ax.bar(x, counts, bottom=bottom, width=0.8, color=ORIGIN_COLOURS.get(origin, MUTED), label=origin)
            bottom = [b + c for b, c in zip(bottom, counts, strict=True)]
        step = max(1, len(days) // 8)
        ax.set_xticks(x[::step], [d[5:] for d in days[::step]])
        ax.set_ylabel("cases")
        ax.set_title(title)
        ax.legend(loc="upper left", ncols=len(series), fontsize=8)
        ax.set_ylim(0, max(bottom, default=0) * 1.25 + 1)
        return _svg(fig, key, title)


@lru_cache(maxsize=16)
def open_by_priority(priorities: tuple[int, ...], by_state: tuple[tuple[str, tuple[int, ...]], ...], title: str) -> str:
    """Open cases per priority (1 most urgent), split by state."""
    key = "fig-priority"
    with _LOCK, rc_context({**_RC, "svg.hashsalt": key}):
        fig = Figure(figsize=(4.0, 2.6), layout="constrained")
        ax = fig.subplots()
        x = list(range(len(priorities)))
        bottom = [0] * len(priorities)
        for state, counts in by_state:
            label = state.replace("_", " ")
            ax.bar(x, counts, bottom=bottom, width=0.6, color=STATE_COLOURS.get(state, MUTED), label=label)
            bottom = [b + c for b, c in zip(bottom, counts, strict=True)]
        ax.set_xticks(x, [f"P{p}" for p in priorities])
        ax.set_ylabel("open cases")
        ax.set_title(title)
        ax.legend(loc="upper right", fontsize=8)
        ax.set_ylim(0, max(bottom, default=0) * 1.25 + 1)
        return _svg(fig, key, title)
