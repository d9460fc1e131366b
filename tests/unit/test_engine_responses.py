"""How the engine core answers a case: remote fixes, OTA roll-outs, refills, advice, device fault codes,
contacts resolved on the spot and second visits. Every story checks the engine's books after each step."""

from __future__ import annotations

from collections import Counter

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts import (
    BatchView,
    Contact,
    DeviceEvent,
    EngineConfig,
    IssueType,
    Message,
    Telemetry,
    ThresholdRule,
    decode_batch,
    encode_batch,
)
from support_engine.core.actions import (
    Action,
    CaseChanged,
    CreateWorkOrder,
    DeviceChanged,
    Notify,
    OrderConsumable,
    RaiseAlert,
    SendCommand,
    WorkOrderChanged,
)
from support_engine.core.engine import Engine
from support_engine.core.lifecycle import CASE, WORK_ORDER
from tests.messages import status

HOUR = 3600.0
OUTAGE_ADVICE = "A power cut in your area; service is back by 18:00."
HANG = ThresholdRule(name="hang", sensor="cpu", above=0.9, issue="frozen_display")
GLITCH = ThresholdRule(name="glitch", sensor="fw_err", above=5.0, issue="firmware_bug")
ISSUES = {
    "frozen_display": IssueType(skill="electronics", parts=["display"], remote="reset", priority=2),
    "firmware_bug": IssueType(
        skill="electronics", parts=["control_board"], remote="ota", ota_version="2.1", rollout_after=3
    ),
    "ink_low": IssueType(skill="general", consumable="ink", quantity=2.0),
    "outage": IssueType(skill="general", advice=OUTAGE_ADVICE),
    "cooling": IssueType(skill="refrigeration", parts=["compressor"], priority=1),
}
SYMPTOMS = {
    "screen_frozen": "frozen_display",
    "wifi_drops": "firmware_bug",
    "no_ink": "ink_low",
    "no_power": "outage",
    "not_cooling": "cooling",
}


def config(policy: str = "proactive") -> EngineConfig:
    return EngineConfig(
        policy=policy,  # type: ignore[arg-type]
        rules=[HANG, GLITCH],
        issues=ISSUES,
        symptoms=SYMPTOMS,
        fault_codes={"E42": "cooling", "ink": "ink_low"},
        default_issue="cooling",
    )


# -- helpers ------------------------------------------------------------------------------------


def books_straight(engine: Engine) -> None:
    """Every case is in exactly one known state; open cases and ``open_case_of`` agree, one per device."""
    for case_id, case in engine.cases.items():
        assert case.state in CASE.table
        is_open = case.state in ("open", "in_progress")
        assert (engine.open_case_of.get(case.device_id) == case_id) == is_open
        assert (case.resolved_s is not None) == (case.state in ("resolved", "closed"))
    open_cases = [c for c in engine.cases.values() if c.state in ("open", "in_progress")]
    assert max(Counter(c.device_id for c in open_cases).values(), default=0) <= 1
    assert {c.device_id: c.case_id for c in open_cases} == engine.open_case_of
    for wo_id, wo in engine.work_orders.items():
        assert wo.state in WORK_ORDER.table and wo_id in engine.cases[wo.case_id].work_orders
    assert engine.stats["cases_opened"] == len(engine.cases)


def step(engine: Engine, message: Message | BatchView, now: float | None = None) -> list[Action]:
    """Hand ``message`` to the engine, then check its books."""
    actions = engine.handle(message, getattr(message, "ts", 0.0) if now is None else now)
    books_straight(engine)
    return actions


def contact(device: str, ts: float, symptom: str, *, resolved: bool = False) -> Contact:
    return Contact(
        contact_id=f"c-{device}-{int(ts)}",
        owner_id=f"o-{device}",
        device_id=device,
        channel="app",
        ts=ts,
        symptom=symptom,
        resolved=resolved,
    )


def event(device: str, kind: str, code: str, ts: float, command_id: str | None = None, seq: int = 1) -> DeviceEvent:
    return DeviceEvent(
        device_id=device,
        ts=ts,
        boot_id=1,
        seq=seq,
        kind=kind,  # type: ignore[arg-type]
        code=code,
        command_id=command_id,
    )


def batch(devices: list[str], sensor: str, value: float, ts: float, gateway: str = "gw1") -> BatchView:
    """One reading of ``sensor`` per device, all at ``ts``."""
    n = len(devices)
    return decode_batch(
        encode_batch(
            gateway_id=gateway,
            ts=ts,
            boot_id=0,
            seq=int(ts) + 1,
            devices=devices,
            index=list(range(n)),
            reading_ts=[ts] * n,
            reading_seq=[1] * n,
            values={sensor: [value] * n},
        )
    )


def of(actions: list[Action], kind: type) -> list:  # type: ignore[type-arg]
    return [a for a in actions if isinstance(a, kind)]


def kinds(actions: list[Action]) -> list[type]:
    return [type(a) for a in actions]


def close_out(engine: Engine, wo: str, device: str, start: float) -> list[Action]:
    """Take a work order through accepted, arrived, fixed and closed; return the last step's actions."""
    actions: list[Action] = []
    for seq, what in enumerate(["accepted", "arrived", "fixed", "closed"], start=1):
        actions = step(engine, status(wo, device, what, start + seq, seq))
    return actions


# -- 1. remote first ----------------------------------------------------------------------------


def open_remote(engine: Engine, device: str = "tv-1") -> SendCommand:
    actions = step(engine, contact(device, 10.0, "screen_frozen"))
    assert kinds(actions) == [CaseChanged, SendCommand, Notify]
    changed, command, note = actions
    assert (changed.state, changed.origin, changed.issue) == ("in_progress", "contact", "frozen_display")
    assert (note.message.kind, note.message.case_id) == ("case_opened", changed.case_id)
    assert command.message.case_id == changed.case_id
    return command


def test_a_remote_issue_is_answered_with_a_command_not_a_technician() -> None:
    engine = Engine(config())
    command = open_remote(engine)
    cmd = command.message
    assert (cmd.device_id, cmd.action, cmd.version, cmd.ts) == ("tv-1", "reset", None, 10.0)
    assert engine.work_orders == {} and engine.pending_commands == {cmd.command_id: cmd.case_id}
    assert engine.stats["remote_commands"] == 1


def test_a_telemetry_alert_also_opens_a_remote_case() -> None:
    engine = Engine(config())
    reading = Telemetry(device_id="tv-1", ts=5.0, boot_id=1, seq=1, values={"cpu": 0.99})
    actions = step(engine, reading)
    assert kinds(actions) == [RaiseAlert, CaseChanged, SendCommand, Notify]
    alert, changed, command, _ = actions
    assert changed.origin == "telemetry" and command.message.case_id == alert.case_id == changed.case_id
    assert command.message.action == "reset"


def test_a_fixed_command_result_resolves_the_case() -> None:
    engine = Engine(config())
    cmd = open_remote(engine).message
    actions = step(engine, event("tv-1", "command_result", "fixed", 60.0, cmd.command_id))
    assert kinds(actions) == [CaseChanged, Notify]
    assert (actions[0].state, actions[0].case_id) == ("resolved", cmd.case_id)
    assert (actions[1].message.kind, actions[1].message.case_id) == ("resolved", cmd.case_id)
    assert engine.cases[cmd.case_id].resolved_s == 60.0 and engine.open_case_of == {}
    assert engine.stats["remote_fixes"] == 1 and engine.pending_commands == {}
    assert engine.work_orders == {}


def test_a_failed_command_sends_a_technician_who_then_resolves_the_case() -> None:
    engine = Engine(config())
    cmd = open_remote(engine).message
    actions = step(engine, event("tv-1", "command_result", "not_fixed", 60.0, cmd.command_id))
    assert kinds(actions) == [CreateWorkOrder, WorkOrderChanged, Notify]
    order, _, note = actions
    wo = order.message
    assert (wo.case_id, wo.device_id, wo.issue, wo.skill, wo.parts, wo.priority) == (
        cmd.case_id,
        "tv-1",
        "frozen_display",
        "electronics",
        ["display"],
        2,
    )
    assert (note.message.kind, note.message.case_id) == ("visit_scheduled", cmd.case_id)
    assert engine.stats["remote_fix_failed"] == 1 and engine.stats["remote_fixes"] == 0
    assert engine.cases[cmd.case_id].state == "in_progress"
    assert kinds(close_out(engine, wo.work_order_id, "tv-1", 100.0)) == [WorkOrderChanged, CaseChanged, Notify]
    assert engine.cases[cmd.case_id].state == "resolved"


def test_an_unknown_or_repeated_command_result_does_nothing() -> None:
    engine = Engine(config())
    cmd = open_remote(engine).message
    assert step(engine, event("tv-1", "command_result", "fixed", 30.0, "cmd-nobody")) == []
    assert engine.cases[cmd.case_id].state == "in_progress"
    assert len(step(engine, event("tv-1", "command_result", "fixed", 60.0, cmd.command_id, seq=2))) == 2
    assert step(engine, event("tv-1", "command_result", "fixed", 61.0, cmd.command_id, seq=3)) == []
    assert step(engine, event("tv-1", "command_result", "not_fixed", 62.0, cmd.command_id, seq=4)) == []
    assert engine.stats["remote_fixes"] == 1 and engine.stats["remote_fix_failed"] == 0
    assert engine.work_orders == {} and len(engine.cases) == 1


# -- 2. OTA and fleet-wide roll-out -------------------------------------------------------------

PRINTERS = ["p-1", "p-2", "p-3", "p-4", "p-5"]  # report fw_err
FRIDGES = ["f-1", "f-2"]  # another product: report temp, never fw_err


def fleet(engine: Engine) -> None:
    """Let the twins hear from both products; nothing is out of range."""
    assert step(engine, batch(PRINTERS, "fw_err", 0.0, 0.0, gateway="gw-p")) == []
    assert step(engine, batch(FRIDGES, "temp", 4.0, 0.0, gateway="gw-f")) == []


def test_an_ota_issue_sends_the_named_version() -> None:
    engine = Engine(config())
    actions = step(engine, contact("p-1", 10.0, "wifi_drops"))
    assert kinds(actions) == [CaseChanged, SendCommand, DeviceChanged, Notify]
    cmd = actions[1].message
    assert (cmd.action, cmd.version, cmd.device_id, cmd.case_id) == ("ota", "2.1", "p-1", actions[0].case_id)
    assert actions[2].desired == {"firmware": "2.1"}  # the twin's desired state, until the device reports it
    step(engine, event("p-1", "firmware", "2.1", 20.0))
    assert engine.reported["p-1"] == engine.desired["p-1"] == {"firmware": "2.1"}


def test_the_third_open_case_rolls_the_update_out_to_every_device_reporting_the_sensor_once() -> None:
    engine = Engine(config())
    fleet(engine)
    for n, device in enumerate(PRINTERS[:2], start=1):
        assert kinds(step(engine, contact(device, 10.0 * n, "wifi_drops"))) == [
            CaseChanged,
            SendCommand,
            DeviceChanged,
            Notify,
        ]
    actions = step(engine, contact("p-3", 30.0, "wifi_drops"))
    own = [a for a in of(actions, SendCommand) if a.message.case_id is not None]
    fleet_wide = [a.message for a in of(actions, SendCommand) if a.message.case_id is None]
    assert [a.message.device_id for a in own] == ["p-3"]
    assert [(c.device_id, c.action, c.version, c.ts) for c in fleet_wide] == [
        ("p-4", "ota", "2.1", 30.0),
        ("p-5", "ota", "2.1", 30.0),
    ]
    assert len({c.command_id for c in fleet_wide} | {own[0].message.command_id}) == 3
    assert engine.stats["rollouts"] == 1 and engine.stats["rollout_commands"] == 2
    fourth = step(engine, contact("p-4", 40.0, "wifi_drops"))
    assert kinds(fourth) == [CaseChanged, SendCommand, DeviceChanged, Notify]  # its own OTA, no second roll-out
    assert engine.stats["rollouts"] == 1 and engine.stats["rollout_commands"] == 2


def test_cases_already_fixed_count_towards_a_roll_out_and_their_devices_are_skipped() -> None:
    engine = Engine(config())
    fleet(engine)
    first = step(engine, contact("p-1", 10.0, "wifi_drops"))[1].message
    step(engine, event("p-1", "command_result", "fixed", 15.0, first.command_id))
    assert len(of(step(engine, contact("p-2", 20.0, "wifi_drops")), SendCommand)) == 1
    third = of(step(engine, contact("p-3", 30.0, "wifi_drops")), SendCommand)
    assert sorted(a.message.device_id for a in third) == ["p-3", "p-4", "p-5"]  # p-1 had its own update
    assert engine.stats["rollouts"] == 1 and "firmware_bug" in engine.rolled_out


def test_the_reactive_policy_updates_only_the_devices_whose_owners_call() -> None:
    engine = Engine(config(policy="reactive"))
    fleet(engine)
    for n, device in enumerate(PRINTERS[:3], start=1):
        actions = step(engine, contact(device, 10.0 * n, "wifi_drops"))
    assert [a.message.device_id for a in of(actions, SendCommand)] == ["p-3"]
    assert engine.stats["rollouts"] == 0


# -- 3. replenishment ---------------------------------------------------------------------------


def test_a_consumable_issue_is_answered_with_an_order_and_a_refill_resolves_it() -> None:
    engine = Engine(config())
    actions = step(engine, contact("pr-1", 10.0, "no_ink"))
    assert kinds(actions) == [CaseChanged, OrderConsumable, Notify]
    order = actions[1].message
    assert (order.device_id, order.consumable, order.quantity, order.ts) == ("pr-1", "ink", 2.0, 10.0)
    assert actions[2].message.kind == "case_opened"
    assert engine.work_orders == {} and engine.stats["consumable_orders"] == 1
    case_id = actions[0].case_id
    assert step(engine, event("pr-1", "consumable_refilled", "toner", 50.0)) == []
    assert engine.cases[case_id].state == "in_progress"
    resolved = step(engine, event("pr-1", "consumable_refilled", "ink", 60.0, seq=2))
    assert kinds(resolved) == [CaseChanged, Notify]
    assert resolved[0].state == "resolved" and resolved[1].message.kind == "resolved"
    assert engine.open_case_of == {}


def test_a_refill_without_a_case_does_nothing() -> None:
    engine = Engine(config())
    assert step(engine, event("pr-1", "consumable_refilled", "ink", 60.0)) == []
    assert engine.cases == {}


# -- 4. advice ----------------------------------------------------------------------------------


def test_advice_answers_and_closes_the_case_without_a_resolved_notification() -> None:
    engine = Engine(config())
    actions = step(engine, contact("tv-1", 10.0, "no_power"))
    assert kinds(actions) == [CaseChanged, Notify, CaseChanged]
    opened, note, resolved = actions
    assert (opened.state, resolved.state, resolved.case_id) == ("in_progress", "resolved", opened.case_id)
    assert (note.message.kind, note.message.text, note.message.case_id) == ("outage", OUTAGE_ADVICE, opened.case_id)
    assert engine.open_case_of == {} and engine.work_orders == {} and engine.pending_commands == {}
    assert engine.stats["advised"] == 1 and engine.stats["cases_resolved"] == 1
    again = step(engine, contact("tv-1", 20.0, "no_power"))
    assert kinds(again) == [CaseChanged, Notify, CaseChanged]
    assert again[0].case_id != opened.case_id and len(engine.cases) == 2


# -- 5. device fault codes ----------------------------------------------------------------------


def test_a_fault_code_opens_a_device_case_under_the_proactive_policy() -> None:
    engine = Engine(config())
    actions = step(engine, event("fz-1", "fault", "E42", 10.0))
    assert kinds(actions) == [CaseChanged, CreateWorkOrder, WorkOrderChanged, Notify]
    changed = actions[0]
    assert (changed.origin, changed.issue, changed.state) == ("device", "cooling", "in_progress")
    assert actions[1].message.skill == "refrigeration" and actions[3].message.kind == "case_opened"
    assert engine.stats["cases_opened_device"] == 1
    assert step(engine, event("fz-1", "fault", "E42", 20.0, seq=2)) == []  # already open: no second case
    assert len(engine.cases) == 1


def test_consumable_low_maps_its_consumable_through_the_fault_codes() -> None:
    engine = Engine(config())
    actions = step(engine, event("pr-1", "consumable_low", "ink", 10.0))
    assert kinds(actions) == [CaseChanged, OrderConsumable, Notify]
    assert actions[0].origin == "device" and actions[1].message.consumable == "ink"


def test_unknown_codes_open_nothing() -> None:
    engine = Engine(config())
    assert step(engine, event("fz-1", "fault", "E99", 10.0)) == []
    assert step(engine, event("pr-1", "consumable_low", "toner", 10.0)) == []
    assert engine.cases == {} and engine.stats["device_events"] == 2


@pytest.mark.parametrize(("kind", "code"), [("fault", "E42"), ("consumable_low", "ink")])
def test_under_the_reactive_policy_device_reports_open_nothing(kind: str, code: str) -> None:
    engine = Engine(config("reactive"))
    assert step(engine, event("fz-1", kind, code, 10.0)) == []
    assert engine.cases == {}


# -- 6. contacts resolved on the spot -----------------------------------------------------------


def test_a_contact_resolved_on_the_spot_opens_and_resolves_a_case_in_one_go() -> None:
    engine = Engine(config())
    actions = step(engine, contact("fz-1", 10.0, "not_cooling", resolved=True))
    assert kinds(actions) == [CaseChanged, Notify]
    assert actions[0].state == "resolved" and actions[1].message.kind == "resolved"
    case = engine.cases[actions[0].case_id]
    assert (case.first_response_s, case.resolved_s, case.origin) == (10.0, 10.0, "contact")
    assert engine.work_orders == {} and engine.pending_commands == {}
    assert engine.stats["resolved_on_contact"] == 1 and engine.stats["cases_resolved"] == 1


def test_a_contact_resolved_on_the_spot_keeps_a_case_with_an_open_work_order_open() -> None:
    engine = Engine(config())
    opened = step(engine, contact("fz-1", 10.0, "not_cooling"))
    case_id = opened[0].case_id
    assert step(engine, contact("fz-1", 20.0, "not_cooling", resolved=True)) == []
    assert engine.cases[case_id].state == "in_progress" and engine.open_case_of == {"fz-1": case_id}
    assert engine.cases[case_id].contacts == 2


def test_a_contact_resolved_on_the_spot_closes_a_case_waiting_on_a_remote_command() -> None:
    engine = Engine(config())
    cmd = open_remote(engine).message
    actions = step(engine, contact("tv-1", 20.0, "screen_frozen", resolved=True))
    assert kinds(actions) == [CaseChanged, Notify] and actions[0].state == "resolved"
    assert step(engine, event("tv-1", "command_result", "not_fixed", 30.0, cmd.command_id)) == []  # too late
    assert engine.work_orders == {}


# -- 7. an incomplete visit ---------------------------------------------------------------------


def test_an_incomplete_visit_waits_for_a_second_one() -> None:
    engine = Engine(config())
    (order,) = of(step(engine, contact("fz-1", 0.0, "not_cooling")), CreateWorkOrder)
    wo, case_id = order.message.work_order_id, order.message.case_id
    trail = []
    sequence = [("accepted", 1), ("arrived", 1), ("incomplete", 1), ("accepted", 2), ("arrived", 2), ("fixed", 2)]
    for seq, (what, visit) in enumerate(sequence, start=1):
        changed, *_ = step(engine, status(wo, "fz-1", what, seq * HOUR, seq, visit))
        trail.append((changed.state, changed.visit))
    assert trail == [
        ("accepted", 1),
        ("on_site", 1),
        ("awaiting_part", 1),
        ("accepted", 2),
        ("on_site", 2),
        ("done", 2),
    ]
    assert engine.stats["second_visits"] == 1 and engine.cases[case_id].state == "in_progress"
    actions = step(engine, status(wo, "fz-1", "closed", 10 * HOUR, 10, 2))
    assert kinds(actions) == [WorkOrderChanged, CaseChanged, Notify]
    assert engine.cases[case_id].state == "resolved" and engine.work_orders[wo].state == "closed"


# -- 8. the books stay straight whatever the order ----------------------------------------------

DEVICES = ["d0", "d1", "d2"]
NEXT_STATUS = {
    "created": ["accepted"],
    "accepted": ["arrived"],
    "on_site": ["fixed", "incomplete", "part_missing"],
    "awaiting_part": ["accepted"],
    "done": ["closed"],
}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policy=st.sampled_from(["proactive", "reactive"]), data=st.data())
def test_every_answer_keeps_one_state_per_case_and_one_open_case_per_device(policy: str, data: st.DataObject) -> None:
    engine = Engine(config(policy))
    t = 0.0
    for n in range(data.draw(st.integers(1, 25), label="steps")):
        t += 60.0
        device = data.draw(st.sampled_from(DEVICES), label="device")
        what = data.draw(st.sampled_from(["contact", "event", "result", "field", "reading"]), label="what")
        message: Message | BatchView
        if what == "contact":
            symptom = data.draw(st.sampled_from(sorted(SYMPTOMS)))
            message = contact(device, t, symptom, resolved=data.draw(st.booleans()))
        elif what == "event":
            kind, code = data.draw(
                st.sampled_from(
                    [("fault", "E42"), ("fault", "E99"), ("consumable_low", "ink"), ("consumable_refilled", "ink")]
                )
            )
            message = event(device, kind, code, t, seq=n)
        elif what == "result":
            command_id = data.draw(st.sampled_from([*sorted(engine.pending_commands), "cmd-nobody"]))
            message = event(device, "command_result", data.draw(st.sampled_from(["fixed", "not_fixed"])), t, command_id)
        elif what == "field" and any(wo.state in NEXT_STATUS for wo in engine.work_orders.values()):
            live = sorted(w for w, wo in engine.work_orders.items() if wo.state in NEXT_STATUS)
            wo = engine.work_orders[data.draw(st.sampled_from(live))]
            visit = wo.visit + (wo.state == "awaiting_part")
            status_ = data.draw(st.sampled_from(NEXT_STATUS[wo.state]))
            message = status(wo.work_order_id, wo.device_id, status_, t, n, visit)
        else:
            sensor, value = data.draw(st.sampled_from([("cpu", 0.99), ("cpu", 0.1), ("fw_err", 9.0), ("fw_err", 0.0)]))
            message = Telemetry(device_id=device, ts=t, boot_id=1, seq=n, values={sensor: value})
        step(engine, message, t)


# -- diagnosis before a visit ---------------------------------------------------------------------


def diagnosing() -> EngineConfig:
    issues = {
        **ISSUES,
        "not_cooling": IssueType(skill="refrigeration", parts=["compressor", "control_board"], diagnose=True),
        "board": IssueType(skill="electrical", parts=["control_board"], duration_s=1800.0),
    }
    return msgspec.structs.replace(
        config(),
        issues=issues,
        symptoms={**SYMPTOMS, "warm": "not_cooling"},
        diagnoses={"control_board": "board", "hang": "frozen_display"},
        diagnosis_wait_s=3600.0,
    )


def test_a_diagnosis_names_the_issue_the_visit_brings() -> None:
    engine = Engine(diagnosing())
    actions = step(engine, contact("fz-1", 0.0, "warm"))
    assert kinds(actions) == [CaseChanged, SendCommand, Notify]
    ask = actions[1].message
    assert (ask.action, ask.case_id) == ("diagnostic", actions[0].case_id)
    assert "checking your device remotely" in actions[2].message.text
    assert of(actions, CreateWorkOrder) == [] and engine.cases[ask.case_id].first_response_s is None
    answer = step(engine, event("fz-1", "diagnosis", "control_board", 60.0, command_id=ask.command_id))
    (order,) = [a.message for a in of(answer, CreateWorkOrder)]
    assert (order.issue, order.skill, order.parts, order.duration_s) == (
        "board",
        "electrical",
        ["control_board"],
        1800.0,
    )
    assert engine.cases[ask.case_id].issue == "board" and engine.stats["diagnoses_refined"] == 1
    assert [a.message.kind for a in of(answer, Notify)] == ["visit_scheduled"]
    assert step(engine, event("fz-1", "diagnosis", "control_board", 70.0, command_id=ask.command_id, seq=2)) == []


def test_a_diagnosis_naming_a_remote_fix_sends_the_command_instead_of_a_technician() -> None:
    engine = Engine(diagnosing())
    ask = of(step(engine, contact("fz-1", 0.0, "warm")), SendCommand)[0].message
    answer = step(engine, event("fz-1", "diagnosis", "hang", 60.0, command_id=ask.command_id))
    (fix,) = [a.message for a in of(answer, SendCommand)]
    assert fix.action == "reset" and of(answer, CreateWorkOrder) == []
    assert engine.pending_commands == {fix.command_id: ask.case_id}


def test_ok_or_no_answer_keeps_the_issue_and_sends_the_visit() -> None:
    engine = Engine(diagnosing())
    ask = of(step(engine, contact("fz-1", 0.0, "warm")), SendCommand)[0].message
    answer = step(engine, event("fz-1", "diagnosis", "ok", 60.0, command_id=ask.command_id))
    assert [a.message.parts for a in of(answer, CreateWorkOrder)] == [["compressor", "control_board"]]
    silent = Engine(diagnosing())
    step(silent, contact("fz-2", 0.0, "warm"))
    assert of(silent.advance(0.0), CreateWorkOrder) == []  # the question is out: the wait starts
    assert of(silent.advance(3600.0), CreateWorkOrder) == []  # still within the wait
    (late,) = [a.message for a in of(silent.advance(3601.0), CreateWorkOrder)]
    assert (late.issue, late.ts) == ("not_cooling", 3600.0) and silent.stats["diagnoses_timed_out"] == 1
