"""The engine core in operation: per-product rules, registered-only provisioning, twins' reported and
desired state, offline devices, gaps and late readings, alert flapping, contract SLAs, technician
assignment, and the restart of that state. Each story goes through ``Engine`` and reads its actions."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
import pytest

from contracts import (
    BatchView,
    Contact,
    DeviceEvent,
    DeviceRecord,
    EngineConfig,
    IssueType,
    Message,
    Sla,
    Telemetry,
    ThresholdRule,
    decode_batch,
    encode_batch,
)
from contracts.engine_config import Alerting, Offline, Technician
from support_engine.core.actions import (
    Action,
    AlertFlapping,
    CaseChanged,
    ClearAlert,
    CreateWorkOrder,
    DeviceChanged,
    Notify,
    OrderConsumable,
    Provisioned,
    Quarantined,
    RaiseAlert,
    SendCommand,
    SlaBreached,
    SlaWarned,
    WorkOrderChanged,
)
from support_engine.core.engine import Engine, Snapshot
from tests.messages import status

HOUR = 3600.0
WARM = ThresholdRule(name="warm", sensor="temp", above=-10.0, issue="cooling", products=["freezer"])
HOT = ThresholdRule(name="hot", sensor="temp", above=30.0, issue="cooling")  # every product
HANG = ThresholdRule(name="hang", sensor="cpu", above=0.9, issue="frozen_display")
ISSUES = {
    "cooling": IssueType(skill="refrigeration", parts=["compressor"], priority=2),
    "frozen_display": IssueType(skill="electronics", remote="reset"),
    "firmware_bug": IssueType(skill="electronics", remote="ota", ota_version="2.1"),
    "no_signal": IssueType(skill="network", consumable="sim_credit"),  # a top-up: no visit, no command
    "unreachable": IssueType(skill="network"),  # a visit
}
SYMPTOMS = {"not_cooling": "cooling", "screen_frozen": "frozen_display", "wifi_drops": "firmware_bug"}


def make(**changes: object) -> Engine:
    """An engine with the rules and issues above, and ``changes`` to the configuration."""
    fields: dict[str, object] = {
        "rules": [WARM, HOT, HANG],
        "issues": ISSUES,
        "symptoms": SYMPTOMS,
        "fault_codes": {"E42": "cooling"},
    }
    return Engine(EngineConfig(**{**fields, **changes}))  # type: ignore[arg-type]


def freezer(device: str, **fields: object) -> DeviceRecord:
    return DeviceRecord(device_id=device, product="freezer", **fields)  # type: ignore[arg-type]


def reading(device: str, ts: float, seq: int, boot_id: int = 1, **values: float) -> Telemetry:
    return Telemetry(device_id=device, ts=ts, boot_id=boot_id, seq=seq, values=values)


def event(
    device: str, kind: str, code: str, ts: float, *, detail: str = "", command_id: str | None = None, seq: int = 1
) -> DeviceEvent:
    return DeviceEvent(
        device_id=device,
        ts=ts,
        boot_id=1,
        seq=seq,
        kind=kind,  # type: ignore[arg-type]
        code=code,
        detail=detail,
        command_id=command_id,
    )


def contact(device: str, ts: float, symptom: str = "not_cooling") -> Contact:
    return Contact(
        contact_id=f"c-{device}-{ts:g}", owner_id=f"o-{device}", device_id=device, channel="app", ts=ts, symptom=symptom
    )


def batch(
    readings: Sequence[tuple[str, float, float]], *, sensor: str = "temp", roster: Sequence[str] = (), seq: int = 1
) -> BatchView:
    """A decoded gateway batch of (device, ts, value) readings; ``roster`` may name devices without rows."""
    devices = sorted({d for d, _, _ in readings} | set(roster))
    return decode_batch(
        encode_batch(
            gateway_id="gw-1",
            ts=max(t for _, t, _ in readings),
            boot_id=0,
            seq=seq,
            devices=devices,
            index=[devices.index(d) for d, _, _ in readings],
            reading_ts=[t for _, t, _ in readings],
            reading_seq=[seq] * len(readings),
            values={sensor: [v for _, _, v in readings]},
        )
    )


def of(actions: Sequence[object], kind: type) -> list:  # type: ignore[type-arg]
    return [a for a in actions if isinstance(a, kind)]


def play(engine: Engine, messages: Sequence[Message | BatchView], *, at: float | None = None) -> list[Action]:
    """Hand each message to the engine at its own time; then run the timers to ``at``, if given."""
    actions: list[Action] = []
    for m in messages:
        actions += engine.handle(m, getattr(m, "ts", 0.0))
    if at is not None:
        actions += engine.advance(at)
    return actions


def close_out(engine: Engine, wo: str, device: str, start: float, end: float) -> list[Action]:
    """Take a work order through accepted, arrived and fixed after ``start``, and closed at ``end``."""
    steps = [("accepted", start + 1), ("arrived", start + 2), ("fixed", start + 3), ("closed", end)]
    return play(engine, [status(wo, device, what, t, seq) for seq, (what, t) in enumerate(steps, start=1)])


# -- per-product rules --------------------------------------------------------------------------


def test_a_product_rule_fires_for_its_product_only() -> None:
    engine = make()
    engine.provision([freezer("fz-1"), DeviceRecord(device_id="fr-1", product="fridge")])
    actions = play(
        engine, [reading(d, t, n, temp=-5.0) for n, t in enumerate([0.0, 600.0], 1) for d in ["fz-1", "fr-1", "stray"]]
    )
    assert [(a.device_id, a.rule, a.ts) for a in of(actions, RaiseAlert)] == [("fz-1", "warm", 0.0)]
    assert list(engine.open_case_of) == ["fz-1"]


def test_an_unscoped_rule_fires_for_every_device_registered_or_not() -> None:
    engine = make()
    engine.provision([freezer("fz-1"), DeviceRecord(device_id="fr-1", product="fridge")])
    actions = play(engine, [reading(d, 0.0, 1, temp=35.0) for d in ["fz-1", "fr-1", "stray"]])
    assert sorted((a.device_id, a.rule) for a in of(actions, RaiseAlert)) == [
        ("fr-1", "hot"),
        ("fz-1", "hot"),
        ("fz-1", "warm"),
        ("stray", "hot"),
    ]


def test_a_batch_mixing_products_applies_each_rule_to_its_own_products() -> None:
    engine = make()
    engine.provision([freezer("fz-1"), freezer("fz-2"), DeviceRecord(device_id="fr-1", product="fridge")])
    mild = batch([("fz-1", 0.0, -5.0), ("fz-2", 0.0, -20.0), ("fr-1", 0.0, -5.0), ("stray", 0.0, -5.0)], seq=1)
    assert [(a.device_id, a.rule) for a in of(engine.handle(mild, 0.0), RaiseAlert)] == [("fz-1", "warm")]
    hot = batch([(d, 600.0, 35.0) for d in ["fz-1", "fz-2", "fr-1", "stray"]], seq=2)
    assert sorted((a.device_id, a.rule) for a in of(engine.handle(hot, 600.0), RaiseAlert)) == [
        ("fr-1", "hot"),
        ("fz-1", "hot"),
        ("fz-2", "hot"),
        ("fz-2", "warm"),  # fz-1's warm alert is still active: not raised twice
        ("stray", "hot"),
    ]


# -- provisioning and quarantine ----------------------------------------------------------------


def test_registered_provisioning_quarantines_an_unknown_devices_readings_and_events() -> None:
    engine = make(provisioning="registered")
    engine.provision([freezer("fz-1")])
    assert engine.handle(reading("stray", 10.0, 1, temp=50.0), 10.0) == [Quarantined("stray", 10.0)]
    for n, (kind, code) in enumerate([("fault", "E42"), ("firmware", "9.9"), ("config", "setpoint")], start=2):
        assert engine.handle(event("stray", kind, code, 10.0 * n, seq=n), 10.0 * n) == [Quarantined("stray", 10.0 * n)]
    assert engine.stats["quarantined_messages"] == 4
    assert engine.stats["readings"] == engine.stats["device_events"] == 0
    assert engine.cases == {} and engine.alert_of == {} and "stray" not in engine.reported


def test_a_batch_quarantines_its_unknown_rows_and_still_detects_on_the_known_ones() -> None:
    engine = make(provisioning="registered")
    engine.provision([freezer("fz-1")])
    view = batch(
        [("fz-1", 0.0, -5.0), ("stray", 0.0, 50.0), ("stray", 600.0, 50.0), ("ghost", 600.0, 50.0)],
        roster=["idle"],  # on the roster without a reading: nothing to quarantine
    )
    actions = engine.handle(view, 600.0)
    assert of(actions, Quarantined) == [Quarantined("ghost", 600.0), Quarantined("stray", 600.0)]
    assert [(a.device_id, a.rule) for a in of(actions, RaiseAlert)] == [("fz-1", "warm")]
    assert engine.stats["readings_quarantined"] == 3 and engine.stats["readings"] == 1
    assert engine.stats["quarantined_messages"] == 2
    assert list(engine.open_case_of) == ["fz-1"]


def test_a_device_is_served_once_provisioned() -> None:
    engine = make(provisioning="registered")
    assert engine.handle(reading("fz-9", 0.0, 1, temp=50.0), 0.0) == [Quarantined("fz-9", 0.0)]
    record = freezer("fz-9", firmware="1.0")
    assert engine.provision([record], ts=5.0)[0] == Provisioned(record)
    actions = engine.handle(reading("fz-9", 10.0, 2, temp=50.0), 10.0)
    assert sorted(a.rule for a in of(actions, RaiseAlert)) == ["hot", "warm"] and of(actions, Quarantined) == []
    assert engine.handle(event("fz-9", "firmware", "1.1", 20.0), 20.0)[0].reported == {"firmware": "1.1"}
    assert engine.stats["quarantined_messages"] == 1


def test_open_provisioning_serves_every_device() -> None:
    engine = make()
    alerts = engine.handle(reading("stray", 0.0, 1, temp=50.0), 0.0)
    assert [a.rule for a in of(alerts, RaiseAlert)] == ["hot"]
    fault = engine.handle(event("stray-2", "fault", "E42", 10.0), 10.0)
    assert of(fault, CaseChanged)[0].origin == "device"
    assert engine.handle(event("stray-3", "firmware", "9.9", 20.0), 20.0)[0].reported == {"firmware": "9.9"}
    assert engine.stats["quarantined_messages"] == 0 and len(engine.cases) == 2


def test_an_owner_is_served_about_an_unregistered_device() -> None:
    engine = make(provisioning="registered")
    actions = engine.handle(contact("stray", 10.0), 10.0)
    assert of(actions, Quarantined) == []
    assert [(a.origin, a.state) for a in of(actions, CaseChanged)] == [("contact", "in_progress")]
    assert [a.message.device_id for a in of(actions, CreateWorkOrder)] == ["stray"]


# -- twins: reported and desired state ----------------------------------------------------------


def test_provisioning_reports_the_firmware_and_wants_the_products_settings() -> None:
    engine = make(settings={"freezer": {"setpoint": "-18"}})
    fz, fr = freezer("fz-1", firmware="1.0"), DeviceRecord(device_id="fr-1", product="fridge")
    assert engine.provision([fz, fr], ts=5.0) == [
        Provisioned(fz),
        DeviceChanged("fz-1", 5.0, {"firmware": "1.0"}, {"setpoint": "-18"}, False),
        Provisioned(fr),
        DeviceChanged("fr-1", 5.0, {}, {}, False),
    ]
    assert engine.stats["devices_provisioned"] == 2


def test_an_update_is_wanted_until_the_device_reports_running_it() -> None:
    engine = make()
    engine.provision([DeviceRecord(device_id="tv-1", firmware="1.0")])
    (wanted,) = of(engine.handle(contact("tv-1", 10.0, "wifi_drops"), 10.0), DeviceChanged)
    assert (wanted.ts, wanted.reported, wanted.desired) == (10.0, {"firmware": "1.0"}, {"firmware": "2.1"})
    assert engine.handle(event("tv-1", "firmware", "2.1", 20.0), 20.0) == [
        DeviceChanged("tv-1", 20.0, {"firmware": "2.1"}, {"firmware": "2.1"}, False)
    ]


def config_report(device: str, value: str, ts: float, seq: int) -> DeviceEvent:
    return event(device, "config", "setpoint", ts, detail=value, seq=seq)


def test_a_drifting_setting_gets_one_configure_command_at_a_time() -> None:
    engine = make(settings={"freezer": {"setpoint": "-18"}})
    engine.provision([freezer("fz-1")])
    first = engine.handle(config_report("fz-1", "-12", 10.0, 1), 10.0)
    assert [type(a) for a in first] == [DeviceChanged, SendCommand]
    assert first[0].reported == {"setpoint": "-12"}
    cmd = first[1].message
    assert (cmd.device_id, cmd.action, cmd.settings, cmd.ts, cmd.case_id) == (
        "fz-1",
        "configure",
        {"setpoint": "-18"},
        10.0,
        None,
    )
    second = engine.handle(config_report("fz-1", "-14", 20.0, 2), 20.0)  # the command is still on its way
    assert [type(a) for a in second] == [DeviceChanged] and second[0].reported == {"setpoint": "-14"}
    done = event("fz-1", "command_result", "fixed", 30.0, command_id=cmd.command_id, seq=3)
    assert engine.handle(done, 30.0) == []
    (again,) = of(engine.handle(config_report("fz-1", "-12", 40.0, 4), 40.0), SendCommand)
    assert again.message.settings == {"setpoint": "-18"} and again.message.command_id != cmd.command_id
    assert engine.stats["config_drift"] == 2 and engine.cases == {}


def test_a_matching_or_unmanaged_setting_sends_nothing() -> None:
    engine = make(settings={"freezer": {"setpoint": "-18"}})
    engine.provision([freezer("fz-1"), DeviceRecord(device_id="fr-1", product="fridge")])
    reports = [
        config_report("fz-1", "-18", 10.0, 1),  # as wanted
        event("fz-1", "config", "light", 20.0, detail="on", seq=2),  # a setting nobody manages
        config_report("fr-1", "-12", 30.0, 1),  # a product without settings
    ]
    assert of(play(engine, reports), SendCommand) == []
    assert engine.reported == {"fz-1": {"setpoint": "-18", "light": "on"}, "fr-1": {"setpoint": "-12"}}
    assert engine.stats["config_drift"] == 0


# -- offline devices ----------------------------------------------------------------------------


def report(device: str, times: Sequence[float], seq: int = 1) -> list[Telemetry]:
    """Ordinary readings of ``device`` at ``times``, numbered from ``seq``."""
    return [reading(device, t, seq + n, temp=-20.0) for n, t in enumerate(times)]


EVERY_10_MIN = [0.0, 600.0, 1200.0, 1800.0]


def test_a_device_goes_offline_once_silent_for_three_of_its_intervals() -> None:
    engine = make(offline=Offline(after_intervals=3, min_s=60.0))
    play(engine, report("fz-1", EVERY_10_MIN))
    slot = engine.twins.slot_of["fz-1"]
    assert engine.advance(3600.0) == []  # 1800 + 3 x 600: not beyond yet
    assert engine.advance(5000.0) == [DeviceChanged("fz-1", 3600.0, {}, {}, True)]  # when it crossed, not now
    assert engine.twins.offline[slot] and engine.stats["devices_offline"] == 1
    assert engine.advance(9000.0) == []  # once
    assert engine.cases == {}  # no offline issue configured


def test_going_offline_opens_a_case_and_reporting_again_resolves_it() -> None:
    engine = make(offline=Offline(after_intervals=3, min_s=60.0, issue="no_signal"))
    play(engine, report("fz-1", EVERY_10_MIN))
    actions = engine.advance(5000.0)
    (opened,) = of(actions, CaseChanged)
    assert (opened.origin, opened.issue, opened.opened_s, opened.state) == (
        "offline",
        "no_signal",
        3600.0,
        "in_progress",
    )
    assert [a.message.consumable for a in of(actions, OrderConsumable)] == ["sim_credit"]
    back = engine.handle(reading("fz-1", 6000.0, 5, temp=-20.0), 6000.0)
    assert back[0] == DeviceChanged("fz-1", 6000.0, {}, {}, False)
    (resolved,) = of(back, CaseChanged)
    (note,) = of(back, Notify)
    assert (resolved.case_id, resolved.state, resolved.ts) == (opened.case_id, "resolved", 6000.0)
    assert (note.message.kind, note.message.text) == ("resolved", "Your device is reporting again.")
    assert engine.stats["devices_back_online"] == 1 and engine.open_case_of == {}
    assert not engine.twins.offline[engine.twins.slot_of["fz-1"]]


@pytest.mark.parametrize("issue", ["unreachable", "frozen_display"])
def test_reporting_again_leaves_an_offline_case_with_a_visit_or_a_command_outstanding(issue: str) -> None:
    engine = make(offline=Offline(after_intervals=3, min_s=60.0, issue=issue))
    play(engine, report("fz-1", EVERY_10_MIN))
    (opened,) = of(engine.advance(5000.0), CaseChanged)
    back = engine.handle(reading("fz-1", 6000.0, 5, temp=-20.0), 6000.0)
    assert back == [DeviceChanged("fz-1", 6000.0, {}, {}, False)]
    assert engine.open_case_of == {"fz-1": opened.case_id} and engine.stats["devices_back_online"] == 1


@pytest.mark.parametrize("symptom", ["not_cooling", "no_signal"])
def test_reporting_again_leaves_a_case_the_owner_opened_open(symptom: str) -> None:
    engine = make(
        offline=Offline(after_intervals=3, min_s=60.0, issue="no_signal"),
        symptoms={**SYMPTOMS, "no_signal": "no_signal"},
    )
    play(engine, report("fz-1", EVERY_10_MIN))
    (opened,) = of(engine.handle(contact("fz-1", 1900.0, symptom), 1900.0), CaseChanged)
    assert of(engine.advance(5000.0), CaseChanged) == []  # the device's open case takes it in
    assert engine.handle(reading("fz-1", 6000.0, 5, temp=-20.0), 6000.0) == [
        DeviceChanged("fz-1", 6000.0, {}, {}, False)
    ]
    assert engine.open_case_of == {"fz-1": opened.case_id}  # even of the offline issue: not opened by silence


def test_the_registry_interval_overrides_the_learned_one_and_min_s_floors_both() -> None:
    engine = make(offline=Offline(after_intervals=3, min_s=60.0))
    engine.provision([DeviceRecord(device_id="slow", interval_s=60.0)])
    play(engine, [*report("slow", [0.0, 600.0]), *report("fast", [570.0, 580.0, 590.0, 600.0])])
    assert engine.advance(660.0) == []
    assert [(a.device_id, a.ts) for a in engine.advance(661.0)] == [("fast", 660.0)]  # 3 x 10 s is below min_s
    assert engine.advance(780.0) == []
    assert [(a.device_id, a.ts) for a in engine.advance(781.0)] == [("slow", 780.0)]  # 3 x 60 s, not 3 x 600 s


def test_a_device_never_heard_from_or_heard_once_is_not_judged() -> None:
    engine = make(offline=Offline(after_intervals=3, min_s=60.0, issue="no_signal"))
    engine.provision([freezer("quiet")])
    play(engine, [contact("caller", 10.0), *report("once", [20.0])])
    assert of(engine.advance(1e7), DeviceChanged) == []  # (the caller's case runs its SLA clocks)
    assert engine.stats["devices_offline"] == 0 and not engine.twins.offline.any()


def test_the_reactive_policy_flags_an_offline_device_without_a_case() -> None:
    engine = make(policy="reactive", offline=Offline(after_intervals=3, min_s=60.0, issue="no_signal"))
    play(engine, report("fz-1", EVERY_10_MIN))
    assert engine.advance(5000.0) == [DeviceChanged("fz-1", 3600.0, {}, {}, True)]
    assert engine.cases == {}


# -- gaps and late readings ---------------------------------------------------------------------


def test_skipped_sequence_numbers_are_gaps_and_a_restart_is_not() -> None:
    engine = make()

    def gaps(device: str) -> int:
        return int(engine.twins.gaps[engine.twins.slot_of[device]])

    play(engine, [reading("fz-1", 0.0, 1, temp=-20.0), reading("fz-1", 600.0, 2, temp=-20.0)])
    play(engine, [reading("fz-1", 1200.0, 5, temp=-20.0), *report("fz-2", [0.0, 600.0, 1200.0], seq=40)])
    assert (gaps("fz-1"), gaps("fz-2")) == (2, 0)  # fz-2 was first heard at 40: nothing before counts
    restarted = [reading("fz-1", 1800.0, 1, boot_id=2, temp=-20.0), reading("fz-1", 2400.0, 2, boot_id=2, temp=-20.0)]
    play(engine, restarted)
    assert gaps("fz-1") == 2
    play(engine, [reading("fz-1", 3000.0, 4, boot_id=2, temp=-20.0)])
    assert gaps("fz-1") == 3


def test_a_late_reading_is_counted_and_changes_nothing() -> None:
    engine = make(offline=Offline(after_intervals=3, min_s=60.0))
    play(engine, report("fz-1", [0.0, 600.0]))
    slot = engine.twins.slot_of["fz-1"]
    assert engine.handle(reading("fz-1", 300.0, 9, temp=50.0), 300.0) == []  # would breach two rules
    assert engine.handle(batch([("fz-1", 400.0, 50.0)]), 400.0) == []
    twins = engine.twins
    assert twins.late[slot] == 2 and twins.gaps[slot] == 0
    assert (twins.values["temp"][slot], twins.last_seen[slot], twins.last_seq[slot]) == (-20.0, 600.0, 2)
    assert twins.interval[slot] == 600.0 and not twins.alerting[:, slot].any()
    assert engine.advance(3000.0) == [DeviceChanged("fz-1", 2400.0, {}, {}, True)]
    assert engine.handle(reading("fz-1", 500.0, 10, temp=-20.0), 3000.0) == []  # old news: still offline
    assert twins.offline[slot] and twins.late[slot] == 3


# -- alert flapping -----------------------------------------------------------------------------


def flappy(**changes: object) -> Engine:
    return make(alerting=Alerting(flap_changes=4, flap_window_s=HOUR), **changes)


def cpu(device: str, values: Sequence[float], start: float = 0.0, step: float = 600.0, seq: int = 1) -> list[Telemetry]:
    return [reading(device, start + n * step, seq + n, cpu=v) for n, v in enumerate(values)]


def alert_trail(actions: Sequence[object]) -> list[tuple[str, float, bool | None]]:
    """What happened to alerts: (kind, ts, flapping) of raises, clears and flapping changes."""
    return [
        (type(a).__name__, a.ts, getattr(a, "flapping", None))
        for a in actions
        if isinstance(a, (RaiseAlert, ClearAlert, AlertFlapping))
    ]


def test_an_alert_that_changes_too_often_flaps_and_stays_raised() -> None:
    engine = flappy()
    actions = play(engine, cpu("tv-1", [0.99, 0.1, 0.99, 0.1, 0.99, 0.1]))
    assert alert_trail(actions) == [
        ("RaiseAlert", 0.0, None),
        ("ClearAlert", 600.0, None),
        ("RaiseAlert", 1200.0, None),
        ("AlertFlapping", 1800.0, True),  # the fourth change within the hour: held, not cleared
    ]
    second = of(actions, RaiseAlert)[1]
    assert of(actions, AlertFlapping)[0] == AlertFlapping(second.alert_id, "tv-1", "hang", 1800.0, True)
    assert engine.alert_of == {("tv-1", "hang"): second.alert_id}
    assert engine.stats["alerts_flapping"] == 1 and engine.stats["alerts"] == 2


def test_a_quiet_window_ends_the_flapping_and_clears_an_alert_no_longer_firing() -> None:
    engine = flappy()
    play(engine, cpu("tv-1", [0.99, 0.1, 0.99, 0.1, 0.99, 0.1]))  # last change at 3000
    (alert_id,) = engine.alert_of.values()
    assert engine.advance(3000.0 + HOUR - 1) == []
    assert engine.advance(9000.0) == [
        AlertFlapping(alert_id, "tv-1", "hang", 3000.0 + HOUR, False),
        ClearAlert(alert_id, "tv-1", "hang", 3000.0 + HOUR),
    ]
    assert engine.flapping == {} and engine.alert_of == {}
    assert alert_trail(play(engine, cpu("tv-1", [0.99], start=9600.0, seq=7))) == [("RaiseAlert", 9600.0, None)]


def test_a_quiet_window_ends_the_flapping_and_keeps_an_alert_still_firing() -> None:
    engine = flappy()
    play(engine, cpu("tv-1", [0.99, 0.1, 0.99, 0.1, 0.99]))  # last change at 2400, into alert
    (alert_id,) = engine.alert_of.values()
    assert engine.advance(2400.0 + HOUR) == [AlertFlapping(alert_id, "tv-1", "hang", 2400.0 + HOUR, False)]
    assert engine.alert_of == {("tv-1", "hang"): alert_id}
    cleared = play(engine, cpu("tv-1", [0.1], start=7000.0, seq=6))  # a fresh history: it clears as usual
    assert cleared == [ClearAlert(alert_id, "tv-1", "hang", 7000.0)]


@pytest.mark.parametrize(("step", "flaps"), [(900.0, True), (1200.0, False)])
def test_only_changes_within_the_window_count_towards_flapping(step: float, flaps: bool) -> None:
    engine = flappy()
    actions = play(engine, cpu("tv-1", [0.99, 0.1] * 5, step=step))
    assert bool(of(actions, AlertFlapping)) == flaps
    if not flaps:  # 1200 s apart: at most three changes in any hour
        assert [k for k, _, _ in alert_trail(actions)] == ["RaiseAlert", "ClearAlert"] * 5


def test_resolving_the_case_forgets_the_flapping() -> None:
    engine = flappy()
    actions = play(engine, cpu("tv-1", [0.99, 0.1, 0.99, 0.1]))  # flapping from 1800
    (command,) = of(actions, SendCommand)
    fixed = event("tv-1", "command_result", "fixed", 1900.0, command_id=command.message.command_id)
    assert of(engine.handle(fixed, 1900.0), CaseChanged)[0].state == "resolved"
    assert engine.flapping == {} and engine.alert_of == {}
    again = play(engine, cpu("tv-1", [0.99, 0.1], start=2000.0, step=100.0, seq=5))
    assert [k for k, _, _ in alert_trail(again)] == ["RaiseAlert", "ClearAlert"]  # old changes no longer count
    assert engine.stats["alerts_flapping"] == 1


# -- SLA ----------------------------------------------------------------------------------------

GOLD = Sla(first_response_s=HOUR, resolution_s=4 * HOUR, warn_at=0.5)


def sla_trail(actions: Sequence[object]) -> list[tuple[str, str, float]]:
    return [(type(a).__name__, a.clock, a.ts) for a in actions if isinstance(a, (SlaWarned, SlaBreached))]


def test_a_contract_sla_warns_breaches_and_escalates_to_priority_one() -> None:
    engine = make(contracts={"gold": GOLD})
    engine.provision([freezer("fz-1", contract="gold")])
    (opened,) = of(engine.handle(contact("fz-1", 0.0), 0.0), CaseChanged)
    assert opened.priority == 2 and engine.advance(0.5 * HOUR) == []
    actions = []
    for t in [0.5 * HOUR + 1, HOUR + 1, 2 * HOUR + 1, 4 * HOUR + 1]:
        actions += engine.advance(t)
    assert sla_trail(actions) == [
        ("SlaWarned", "first_response", 0.5 * HOUR),
        ("SlaBreached", "first_response", HOUR),
        ("SlaWarned", "resolution", 2 * HOUR),
        ("SlaBreached", "resolution", 4 * HOUR),
    ]
    assert [(c.priority, c.escalation) for c in of(actions, CaseChanged)] == [(1, 1), (1, 2), (1, 3), (1, 4)]
    assert engine.stats["escalations"] == 4 and engine.advance(100 * HOUR) == []


def test_resolution_within_sla_is_judged_against_the_devices_contract() -> None:
    engine = make(contracts={"gold": GOLD})
    engine.provision(
        [
            freezer("gold-late", contract="gold"),
            freezer("gold-on-time", contract="gold"),
            freezer("plain"),
            freezer("unknown-contract", contract="silver"),  # not configured: the default SLA
        ]
    )
    for device, closed in [
        ("gold-late", 5 * HOUR),
        ("gold-on-time", 4 * HOUR),
        ("plain", 5 * HOUR),
        ("unknown-contract", 5 * HOUR),
    ]:
        (order,) = of(engine.handle(contact(device, 0.0), 0.0), CreateWorkOrder)
        close_out(engine, order.message.work_order_id, device, 0.0, closed)
    assert engine.stats["cases_resolved"] == 4
    assert engine.stats["cases_resolved_within_sla"] == 3  # all but gold-late


def test_a_visits_first_response_is_the_technicians_acceptance() -> None:
    engine = make(contracts={"gold": GOLD})
    engine.provision([freezer("fz-1", contract="gold")])
    (order,) = of(engine.handle(contact("fz-1", 0.0), 0.0), CreateWorkOrder)
    assert engine.cases[order.message.case_id].first_response_s is None
    accepted = engine.handle(status(order.message.work_order_id, "fz-1", "accepted", 1200.0, 1), 1200.0)
    assert [(c.case_id, c.first_response_s) for c in of(accepted, CaseChanged)] == [(order.message.case_id, 1200.0)]
    assert [clock for _, clock, _ in sla_trail(engine.advance(10 * HOUR))] == ["resolution", "resolution"]


def test_a_remote_cases_first_response_is_its_command() -> None:
    engine = make(contracts={"gold": GOLD})
    engine.provision([DeviceRecord(device_id="tv-1", contract="gold")])
    actions = engine.handle(contact("tv-1", 100.0, "screen_frozen"), 100.0)
    (opened,) = of(actions, CaseChanged)
    (command,) = of(actions, SendCommand)
    assert opened.first_response_s == command.message.ts == 100.0
    assert [clock for _, clock, _ in sla_trail(engine.advance(10 * HOUR))] == ["resolution", "resolution"]


# -- technicians --------------------------------------------------------------------------------

TECHNICIANS = [
    Technician(id="ann", skills=["refrigeration"], region="north", max_open=1),
    Technician(id="bob", skills=["refrigeration"], region="south", max_open=2),
    Technician(id="cy", skills=["electronics"], region="north"),
    Technician(id="dee", region="north", available=False),  # every skill, but on leave
]
REGIONS = {"n-1": "north", "n-2": "north", "n-3": "north", "n-4": "north", "s-1": "south", "tv-1": "north"}


def staffed(**changes: object) -> Engine:
    engine = make(technicians=TECHNICIANS, **changes)
    engine.provision([DeviceRecord(device_id=d, region=r) for d, r in REGIONS.items()])
    return engine


def dispatch(engine: Engine, device: str, ts: float, symptom: str = "not_cooling") -> str | None:
    """Open a visit for ``device``; return its technician (the order's and its change's must agree)."""
    actions = engine.handle(contact(device, ts, symptom), ts)
    (order,) = of(actions, CreateWorkOrder)
    (changed,) = of(actions, WorkOrderChanged)
    assert changed.technician_id == order.message.technician_id
    return order.message.technician_id


def test_a_visit_goes_to_a_skilled_technician_of_the_devices_region() -> None:
    engine = staffed()
    assert [dispatch(engine, "n-1", 0.0), dispatch(engine, "s-1", 10.0)] == ["ann", "bob"]
    assert engine.stats["work_orders_assigned"] == 2


def test_a_full_technician_passes_the_next_order_on_until_none_is_left() -> None:
    engine = staffed()
    assigned = [dispatch(engine, d, 10.0 * n) for n, d in enumerate(["n-1", "n-2", "n-3", "n-4"])]
    assert assigned == ["ann", "bob", "bob", None]  # cy lacks the skill, dee is not available
    assert engine.stats["work_orders_assigned"] == 3 and engine.stats["work_orders_unassigned"] == 1
    assert engine.tech_load == {"ann": 1, "bob": 2}


def test_closing_a_work_order_frees_its_technician() -> None:
    engine = staffed()
    assert dispatch(engine, "n-1", 0.0) == "ann"
    (wo,) = engine.work_orders
    trail = close_out(engine, wo, "n-1", 0.0, 100.0)
    assert {c.technician_id for c in of(trail, WorkOrderChanged)} == {"ann"}  # not the field's "tech-1"
    assert engine.tech_load["ann"] == 0
    assert dispatch(engine, "n-2", 200.0) == "ann"


def test_the_region_comes_before_the_load_and_the_load_before_the_id() -> None:
    technicians = [Technician(id=t, region=r, max_open=5) for t, r in [("pat", "north"), ("quinn", "south")]]
    engine = make(technicians=technicians)
    engine.provision([DeviceRecord(device_id=d, region="north") for d in ["n-1", "n-2"]])
    assigned = [dispatch(engine, d, 10.0 * n) for n, d in enumerate(["x-1", "x-2", "x-3", "n-1", "n-2"])]
    assert assigned == ["pat", "quinn", "pat", "pat", "pat"]  # x-*: no region, least loaded then by id


def test_a_remote_fix_that_fails_sends_a_technician_with_the_issues_skill() -> None:
    engine = staffed()
    (command,) = of(engine.handle(contact("tv-1", 0.0, "screen_frozen"), 0.0), SendCommand)
    failed = event("tv-1", "command_result", "not_fixed", 60.0, command_id=command.message.command_id)
    (order,) = of(engine.handle(failed, 60.0), CreateWorkOrder)
    assert (order.message.skill, order.message.technician_id) == ("electronics", "cy")


def test_without_technicians_the_field_assigns_the_visit() -> None:
    engine = make()
    assert dispatch(engine, "n-1", 0.0) is None
    assert engine.stats["work_orders_assigned"] == engine.stats["work_orders_unassigned"] == 0


def test_a_visit_is_billable_only_after_the_warranty() -> None:
    engine = make()
    engine.provision([freezer("w-1", warranty_until_s=1000.0), freezer("w-none")])
    billable = []
    # The second contact comes after the recontact window: a new fault, not a call about the first.
    for device, ts in [("w-1", 1000.0), ("w-1", 90000.0), ("w-none", 5000.0), ("stray", 5000.0)]:
        actions = engine.handle(contact(device, ts), ts)
        (order,) = of(actions, CreateWorkOrder)
        billable.append(order.message.billable)
        close_out(engine, order.message.work_order_id, device, ts, ts + 10.0)
    assert billable == [False, True, False, False]
    assert engine.stats["work_orders_billable"] == 1


# -- restart ------------------------------------------------------------------------------------


def restart(engine: Engine, records: Sequence[DeviceRecord] = ()) -> Engine:
    """A new engine from ``engine``'s snapshot as the database keeps it (and the registry, kept apart)."""
    saved = msgspec.json.encode(engine.snapshot())
    restored = Engine(engine.config)
    restored.provision(records)
    restored.restore(msgspec.json.decode(saved, type=Snapshot), dict(engine.stats))
    return restored


def test_a_flapping_alert_survives_a_restart() -> None:
    original = flappy()
    play(original, cpu("tv-1", [0.99, 0.1, 0.99, 0.1]))  # flapping from 1800
    alert_id = original.alert_of["tv-1", "hang"]
    restored = restart(original)
    assert restored.flapping == original.flapping != {}
    rest = cpu("tv-1", [0.99, 0.1], start=2400.0, seq=5)  # still flapping: noted, not acted on
    answers = play(restored, rest, at=3000.0 + HOUR)
    assert answers == play(original, rest, at=3000.0 + HOUR)
    assert answers == [
        AlertFlapping(alert_id, "tv-1", "hang", 3000.0 + HOUR, False),
        ClearAlert(alert_id, "tv-1", "hang", 3000.0 + HOUR),
    ]


def test_a_pending_configure_command_survives_a_restart() -> None:
    records = [freezer("fz-1")]
    original = make(settings={"freezer": {"setpoint": "-18"}})
    original.provision(records)
    (command,) = of(original.handle(config_report("fz-1", "-12", 10.0, 1), 10.0), SendCommand)
    restored = restart(original, records)
    rest = [
        config_report("fz-1", "-14", 20.0, 2),  # still pending: no second command
        event("fz-1", "command_result", "fixed", 30.0, command_id=command.message.command_id, seq=3),
        config_report("fz-1", "-12", 40.0, 4),
    ]
    answers = play(restored, rest)
    assert answers == play(original, rest)
    assert [(a.message.action, a.message.ts) for a in of(answers, SendCommand)] == [("configure", 40.0)]


def test_technician_loads_survive_a_restart() -> None:
    records = [DeviceRecord(device_id=d, region=r) for d, r in REGIONS.items()]
    original = staffed()
    assert dispatch(original, "n-1", 0.0) == "ann"
    (wo,) = original.work_orders
    restored = restart(original, records)
    assert restored.tech_load == {"ann": 1}
    for engine in (original, restored):
        assert dispatch(engine, "n-2", 10.0) == "bob"  # ann is full
        close_out(engine, wo, "n-1", 20.0, 100.0)
        assert dispatch(engine, "n-3", 200.0) == "ann"
    assert restored.snapshot() == original.snapshot()


# -- reproducers of bugs found with these tests --------------------------------------------------


def test_a_registered_device_never_heard_from_is_not_declared_offline() -> None:
    engine = make(offline=Offline(after_intervals=3, min_s=60.0, issue="unreachable"))
    engine.provision([freezer("quiet", interval_s=600.0)])  # the registry knows its interval; it never reported
    assert engine.advance(1e6) == []
    assert engine.cases == {}


def test_the_result_of_a_command_sent_to_an_unregistered_device_is_not_quarantined() -> None:
    engine = make(provisioning="registered")
    (command,) = of(engine.handle(contact("tv-9", 10.0, "screen_frozen"), 10.0), SendCommand)  # owners are served
    fixed = event("tv-9", "command_result", "fixed", 20.0, command_id=command.message.command_id)
    engine.handle(fixed, 20.0)
    assert engine.open_case_of == {} and engine.pending_commands == {}


def test_readings_of_one_device_at_one_time_count_no_gap_together_as_one_by_one() -> None:
    together, apart = Engine(make().config), Engine(make().config)
    first = [reading("fz-1", 0.0, 1, temp=-20.0), reading("fz-1", 1.0, 2, temp=-20.0)]
    same_second = [reading("fz-1", 2.0, 3, temp=-20.0), reading("fz-1", 2.0, 4, temp=-20.0)]
    for engine in (together, apart):
        engine.handle_readings(first)
    together.handle_readings(same_second)
    for m in same_second:
        apart.handle(m, m.ts)
    assert apart.twins.gaps[0] == 0
    assert together.twins.gaps[0] == 0


def test_a_first_response_after_its_target_is_a_breach_even_between_timer_runs() -> None:
    engine = make(contracts={"gold": Sla(first_response_s=HOUR, resolution_s=24 * HOUR)})
    engine.provision([DeviceRecord(device_id="fz-1", contract="gold")])
    engine.handle(contact("fz-1", 0.0), 0.0)
    (wo,) = engine.work_orders
    assert engine.advance(0.5 * HOUR) == []
    accepted = engine.handle(status(wo, "fz-1", "accepted", 2 * HOUR, 1), 2 * HOUR)  # an hour late
    breaches = [a for a in accepted if isinstance(a, SlaBreached)]
    assert [(b.clock, b.ts) for b in breaches] == [("first_response", HOUR)]  # the clock stopped past its target
    assert [a for a in engine.advance(2 * HOUR + 1) if isinstance(a, SlaBreached)] == []
