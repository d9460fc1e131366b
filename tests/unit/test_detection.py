"""Trend and anomaly rules over columnar twins: remaining useful life, run-out, rate of change, CUSUM."""

from __future__ import annotations

import numpy as np
import pytest

from contracts.engine_config import AnomalyRule, EngineConfig, IssueType, ThresholdRule, TrendRule
from contracts.messages import Telemetry
from support_engine.core.engine import Engine
from support_engine.core.twins import Rule, Twins

HOUR = 3600.0


def feed(twins: Twins, series: np.ndarray, step_s: float = HOUR, sensor: str = "x") -> list[tuple[int, int, float]]:
    """Feed ``series`` (time, devices) one timestamp at a time; return (slot, rule, t) of each alert raised."""
    n = series.shape[1]
    slots = np.array([twins.slot(f"d{i}") for i in range(n)], dtype=np.int64)
    raised = []
    for k, row in enumerate(series):
        t = k * step_s
        fired = twins.ingest(slots, np.full(n, t), np.full(n, k), {sensor: row})
        raised += [(s, r, ts) for s, r, ts, _ in fired.raised]
    return raised


def first_alert(raised: list[tuple[int, int, float]], slot: int) -> float | None:
    times = [t for s, _, t in raised if s == slot]
    return min(times) if times else None


def test_remaining_useful_life_fires_when_the_trend_reaches_the_level_within_the_horizon() -> None:
    rule = TrendRule(name="wear", sensor="x", issue="i", window_s=24 * HOUR, reaches=0.0, within_s=48 * HOUR)
    rng = np.random.default_rng(1)
    hours = np.arange(200)
    wearing = 100.0 - 0.5 * hours + rng.normal(0, 0.5, hours.size)  # reaches 0 at hour 200
    healthy = 100.0 + rng.normal(0, 0.5, hours.size)
    raised = feed(Twins([rule]), np.stack([wearing, healthy], axis=1))
    t = first_alert(raised, 0)
    assert t is not None and 145 * HOUR <= t <= 160 * HOUR  # about 48 h before it reaches 0
    assert first_alert(raised, 1) is None


def test_a_consumable_run_out_forecast_fires_a_lead_time_ahead_whatever_the_drain_rate() -> None:
    rule = TrendRule(name="ink_out", sensor="x", issue="i", window_s=48 * HOUR, reaches=0.0, within_s=72 * HOUR)
    hours = np.arange(400)
    fast = np.maximum(100.0 - 1.0 * hours, 0.0)  # empty at hour 100
    slow = np.maximum(100.0 - 0.3 * hours, 0.0)  # empty at hour 333
    raised = feed(Twins([rule]), np.stack([fast, slow], axis=1))
    assert first_alert(raised, 0) == pytest.approx(28 * HOUR, abs=2 * HOUR)
    assert first_alert(raised, 1) == pytest.approx(261 * HOUR, abs=4 * HOUR)


def test_rate_of_change_fires_on_a_fast_rise_only() -> None:
    rule = TrendRule(name="heating", sensor="x", issue="i", window_s=6 * HOUR, slope_above=2.0)
    hours = np.arange(60)
    slow = 20.0 + 0.5 * hours
    fast = 20.0 + np.where(hours > 30, 4.0 * (hours - 30), 0.0)
    raised = feed(Twins([rule]), np.stack([slow, fast], axis=1))
    assert first_alert(raised, 0) is None
    t = first_alert(raised, 1)
    assert t is not None and 31 * HOUR <= t <= 40 * HOUR


def test_cusum_catches_a_small_shift_that_no_threshold_would_and_stays_quiet_on_noise() -> None:
    rule = AnomalyRule(name="odd", sensor="x", issue="i", alpha=0.01, k=0.5, h=8.0, warm_up=50)
    rng = np.random.default_rng(2)
    n_devices, steps = 200, 600
    series = rng.normal(10.0, 1.0, (steps, n_devices))
    series[400:, :20] += 1.5  # twenty devices shift by 1.5 sd at step 400
    raised = feed(Twins([rule]), series)
    shifted = {s for s, _, t in raised if s < 20 and t >= 400 * HOUR}
    false_alarms = [s for s, _, _ in raised if s >= 20]
    assert len(shifted) == 20
    delays = [first_alert([x for x in raised if x[2] >= 400 * HOUR], s) for s in range(20)]
    assert max(d for d in delays if d is not None) <= 440 * HOUR  # within 40 readings
    watched = (n_devices - 20) * (steps - 50)  # readings scored on steady devices
    assert len(false_alarms) / watched < 1 / 5000  # an in-control run length in the thousands


def test_forget_rearms_every_kind_of_rule_for_one_device() -> None:
    rules: list[Rule] = [
        TrendRule(name="t", sensor="x", issue="i", reaches=0.0, within_s=10 * HOUR, min_readings=3),
        AnomalyRule(name="a", sensor="x", issue="i", warm_up=3),
    ]
    twins = Twins(rules)
    feed(twins, np.array([[10.0], [8.0], [6.0], [4.0]]))
    assert twins.alerting[0, 0]
    twins.forget(0)
    assert not twins.alerting[:, 0].any()
    assert np.isnan(twins.trend[0, 5, 0]) and (twins.anomaly[:, :, 0] == 0).all()


def test_a_missing_reading_leaves_the_rule_as_it_was() -> None:
    rule = TrendRule(name="t", sensor="x", issue="i", reaches=0.0, within_s=10 * HOUR, min_readings=3)
    twins = Twins([rule])
    feed(twins, np.array([[10.0], [8.0], [6.0], [np.nan], [4.0]]))
    assert np.isfinite(twins.trend[0, :, 0]).all() and twins.alerting[0, 0]


def test_rule_names_are_unique_across_kinds_and_trend_rules_need_one_kind_of_condition() -> None:
    issues = {"i": IssueType(skill="s")}
    with pytest.raises(ValueError, match="unique"):
        EngineConfig(
            issues=issues,
            trends=[TrendRule(name="same", sensor="x", issue="i", slope_above=1.0)],
            anomalies=[AnomalyRule(name="same", sensor="x", issue="i")],
        )
    with pytest.raises(ValueError, match="either"):
        TrendRule(name="t", sensor="x", issue="i")
    with pytest.raises(ValueError, match="together"):
        TrendRule(name="t", sensor="x", issue="i", reaches=0.0)


def test_readings_handled_together_act_as_one_by_one_and_keep_sensors_they_did_not_carry() -> None:
    config = EngineConfig(
        rules=[ThresholdRule(name="hot", sensor="temp", above=30.0, for_s=0.0, issue="i")],
        issues={"i": IssueType(skill="s")},
    )
    messages = [
        Telemetry(
            device_id=f"d{d}", ts=float(t), boot_id=1, seq=t, values={"temp": 20.0 + 5 * t * (d % 2), "door": 1.0}
        )
        for t in range(4)
        for d in range(3)
    ]
    messages.append(Telemetry(device_id="d1", ts=9.0, boot_id=1, seq=9, values={"temp": 10.0}))  # no door reading
    together, apart = Engine(config), Engine(config)
    assert together.handle_readings(messages) == [a for m in messages for a in apart.handle(m, m.ts)]
    assert together.snapshot() == apart.snapshot()
    slot = together.twins.slot_of["d1"]
    assert together.twins.values["door"][slot] == 1.0 and together.twins.values["temp"][slot] == 10.0
