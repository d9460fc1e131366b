"""Preventive maintenance schedules: when a plan's visits fall due, device by device.

A plan's visits to a device lie on a grid of the plan's interval ``I``, offset by the device's
phase ``p`` in (0, 1], a hash of the plan's name and the device's id: at ``epoch + (p + k) I`` of
calendar time (``epoch``: when the engine first ran the plan), or at counter values ``(p + k) I``
of a usage counter. A visit is due when a grid point lies in (value at the last check, value now].
So a schedule needs no per-device clock: a calendar plan is two times (its epoch and its last
check), whatever the number of devices; a usage plan keeps each device's counter as last checked.
The phases spread the first visits over the first interval, and a device's visits never depend on
other devices, so engine partitions schedule what one engine would.

:class:`PreventiveOrder` is a preventive work order the field has not closed yet. Its states are
those of :data:`~support_engine.core.lifecycle.WORK_ORDER`.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from support_engine.core.lifecycle import WORK_ORDER

__all__ = ["PlanClock", "PlanScope", "PreventiveOrder", "crossed", "phases"]

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]


@dataclass
class PlanClock:
    """Where a plan's schedule stands: when it started (calendar grid origin) and was last checked."""

    plan: str
    epoch_s: float
    checked_s: float


@dataclass
class PlanScope:
    """A plan's devices (sorted by id) with their phases, twin slots and, for a usage plan, counters."""

    registry: int  # the registry version it was made from
    ids: list[str]
    phase: Floats
    slots: Ints = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # -1: no twin yet
    twins: int = -1  # how many twins there were when the slots were looked up
    seen: Floats = field(default_factory=lambda: np.zeros(0))  # usage: counter at the last check (NaN: none)


@dataclass
class PreventiveOrder:
    """A preventive work order out in the field (until it is closed or cancelled)."""

    work_order_id: str
    visit_id: str
    plan: str
    device_id: str
    created_s: float
    state: str = WORK_ORDER.initial
    visit: int = 1
    technician_id: str | None = None


def phases(plan: str, devices: Sequence[str]) -> Floats:
    """Each device's phase on ``plan``'s grid, in (0, 1]: CRC-32 of ``plan/device`` over 2^32."""
    prefix = f"{plan}/".encode()
    crc = np.fromiter(
        (zlib.crc32(d.encode(), zlib.crc32(prefix)) for d in devices), dtype=np.float64, count=len(devices)
    )
    result: Floats = (crc + 1.0) / 2.0**32
    return result


def crossed(before: Floats, now: Floats, interval: float, phase: Floats) -> Bools:
    """Whether a grid point ``(phase + k) * interval`` lies in (before, now], element by element.

    ``before`` and ``now`` are on the plan's scale from its origin (seconds since the epoch, or the
    counter's value); NaN (no value yet) crosses nothing."""
    with np.errstate(invalid="ignore"):
        k_now = np.floor(now / interval - phase)
        k_before = np.floor(before / interval - phase)
        result: Bools = k_now > k_before
    return result
