"""De-duplication keys: at least once in, exactly once in effect, in memory that does not grow with messages.

Every device-side message names itself: a device reading by (device, boot_id, seq), a gateway
batch by (gateway, boot_id, seq), a contact by its id, a field status by (work order, seq).

The ledger keeps, per stream (kind, source, boot_id), the highest seq taken in and which of the
:data:`WINDOW` seqs below it have not come yet: a late or repeated message inside the window is
told apart exactly; one older than the window counts as a duplicate (``stale``), as if it had come
before. The "not yet come" bits are usually none (an int of 0), so a stream costs the same after a
million messages as after ten.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Literal

from contracts.keys import Key, key_of

__all__ = ["WINDOW", "Key", "Ledger", "Stream", "StreamRow", "Verdict", "key_of"]

Stream = tuple[str, str, int]
"""(kind, source, boot_id): the messages whose seqs are compared with each other."""
StreamRow = tuple[str, str, int, int, int]
"""(kind, source, boot_id, highest seq, missing): a stream's state as stored; bit k of ``missing`` set
means seq ``highest - k`` has not come yet."""
Verdict = Literal["new", "duplicate", "stale"]

WINDOW = 1024
"""Seqs below a stream's highest that are still told apart exactly (a late message within them is taken in)."""


class Ledger:
    """What was taken in, per stream: the highest seq and the gaps in the window below it.

    ``keys`` (old-style keys, in any order) are folded in as if taken in seq order.
    """

    def __init__(self, keys: Iterable[Key] = (), *, window: int = WINDOW) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, not {window}")
        self.window = window
        self._full = (1 << window) - 1
        self._high: dict[Stream, int] = {}
        self._missing: dict[Stream, int] = {}  # only streams with a gap in their window
        self._changed: dict[Stream, float] = {}  # streams taken into since the last drain: their latest ts
        for kind, source, boot_id, seq in sorted(keys):
            self.take((kind, source, boot_id, seq))
        self._changed.clear()

    def __len__(self) -> int:
        """Streams known."""
        return len(self._high)

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` would be refused (seen, or older than the window)."""
        if not (isinstance(key, tuple) and len(key) == 4):
            return False
        return self.verdict(key) != "new"  # type: ignore[arg-type]

    def restore(self, rows: Iterable[StreamRow]) -> None:
        """Set streams to their stored state (on start)."""
        for kind, source, boot_id, high, missing in rows:
            stream = (kind, source, boot_id)
            self._high[stream] = high
            self._set_missing(stream, missing & self._full)

    def verdict(self, key: Key) -> Verdict:
        """What :meth:`take` would say about ``key``, without taking it."""
        kind, source, boot_id, seq = key
        stream = (kind, source, boot_id)
        high = self._high.get(stream)
        if high is None or seq > high:
            return "new"
        back = high - seq
        if back >= self.window:
            return "stale"
        return "new" if (self._missing.get(stream, 0) >> back) & 1 else "duplicate"

    def take(self, key: Key, ts: float = 0.0) -> Verdict:
        """Take ``key`` in unless it was already (``duplicate``) or is older than the window (``stale``)."""
        kind, source, boot_id, seq = key
        stream = (kind, source, boot_id)
        high = self._high.get(stream)
        if high is None:  # a new stream: the seqs below the first one may still come
            below = min(seq, self.window - 1)
            if below:
                self._missing[stream] = (1 << (below + 1)) - 2
            self._high[stream] = seq
        elif seq > high:
            ahead = seq - high
            missing = self._missing.get(stream, 0)
            if ahead == 1 and not missing:  # the usual case: the next one, nothing missing
                self._high[stream] = seq
            else:  # the seqs jumped over are missing; those shifted out of the window are forgotten
                shifted = self._full - 1 if ahead >= self.window else (missing << ahead | (1 << ahead) - 2) & self._full
                self._high[stream] = seq
                self._set_missing(stream, shifted)
        else:
            back = high - seq
            if back >= self.window:
                return "stale"
            missing = self._missing.get(stream, 0)
            if not (missing >> back) & 1:
                return "duplicate"
            self._set_missing(stream, missing & ~(1 << back))
        latest = self._changed.get(stream)
        self._changed[stream] = ts if latest is None or ts > latest else latest
        return "new"

    def add(self, key: Key) -> bool:
        """Take ``key`` in; False if it was refused (a duplicate, or older than the window)."""
        return self.take(key) == "new"

    def drain(self) -> list[tuple[str, str, int, int, int, float]]:
        """The streams taken into since the last drain: (kind, source, boot_id, highest seq, missing, latest ts)."""
        rows = [(*s, self._high[s], self._missing.get(s, 0), ts) for s, ts in self._changed.items()]
        self._changed.clear()
        return rows

    def footprint(self) -> int:
        """Bytes the ledger holds beyond its streams' names (its tables and gap masks)."""
        size = sys.getsizeof(self._high) + sys.getsizeof(self._missing) + sys.getsizeof(self._changed)
        size += sum(sys.getsizeof(v) for v in self._high.values())
        return size + sum(sys.getsizeof(m) for m in self._missing.values())

    def _set_missing(self, stream: Stream, missing: int) -> None:
        if missing:
            self._missing[stream] = missing
        else:
            self._missing.pop(stream, None)
