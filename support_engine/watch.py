"""Loss the engine can see, said promptly: the broker's dropped count and gaps in devices' sequences.

A broker past its queue limit drops messages without a word to anyone (Mosquitto's default limit
is 1,000 per client); the engine learns it from the broker's ``$SYS`` count within its
``sys_interval`` (:mod:`contracts.broker_stats`), long before each device's next reading shows the
gap. Both are logged (a warning at once, then at most one every ``warn_every_s`` with what came
meanwhile), counted (``broker_dropped``, ``readings_missing``; ``/metrics``), and a drop holds
``/healthz`` at *degraded* for ``degraded_s``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

__all__ = ["LossWatch"]

log = logging.getLogger("support_engine.watch")


class LossWatch:
    """Rate-limited warnings about messages lost on the way, and the degraded state a drop causes."""

    def __init__(
        self,
        *,
        warn_every_s: float = 10.0,
        degraded_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.warn_every_s, self.degraded_s, self._clock = warn_every_s, degraded_s, clock
        self._dropped_at: float | None = None  # the last growth of the broker's count
        self._dropped_recent = 0  # dropped since the last warning about it
        self._dropped_warned: float | None = None
        self._gaps_recent = 0
        self._gaps_warned: float | None = None
        self._gap_example = ""
        self.warnings = 0

    def dropped(self, grown: int, total: int) -> None:
        """The broker's count grew by ``grown`` (``total`` since the engine first read it)."""
        if grown <= 0:
            return
        now = self._clock()
        self._dropped_at = now
        self._dropped_recent += grown
        if self._dropped_warned is None or now - self._dropped_warned >= self.warn_every_s:
            log.warning(
                "the broker dropped %d messages (%d since the engine started; its $SYS count, for every client): "
                "a client's queue is over the broker's max_queued_messages. If it is this engine's, readings are "
                "lost: raise the limit to the backlog you promise (see docs/reliability.md)",
                self._dropped_recent,
                total,
            )
            self.warnings += 1
            self._dropped_warned, self._dropped_recent = now, 0

    def gaps(self, grown: int, example: tuple[str, int, int] | None) -> None:
        """``grown`` more readings missing by sequence gaps; ``example``: (device, missing, seq that showed it)."""
        if grown <= 0:
            return
        now = self._clock()
        self._gaps_recent += grown
        if example is not None:
            device, missing, seq = example
            self._gap_example = f"; e.g. {device}: {missing} missing before seq {seq}"
        if self._gaps_warned is None or now - self._gaps_warned >= self.warn_every_s:
            log.warning(
                "%d readings missing by devices' sequence numbers%s (lost on the way, or still to come late)",
                self._gaps_recent,
                self._gap_example,
            )
            self.warnings += 1
            self._gaps_warned, self._gaps_recent, self._gap_example = now, 0, ""

    def held_up(self) -> str | None:
        """What a recent drop means for health, or None when the broker has dropped nothing lately."""
        if self._dropped_at is None:
            return None
        ago = self._clock() - self._dropped_at
        if ago >= self.degraded_s:
            return None
        return f"the broker dropped messages {ago:.0f} s ago (its $SYS count): readings may be lost"
