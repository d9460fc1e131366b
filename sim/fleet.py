"""A fleet of identical connected products as numpy arrays: lives, precursors, failures, telemetry.

One object per fleet, no object per device. Each (device, failure mode) has a sampled failure time
(competing risks: the earliest due mode fires first), drawn through the inverse CDF from the
keyed stream of that mode, so the k-th life of a device draws its k-th number. Failure times wait
in a heap and are scheduled as events; a telemetry tick computes the whole fleet's readings at once
(two small matrix products add precursor drift and failure effects to the noisy baselines).
"""

from __future__ import annotations

import heapq
import math

import numpy as np
import numpy.typing as npt

from sim.scenario import Fleet
from sim.streams import Stream, generator

__all__ = ["DAY_S", "FleetState"]

DAY_S = 86400.0
Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]


class FleetState:
    """The state of every device of one fleet, plus its failure heap."""

    def __init__(self, spec: Fleet, seed: int, offset: int = 0) -> None:
        self.spec = spec
        self.n = n = spec.count
        self.offset = offset  # index of the first device in the world's global numbering
        self.ids = [f"{spec.name}-{i:06d}" for i in range(n)]
        self.sensor_names = [s.name for s in spec.sensors]
        self.modes = list(spec.failure_modes)
        m, s = len(self.modes), len(self.sensor_names)
        self.baseline = np.array([x.baseline for x in spec.sensors], dtype=np.float64)
        self.noise_sd = np.array([x.noise_sd for x in spec.sensors], dtype=np.float64)
        sensor_at = {name: i for i, name in enumerate(self.sensor_names)}
        # (mode, sensor) matrices: drift reached at failure, and offset while failed.
        self.precursor_delta = np.zeros((m, s))
        self.lead_s = np.full(m, math.inf)
        self.effect_delta = np.zeros((m, s))
        for j, mode in enumerate(self.modes):
            if mode.precursor is not None:
                self.precursor_delta[j, sensor_at[mode.precursor.sensor]] = mode.precursor.delta
                self.lead_s[j] = mode.precursor.lead_time_days * DAY_S
            for effect in mode.effects:
                self.effect_delta[j, sensor_at[effect.sensor]] += effect.delta
        self.down_mode = np.array([mode.severity == "down" for mode in self.modes], dtype=bool)
        self._has_precursor = bool(np.isfinite(self.lead_s).any())

        self.life_k = np.zeros((m, n), dtype=np.int64)
        self.next_fail = np.zeros((m, n))
        self.failed = np.zeros((m, n), dtype=bool)
        self._life = [Stream(seed, spec.name, "life", mode.name) for mode in self.modes]
        self._noise = generator(seed, spec.name, "noise")
        self.heap: list[tuple[float, int, int, int]] = []
        everyone = np.arange(n)
        # Units enter the run already aged; their first lives are residual lives given that age.
        age = spec.age_days.ppf(Stream(seed, spec.name, "age").uniform(everyone, 0))
        for j in range(m):
            u = self._life[j].uniform(everyone, 0)
            self.life_k[j] = 1
            self.next_fail[j] = self.modes[j].life_days.residual_ppf(u, age) * DAY_S
        self.heap = [
            (float(t), j, int(d), int(k))
            for j in range(m)
            for t, d, k in zip(self.next_fail[j].tolist(), everyone.tolist(), self.life_k[j].tolist(), strict=True)
        ]
        heapq.heapify(self.heap)

        per = spec.devices_per_gateway
        self.gateways = [
            (f"{spec.name}-gw{g:03d}", slice(lo, min(lo + per, n))) for g, lo in enumerate(range(0, n, per))
        ]
        self.rosters = [self.ids[sl] for _, sl in self.gateways]

    # -- lives ----------------------------------------------------------------------------------
    def _renew(self, mode: int, devices: Ints, now: float) -> None:
        """Start a new life of ``mode`` on ``devices`` at ``now`` (k-th life, k-th number)."""
        u = self._life[mode].uniform(devices, self.life_k[mode, devices])
        self.life_k[mode, devices] += 1
        self.next_fail[mode, devices] = now + self.modes[mode].life_days.ppf(u) * DAY_S

    def renew(self, mode: int, device: int, now: float) -> None:
        """Repair ``mode`` on one device: clear the failure, draw its next life and schedule it."""
        self.failed[mode, device] = False
        self._renew(mode, np.array([device]), now)
        heapq.heappush(self.heap, (float(self.next_fail[mode, device]), mode, device, int(self.life_k[mode, device])))

    def next_failure_time(self) -> float:
        """Time of the earliest scheduled failure (stale heap entries are dropped here)."""
        while self.heap:
            t, j, d, k = self.heap[0]
            if k == self.life_k[j, d] and not self.failed[j, d]:
                return t
            heapq.heappop(self.heap)
        return math.inf

    def pop_due(self, now: float) -> list[tuple[int, int]]:
        """Mark every failure due at or before ``now`` as failed; return their (mode, device) pairs."""
        due = []
        while self.next_failure_time() <= now:
            _, j, d, _ = heapq.heappop(self.heap)
            self.failed[j, d] = True
            due.append((j, d))
        return due

    # -- state ----------------------------------------------------------------------------------
    def in_precursor(self, mode: int, device: int, now: float) -> bool:
        """Whether ``mode`` on ``device`` is drifting towards failure (inside its lead window)."""
        lead = self.lead_s[mode]
        return bool(
            math.isfinite(lead) and not self.failed[mode, device] and now >= self.next_fail[mode, device] - lead
        )

    def is_down(self, device: int) -> bool:
        return bool((self.failed[:, device] & self.down_mode).any())

    def is_failed(self, device: int) -> bool:
        return bool(self.failed[:, device].any())

    # -- telemetry ------------------------------------------------------------------------------
    def readings(self, now: float) -> Floats:
        """Every sensor of every device at ``now``: an array of shape (sensors, devices)."""
        values = self.baseline[:, None] + self.noise_sd[:, None] * self._noise.standard_normal(
            (len(self.baseline), self.n)
        )
        if not self.modes:
            return values
        if self._has_precursor:
            with np.errstate(invalid="ignore"):
                frac = np.clip((now - (self.next_fail - self.lead_s[:, None])) / self.lead_s[:, None], 0.0, 1.0)
            frac = np.where(self.failed | ~np.isfinite(frac), 0.0, frac)
            values += self.precursor_delta.T @ frac
        values += self.effect_delta.T @ self.failed.astype(np.float64)
        return values
