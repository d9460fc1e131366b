"""Errors raised by the experiments layer."""

from __future__ import annotations

__all__ = ["ExperimentError"]


class ExperimentError(ValueError):
    """An experiment is asked for in a way that cannot be run (a bad path, policy or option)."""
