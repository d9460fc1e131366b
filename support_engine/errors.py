"""Errors raised by the support engine."""

from __future__ import annotations

__all__ = ["ConfigError", "DatabaseTooNew", "EngineError", "IllegalTransition", "StorageError", "TransportError"]


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


class DatabaseTooNew(StorageError):
    """The database's schema is at a revision this engine does not know: a newer engine upgraded it."""

    def __init__(
        self, database: str, found: tuple[str, ...], known: list[str], head: str, *, foreign: bool = False
    ) -> None:
        why = (
            "it has none of the engine's tables, so another application's migrations put it there. "
            "Give the engine a database of its own"
            if foreign
            else "a newer version of sot has upgraded it. Run that version (or a later one) against it, "
            "or give this one another database"
        )
        super().__init__(
            f"database {database!r} is at schema revision {', '.join(found)}, which this engine does not know "
            f"(it knows {', '.join(reversed(known))}; head {head}): {why}"
        )
        self.database, self.found, self.known, self.head = database, found, known, head
