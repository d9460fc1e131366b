"""The healthy noise model of a fleet's sensors, and what it says about threshold rules in closed form.

A healthy device reads each sensor as its baseline plus independent Gaussian noise (a consumable:
full, with its own noise), one reading per telemetry interval, as :class:`~sim.fleet.FleetState`
makes them. A threshold rule with persistence ``for_s`` fires on a run of k breaching readings in a
row, so with p the chance that one reading breaches it, runs start at (1 - p) p^k per reading. The
lint's dry run measures the same thing with the engine's own code; these give its hints.
"""

from __future__ import annotations

import math

from scipy import stats

from contracts.engine_config import ThresholdRule
from sim.fleet import DAY_S
from sim.scenario import Fleet

__all__ = [
    "TARGET_PER_1000",
    "counter",
    "expected_false_alarms",
    "healthy_level",
    "levels",
    "quiet_for_s",
    "quiet_level",
]

TARGET_PER_1000 = 1.0
"""The false alarms per 1,000 device-days a suggested threshold stays under."""


def healthy_level(fleet: Fleet, sensor: str) -> tuple[float, float]:
    """A sensor's healthy mean and noise sd (a consumable's: full, with its own noise)."""
    for s in fleet.sensors:
        if s.name == sensor:
            return s.baseline, s.noise_sd
    for c in fleet.consumables:
        if c.sensor == sensor:
            return c.capacity, c.noise_sd
    raise KeyError(sensor)


def counter(fleet: Fleet, sensor: str) -> bool:
    """Whether ``sensor`` is a counter (running hours, cycles): it rises with use, not about a level."""
    return any(s.name == sensor and s.rises_per_day > 0 for s in fleet.sensors)


def _readings_in_a_row(for_s: float, interval_s: float) -> int:
    """Breaching readings in a row that a threshold with persistence ``for_s`` needs to fire."""
    return math.ceil(for_s / interval_s - 1e-9) + 1


def _breach(rule: ThresholdRule, mean: float, sd: float) -> float:
    """Probability that one healthy reading breaches the rule's level."""
    if rule.above is not None:
        return float(stats.norm.sf((rule.above - mean) / sd)) if sd > 0 else float(mean > rule.above)
    assert rule.below is not None
    return float(stats.norm.cdf((rule.below - mean) / sd)) if sd > 0 else float(mean < rule.below)


def expected_false_alarms(rule: ThresholdRule, mean: float, sd: float, interval_s: float) -> float | None:
    """False alarms per 1,000 device-days of a threshold rule on healthy readings (None: it fires once
    and stays on)."""
    p = _breach(rule, mean, sd)
    if p >= 1.0:
        return None
    k = _readings_in_a_row(rule.for_s, interval_s)
    return 1000.0 * DAY_S / interval_s * (1.0 - p) * p**k


def _per_reading(per_1000: float, interval_s: float) -> float:
    return per_1000 / 1000.0 * interval_s / DAY_S


def quiet_level(
    above: bool, mean: float, sd: float, interval_s: float, for_s: float, per_1000: float = TARGET_PER_1000
) -> float:
    """The level an ``above`` (or ``below``) rule with ``for_s`` needs for fewer than ``per_1000`` false alarms."""
    p = _per_reading(per_1000, interval_s) ** (1.0 / _readings_in_a_row(for_s, interval_s))
    z = float(stats.norm.isf(p))
    return mean + z * sd if above else mean - z * sd


def quiet_for_s(
    rule: ThresholdRule, mean: float, sd: float, interval_s: float, per_1000: float = TARGET_PER_1000
) -> float | None:
    """The persistence that keeps ``rule`` at its level under ``per_1000`` false alarms (None: none does)."""
    p = _breach(rule, mean, sd)
    if not 0.0 < p < 0.5:
        return None
    k = math.ceil(math.log(_per_reading(per_1000, interval_s) / (1.0 - p)) / math.log(p))
    return max(k - 1, 0) * interval_s


def levels(fleet: Fleet, sensor: str) -> list[tuple[str, float]]:
    """The noise-free levels a sensor takes: healthy, at the end of each precursor, during each failure,
    and a consumable's empty, each with what takes it there."""
    mean, _ = healthy_level(fleet, sensor)
    out = [("healthy", mean)]
    for m in fleet.failure_modes:
        if m.precursor is not None and m.precursor.sensor == sensor:
            out.append((f"{m.name}'s precursor", mean + m.precursor.delta))
        shift = sum(e.delta for e in m.effects if e.sensor == sensor)
        if shift:
            out.append((f"{m.name}'s failure", mean + shift))
    out += [(f"{c.name} run empty", 0.0) for c in fleet.consumables if c.sensor == sensor]
    return out
