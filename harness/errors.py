"""Errors raised by the harness: a run that could not be carried out, a broker out of reach."""

from __future__ import annotations

__all__ = ["BrokerError", "HarnessError"]


class HarnessError(RuntimeError):
    """A run could not be carried out (engine died, barrier timed out, ...)."""


class BrokerError(HarnessError):
    """A broker could not be reached or started."""
