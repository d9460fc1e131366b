"""The engine's metrics: Prometheus counters follow the engine's counters, one registry per engine, a live snapshot."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from contracts import Contact, EngineConfig, IssueType, Telemetry, ThresholdRule
from support_engine.core.actions import Action, CreateWorkOrder, Notify, OrderConsumable, Outbound, SendCommand
from support_engine.core.engine import Engine
from support_engine.metrics import Campaign, EngineMetrics

NAMES = (
    "sot_messages_ingested_total",
    "sot_messages_rejected_total",
    "sot_messages_duplicates_total",
    "sot_ingest_lag_seconds",
    "sot_open_cases",
    "sot_sla_breaches_total",
    "sot_cases_opened_total",
    "sot_work_orders_total",
    "sot_commands_total",
    "sot_readings_total",
    "sot_readings_missing_total",
    "sot_readings_late_total",
    "sot_broker_sessions_lost_total",
)


def config() -> EngineConfig:
    return EngineConfig(
        rules=[
            ThresholdRule(name="hot", sensor="temp", above=10.0, issue="cooling"),
            ThresholdRule(name="crashing", sensor="crashes", above=5.0, issue="firmware"),
        ],
        issues={
            "cooling": IssueType(skill="refrigeration", parts=["compressor"], priority=1),
            "firmware": IssueType(skill="general", remote="ota", ota_version="2.0", rollout_after=1),
        },
        symptoms={"not_cooling": "cooling", "stuck": "firmware"},
    )


def telemetry(device: str, ts: float, temp: float, seq: int = 1) -> Telemetry:
    return Telemetry(device_id=device, ts=ts, boot_id=1, seq=seq, values={"temp": temp, "crashes": 0.0})


def contact(device: str, ts: float, symptom: str) -> Contact:
    return Contact(contact_id=f"c-{device}", owner_id="o", device_id=device, channel="phone", ts=ts, symptom=symptom)


def outbound(actions: list[Action]) -> list[Outbound]:
    return [a for a in actions if isinstance(a, (CreateWorkOrder, Notify, SendCommand, OrderConsumable))]


def value(m: EngineMetrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


def test_prometheus_counters_follow_the_engine_counters_by_difference() -> None:
    m = EngineMetrics()
    m.counted({"msg_ingested": 3, "msg_rejected": 2, "msg_rejected_json": 1, "msg_rejected_schema": 1})
    m.counted({"msg_ingested": 5, "msg_rejected": 3, "msg_rejected_json": 2, "msg_rejected_schema": 1})
    assert m.snapshot.counters["msg_ingested"] == 5  # the snapshot holds the latest counters as given
    m.counted({"msg_duplicates": 4, "readings": 120, "sla_breaches": 1, "work_orders": 2, "cases_opened_contact": 2})
    assert value(m, "sot_messages_ingested_total") == 5
    assert value(m, "sot_messages_rejected_total", reason="json") == 2
    assert value(m, "sot_messages_rejected_total", reason="schema") == 1
    assert value(m, "sot_messages_duplicates_total") == 4
    assert value(m, "sot_readings_total") == 120
    assert value(m, "sot_sla_breaches_total") == 1
    assert value(m, "sot_work_orders_total") == 2
    assert value(m, "sot_cases_opened_total", origin="contact") == 2
    assert value(m, "sot_cases_opened_total", origin="telemetry") == 0  # known labels start at 0


def test_a_restored_engine_starts_its_counters_where_it_left_off() -> None:
    core = Engine(config())
    core.stats["readings"] = 40
    m = EngineMetrics()
    m.start(core, {"msg_ingested": 7})
    assert value(m, "sot_messages_ingested_total") == 7
    assert value(m, "sot_readings_total") == 40
    assert m.snapshot.committed_wall_s is None  # nothing handled yet by this process


def test_a_commit_updates_gauges_commands_lag_and_the_snapshot() -> None:
    core = Engine(config())
    m = EngineMetrics(clock="wall", speed=1.0)
    m.start(core, {})
    actions = core.handle(telemetry("fridge-1", 100.0, 4.0), 100.0)
    actions += core.handle(telemetry("fridge-2", 100.0, 15.0), 100.0)  # hot: alert, case, work order
    actions += core.handle(contact("fridge-3", 101.0, "not_cooling"), 101.0)
    m.committed(
        core, {**core.stats, "msg_ingested": 3}, outbound(actions), ts=[100.0, 100.0, 101.0], now=101.5, step_s=0.25
    )

    assert value(m, "sot_open_cases") == 2
    assert value(m, "sot_cases_opened_total", origin="telemetry") == 1
    assert value(m, "sot_cases_opened_total", origin="contact") == 1
    assert value(m, "sot_work_orders_total") == 2
    assert value(m, "sot_readings_total") == 2
    assert value(m, "sot_ingest_lag_seconds_count") == 3
    assert value(m, "sot_ingest_lag_seconds_sum") == pytest.approx(1.75 + 1.75 + 0.75)
    snap = m.snapshot
    assert snap.engine_now_s == 101.5 and snap.committed_wall_s is not None
    assert dict(snap.open_case_of) == dict(core.open_case_of)
    assert snap.latest_values("fridge-2") == {"crashes": 0.0, "temp": 15.0}
    assert snap.last_seen_s("fridge-1") == 100.0
    assert snap.last_seen_s("fridge-3") is None  # heard of by a contact only

    # The snapshot is a copy: the core moves on, the published snapshot does not.
    core.handle(telemetry("fridge-2", 200.0, 3.0, seq=2), 200.0)
    assert snap.latest_values("fridge-2")["temp"] == 15.0
    with pytest.raises(TypeError):
        snap.open_case_of["x"] = "y"  # type: ignore[index]
    with pytest.raises(ValueError, match="read-only"):
        snap.last_seen[0] = 1.0


def test_a_wall_clock_lag_is_in_real_seconds_and_never_negative() -> None:
    core = Engine(config())
    m = EngineMetrics(clock="wall", speed=3600.0)  # a live run: one real second is an engine hour
    m.committed(core, dict(core.stats), [], ts=[0.0, 7200.0], now=3600.0, step_s=0.0)
    assert value(m, "sot_ingest_lag_seconds_count") == 2
    assert value(m, "sot_ingest_lag_seconds_sum") == pytest.approx(1.0)  # 1 s, and 0 for the one ahead of us


def test_an_event_clock_observes_each_steps_processing_time() -> None:
    core = Engine(config())
    m = EngineMetrics(clock="event")
    m.committed(core, dict(core.stats), [], ts=[1.0, 2.0, 3.0], now=900.0, step_s=0.2)
    assert value(m, "sot_ingest_lag_seconds_count") == 1
    assert value(m, "sot_ingest_lag_seconds_sum") == pytest.approx(0.2)


def test_commands_are_counted_by_action_and_a_rollout_is_a_campaign() -> None:
    core = Engine(config())
    m = EngineMetrics()
    actions: list[Action] = []
    for i, device in enumerate(("d1", "d2", "d3")):
        actions += core.handle(telemetry(device, 10.0 + i, 4.0), 10.0 + i)
    m.committed(core, dict(core.stats), outbound(actions), ts=[10.0, 11.0, 12.0], now=12.0, step_s=0.0)
    assert m.snapshot.campaigns == ()

    actions = core.handle(contact("d1", 20.0, "stuck"), 20.0)  # the first case of firmware: OTA to all
    m.committed(core, dict(core.stats), outbound(actions), ts=[20.0], now=20.0, step_s=0.0)
    assert value(m, "sot_commands_total", action="ota") == 3  # d1's own, then d2 and d3
    assert value(m, "sot_commands_total", action="reset") == 0
    assert m.snapshot.campaigns == (Campaign("firmware", "2.0", 2, 20.0),)


def test_each_engine_has_its_own_registry() -> None:
    a, b = EngineMetrics(), EngineMetrics()
    a.counted({"msg_ingested": 5})
    assert value(a, "sot_messages_ingested_total") == 5
    assert value(b, "sot_messages_ingested_total") == 0
    assert REGISTRY.get_sample_value("sot_messages_ingested_total") is None  # the global registry is untouched


def test_the_text_exposition_names_every_metric() -> None:
    m = EngineMetrics()
    m.counted({"msg_rejected_json": 1})
    text = m.exposition().decode()
    for name in NAMES:
        assert name in text
    assert "# TYPE sot_ingest_lag_seconds histogram" in text
    assert 'sot_messages_rejected_total{reason="json"} 1.0' in text


def test_losses_the_engine_sees_are_counted_for_prometheus() -> None:
    m = EngineMetrics()
    m.counted({"readings_missing": 3, "readings_late": 1, "broker_session_lost": 1})
    m.counted({"readings_missing": 5, "readings_late": 1, "broker_session_lost": 2})
    assert value(m, "sot_readings_missing_total") == 5
    assert value(m, "sot_readings_late_total") == 1
    assert value(m, "sot_broker_sessions_lost_total") == 2


def test_speed_must_be_positive() -> None:
    with pytest.raises(ValueError, match="speed"):
        EngineMetrics(speed=0.0)
