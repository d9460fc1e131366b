"""A fleet's link to the cloud: offline spells with buffering, outages, late readings, clock skew.

Everything here is columnar: a tick hands over the fleet's readings as one (sensors, devices)
array and gets back the rows that reach the broker now — current readings of online devices,
the buffers of devices that just came back (a reconnect storm after an outage), and late
readings whose delay has run out — as arrays. Offline spells start and end at tick resolution.
Each fault is keyed by (device, k) so that it strikes the same devices under every policy, and
each is written to the ground-truth log.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from sim.records import Records
from sim.scenario import Connectivity
from sim.streams import Stream

__all__ = ["Link", "Rows"]

DAY_S = 86400.0
HOUR_S = 3600.0
Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]


class Rows(NamedTuple):
    """Readings on their way: device (local index), reading time, per-device seq, values (sensors, rows)."""

    device: Ints
    ts: Floats
    seq: Ints
    values: Floats

    @staticmethod
    def concat(parts: list[Rows], sensors: int) -> Rows:
        if not parts:
            return Rows(np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64), np.zeros((sensors, 0)))
        if len(parts) == 1:
            return parts[0]
        return Rows(
            np.concatenate([p.device for p in parts]),
            np.concatenate([p.ts for p in parts]),
            np.concatenate([p.seq for p in parts]),
            np.concatenate([p.values for p in parts], axis=1),
        )

    def take(self, mask: npt.NDArray[np.bool_]) -> Rows:
        return Rows(self.device[mask], self.ts[mask], self.seq[mask], self.values[:, mask])


class Link:
    """The connectivity of one fleet of ``n`` devices."""

    def __init__(self, spec: Connectivity, fleet: str, n: int, seed: int, records: Records) -> None:
        self.spec, self.fleet, self.n, self.records = spec, fleet, n, records
        # Per-device arrays exist only for the faults this link has (None: the fault never strikes).
        self.skew: Floats | None = None
        if spec.clock_skew_s > 0:
            u = Stream(seed, fleet, "skew").uniform(np.arange(n), 0)
            self.skew = (2.0 * u - 1.0) * spec.clock_skew_s
            records.link += [(0.0, f"{fleet}-{d:06d}", "clock_skew", f"{s:+.3f} s") for d, s in enumerate(self.skew)]
        self._spell = Stream(seed, fleet, "offline", "length")
        self._gap = Stream(seed, fleet, "offline", "gap")
        self._late_draw = Stream(seed, fleet, "late")
        self._late_delay = Stream(seed, fleet, "late", "delay")
        self._dup = Stream(seed, fleet, "duplicate")
        self.spell_k: npt.NDArray[np.int32] | None = None
        self.offline_until: Floats | None = None
        self.next_offline: Floats | None = None
        every = spec.offline_every_days
        if every is not None:
            self.spell_k = np.zeros(n, dtype=np.int32)
            self.offline_until = np.zeros(n)
            self.next_offline = every.ppf(self._gap.uniform(np.arange(n), 0)) * DAY_S
        self.forced_until: Floats | None = None  # set by the first outage
        self._was_online: npt.NDArray[np.bool_] | None = None  # None: every device
        self._buffer: Rows | None = None  # what offline devices measured, one columnar pool
        self._buffered: npt.NDArray[np.int32] | None = None  # readings in the buffer per device
        self._late: Rows | None = None  # readings held back, with their delivery times
        self._late_at = np.zeros(0)
        self.dropped = 0  # readings lost at the source (offline without buffer, or buffer full)
        self.active = every is not None or spec.late_share > 0 or spec.clock_skew_s > 0

    # -- state ----------------------------------------------------------------------------------
    def online(self, now: float) -> npt.NDArray[np.bool_]:
        online = np.ones(self.n, dtype=bool) if self.offline_until is None else now >= self.offline_until
        if self.forced_until is not None:
            online &= now >= self.forced_until
        return online

    def is_online(self, local: int, now: float) -> bool:
        return bool(
            (self.offline_until is None or now >= self.offline_until[local])
            and (self.forced_until is None or now >= self.forced_until[local])
        )

    def force_offline(self, devices: Ints, until: float) -> None:
        """Cut ``devices`` off until ``until`` (an outage); they reconnect together."""
        if self.forced_until is None:
            self.forced_until = np.zeros(self.n)
        self.forced_until[devices] = np.maximum(self.forced_until[devices], until)
        self.active = True

    def duplicate(self, gateway: int, seq: int) -> bool:
        """Whether gateway batch ``seq`` is sent twice."""
        return self.spec.duplicate_share > 0 and self._dup.one(gateway, seq) < self.spec.duplicate_share

    # -- a tick ---------------------------------------------------------------------------------
    def step(self, now: float, tick: int, values: Floats) -> tuple[Rows, Ints]:
        """Return the rows that reach the broker at ``now`` and the devices that just reconnected."""
        n = self.n
        if not self.active:
            return Rows(np.arange(n), np.full(n, now), np.full(n, tick, dtype=np.int64), values), np.zeros(0, np.int64)
        self._start_spells(now)
        online = self.online(now)
        back = np.zeros(0, np.int64) if self._was_online is None else np.flatnonzero(online & ~self._was_online)
        self._was_online = online
        everyone = np.arange(n)
        ts = np.full(n, max(now + 0.0, 0.0)) if self.skew is None else np.maximum(now + self.skew, 0.0)
        current = Rows(everyone, ts, np.full(n, tick, dtype=np.int64), values)
        offline = ~online
        if offline.any():
            held = current.take(offline)
            if self.spec.buffer:
                if self._buffered is None:
                    self._buffered = np.zeros(n, dtype=np.int32)
                room = self._buffered[held.device] < self.spec.buffer_max_readings
                self.dropped += int((~room).sum())
                held = held.take(room)
                self._buffered[held.device] += 1
                self._buffer = held if self._buffer is None else Rows.concat([self._buffer, held], values.shape[0])
            else:
                self.dropped += len(held.device)
        parts = [current.take(online)]
        if back.size and self._buffer is not None:
            parts.append(self._flush(back))
        if self.spec.late_share > 0:
            parts[0] = self._hold_late(parts[0], now, tick)
        if self._late is not None:
            due = self._late_at <= now
            if due.any():
                parts.append(self._late.take(due))
                self._late, self._late_at = self._late.take(~due), self._late_at[~due]
        return Rows.concat(parts, values.shape[0]), back

    def _start_spells(self, now: float) -> None:
        every = self.spec.offline_every_days
        if every is None:
            return
        assert self.next_offline is not None and self.spell_k is not None and self.offline_until is not None
        starting = np.flatnonzero(self.next_offline <= now)
        if not starting.size:
            return
        k = self.spell_k[starting]
        length = self.spec.offline_h.ppf(self._spell.uniform(starting, k)) * HOUR_S
        self.offline_until[starting] = now + length
        self.spell_k[starting] = k + 1
        self.next_offline[starting] = now + length + every.ppf(self._gap.uniform(starting, k + 1)) * DAY_S
        self.records.link += [
            (now, f"{self.fleet}-{d:06d}", "offline", f"{h:.3f} h")
            for d, h in zip(starting.tolist(), (length / HOUR_S).tolist(), strict=True)
        ]

    def _flush(self, back: Ints) -> Rows:
        """Take the buffered readings of the devices in ``back`` out of the buffer (in the order measured)."""
        assert self._buffer is not None
        returning = np.zeros(self.n, dtype=bool)
        returning[back] = True
        mine = returning[self._buffer.device]
        sent = self._buffer.take(mine)
        self._buffer = self._buffer.take(~mine)
        if self._buffered is not None:
            self._buffered[back] = 0
        return sent

    def _hold_late(self, rows: Rows, now: float, tick: int) -> Rows:
        late = self._late_draw.uniform(rows.device, tick) < self.spec.late_share
        if not late.any():
            return rows
        held = rows.take(late)
        delay = self.spec.late_s.ppf(self._late_delay.uniform(held.device, tick))
        pool = [held] if self._late is None else [self._late, held]
        self._late = Rows.concat(pool, rows.values.shape[0])
        self._late_at = np.concatenate([self._late_at, now + delay])
        self.records.link.append((now, self.fleet, "late", f"{int(late.sum())} readings"))
        return rows.take(~late)

    @property
    def buffered(self) -> int:
        return 0 if self._buffered is None else int(self._buffered.sum())
