"""What the engine does with a device's answer to a remote fix: a fix resolves the case, no fault
found closes it without claiming a fix, and trouble that comes back soon after either gets a
technician (or a diagnosis first) instead of another remote attempt."""

from __future__ import annotations

import msgspec

from contracts import DeviceEvent, EngineConfig, IssueType, Telemetry, ThresholdRule
from support_engine.core.actions import Action, CaseChanged, CreateWorkOrder, Notify, SendCommand, WorkOrderChanged
from support_engine.core.engine import Engine, Snapshot

HOUR = 3600.0
DAY = 86400.0
ICED = ThresholdRule(name="defrost_long", sensor="defrost_min", above=35.0, issue="defrost")


def config(**defrost: object) -> EngineConfig:
    return EngineConfig(
        rules=[ICED],
        issues={"defrost": IssueType(skill="refrigeration", parts=["heater"], remote="reset", **defrost)},  # type: ignore[arg-type]
        diagnoses={"defrost_fault": "defrost"},
    )


def reading(t: float, value: float, seq: int, device: str = "fz-1") -> Telemetry:
    return Telemetry(device_id=device, ts=t, boot_id=1, seq=seq, values={"defrost_min": value})


def answer(command: SendCommand, code: str, t: float, seq: int) -> DeviceEvent:
    cmd = command.message
    return DeviceEvent(
        device_id=cmd.device_id, ts=t, boot_id=1, seq=seq, kind="command_result", code=code, command_id=cmd.command_id
    )


def of(actions: list[Action], kind: type) -> list:  # type: ignore[type-arg]
    return [a for a in actions if isinstance(a, kind)]


def alert(engine: Engine, t: float, seq: int) -> list[Action]:
    """The defrost runs long at ``t`` (raising the rule's alert), then normal again an hour later."""
    actions = engine.handle(reading(t, 50.0, seq), t)
    return actions + engine.handle(reading(t + HOUR, 20.0, seq + 1), t + HOUR)


def test_no_fault_found_closes_the_case_without_claiming_a_fix() -> None:
    engine = Engine(config())
    (reset,) = of(alert(engine, 0.0, 1), SendCommand)
    actions = engine.handle(answer(reset, "no_fault", 2 * HOUR, 1), 2 * HOUR)
    (changed,) = of(actions, CaseChanged)
    (note,) = [a.message for a in of(actions, Notify)]
    assert changed.state == "resolved" and engine.open_case_of == {}
    assert (note.kind, note.text) == ("resolved", "We checked your device remotely and found no fault.")
    assert engine.stats["remote_no_fault"] == 1 and engine.stats["remote_fixes"] == 0
    assert engine.stats["remote_fix_failed"] == 0 and engine.work_orders == {}


def test_an_alert_back_within_the_window_after_a_claimed_fix_gets_a_visit_not_a_second_reset() -> None:
    engine = Engine(config())
    (reset,) = of(alert(engine, 0.0, 1), SendCommand)
    engine.handle(answer(reset, "fixed", 2 * HOUR, 1), 2 * HOUR)
    again = alert(engine, 10 * HOUR, 3)  # the same device and issue, hours later
    assert of(again, SendCommand) == []
    (order,) = [a.message for a in of(again, CreateWorkOrder)]
    assert (order.device_id, order.issue, order.parts) == ("fz-1", "defrost", ["heater"])
    assert [a.message.text for a in of(again, Notify)] == [
        "We detected defrost long on your device. A technician is on the way."
    ]
    assert engine.stats["remote_escalated"] == 1 and engine.stats["remote_commands"] == 1


def test_no_fault_found_then_the_alert_again_also_gets_a_visit() -> None:
    engine = Engine(config())
    (reset,) = of(alert(engine, 0.0, 1), SendCommand)
    engine.handle(answer(reset, "no_fault", 2 * HOUR, 1), 2 * HOUR)
    again = alert(engine, 2 * DAY, 3)
    assert of(again, SendCommand) == [] and len(of(again, CreateWorkOrder)) == 1


def test_past_the_window_the_remote_fix_comes_first_again() -> None:
    engine = Engine(config(repeat_window_s=DAY))
    (reset,) = of(alert(engine, 0.0, 1), SendCommand)
    engine.handle(answer(reset, "fixed", 2 * HOUR, 1), 2 * HOUR)
    later = alert(engine, 2 * HOUR + DAY + 1.0, 3)
    assert [a.message.action for a in of(later, SendCommand)] == ["reset"] and of(later, CreateWorkOrder) == []
    assert engine.stats["remote_escalated"] == 0 and engine.remote_claims == {}


def test_a_remote_attempt_that_failed_is_followed_by_a_visit_and_claims_nothing() -> None:
    engine = Engine(config())
    (reset,) = of(alert(engine, 0.0, 1), SendCommand)
    actions = engine.handle(answer(reset, "not_fixed", 2 * HOUR, 1), 2 * HOUR)
    assert [type(a) for a in actions] == [CreateWorkOrder, WorkOrderChanged, Notify]
    assert engine.remote_claims == {} and engine.stats["remote_fix_failed"] == 1


def test_with_diagnose_the_repeat_asks_the_device_first_and_its_answer_sends_the_visit() -> None:
    engine = Engine(config(diagnose=True))
    (reset,) = of(alert(engine, 0.0, 1), SendCommand)
    assert reset.message.action == "reset"  # remote first: the diagnosis is for the visit that replaces it
    engine.handle(answer(reset, "fixed", 2 * HOUR, 1), 2 * HOUR)
    (ask,) = of(alert(engine, 10 * HOUR, 3), SendCommand)
    assert ask.message.action == "diagnostic"
    named = engine.handle(
        DeviceEvent(
            device_id="fz-1",
            ts=11 * HOUR,
            boot_id=1,
            seq=2,
            kind="diagnosis",
            code="defrost_fault",
            command_id=ask.message.command_id,
        ),
        11 * HOUR,
    )
    assert of(named, SendCommand) == []  # the diagnosis names the same remote issue: still no second reset
    assert [a.message.issue for a in of(named, CreateWorkOrder)] == ["defrost"]


def test_a_restarted_engine_remembers_the_claims() -> None:
    original = Engine(config())
    (reset,) = of(alert(original, 0.0, 1), SendCommand)
    original.handle(answer(reset, "fixed", 2 * HOUR, 1), 2 * HOUR)
    restored = Engine(config())
    restored.restore(msgspec.json.decode(msgspec.json.encode(original.snapshot()), type=Snapshot), dict(original.stats))
    assert restored.remote_claims == {("fz-1", "defrost"): 2 * HOUR}
    assert alert(restored, 10 * HOUR, 3) == alert(original, 10 * HOUR, 3)
    assert restored.snapshot() == original.snapshot()
