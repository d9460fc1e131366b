"""Message by message: what the world sent against what the engine took in, under faults.

The world's side is every message it published, by its key (:func:`contracts.keys.key_of`):
(kind, source, boot_id, seq). The engine's side is its effects ledger, ``ingest_audit`` (``sot
engine --audit``), written in the same transaction as the effects, one row per effect. Each key
the world sent is then

- **ingested once**: exactly one effect, as promised;
- **lost**: no effect (dropped on the way, or refused by the engine: see its ``rejected`` count);
- **duplicated**: more than one effect (a copy taken in as new);

and an effect whose key the world never sent is **unexpected** (another client, or a bug). Totals
alone hide one lost message behind one duplicated one: these counts do not.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contracts import codec
from contracts.errors import ContractError
from contracts.keys import Key, key_of
from contracts.topics import Topics

__all__ = ["Accounting", "Tally", "read_effects"]

_EXAMPLES = 5


@dataclass
class Tally:
    """Every sent key classified, with a few examples of each kind of failure."""

    sent: int = 0
    ingested_once: int = 0
    lost: int = 0
    duplicated: int = 0
    unexpected: int = 0
    examples: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.lost == self.duplicated == self.unexpected == 0

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "sent": self.sent,
            "ingested_once": self.ingested_once,
            "lost": self.lost,
            "duplicated": self.duplicated,
            "unexpected": self.unexpected,
        }
        if self.examples:
            out["examples"] = self.examples
        return out


class Accounting:
    """The keys of the messages the world sent (each once, however often it was sent)."""

    def __init__(self, topics: Topics) -> None:
        self.topics = topics
        self.sent: set[Key] = set()
        self.unkeyed = 0  # sent messages without a key (registry entries: idempotent anyway)

    def add(self, messages: Iterable[tuple[str, bytes]]) -> None:
        """Note a step's messages as published (decoded to read their keys)."""
        for topic, payload in messages:
            try:
                kind = self.topics.parse(topic).kind
                key = key_of(codec.decode(kind, payload))
            except ContractError:
                key = None
            if key is None:
                self.unkeyed += 1
            else:
                self.sent.add(key)

    def check(self, effects: Iterable[Key]) -> Tally:
        """Classify every sent key against ``effects`` (one key per effect, in any order)."""
        taken = Counter(effects)
        tally = Tally(sent=len(self.sent))
        for key in sorted(self.sent):
            n = taken.pop(key, 0)
            if n == 1:
                tally.ingested_once += 1
            elif n == 0:
                tally.lost += 1
                _example(tally, "lost", key)
            else:
                tally.duplicated += 1
                _example(tally, "duplicated", key, f" ({n} times)")
        for key in sorted(taken):
            tally.unexpected += 1
            _example(tally, "unexpected", key)
        return tally


def _example(tally: Tally, name: str, key: Key, suffix: str = "") -> None:
    shown = tally.examples.setdefault(name, [])
    if len(shown) < _EXAMPLES:
        kind, source, boot_id, seq = key
        shown.append(f"{kind} {source} boot {boot_id} seq {seq}{suffix}")


def read_effects(databases: Iterable[Path]) -> Iterator[Key]:
    """Every row of ``ingest_audit`` in the engines' SQLite databases (read only)."""
    for db in databases:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            for kind, source, boot_id, seq in conn.execute("SELECT kind, source, boot_id, seq FROM ingest_audit"):
                yield (str(kind), str(source), int(boot_id), int(seq))
        finally:
            conn.close()
