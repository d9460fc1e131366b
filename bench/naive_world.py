"""The baseline the world's array design is measured against: one SimPy process per device.

This is the textbook design ``docs/design.md`` rejects, written fairly: each device is a generator
process with its own ``random.Random``; every telemetry interval it draws, for each failure mode
still healthy, whether that mode struck during the interval (``rng.random() < 1 - exp(-h * dt)``,
with the Weibull hazard at the device's current age, or the constant hazard of an exponential
life), computes its sensor values in Python (baseline + gaussian noise + precursor drift + failure
effects) and publishes one JSON :class:`contracts.Telemetry` message on its own topic.

A mode with a precursor cannot see its failure coming under per-tick hazards, so its hazard marks
the *onset* of the drift and the failure follows ``lead_time_days`` later, the drift ramping
linearly to ``delta`` meanwhile. Nothing is repaired: like :class:`sim.world.World` run without an
engine, no work order ever reaches a technician.

Only the telemetry path is modelled (no owners, agents or technicians): the baseline is given the
benefit of every doubt. It speaks the same driving interface as the world (``advance(until)``
returns the published ``(topic, payload)`` pairs; ``readings`` counts readings).
"""

from __future__ import annotations

import math
import random
from collections.abc import Generator
from typing import Any

import msgspec
import simpy

from contracts import Telemetry, Topics
from sim.distributions import Exponential, Weibull
from sim.fleet import DAY_S
from sim.scenario import FailureMode, Fleet, Scenario

__all__ = ["NaiveWorld"]

_HEALTHY, _DRIFTING, _FAILED = 0, 1, 2


class _Mode:
    """One failure mode, flattened for the per-tick loop: hazard, lead time and sensor deltas."""

    def __init__(self, spec: FailureMode, sensors: list[str]) -> None:
        life = spec.life_days
        if isinstance(life, Weibull):
            self.shape, self.scale = life.shape, life.scale
        elif isinstance(life, Exponential):
            self.shape, self.scale = 1.0, life.mean_
        else:
            raise ValueError(f"{spec.name}: the naive baseline has hazards for weibull and exponential lives only")
        self.lead_s = spec.precursor.lead_time_days * DAY_S if spec.precursor is not None else 0.0
        self.drift = [0.0] * len(sensors)
        if spec.precursor is not None:
            self.drift[sensors.index(spec.precursor.sensor)] = spec.precursor.delta
        self.effect = [0.0] * len(sensors)
        for effect in spec.effects:
            self.effect[sensors.index(effect.sensor)] += effect.delta

    def strike_probability(self, age_days: float, dt_days: float) -> float:
        """Chance that the mode strikes within ``dt_days`` at ``age_days`` (hazard taken constant over the tick)."""
        if self.shape == 1.0:
            hazard = 1.0 / self.scale
        else:
            hazard = (self.shape / self.scale) * (age_days / self.scale) ** (self.shape - 1.0)
        return 1.0 - math.exp(-hazard * dt_days)


class NaiveWorld:
    """Every device of every fleet as its own SimPy process publishing per-device JSON telemetry."""

    def __init__(self, scenario: Scenario, *, seed: int | None = None, topics: Topics | None = None) -> None:
        self.scenario = scenario
        self.seed = scenario.seed if seed is None else seed
        self.topics = topics or Topics()
        self.env = simpy.Environment()
        self.readings = 0
        self.failures = 0
        self._outbox: list[tuple[str, bytes]] = []
        for fleet in scenario.fleets:
            names = [s.name for s in fleet.sensors]
            modes = [_Mode(m, names) for m in fleet.failure_modes]
            age_rng = random.Random(f"{self.seed}/{fleet.name}/age")
            for i in range(fleet.count):
                age_days = float(fleet.age_days.ppf(age_rng.random()))
                self.env.process(self._device(fleet, modes, i, age_days))

    def advance(self, until: float) -> list[tuple[str, bytes]]:
        """Run to ``until`` and return every (topic, payload) published since the last call."""
        if until > self.env.now:
            self.env.run(until=until)
        out, self._outbox = self._outbox, []
        return out

    def _device(
        self, fleet: Fleet, modes: list[_Mode], index: int, age_days: float
    ) -> Generator[simpy.Event, Any, None]:
        env = self.env
        device_id = f"{fleet.name}-{index:06d}"
        topic = self.topics.telemetry(device_id)
        rng = random.Random(f"{self.seed}/{fleet.name}/{index}")
        names = [s.name for s in fleet.sensors]
        sensors = [(s.name, s.baseline, s.noise_sd) for s in fleet.sensors]
        state = [_HEALTHY] * len(modes)
        onset = [0.0] * len(modes)
        interval = fleet.telemetry_interval_s
        dt_days = interval / DAY_S
        seq = 0
        while True:
            now = env.now
            if seq:  # did anything strike during the interval just ended?
                age = age_days + now / DAY_S
                for j, mode in enumerate(modes):
                    if state[j] == _HEALTHY and rng.random() < mode.strike_probability(age, dt_days):
                        state[j], onset[j] = _DRIFTING, now
                    if state[j] == _DRIFTING and now - onset[j] >= mode.lead_s:
                        state[j] = _FAILED
                        self.failures += 1
            values = {name: base + rng.gauss(0.0, sd) for name, base, sd in sensors}
            for j, mode in enumerate(modes):
                if state[j] == _FAILED:
                    for k, name in enumerate(names):
                        values[name] += mode.effect[k]
                elif state[j] == _DRIFTING:
                    frac = (now - onset[j]) / mode.lead_s
                    for k, name in enumerate(names):
                        values[name] += mode.drift[k] * frac
            message = Telemetry(device_id=device_id, ts=now, boot_id=0, seq=seq, values=values)
            self._outbox.append((topic, msgspec.json.encode(message)))
            self.readings += 1
            seq += 1
            yield env.timeout(interval)
