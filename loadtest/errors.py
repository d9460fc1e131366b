"""The one error a load test raises when it cannot be carried out."""

from __future__ import annotations

from harness.errors import HarnessError

__all__ = ["LoadTestError"]


class LoadTestError(HarnessError):
    """A load test could not be carried out (a process died, Locust wrote no statistics, ...)."""
