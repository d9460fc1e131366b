"""Sampled messages waiting for the engine's receipt (an ``IngestAck``), one book per Locust process.

A user notes a sampled message (``seq`` a multiple of the engine's ``--ack-every``) just before it
publishes it; the process's receipt listener hands each receipt in. A receipt for a message this
process did not send (another worker's, an earlier run's) is ignored; a message whose receipt has
not come within the timeout is given up as missing. Pure: the caller passes the time.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Missing", "Receipts", "Received"]

Key = tuple[str, int, int]  # (source, boot_id, seq)


class Received(NamedTuple):
    kind: str
    latency_s: float


class Missing(NamedTuple):
    kind: str
    source: str
    seq: int
    age_s: float


class Receipts:
    """Sampled messages sent and not yet receipted: (source, boot_id, seq) -> (kind, time sent)."""

    def __init__(self) -> None:
        self._pending: dict[Key, tuple[str, float]] = {}
        self.expected = 0
        self.received = 0
        self.missing = 0

    def __len__(self) -> int:
        return len(self._pending)

    def expect(self, kind: str, source: str, boot_id: int, seq: int, sent_s: float) -> None:
        """Note a sampled message about to be published at wall time ``sent_s`` (its ``ts``)."""
        self._pending[(source, boot_id, seq)] = (kind, sent_s)
        self.expected += 1

    def forget(self, source: str, boot_id: int, seq: int) -> None:
        """Drop a message that was never sent after all (the client refused it)."""
        if self._pending.pop((source, boot_id, seq), None) is not None:
            self.expected -= 1

    def receive(self, source: str, boot_id: int, seq: int, now_s: float) -> Received | None:
        """Hand in a receipt; the message's latency, or None when it is not ours (or came twice)."""
        found = self._pending.pop((source, boot_id, seq), None)
        if found is None:
            return None
        self.received += 1
        kind, sent_s = found
        return Received(kind, max(0.0, now_s - sent_s))

    def expire(self, now_s: float, timeout_s: float) -> list[Missing]:
        """Give up on every message sent more than ``timeout_s`` before ``now_s``."""
        late = [(key, v) for key, v in self._pending.items() if now_s - v[1] > timeout_s]
        for key, _ in late:
            del self._pending[key]
        self.missing += len(late)
        return [Missing(kind, key[0], key[2], now_s - sent_s) for key, (kind, sent_s) in late]
