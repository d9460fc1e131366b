"""The console's templates and the filters they format with: times, durations, SLA countdowns, links.

Templates are autoescaped; a filter that returns markup escapes what it puts in. Every time is shown
in ISO 8601 (UTC); in event time it is followed by a ``sim`` mark, since it is a moment of the
simulation, not of the world.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from urllib.parse import urlencode

import jinja2
from markupsafe import Markup

from support_engine.api.timebase import TimeBase

__all__ = ["duration", "environment", "href_for", "remaining"]


def duration(seconds: float | None) -> str:
    """``3 h 12 min 05 s``, ``1 d 03 h 12 min``, ``42 s``; an em dash for None."""
    if seconds is None or not math.isfinite(seconds):
        return "\u2014"
    s = int(abs(seconds))
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    if d:
        return f"{d} d {h:02d} h {m:02d} min"
    if h:
        return f"{h} h {m:02d} min {s:02d} s"
    if m:
        return f"{m} min {s:02d} s"
    return f"{s} s"


def remaining(due_s: float, now_s: float) -> str:
    """What a running SLA clock shows: ``2 h 05 min 10 s left`` or ``overdue 12 min 00 s``."""
    left = due_s - now_s
    return f"{duration(left)} left" if left >= 0 else f"overdue {duration(left)}"


def href_for(base: str) -> Callable[..., str]:
    """A link maker: ``href('/console/cases', issue='x', offset=None)`` keeps the parameters given."""

    def href(path: str, params: Mapping[str, object] | None = None, **more: object) -> str:
        given = {**(params or {}), **more}
        query = urlencode(
            [
                (k, "true" if v is True else "false" if v is False else v)
                for k, v in given.items()
                if v not in (None, "")
            ]
        )
        return f"{base}{path}" + (f"?{query}" if query else "")

    return href


def environment(time: TimeBase) -> jinja2.Environment:
    """The templates of :mod:`support_engine.console`, with filters bound to the engine's clock."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("support_engine.console", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    sim_title = "simulated time (event clock)"

    def when(seconds: float | None) -> Markup:
        shown = time.at(seconds, "seconds")
        if seconds is None or shown is None:
            return Markup("\u2014")
        stamp = Markup('<time class="ts" datetime="{}" title="engine time {:.3f} s">{}</time>').format(
            time.at(seconds), seconds, shown
        )
        if time.simulated:
            stamp += Markup(' <abbr class="sim" title="{}">sim</abbr>').format(sim_title)
        return Markup('<span class="when">{}</span>').format(stamp)

    def countdown(due_s: float | None, now_s: float | None) -> Markup:
        if due_s is None:
            return Markup("\u2014")
        if now_s is None:
            return when(due_s)
        late = " late" if due_s < now_s else ""
        return Markup('<span class="due{}" data-due-s="{:.3f}">{}</span>').format(
            late, due_s, remaining(due_s, now_s)
        ) + Markup("<br><small>due {}</small>").format(when(due_s))

    def share(value: float | None) -> str:
        return "\u2014" if value is None else f"{100 * value:.1f} %"

    def label(value: object) -> str:
        return "\u2014" if value is None else str(value).replace("_", " ")

    env.filters.update(when=when, countdown=countdown, duration=duration, share=share, label=label)
    return env
