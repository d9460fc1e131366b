"""A load-test device's outbox: the QoS 1 messages it may have to send again, oldest first, bounded.

A device keeps each message it publishes until it counts as acknowledged, and sends what it still
holds again (with the DUP flag, the same ``(device, boot_id, seq)``) once its connection is back,
in ``seq`` order. What *acknowledged* means is the outbox's mode:

| mode | a message leaves the outbox at | survives |
|---|---|---|
| ``puback`` (default) | the broker's PUBACK | a lost connection; not a broker that dies with the messages it queued |
| ``receipt`` | the engine's receipt (an ``IngestAck``: needs the engine's ``--ack-every 1``) | a broker crash too (SIGKILL, no snapshot): what the engine has not receipted is sent again |

A broker that comes back empty forgets the engine's subscription until the engine subscribes again,
and acknowledges in the meantime what it then delivers to nobody: in ``receipt`` mode a message
whose receipt has not come ``resend_after_s`` after its last copy is sent again, and again after
twice as long, up to :data:`MAX_BACKOFF` times as long (the engine receipts only the first copy it
takes in, so a copy whose receipt was lost is never receipted; the backoff bounds what it costs).

Past ``capacity`` messages the oldest is dropped and counted in :attr:`Outbox.overflow`: a device
that cannot reach the broker for long loses its oldest messages, never its memory. Pure: the
caller passes the time and says which connection a copy went out on.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, get_args

__all__ = ["ACK_MODES", "DEFAULT_CAPACITY", "MAX_BACKOFF", "AckMode", "Entry", "Outbox"]

AckMode = Literal["puback", "receipt"]
ACK_MODES: tuple[AckMode, ...] = get_args(AckMode)
DEFAULT_CAPACITY = 100  # messages per device: at one a second, 100 s without a broker
MAX_BACKOFF = 16  # a receipt-less message waits at most this many times resend_after_s between copies


@dataclass(slots=True)
class Entry:
    """One message in an outbox, and what has happened to it so far."""

    seq: int
    kind: str  # telemetry, event, batch: the statistics row
    topic: str
    payload: bytes
    created_s: float  # the device's wall time when it made the message (its ``ts``)
    copies: int = 0  # copies handed to a live connection
    acked: bool = False  # the broker acknowledged a copy (PUBACK)
    sent_s: float = 0.0  # the caller's clock when the last copy went out
    connection: int = 0  # the connection the last copy went out on (0: none yet)
    retries: int = 0  # copies sent again because no receipt came (the backoff's exponent)


class Outbox:
    """A device's messages that are not yet acknowledged, in ``seq`` order, at most ``capacity``."""

    def __init__(self, mode: AckMode, capacity: int = DEFAULT_CAPACITY, resend_after_s: float = 5.0) -> None:
        if mode not in ACK_MODES:
            raise ValueError(f"outbox mode must be one of {', '.join(ACK_MODES)}, not {mode!r}")
        if capacity < 1 or not resend_after_s > 0:
            raise ValueError(f"capacity must be >= 1 and resend_after_s > 0 (got {capacity}, {resend_after_s})")
        self.mode: AckMode = mode
        self.capacity = capacity
        self.resend_after_s = resend_after_s
        self._held: dict[int, Entry] = {}  # seq -> entry; insertion order is seq order
        self._last_seq: int | None = None
        self.overflow = 0  # messages dropped past the bound
        self.resent = 0  # copies sent again

    def __len__(self) -> int:
        return len(self._held)

    def __iter__(self) -> Iterator[Entry]:
        return iter(list(self._held.values()))

    def __contains__(self, seq: object) -> bool:
        return seq in self._held

    def put(self, entry: Entry) -> list[Entry]:
        """Hold a new message (its ``seq`` above every earlier one); return the oldest, dropped to make room."""
        if entry.copies or entry.acked:
            raise ValueError(f"seq {entry.seq}: a new message has no copies out yet")
        if self._last_seq is not None and entry.seq <= self._last_seq:
            raise ValueError(f"seq {entry.seq} after seq {self._last_seq}: an outbox takes messages in seq order")
        dropped = []
        while len(self._held) >= self.capacity:
            dropped.append(self._held.pop(next(iter(self._held))))
        self.overflow += len(dropped)
        self._held[entry.seq] = entry
        self._last_seq = entry.seq
        return dropped

    def sent(self, seq: int, now_s: float, connection: int) -> bool:
        """Note that a copy of ``seq`` went out on ``connection``; True when it was a copy sent again."""
        entry = self._held.get(seq)
        if entry is None:
            return False
        again = entry.copies > 0
        entry.copies += 1
        entry.sent_s, entry.connection = now_s, connection
        self.resent += again
        return again

    def acknowledge(self, seq: int) -> Entry | None:
        """The broker's PUBACK for a copy of ``seq``: the entry the first time one comes, else None.

        In ``puback`` mode that is the end of the message; in ``receipt`` mode it stays for its receipt.
        """
        entry = self._held.get(seq)
        if entry is None or entry.acked:
            return None
        entry.acked = True
        if self.mode == "puback":
            del self._held[seq]
        return entry

    def confirm(self, seq: int) -> Entry | None:
        """The engine's receipt for ``seq``: in ``receipt`` mode the entry leaves (returned); None otherwise."""
        if self.mode != "receipt":
            return None
        return self._held.pop(seq, None)

    def drop(self, seq: int) -> Entry | None:
        """Take ``seq`` out without an acknowledgement (the client refused to send it)."""
        return self._held.pop(seq, None)

    def backlog(self, connection: int) -> list[Entry]:
        """What to send on a new ``connection``, oldest first: every message no copy of which went out on it."""
        return [e for e in self._held.values() if e.connection != connection]

    def overdue(self, now_s: float) -> list[Entry]:
        """``receipt`` mode: messages whose receipt has not come in time since their last copy, oldest first.

        Each one returned counts a retry: the next is due twice as late (at most :data:`MAX_BACKOFF` times).
        """
        if self.mode != "receipt":
            return []
        due = [
            e
            for e in self._held.values()
            if e.copies and now_s - e.sent_s >= self.resend_after_s * min(2**e.retries, MAX_BACKOFF)
        ]
        for e in due:
            e.retries += 1
        return due

    def clear(self) -> list[Entry]:
        """Take every message out (the device stops), oldest first."""
        held, self._held = list(self._held.values()), {}
        return held
