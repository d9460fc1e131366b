"""Progress for long commands: a Rich bar on a terminal, plain periodic lines anywhere else.

A bar drawn to a file or a pipe (CI logs, ``nohup``, ``| tee``) shows nothing until the end, so off a
terminal progress is a line every :data:`EVERY_S` seconds and one at the end::

    freezers · proactive · seed 7: day 31 of 90 (34 %), 0:12 elapsed
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import Progress, ProgressColumn, TaskID

__all__ = ["EVERY_S", "LineProgress", "progress"]

EVERY_S = 10.0


class LineProgress:
    """The part of :class:`rich.progress.Progress` the commands use, as plain lines on ``console``."""

    def __init__(self, console: Console, unit: str, *, every_s: float = EVERY_S) -> None:
        self.console, self.unit, self.every_s = console, unit, every_s
        self._tasks: dict[TaskID, dict[str, Any]] = {}
        self._started = time.monotonic()
        self._said = 0.0

    def add_task(self, description: str, total: float | None = None, **fields: Any) -> TaskID:
        task = TaskID(len(self._tasks))
        self._tasks[task] = {"description": description, "total": total, "completed": 0.0, "fields": fields}
        return task

    def update(
        self, task: TaskID, *, completed: float | None = None, advance: float | None = None, **fields: Any
    ) -> None:
        state = self._tasks[task]
        if completed is not None:
            state["completed"] = completed
        if advance is not None:
            state["completed"] += advance
        for name in ("description", "total"):
            if name in fields:
                state[name] = fields.pop(name)
        state["fields"] = {**state.get("fields", {}), **fields}
        now = time.monotonic()
        if now - self._said >= self.every_s:
            self._say(state, now)

    def advance(self, task: TaskID, advance: float = 1.0) -> None:
        self.update(task, advance=advance)

    def _say(self, state: dict[str, Any], now: float) -> None:
        self._said = now
        done, total = state["completed"], state["total"]
        share = f" ({100.0 * done / total:.0f} %)" if total else ""
        of = f" of {_number(total)}" if total else ""
        minutes, seconds = divmod(int(now - self._started), 60)
        hours, minutes = divmod(minutes, 60)
        elapsed = f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"
        notes = (str(v).lstrip("· ") for v in state.get("fields", {}).values())
        extra = "".join(f" · {note}" for note in notes if note)
        self.console.print(
            f"{state['description']}: {self.unit} {_number(done)}{of}{share}, {elapsed} elapsed{extra}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )

    def __enter__(self) -> LineProgress:
        self._started = time.monotonic()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        if kind is None:
            now = time.monotonic()
            for state in self._tasks.values():
                self._say(state, now)


def _number(x: float) -> str:
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:,.1f}"


def progress(
    console: Console, unit: str, *columns: ProgressColumn | str, quiet: bool = False
) -> Progress | LineProgress:
    """A bar of ``columns`` on a terminal, :class:`LineProgress` counting in ``unit`` elsewhere, nothing when ``quiet``."""
    if quiet or console.is_terminal:
        return Progress(*columns, console=console, disable=quiet)
    return LineProgress(console, unit)
