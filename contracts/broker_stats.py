"""The broker's own count of the messages it dropped, as both ends of a run read it.

Mosquitto drops QoS 1 messages silently once a client's queue is past ``max_queued_messages``
(1,000 by default) and counts them in ``$SYS/broker/publish/messages/dropped``, a retained
message republished every ``sys_interval`` seconds. The engine watches it to say promptly that
readings are being lost; the harness watches it to send a step the broker threw away again.

The count is the broker's, for every client: a slow device's command queue counts too. A
broker that does not publish it (or an ACL that hides it) leaves the count unknown, never zero.
"""

from __future__ import annotations

__all__ = ["SYS_DROPPED", "DropCount"]

SYS_DROPPED = "$SYS/broker/publish/messages/dropped"
_DIGITS = 20  # a count past 10^20 is not a count


class DropCount:
    """Messages the broker dropped since we first read its count (``None`` until then).

    A count lower than the last one means the broker started again and counts from zero: what it
    says then is all new."""

    def __init__(self) -> None:
        self.baseline: int | None = None  # the broker's count when we first read it
        self.total = 0  # dropped since then
        self.updates = 0
        self._last: int | None = None

    @property
    def known(self) -> bool:
        return self._last is not None

    def observe(self, payload: bytes) -> int:
        """Take one ``$SYS`` payload; return how many more the broker has dropped (0 for unreadable ones)."""
        text = payload.strip()
        if not (0 < len(text) <= _DIGITS and text.isdigit()):
            return 0
        value = int(text)
        self.updates += 1
        if self._last is None:
            self.baseline = self._last = value
            return 0
        grown = value - self._last if value >= self._last else value
        self._last = value
        self.total += grown
        return grown
