"""Errors raised by the support engine."""

from __future__ import annotations

__all__ = ["ConfigError", "DialectError", "EngineError", "IllegalTransition", "StorageError", "TransportError"]


class EngineError(Exception):
    """Root of every error raised by :mod:`support_engine`."""


class IllegalTransition(EngineError, ValueError):
    """A lifecycle was asked for a move its transition table does not allow (our misuse)."""

    def __init__(self, entity: str, current: str, wanted: str, allowed: frozenset[str]) -> None:
        super().__init__(
            f"{entity}: cannot go from {current!r} to {wanted!r}; allowed from {current!r}: {sorted(allowed) or 'none'}"
        )
        self.entity, self.current, self.wanted, self.allowed = entity, current, wanted, allowed


class ConfigError(EngineError, ValueError):
    """The engine's configuration is invalid or unsafe."""


class TransportError(EngineError, ConnectionError):
    """The broker could not be reached, refused us, or dropped our session."""


class StorageError(EngineError, RuntimeError):
    """The database could not be opened or written."""


class DialectError(StorageError, ValueError):
    """A statement uses SQLite SQL that has no faithful PostgreSQL translation (our misuse)."""

    def __init__(self, sql: str, reason: str) -> None:
        super().__init__(f"{reason}: {' '.join(sql.split())[:200]!r}")
        self.sql, self.reason = sql, reason
