"""Errors raised by the world: a scenario that cannot be read or is invalid."""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Problem", "ScenarioError", "SimError"]


class SimError(Exception):
    """Root of every error raised by :mod:`sim`."""


class Problem(NamedTuple):
    """One thing wrong with a scenario: where (``fleets[0].count``) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path or '<document>'}: {self.message}"


class ScenarioError(SimError, ValueError):
    """A scenario file is unreadable or invalid; ``problems`` lists every problem found."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s)\n{lines}")

    @property
    def path(self) -> str:
        """Path of the first problem (``fleets[0].failure_modes[1].shape``)."""
        return self.problems[0].path if self.problems else ""
