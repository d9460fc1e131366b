"""A fleet of connected products as numpy arrays: lives, precursors, consumables, firmware, telemetry.

One object per fleet, no object per device. Each (device, failure mode) has a sampled failure time
(competing risks: the earliest due mode fires first), drawn through the inverse CDF from the
keyed stream of that mode, so the k-th life of a device draws its k-th number. Cohorts (batch,
climate, ...) and usage intensity stretch or shrink lives as multipliers (accelerated life). A
consumable is a mode whose "failure" is running empty: its time is the level over the drain rate,
known in advance and scheduled the same way. Failure times wait in a heap and are scheduled as
events; a telemetry tick computes the whole fleet's readings at once (matrix products add
precursor drift and failure effects to the noisy baselines).
"""

from __future__ import annotations

import heapq
import math

import numpy as np
import numpy.typing as npt

from sim.scenario import Fleet
from sim.streams import Stream, generator

__all__ = ["DAY_S", "FleetState", "pick"]

DAY_S = 86400.0
Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]


def pick(shares: dict[str, float], u: Floats) -> Ints:
    """Index into ``shares`` (by cumulative weight) for each uniform in ``u``."""
    weights = np.cumsum(np.array(list(shares.values()), dtype=np.float64))
    index: Ints = np.minimum(np.searchsorted(weights, u * weights[-1], side="right"), len(weights) - 1)
    return index.astype(np.int64)


class FleetState:
    """The state of every device of one fleet, plus its failure heap.

    Modes are indexed ``0 .. M-1``: the fleet's failure modes first, then its consumables.
    """

    def __init__(self, spec: Fleet, seed: int, offset: int = 0) -> None:
        self.spec = spec
        self.seed = seed
        self.n = n = spec.count
        self.offset = offset  # index of the first device in the world's global numbering
        self.ids = [f"{spec.name}-{i:06d}" for i in range(n)]
        self.modes = list(spec.failure_modes)
        self.consumables = list(spec.consumables)
        self.n_failure_modes = nf = len(self.modes)
        self.mode_names = [m.name for m in self.modes] + [c.name for c in self.consumables]
        self.sensor_names = [s.name for s in spec.sensors] + [c.sensor for c in self.consumables]
        m, s = len(self.mode_names), len(self.sensor_names)
        self.baseline = np.array([x.baseline for x in spec.sensors] + [0.0] * len(self.consumables))
        self.noise_sd = np.array([x.noise_sd for x in spec.sensors] + [c.noise_sd for c in self.consumables])
        sensor_at = {name: i for i, name in enumerate(self.sensor_names)}
        # (mode, sensor) matrices: linear drift reached at failure, and offset while failed.
        self.precursor_delta = np.zeros((m, s))
        self.lead_s = np.full(m, math.inf)
        self.effect_delta = np.zeros((m, s))
        self.wiener: list[tuple[int, int, float, float]] = []  # (mode, sensor, delta, volatility)
        for j, mode in enumerate(self.modes):
            if mode.precursor is not None:
                p = mode.precursor
                self.lead_s[j] = p.lead_time_days * DAY_S
                if p.path == "wiener":
                    self.wiener.append((j, sensor_at[p.sensor], p.delta, p.volatility))
                else:
                    self.precursor_delta[j, sensor_at[p.sensor]] = p.delta
            for effect in mode.effects:
                self.effect_delta[j, sensor_at[effect.sensor]] += effect.delta
        severities = [mode.severity for mode in self.modes] + [c.severity for c in self.consumables]
        self.down_mode = np.array([sev == "down" for sev in severities], dtype=bool)
        self._has_precursor = bool(np.isfinite(self.lead_s).any())
        self._bridge = np.zeros((len(self.wiener), n))
        self._bridge_t = np.full((len(self.wiener), n), math.nan)

        everyone = np.arange(n)
        # -- who each device is: usage, cohorts, region, firmware (keyed draws, policy-independent)
        self.usage = spec.usage.ppf(Stream(seed, spec.name, "usage").uniform(everyone, 0))
        self.life_scale = np.ones((m, n))
        self.cohort: dict[str, tuple[list[str], Ints]] = {}
        for dim, values in spec.cohorts.items():
            which = pick(
                {k: v.share for k, v in values.items()}, Stream(seed, spec.name, "cohort", dim).uniform(everyone, 0)
            )
            names = list(values)
            self.cohort[dim] = (names, which)
            for c, cohort in enumerate(values.values()):
                members = which == c
                self.usage[members] *= cohort.usage_factor
                for mode_name, factor in cohort.life_factor.items():
                    self.life_scale[self.mode_names.index(mode_name), members] *= factor
        for j, mode in enumerate(self.modes):
            if mode.usage_driven:
                self.life_scale[j] /= np.maximum(self.usage, 1e-9)
        self.regions = list(spec.regions)
        self.region = (
            pick(spec.regions, Stream(seed, spec.name, "region").uniform(everyone, 0))
            if self.regions
            else np.full(n, -1, dtype=np.int64)
        )
        self.versions = list(spec.firmware)
        self.firmware = (
            pick(spec.firmware, Stream(seed, spec.name, "firmware").uniform(everyone, 0))
            if self.versions
            else np.full(n, -1, dtype=np.int64)
        )
        self.active = np.ones((m, n), dtype=bool)
        for j, mode in enumerate(self.modes):
            if mode.firmware:
                self.active[j] = self._runs(mode.firmware, self.firmware)

        # -- consumables: drain rate per second and the moment each runs empty
        nc = len(self.consumables)
        self.capacity = np.array([c.capacity for c in self.consumables])
        self.rate = np.zeros((nc, n))
        for c, item in enumerate(self.consumables):
            per_day = item.drain_per_day.ppf(Stream(seed, spec.name, "drain", item.name).uniform(everyone, 0))
            self.rate[c] = np.maximum(per_day * self.usage, 1e-12) / DAY_S
        self.low_reported = np.zeros((nc, n), dtype=bool)

        # -- lives
        self.life_k = np.zeros((m, n), dtype=np.int64)
        self.next_fail = np.full((m, n), math.inf)
        self.failed = np.zeros((m, n), dtype=bool)
        self._life = [Stream(seed, spec.name, "life", name) for name in self.mode_names]
        self._noise = generator(seed, spec.name, "noise")
        self._bridge_rng = generator(seed, spec.name, "bridge")
        # Units enter the run already aged; their first lives are residual lives given that age
        # (in each device's own time scale: a unit that ages twice as fast is twice as old).
        age = spec.age_days.ppf(Stream(seed, spec.name, "age").uniform(everyone, 0))
        for j in range(nf):
            u = self._life[j].uniform(everyone, 0)
            scale = self.life_scale[j]
            life = scale * self.modes[j].life_days.residual_ppf(u, age / scale) * DAY_S
            self.next_fail[j] = np.where(self.active[j], life, math.inf)
        self.life_k[:] = 1
        for c, item in enumerate(self.consumables):
            start = np.clip(item.start_fraction.ppf(self._life[nf + c].uniform(everyone, 0)), 0.0, 1.0)
            self.next_fail[nf + c] = start * item.capacity / self.rate[c]
        self.heap: list[tuple[float, int, int, int]] = [
            (t, j, d, 1) for j in range(m) for d, t in enumerate(self.next_fail[j].tolist()) if math.isfinite(t)
        ]
        heapq.heapify(self.heap)

        per = spec.devices_per_gateway
        self.gateways = [
            (f"{spec.name}-gw{g:03d}", slice(lo, min(lo + per, n))) for g, lo in enumerate(range(0, n, per))
        ]
        self.rosters = [self.ids[sl] for _, sl in self.gateways]

    # -- attributes -----------------------------------------------------------------------------
    def _runs(self, versions: list[str], firmware: Ints) -> Bools:
        wanted = [i for i, v in enumerate(self.versions) if v in versions]
        return np.isin(firmware, wanted)

    def region_of(self, local: int) -> str | None:
        r = int(self.region[local])
        return self.regions[r] if r >= 0 else None

    def version_of(self, local: int) -> str | None:
        v = int(self.firmware[local])
        return self.versions[v] if v >= 0 else None

    def is_consumable(self, mode: int) -> bool:
        return mode >= self.n_failure_modes

    # -- lives ----------------------------------------------------------------------------------
    def _push(self, mode: int, device: int) -> None:
        t = float(self.next_fail[mode, device])
        if math.isfinite(t):
            heapq.heappush(self.heap, (t, mode, device, int(self.life_k[mode, device])))

    def renew(self, mode: int, device: int, now: float) -> None:
        """Repair ``mode`` on one device (or refill a consumable): clear it, schedule its next failure.

        A failure mode draws its next life (k-th life, k-th number); a consumable refills to
        capacity and runs empty again after capacity over its drain rate.
        """
        self.failed[mode, device] = False
        k = int(self.life_k[mode, device])
        self.life_k[mode, device] = k + 1
        if self.is_consumable(mode):
            c = mode - self.n_failure_modes
            self.next_fail[mode, device] = now + self.capacity[c] / self.rate[c, device]
            self.low_reported[c, device] = False
        elif self.active[mode, device]:
            u = float(self._life[mode].uniform(np.array([device]), np.array([k]))[0])
            life = float(self.modes[mode].life_days.ppf(u)) * self.life_scale[mode, device]
            self.next_fail[mode, device] = now + life * DAY_S
        else:
            self.next_fail[mode, device] = math.inf
        for w, (j, _, _, _) in enumerate(self.wiener):
            if j == mode:
                self._bridge[w, device] = 0.0
                self._bridge_t[w, device] = math.nan
        self._push(mode, device)

    def set_firmware(self, device: int, version: str, now: float) -> list[int]:
        """Install ``version`` on one device; return the modes that were failed and are now gone.

        Modes bound to firmware the device no longer runs cannot happen any more; modes bound to
        the new version start a life now (a bad update brings its bug).
        """
        if version not in self.versions:
            self.versions.append(version)
        self.firmware[device] = self.versions.index(version)
        cured = []
        for j, mode in enumerate(self.modes):
            if not mode.firmware:
                continue
            now_active = version in mode.firmware
            if now_active == bool(self.active[j, device]):
                continue
            self.active[j, device] = now_active
            if not now_active and self.failed[j, device]:
                cured.append(j)
            self.renew(j, device, now)  # inactive → no next failure; active → a fresh life from now
        return cured

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

    def is_failed(self, device: int) -> bool:
        return bool(self.failed[:, device].any())

    def levels(self, now: float) -> Floats:
        """Consumable levels at ``now``, shape (consumables, devices)."""
        nf = self.n_failure_modes
        return np.clip(self.rate * (self.next_fail[nf:] - now), 0.0, self.capacity[:, None])

    def newly_low(self, now: float) -> list[tuple[int, int]]:
        """(consumable, device) pairs whose level fell below the low mark since last asked."""
        if not self.consumables:
            return []
        low = np.array([c.low_fraction for c in self.consumables])[:, None] * self.capacity[:, None]
        fresh = (self.levels(now) < low) & ~self.low_reported
        self.low_reported |= fresh
        c, d = np.nonzero(fresh)
        return list(zip(c.tolist(), d.tolist(), strict=True))

    # -- telemetry ------------------------------------------------------------------------------
    def readings(self, now: float) -> Floats:
        """Every sensor of every device at ``now``: an array of shape (sensors, devices)."""
        values = self.baseline[:, None] + self.noise_sd[:, None] * self._noise.standard_normal(
            (len(self.baseline), self.n)
        )
        if not self.mode_names:
            return values
        if self._has_precursor:
            with np.errstate(invalid="ignore"):
                frac = np.clip((now - (self.next_fail - self.lead_s[:, None])) / self.lead_s[:, None], 0.0, 1.0)
            frac = np.where(self.failed | ~np.isfinite(frac), 0.0, frac)
            values += self.precursor_delta.T @ frac
            for w, (j, s, delta, vol) in enumerate(self.wiener):
                values[s] += self._bridge_step(w, j, delta, vol, now)
        values += self.effect_delta.T @ self.failed.astype(np.float64)
        if self.consumables:
            values[len(self.spec.sensors) :] += self.levels(now)
        return values

    def _bridge_step(self, w: int, j: int, delta: float, volatility: float, now: float) -> Floats:
        """Advance the Brownian bridges of Wiener precursor ``w`` to ``now``; return their values.

        In the lead window the drift wanders from 0 to ``delta`` at the failure: given its value x
        at t0, at t it is normal with mean x + (delta - x)(t - t0)/(T - t0) and variance
        sigma^2 (t - t0)(T - t)/(T - t0), where T is the failure time.
        """
        end = self.next_fail[j]
        lead = self.lead_s[j]
        inside = (now >= end - lead) & (now < end) & ~self.failed[j]
        idx = np.flatnonzero(inside)
        out = np.zeros(self.n)
        if idx.size:
            t0 = np.where(np.isnan(self._bridge_t[w, idx]), end[idx] - lead, self._bridge_t[w, idx])
            x = self._bridge[w, idx]
            span = np.maximum(end[idx] - t0, 1e-9)
            dt = now - t0
            sigma2 = (volatility * abs(delta)) ** 2 / lead
            mean = x + (delta - x) * dt / span
            sd = np.sqrt(np.maximum(sigma2 * dt * (end[idx] - now) / span, 0.0))
            x = mean + sd * self._bridge_rng.standard_normal(idx.size)
            self._bridge[w, idx] = x
            self._bridge_t[w, idx] = now
            out[idx] = x
        return out
