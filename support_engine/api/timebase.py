"""Engine seconds as ISO 8601 times: Unix time on the wall clock, a simulated calendar in event time.

On the wall clock engine time is ``(unix_time - time_origin) * speed`` (``sot engine --time-origin``
and ``--speed``; by default Unix time itself). In event time it is simulated seconds since the
run's t = 0, which :class:`TimeBase` maps to a simulated epoch (``sim_epoch``): such a time is a
moment of the simulation, not of the world, and every view of it says so.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

__all__ = ["DEFAULT_SIM_EPOCH", "ClockMode", "TimeBase", "parse_epoch"]

ClockMode = Literal["event", "wall"]
DEFAULT_SIM_EPOCH = "2026-01-01T00:00:00Z"


def parse_epoch(epoch: str | datetime) -> datetime:
    """An epoch as an aware UTC datetime (a naive one is taken as UTC); :class:`ValueError` if unreadable."""
    if isinstance(epoch, str):
        try:
            epoch = datetime.fromisoformat(epoch)
        except ValueError as exc:
            raise ValueError(f"sim_epoch must be an ISO 8601 time such as {DEFAULT_SIM_EPOCH}, not {epoch!r}") from exc
    return epoch.replace(tzinfo=UTC) if epoch.tzinfo is None else epoch.astimezone(UTC)


def iso(moment: datetime, timespec: str = "milliseconds") -> str:
    """``moment`` in ISO 8601, UTC, with ``Z``."""
    return moment.astimezone(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class TimeBase:
    """How one engine's seconds read as calendar times."""

    clock: ClockMode
    sim_epoch: datetime  # event clock: what t = 0 is called
    time_origin: float = 0.0  # wall clock: the Unix time of engine time 0
    speed: float = 1.0  # wall clock: engine seconds per real second

    @property
    def simulated(self) -> bool:
        """Whether times are simulated (event clock)."""
        return self.clock == "event"

    def moment(self, seconds: float | None) -> datetime | None:
        """The calendar time of engine time ``seconds`` (None for None, a non-finite or out-of-range value)."""
        if seconds is None or not math.isfinite(seconds):
            return None
        try:
            if self.clock == "event":
                return self.sim_epoch + timedelta(seconds=seconds)
            return datetime.fromtimestamp(self.time_origin + seconds / self.speed, UTC)
        except (OverflowError, ValueError, OSError):
            return None

    def at(self, seconds: float | None, timespec: str = "milliseconds") -> str | None:
        """Engine time ``seconds`` in ISO 8601 (UTC, ``Z``), or None."""
        found = self.moment(seconds)
        return None if found is None else iso(found, timespec)

    def wall_now_s(self) -> float:
        """The wall clock in engine seconds (wall clock only: event time does not follow the wall)."""
        return (time.time() - self.time_origin) * self.speed
