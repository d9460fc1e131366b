"""Errors raised by the world: a scenario that cannot be read or is invalid."""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Problem", "ScenarioError", "SimError"]


class SimError(Exception):
    """Root of every error raised by :mod:`sim`."""


class Problem(NamedTuple):
    """One thing wrong with a scenario: where (``fleets[0].count``, and the line and column in the
    file where the YAML has them) and what."""

    path: str
    message: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        return f"{self.path or '<document>'}: {self.message}"

    def where(self, source: str) -> str:
        """``source:line:column `` where the file has the place, else ``""`` (a prefix for :meth:`__str__`)."""
        return f"{source}:{self.line}:{self.column} " if self.line is not None else ""


class ScenarioError(SimError, ValueError):
    """A scenario file is unreadable or invalid; ``problems`` lists every problem found."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  {p.where(source)}{p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s)\n{lines}")

    @property
    def path(self) -> str:
        """Path of the first problem (``fleets[0].failure_modes[1].shape``)."""
        return self.problems[0].path if self.problems else ""
