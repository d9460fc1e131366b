"""Errors raised by the wire contracts."""

from __future__ import annotations

__all__ = ["ContractError", "PartitionError", "PayloadError", "TopicError"]


class ContractError(Exception):
    """Root of every error raised by :mod:`contracts`."""


class PayloadError(ContractError, ValueError):
    """A payload from the wire could not be decoded; ``reason`` is a short machine-readable tag."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class TopicError(ContractError, ValueError):
    """A topic does not have one of the shapes the contracts define, or an id cannot form a topic."""


class PartitionError(ContractError, ValueError):
    """An engine partition that cannot be: a bad K/N, too few shards, a world counting other shards,
    or a configuration that decides for the whole fleet at once."""
