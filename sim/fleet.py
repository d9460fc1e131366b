"""A fleet of connected products as numpy arrays: lives, precursors, consumables, firmware, telemetry.

One object per fleet, no object per device. Each (device, failure mode) has a sampled failure time
(competing risks: the earliest due mode fires first), drawn through the inverse CDF from the
keyed stream of that mode, so the k-th life of a device draws its k-th number. Cohorts (batch,
climate, ...) and usage intensity stretch or shrink lives as multipliers (accelerated life). A
consumable is a mode whose "failure" is running empty: its time is the level over the drain rate,
known in advance and scheduled the same way. Failure times wait in a calendar (:mod:`sim.calendar`:
the arrays, and a small heap of what falls due soon) and are scheduled as events; a telemetry tick
computes the whole fleet's readings at once (matrix products add precursor drift and failure
effects to the noisy baselines).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterator, Sequence
from typing import overload

import numpy as np
import numpy.typing as npt

from contracts import codec
from sim.calendar import Calendar
from sim.scenario import Fleet
from sim.streams import Stream, generator

__all__ = ["DAY_S", "DeviceIds", "FleetState", "pick"]

DAY_S = 86400.0
Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]
Codes = npt.NDArray[np.int8] | npt.NDArray[np.int16] | npt.NDArray[np.int32]  # small category codes, -1: none


def _codes(index: Ints, count: int) -> Codes:
    """``index`` (codes ``-1 .. count - 1``) in the smallest integer type that holds them."""
    if count <= np.iinfo(np.int8).max:
        return index.astype(np.int8)
    if count <= np.iinfo(np.int16).max:
        return index.astype(np.int16)
    return index.astype(np.int32)


def pick(shares: dict[str, float], u: Floats) -> Ints:
    """Index into ``shares`` (by cumulative weight) for each uniform in ``u``."""
    weights = np.cumsum(np.array(list(shares.values()), dtype=np.float64))
    index: Ints = np.minimum(np.searchsorted(weights, u * weights[-1], side="right"), len(weights) - 1)
    return index.astype(np.int64)


class DeviceIds(Sequence[str]):
    """The ids of a fleet's devices, ``{fleet}-{index:06d}``, made when asked: no string kept per device.

    :meth:`find` reads an id back strictly: only the exact form this sequence gives is one of its ids
    (``freezer-1`` and ``freezer-0000001`` are not ``freezer-000001``).
    """

    def __init__(self, fleet: str, n: int) -> None:
        self._prefix = f"{fleet}-"
        self._n = n

    def __len__(self) -> int:
        return self._n

    @overload
    def __getitem__(self, i: int) -> str: ...
    @overload
    def __getitem__(self, i: slice) -> list[str]: ...
    def __getitem__(self, i: int | slice) -> str | list[str]:
        if isinstance(i, slice):
            return [f"{self._prefix}{k:06d}" for k in range(*i.indices(self._n))]
        k = operator.index(i)
        if k < 0:
            k += self._n
        if not 0 <= k < self._n:
            raise IndexError(f"device {i} of {self._n}")
        return f"{self._prefix}{k:06d}"

    def __iter__(self) -> Iterator[str]:
        prefix = self._prefix
        return (f"{prefix}{k:06d}" for k in range(self._n))

    def __contains__(self, device_id: object) -> bool:
        return isinstance(device_id, str) and self.find(device_id) is not None

    def find(self, device_id: str) -> int | None:
        """The index of ``device_id``, or None if it is not one of these ids."""
        if not device_id.startswith(self._prefix):
            return None
        digits = device_id[len(self._prefix) :]
        if not (digits.isascii() and digits.isdigit()):
            return None
        k = int(digits)
        return k if k < self._n and digits == f"{k:06d}" else None

    def index(self, value: object, start: int = 0, stop: int | None = None) -> int:
        k = self.find(value) if isinstance(value, str) else None
        if k is None or not start <= k < (self._n if stop is None else stop):
            raise ValueError(f"{value!r} is not one of these device ids")
        return k


class FleetState:
    """The state of every device of one fleet, plus its failure calendar.

    Modes are indexed ``0 .. M-1``: the fleet's failure modes first, then its consumables.
    """

    def __init__(self, spec: Fleet, seed: int, offset: int = 0) -> None:
        self.spec = spec
        self.seed = seed
        self.n = n = spec.count
        self.offset = offset  # index of the first device in the world's global numbering
        self.ids = DeviceIds(spec.name, n)
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
        self._span_s = max(DAY_S, spec.telemetry_interval_s)  # how far ahead the calendar and drift scans look
        # Readings add drift and failure effects only to the devices that have any, column by column
        # with the matrix product the whole fleet would get (BLAS gemm, hence at least two sensor
        # rows and two devices; a fleet with fewer takes the whole-fleet product).
        self._sparse = s >= 2 and n >= 2
        self._drifting = np.zeros(0, dtype=np.int64)  # devices that may drift before _drift_until (sorted)
        self._drift_until = -math.inf
        self._drift_extra: set[int] = set()  # devices whose precursor lives were renewed since the scan
        linear = [
            j for j, mode in enumerate(self.modes) if mode.precursor is not None and mode.precursor.path != "wiener"
        ]
        self._linear = np.array(linear, dtype=np.int64)  # modes whose precursor drifts linearly
        self._bridge = np.zeros((len(self.wiener), n))
        self._bridge_t = np.full((len(self.wiener), n), math.nan)

        everyone = np.arange(n)
        # -- who each device is: usage, cohorts, region, firmware (keyed draws, policy-independent)
        self.usage = spec.usage.ppf(Stream(seed, spec.name, "usage").uniform(everyone, 0))
        self.cohort: dict[str, tuple[list[str], Codes]] = {}
        # Life scale of (mode, device): the product of its cohorts' life factors (dimension by
        # dimension), over its usage for a usage-driven mode; computed when needed, not stored.
        self._scale_by: list[list[tuple[Codes, Floats]]] = [[] for _ in range(m)]
        for dim, values in spec.cohorts.items():
            which = _codes(
                pick(
                    {k: v.share for k, v in values.items()},
                    Stream(seed, spec.name, "cohort", dim).uniform(everyone, 0),
                ),
                len(values),
            )
            names = list(values)
            self.cohort[dim] = (names, which)
            for c, cohort in enumerate(values.values()):
                members = which == c
                self.usage[members] *= cohort.usage_factor
            for j, mode_name in enumerate(self.mode_names):
                if any(mode_name in cohort.life_factor for cohort in values.values()):
                    factors = np.array([cohort.life_factor.get(mode_name, 1.0) for cohort in values.values()])
                    self._scale_by[j].append((which, factors))
        self._usage_driven = [mode.usage_driven for mode in self.modes] + [False] * len(self.consumables)
        self.regions = list(spec.regions)
        self.region = _codes(
            pick(spec.regions, Stream(seed, spec.name, "region").uniform(everyone, 0))
            if self.regions
            else np.full(n, -1),
            len(self.regions),
        )
        self.versions = list(spec.firmware)
        self.firmware = _codes(
            pick(spec.firmware, Stream(seed, spec.name, "firmware").uniform(everyone, 0))
            if self.versions
            else np.full(n, -1),
            len(self.versions),
        )
        bound = [j for j, mode in enumerate(self.modes) if mode.firmware]
        # Whether each mode can strike each device (its firmware runs the bug); read-only all True
        # when no mode is bound to firmware, as nothing then changes it.
        self.active: Bools = np.ones((m, n), dtype=bool) if bound else np.broadcast_to(np.True_, (m, n))
        for j in bound:
            self.active[j] = self._runs(self.modes[j].firmware, self.firmware)

        # -- consumables: drain rate per second and the moment each runs empty
        nc = len(self.consumables)
        self.capacity = np.array([c.capacity for c in self.consumables])
        self.rate = np.zeros((nc, n))
        for c, item in enumerate(self.consumables):
            per_day = item.drain_per_day.ppf(Stream(seed, spec.name, "drain", item.name).uniform(everyone, 0))
            self.rate[c] = np.maximum(per_day * self.usage, 1e-12) / DAY_S
        self.low_reported = np.zeros((nc, n), dtype=bool)

        # -- lives
        self.life_k = np.zeros((m, n), dtype=np.int32)
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
            scale = self.life_scale(j)
            life = scale * self.modes[j].life_days.residual_ppf(u, age / scale) * DAY_S
            self.next_fail[j] = np.where(self.active[j], life, math.inf)
        self.life_k[:] = 1
        # Counters (running hours, cycles): each rises by its rate times the device's usage, from the
        # baseline when the unit was new; a row per counter sensor, none for a fleet without.
        rises = np.array([x.rises_per_day for x in spec.sensors] + [0.0] * len(self.consumables))
        self.counter_rows = np.flatnonzero(rises > 0.0)
        self._counter_rate = rises[self.counter_rows, None] * self.usage[None, :] / DAY_S
        self._counter_start = self._counter_rate * (age * DAY_S)[None, :]
        # Ages of the modes that a service makes younger without renewing them (``restores`` < 1):
        # the installed age of every device, and from its first repair or service on, when each
        # such (mode, device) was "born" (its age is now minus that), kept only for those.
        self._ageing = {
            j for j, mode in enumerate(self.modes) if mode.service is not None and mode.service.restores < 1.0
        }
        self._age_days = age if self._ageing else np.zeros(0)
        self._born: dict[tuple[int, int], float] = {}
        for c, item in enumerate(self.consumables):
            start = np.clip(item.start_fraction.ppf(self._life[nf + c].uniform(everyone, 0)), 0.0, 1.0)
            self.next_fail[nf + c] = start * item.capacity / self.rate[c]
        self.calendar = Calendar(self.next_fail, self.life_k, self.failed, self._span_s)

        per = spec.devices_per_gateway
        self.gateways = [
            (f"{spec.name}-gw{g:03d}", slice(lo, min(lo + per, n))) for g, lo in enumerate(range(0, n, per))
        ]
        self.rosters = [codec.encode_roster(self.ids[sl]) for _, sl in self.gateways]  # the same bytes every batch

    # -- attributes -----------------------------------------------------------------------------
    def _runs(self, versions: list[str], firmware: Codes) -> Bools:
        wanted = [i for i, v in enumerate(self.versions) if v in versions]
        return np.isin(firmware, wanted)

    def life_scale(self, mode: int) -> Floats:
        """How much longer than the distribution says ``mode`` lives on each device (cohorts, usage)."""
        scale = np.ones(self.n)
        for which, factors in self._scale_by[mode]:
            scale *= factors[which]
        if self._usage_driven[mode]:
            scale /= np.maximum(self.usage, 1e-9)
        return scale

    def _scale_of(self, mode: int, device: int) -> float:
        """:meth:`life_scale` of one device (the same arithmetic, on floats)."""
        scale = 1.0
        for which, factors in self._scale_by[mode]:
            scale *= float(factors[which[device]])
        if self._usage_driven[mode]:
            scale /= max(float(self.usage[device]), 1e-9)
        return scale

    def region_of(self, local: int) -> str | None:
        r = int(self.region[local])
        return self.regions[r] if r >= 0 else None

    def version_of(self, local: int) -> str | None:
        v = int(self.firmware[local])
        return self.versions[v] if v >= 0 else None

    def is_consumable(self, mode: int) -> bool:
        return mode >= self.n_failure_modes

    # -- lives ----------------------------------------------------------------------------------
    def renew(self, mode: int, device: int, now: float) -> None:
        """Repair ``mode`` on one device (or refill a consumable): clear it, schedule its next failure.

        A failure mode draws its next life (k-th life, k-th number); a consumable refills to
        capacity and runs empty again after capacity over its drain rate.
        """
        self._restart(mode, device, now, 0.0)

    def service(self, mode: int, device: int, now: float) -> None:
        """A preventive service of failure mode ``mode`` on one device (not failed): its age goes back
        by its service's ``restores`` of itself and its remaining life is drawn again at that age
        (the next number of its stream); ``restores`` 1 (the default) renews it as a repair does."""
        spec = self.modes[mode].service
        if mode not in self._ageing or spec is None:
            self._restart(mode, device, now, 0.0)
            return
        born = self._born.get((mode, device), -float(self._age_days[device]) * DAY_S)
        self._restart(mode, device, now, (now - born) * (1.0 - spec.restores))

    def _restart(self, mode: int, device: int, now: float, age_s: float) -> None:
        """Clear ``mode`` on one device and schedule its next failure from age ``age_s`` (0: new)."""
        self.failed[mode, device] = False
        k = int(self.life_k[mode, device])
        self.life_k[mode, device] = k + 1
        if mode in self._ageing:
            self._born[(mode, device)] = now - age_s
        if self.is_consumable(mode):
            c = mode - self.n_failure_modes
            self.next_fail[mode, device] = now + self.capacity[c] / self.rate[c, device]
            self.low_reported[c, device] = False
        elif self.active[mode, device]:
            u = float(self._life[mode].uniform(np.array([device]), np.array([k]))[0])
            scale = self._scale_of(mode, device)
            life_days = self.modes[mode].life_days
            if age_s > 0.0:
                life = float(life_days.residual_ppf(np.array([u]), np.array([age_s / DAY_S / scale]))[0]) * scale
            else:
                life = float(life_days.ppf(u)) * scale
            self.next_fail[mode, device] = now + life * DAY_S
        else:
            self.next_fail[mode, device] = math.inf
        for w, (j, _, _, _) in enumerate(self.wiener):
            if j == mode:
                self._bridge[w, device] = 0.0
                self._bridge_t[w, device] = math.nan
        if math.isfinite(self.lead_s[mode]):
            self._drift_extra.add(device)
        self.calendar.push(mode, device)

    def set_firmware(self, device: int, version: str, now: float) -> list[int]:
        """Install ``version`` on one device; return the modes that were failed and are now gone.

        Modes bound to firmware the device no longer runs cannot happen any more; modes bound to
        the new version start a life now (a bad update brings its bug).
        """
        if version not in self.versions:
            self.versions.append(version)
            if len(self.versions) > np.iinfo(self.firmware.dtype).max:
                self.firmware = self.firmware.astype(np.int32)
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

    def next_failure_time(self, horizon: float = math.inf) -> float:
        """Time of the earliest failure due at or before ``horizon`` (inf if none is)."""
        return self.calendar.next_time(horizon)

    def pop_due(self, now: float) -> list[tuple[int, int]]:
        """Mark every failure due at or before ``now`` as failed; return their (mode, device) pairs."""
        return self.calendar.pop_due(now)

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
        values = self._readings(now)
        if self.counter_rows.size:
            values[self.counter_rows] += self._counter_start + self._counter_rate * now
        return values

    def _readings(self, now: float) -> Floats:
        """:meth:`readings` but the counters' rise: noise, precursor drift, failure effects, levels."""
        values = self._noise.standard_normal((len(self.baseline), self.n))
        values *= self.noise_sd[:, None]
        values += self.baseline[:, None]
        if not self.mode_names:
            return values
        if not self._sparse:
            return self._whole_fleet(values, now)
        if self._has_precursor:
            drifting = self._drift_candidates(now)
            if drifting.size and self._linear.size:
                _add_product(values, drifting, self.precursor_delta[self._linear], self._linear_drift(now, drifting))
            for w, (j, s, delta, vol) in enumerate(self.wiener):
                idx, x = self._bridge_step(w, j, delta, vol, now, drifting)
                values[s, idx] += x
        failed = np.flatnonzero(self.failed.any(axis=0))
        if failed.size:
            _add_product(values, failed, self.effect_delta, self.failed[:, failed].astype(np.float64))
        if self.consumables:
            values[len(self.spec.sensors) :] += self.levels(now)
        return values

    def _whole_fleet(self, values: Floats, now: float) -> Floats:
        """:meth:`readings` by whole-fleet matrix products (a fleet of one device or one sensor row)."""
        if self._has_precursor:
            with np.errstate(invalid="ignore"):
                frac = np.clip((now - (self.next_fail - self.lead_s[:, None])) / self.lead_s[:, None], 0.0, 1.0)
            frac = np.where(self.failed | ~np.isfinite(frac), 0.0, frac)
            values += self.precursor_delta.T @ frac
            for w, (j, s, delta, vol) in enumerate(self.wiener):
                idx, x = self._bridge_step(w, j, delta, vol, now, None)
                values[s, idx] += x
        values += self.effect_delta.T @ self.failed.astype(np.float64)
        if self.consumables:
            values[len(self.spec.sensors) :] += self.levels(now)
        return values

    def _linear_drift(self, now: float, devices: Ints) -> Floats:
        """How far each linear precursor of ``devices`` is through its lead window (0 outside it),
        shape (linear precursors, devices): the whole-fleet fraction's rows and columns that can be
        non-zero, by the same arithmetic.
        """
        rows = self._linear[:, None]
        lead = self.lead_s[rows]
        frac: Floats = self.next_fail[rows, devices] - lead
        np.subtract(now, frac, out=frac)
        frac /= lead
        np.maximum(frac, 0.0, out=frac)
        np.minimum(frac, 1.0, out=frac)
        frac[self.failed[rows, devices]] = 0.0
        return frac

    def _drift_candidates(self, now: float) -> Ints:
        """Devices that may be inside a precursor's lead window at ``now`` (a sorted superset).

        A scan finds those whose window opens before a span ahead; a renewed precursor life adds its
        device until the next scan.
        """
        if now > self._drift_until:
            until = now + self._span_s
            found = [
                np.flatnonzero((self.next_fail[j] - self.lead_s[j] <= until) & ~self.failed[j])
                for j in np.flatnonzero(np.isfinite(self.lead_s)).tolist()
            ]
            self._drifting = np.unique(np.concatenate(found))
            self._drift_until = until
            self._drift_extra.clear()
        elif self._drift_extra:
            extra = np.fromiter(self._drift_extra, dtype=np.int64, count=len(self._drift_extra))
            self._drifting = np.union1d(self._drifting, extra)
            self._drift_extra.clear()
        return self._drifting

    def _bridge_step(
        self, w: int, j: int, delta: float, volatility: float, now: float, devices: Ints | None
    ) -> tuple[Ints, Floats]:
        """Advance the Brownian bridges of Wiener precursor ``w`` to ``now``; return the devices
        inside their window and their values (``devices``: the candidates, None: all).

        In the lead window the drift wanders from 0 to ``delta`` at the failure: given its value x
        at t0, at t it is normal with mean x + (delta - x)(t - t0)/(T - t0) and variance
        sigma^2 (t - t0)(T - t)/(T - t0), where T is the failure time.
        """
        end = self.next_fail[j] if devices is None else self.next_fail[j, devices]
        failed = self.failed[j] if devices is None else self.failed[j, devices]
        lead = self.lead_s[j]
        inside = (now >= end - lead) & (now < end) & ~failed
        idx = np.flatnonzero(inside) if devices is None else devices[inside]
        if not idx.size:
            return idx, np.zeros(0)
        end = end[inside]
        t0 = np.where(np.isnan(self._bridge_t[w, idx]), end - lead, self._bridge_t[w, idx])
        x = self._bridge[w, idx]
        span = np.maximum(end - t0, 1e-9)
        dt = now - t0
        sigma2 = (volatility * abs(delta)) ** 2 / lead
        mean = x + (delta - x) * dt / span
        sd = np.sqrt(np.maximum(sigma2 * dt * (end - now) / span, 0.0))
        x = mean + sd * self._bridge_rng.standard_normal(idx.size)
        self._bridge[w, idx] = x
        self._bridge_t[w, idx] = now
        return idx, x


def _add_product(values: Floats, devices: Ints | None, delta: Floats, weights: Floats) -> None:
    """``values[:, devices] += delta.T @ weights`` (devices None: every column).

    A matrix product of one column runs through BLAS's matrix-vector code, whose sums may round
    otherwise than the matrix-matrix product of the whole fleet: a lone column is computed twice
    side by side and taken once.
    """
    if devices is None:
        values += delta.T @ weights
    elif devices.size == 1:
        values[:, devices] += (delta.T @ np.repeat(weights, 2, axis=1))[:, :1]
    else:
        values[:, devices] += delta.T @ weights
