"""A dry run of the engine's rules on the fleets' own sensor models: healthy devices, and each way they fail.

The readings come from the world's :class:`~sim.fleet.FleetState` (baseline, noise, precursor drift,
failure effects, consumable levels: the arithmetic of a run) and the rules are evaluated by the
engine's :class:`~support_engine.core.twins.Twins` (persistence, trend fits, CUSUM: the code of a
run), so that the dry run cannot disagree with either. No broker, no engine process, no cases:
only which rule fires on which device, and when.

One pass feeds every fleet's devices side by side, each on its own telemetry interval:

- healthy devices (no mode ever due, consumables full): every alert they raise is a false alarm;
- for each failure mode and consumable, :data:`FAILURES` devices that all fail at the same onset
  (a consumable: run empty then), their precursor drifting before it and their effects on after
  it for :data:`WATCH_S` (less when the mode restores itself).

Only the last :data:`PRECURSOR_SPAN_S` of a long precursor is run: its drift starts where it would
be by then, so a rule that fires earlier is seen firing from the start of that span.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import msgspec
import numpy as np
import numpy.typing as npt

from contracts.engine_config import AnomalyRule, EngineConfig, ThresholdRule, TrendRule
from sim.distributions import sample
from sim.fleet import DAY_S, FleetState
from sim.scenario import Fleet
from support_engine.core.twins import Twins

__all__ = [
    "FAILURES",
    "PRECURSOR_SPAN_S",
    "WATCH_S",
    "DryRun",
    "Hit",
    "ModeRun",
    "Rule",
    "dry_run",
    "moved_sensors",
    "applies",
    "rules_for",
]

Rule = ThresholdRule | TrendRule | AnomalyRule
Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
FAILURES = 25
"""Devices run through each failure mode (and each consumable's run-out)."""
PRECURSOR_SPAN_S = 7 * DAY_S
"""At most this much of a precursor (its end, where rules fire) is run."""
WATCH_S = 2 * DAY_S
"""How long a failure is watched after its onset (a rule slower than that misses it)."""


class Hit(msgspec.Struct, frozen=True, kw_only=True):
    """What one rule did on the devices run through one mode."""

    share: float  # of the mode's devices on which it fired in the mode's window
    before_onset: float  # of the mode's devices on which it fired before the failure (its precursor)
    median_lead_h: float | None  # hours from its first firing to the onset (negative: after), median


class ModeRun(msgspec.Struct, frozen=True, kw_only=True):
    """One failure mode or consumable and the rules that fired on its devices (by rule name)."""

    name: str
    consumable: bool
    hits: dict[str, Hit]


class DryRun(msgspec.Struct, frozen=True, kw_only=True):
    """The rules of one fleet on its healthy devices and through its modes."""

    fleet: str
    interval_s: float
    rules: list[str]
    device_days: float  # of healthy devices
    false_alarms: dict[str, int]  # alerts raised on healthy devices, by rule name
    modes: list[ModeRun]
    onset_s: float

    def per_1000_device_days(self, rule: str) -> float:
        """False alarms of ``rule`` per 1,000 healthy device-days."""
        return 1000.0 * self.false_alarms[rule] / self.device_days


def applies(rule: Rule, fleet: Fleet) -> bool:
    """Whether ``rule`` watches ``fleet``: scoped to its product (or to none), on a sensor it reports."""
    sensors = {s.name for s in fleet.sensors} | {c.sensor for c in fleet.consumables}
    return rule.sensor in sensors and (not rule.products or fleet.product in rule.products)


def rules_for(engine: EngineConfig, fleet: Fleet) -> list[Rule]:
    """The engine's rules that watch ``fleet``."""
    return [r for r in engine.all_rules if applies(r, fleet)]


def moved_sensors(fleet: Fleet, mode: str) -> dict[str, float]:
    """The sensors a mode or consumable moves away from healthy, with the sign of the move (+1/-1; 0: both)."""
    for m in fleet.failure_modes:
        if m.name == mode:
            moves: dict[str, set[float]] = {}
            if m.precursor is not None and m.precursor.delta:
                moves.setdefault(m.precursor.sensor, set()).add(math.copysign(1.0, m.precursor.delta))
            total: dict[str, float] = {}
            for e in m.effects:
                total[e.sensor] = total.get(e.sensor, 0.0) + e.delta
            for sensor, delta in total.items():
                if delta:
                    moves.setdefault(sensor, set()).add(math.copysign(1.0, delta))
            return {s: signs.pop() if len(signs) == 1 else 0.0 for s, signs in moves.items()}
    for c in fleet.consumables:
        if c.name == mode:
            return {c.sensor: -1.0}
    raise KeyError(mode)


def _warm_up_s(rules: Sequence[Rule], interval_s: float) -> float:
    """Healthy readings to run before any precursor starts: a trend's window, twice an anomaly's warm-up
    (at most :data:`PRECURSOR_SPAN_S`: a longer trend window runs on what it has, as on a new device)."""
    warm = [0.0]
    for rule in rules:
        if isinstance(rule, TrendRule):
            warm.append(max(rule.window_s, rule.min_readings * interval_s))
        elif isinstance(rule, AnomalyRule):
            warm.append(2.0 * rule.warm_up * interval_s)
    return min(max(warm), PRECURSOR_SPAN_S)


class _Feed:
    """One fleet's devices in the shared twins: healthy ones first, then ``failures`` per mode."""

    def __init__(
        self, fleet: Fleet, offset: int, onset_s: float, end_s: float, device_days: float, seed: int, failures: int
    ) -> None:
        self.fleet = fleet
        self.dt = dt = fleet.telemetry_interval_s
        self.onset = math.ceil(onset_s / dt - 1e-9) * dt  # its first reading at or after the shared onset
        self.ticks = np.arange(int(end_s // dt) + 1) * dt
        self.healthy = max(1, math.ceil(device_days / (len(self.ticks) * dt / DAY_S)))
        self.failures = failures
        self.modes = [m.name for m in fleet.failure_modes] + [c.name for c in fleet.consumables]
        self.n = n = self.healthy + len(self.modes) * failures
        self.offset = offset
        self.state = state = FleetState(msgspec.structs.replace(fleet, count=n), seed)
        state.next_fail[:] = math.inf  # nothing ever fails, no consumable ever drains: healthy
        state.failed[:] = False
        rng = np.random.default_rng([seed, 1])
        self.restore_at = np.full((len(self.modes), failures), math.inf)
        window = np.zeros((len(self.modes), failures))  # when each mode's device starts to be watched
        for j, mode in enumerate(fleet.failure_modes):
            lead = min(mode.precursor.lead_time_days * DAY_S, PRECURSOR_SPAN_S) if mode.precursor else 0.0
            window[j] = self.onset - lead
            if mode.self_restore_h is not None:
                self.restore_at[j] = self.onset + sample(mode.self_restore_h, rng, failures) * 3600.0
        for j in range(len(self.modes)):
            state.next_fail[j, self._devices(j)] = self.onset
        self.window = window.reshape(-1)
        self.restoring = [j for j in range(len(self.modes)) if np.isfinite(self.restore_at[j]).any()]
        self.due = True
        self.next_tick = 0

    def _devices(self, j: int) -> slice:
        return slice(self.healthy + j * self.failures, self.healthy + (j + 1) * self.failures)

    def readings(self, t: float) -> Floats:
        """The fleet's readings at ``t``, its failures falling due and restoring themselves as in the world."""
        state = self.state
        if self.due and t >= self.onset:  # the failures fall due: precursors stop, effects start
            self.due = False
            for j in range(len(self.modes)):
                state.failed[j, self._devices(j)] = True
        for j in self.restoring:
            cols = self._devices(j)
            back = state.failed[j, cols] & (t >= self.restore_at[j])
            state.failed[j, cols] &= ~back
            state.next_fail[j, cols] = np.where(back, math.inf, state.next_fail[j, cols])  # no precursor again
        return state.readings(t)


def dry_run(
    fleets: Sequence[Fleet], rules: Sequence[Rule], *, device_days: float, seed: int, failures: int = FAILURES
) -> list[DryRun]:
    """Run ``rules`` on each fleet's healthy devices (about ``device_days``) and through each of its modes.

    Every fleet feeds the same twins, each on its own reporting interval and with ``NaN`` for the
    sensors it lacks (the engine leaves a rule alone on a reading without its sensor), so that one
    pass serves a whole scenario. A rule counts for the fleets it applies to (:func:`applies`).
    """
    onset = 0.0
    for fleet in fleets:
        mine = [r for r in rules if applies(r, fleet)]
        leads = [min(m.precursor.lead_time_days * DAY_S, PRECURSOR_SPAN_S) for m in fleet.failure_modes if m.precursor]
        onset = max(onset, _warm_up_s(mine, fleet.telemetry_interval_s) + max(leads, default=0.0))
    end = onset + WATCH_S
    feeds: list[_Feed] = []
    for fleet in fleets:
        offset = feeds[-1].offset + feeds[-1].n if feeds else 0
        feeds.append(_Feed(fleet, offset, onset, end, device_days, seed, failures))
    n = feeds[-1].offset + feeds[-1].n if feeds else 0
    twins = Twins(rules, capacity=max(n, 1))
    slots = np.array([twins.slot(f"lint-{k}") for k in range(n)], dtype=np.int64)
    for feed in feeds:
        for slot in range(feed.offset, feed.offset + feed.n):
            twins.set_product(slot, feed.fleet.product)
    sensors = sorted({name for feed in feeds for name in feed.state.sensor_names})
    rows = [np.array([sensors.index(name) for name in feed.state.sensor_names], dtype=np.int64) for feed in feeds]
    raised = np.zeros((len(rules), n), dtype=np.int64)
    first = [np.full((len(rules), feed.n - feed.healthy), math.nan) for feed in feeds]
    times = np.unique(np.concatenate([feed.ticks for feed in feeds])) if feeds else np.zeros(0)
    batches: dict[tuple[int, ...], Ints] = {}  # the slots of each set of fleets reading at the same time
    for t in times.tolist():
        due = tuple(k for k, f in enumerate(feeds) if f.next_tick < len(f.ticks) and f.ticks[f.next_tick] == t)
        here = batches.get(due)
        if here is None:
            here = batches[due] = np.concatenate([slots[feeds[k].offset : feeds[k].offset + feeds[k].n] for k in due])
        block = np.full((len(sensors), len(here)), math.nan)  # NaN: a fleet without the sensor
        seq = np.empty(len(here), dtype=np.int64)
        at = 0
        for k in due:
            feed = feeds[k]
            block[rows[k], at : at + feed.n] = feed.readings(t)
            seq[at : at + feed.n] = feed.next_tick
            at += feed.n
        fired = twins.ingest(here, np.full(len(here), t), seq, dict(zip(sensors, block, strict=True)))
        for slot, r, _, _ in fired.raised:
            raised[r, slot] += 1
        for k in due:
            feed = feeds[k]
            feed.next_tick += 1
            new = twins.alerting[: len(rules), feed.offset + feed.healthy : feed.offset + feed.n]
            new = new & (t >= feed.window) & np.isnan(first[k])
            if new.any():
                first[k][new] = t
    return [_result(feed, rules, raised, first[k]) for k, feed in enumerate(feeds)]


def _result(feed: _Feed, rules: Sequence[Rule], raised: npt.NDArray[np.int64], first: Floats) -> DryRun:
    fleet, failures = feed.fleet, feed.failures
    mine = [(r, rule) for r, rule in enumerate(rules) if applies(rule, fleet)]
    runs = []
    for j, name in enumerate(feed.modes):
        hits = {}
        for r, rule in mine:
            f = first[r, j * failures : (j + 1) * failures]
            seen = f[np.isfinite(f)]
            if seen.size:
                hits[rule.name] = Hit(
                    share=seen.size / failures,
                    before_onset=float((seen < feed.onset).sum()) / failures,
                    median_lead_h=float(np.median(feed.onset - seen)) / 3600.0,
                )
        runs.append(ModeRun(name=name, consumable=j >= len(fleet.failure_modes), hits=hits))
    healthy = slice(feed.offset, feed.offset + feed.healthy)
    return DryRun(
        fleet=fleet.name,
        interval_s=feed.dt,
        rules=[rule.name for _, rule in mine],
        device_days=feed.healthy * len(feed.ticks) * feed.dt / DAY_S,
        false_alarms={rule.name: int(raised[r, healthy].sum()) for r, rule in mine},
        modes=runs,
        onset_s=feed.onset,
    )
