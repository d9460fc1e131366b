"""An owner who gets in touch about a fault the engine has just fixed is answered from that case.

The owner of a device fixed remotely may call before hearing of it (or without reading the notice).
Within ``recontact_window_s`` of the resolution, with no alert active on the device, the first such
contact is told the case is resolved: no new case, no technician. A second one, one while an alert
is active, one after the window or one after advice is a fault again and opens a case as usual."""

from __future__ import annotations

import msgspec

from contracts import EngineConfig, Telemetry
from support_engine.core.actions import CaseChanged, CreateWorkOrder, Notify, SendCommand
from support_engine.core.engine import Engine, Snapshot
from tests.unit.test_engine_responses import HOUR, ISSUES, SYMPTOMS, config, contact, event, kinds, of, step


def fixed_remotely(engine: Engine, device: str = "tv-1", at: float = 60.0) -> str:
    """Open a remote case on ``device`` by a contact at 10 s and fix it at ``at``; return the case id."""
    (command,) = of(step(engine, contact(device, 10.0, "screen_frozen")), SendCommand)
    step(engine, event(device, "command_result", "fixed", at, command.message.command_id))
    assert engine.open_case_of == {}
    return command.message.case_id


def test_the_first_contact_after_a_remote_fix_is_told_it_is_resolved_and_nobody_is_sent() -> None:
    engine = Engine(config())
    case_id = fixed_remotely(engine)
    actions = step(engine, contact("tv-1", 60.0 + 2 * HOUR, "screen_frozen"))
    assert kinds(actions) == [Notify]
    note = actions[0].message
    assert (note.kind, note.case_id, note.device_id) == ("resolved", case_id, "tv-1")
    assert "2.0 h ago" in note.text and "contact us again" in note.text
    assert engine.open_case_of == {} and engine.work_orders == {} and engine.pending_commands == {}
    assert engine.stats["contacts_after_resolution"] == 1 and engine.stats["cases_opened"] == 1
    assert engine.cases[case_id].contacts == 2


def test_a_contact_that_raced_the_fix_is_answered_too() -> None:
    """The owner's call began before the fix and reached the engine after it (an earlier ``ts``)."""
    engine = Engine(config())
    case_id = fixed_remotely(engine, at=600.0)
    (note,) = of(step(engine, contact("tv-1", 300.0, "screen_frozen"), 600.0), Notify)
    assert (note.message.kind, note.message.case_id) == ("resolved", case_id)
    assert "0.0 h ago" in note.message.text


def test_a_second_contact_is_a_fault_again_and_opens_a_case() -> None:
    engine = Engine(config())
    fixed_remotely(engine)
    step(engine, contact("tv-1", HOUR, "screen_frozen"))
    actions = step(engine, contact("tv-1", 2 * HOUR, "screen_frozen"))
    (changed,) = of(actions, CaseChanged)
    assert (changed.origin, changed.issue) == ("contact", "frozen_display")
    assert engine.stats["contacts_after_resolution"] == 1 and engine.stats["cases_opened"] == 2


def test_a_contact_after_the_window_opens_a_case() -> None:
    engine = Engine(EngineConfig(**{**msgspec.structs.asdict(config()), "recontact_window_s": HOUR}))
    fixed_remotely(engine)
    actions = step(engine, contact("tv-1", 60.0 + HOUR + 1.0, "not_cooling"))
    assert len(of(actions, CreateWorkOrder)) == 1
    assert engine.stats["contacts_after_resolution"] == 0


def test_a_contact_while_an_alert_is_active_on_the_device_opens_a_case() -> None:
    """The case is resolved but the device's telemetry still trips a rule: the owner is right."""
    engine = Engine(config())
    fixed_remotely(engine)
    step(engine, Telemetry(device_id="tv-1", ts=100.0, boot_id=1, seq=1, values={"fw_err": 9.0}))
    case_id = engine.open_case_of.pop("tv-1")  # the alert's case, closed by hand: only the alert is left
    engine.cases[case_id].state, engine.cases[case_id].resolved_s = "resolved", 150.0
    assert engine._alert_active("tv-1")
    actions = step(engine, contact("tv-1", 200.0, "wifi_drops"))
    assert len(of(actions, CaseChanged)) == 1 and engine.stats["contacts_after_resolution"] == 0


def test_advice_is_given_again_not_a_resolution() -> None:
    engine = Engine(config())
    step(engine, contact("tv-1", 10.0, "no_power"))
    again = step(engine, contact("tv-1", 20.0, "no_power"))
    assert [n.message.kind for n in of(again, Notify)] == ["outage"]
    assert engine.stats["contacts_after_resolution"] == 0


def test_a_contact_resolved_on_the_call_is_not_answered_from_the_old_case() -> None:
    engine = Engine(config())
    fixed_remotely(engine)
    actions = step(engine, contact("tv-1", HOUR, "screen_frozen", resolved=True))
    assert [a.state for a in of(actions, CaseChanged)] == ["resolved"]
    assert engine.stats["resolved_on_contact"] == 1 and engine.stats["contacts_after_resolution"] == 0


def test_the_resolutions_a_contact_may_be_answered_from_survive_a_restart() -> None:
    engine = Engine(config())
    case_id = fixed_remotely(engine)
    saved = msgspec.json.encode(engine.snapshot())
    restored = Engine(engine.config)
    restored.restore(msgspec.json.decode(saved, type=Snapshot), dict(engine.stats))
    (note,) = of(restored.handle(contact("tv-1", HOUR, "screen_frozen"), HOUR), Notify)
    assert (note.message.kind, note.message.case_id) == ("resolved", case_id)


def test_only_the_resolutions_of_the_window_are_kept() -> None:
    """Memory stays flat: a resolution older than the window is forgotten when a later one comes."""
    window = 10 * HOUR
    engine = Engine(EngineConfig(issues=ISSUES, symptoms=SYMPTOMS, default_issue="cooling", recontact_window_s=window))
    for n in range(200):
        device, t = f"tv-{n}", n * HOUR
        (command,) = of(step(engine, contact(device, t, "screen_frozen")), SendCommand)
        step(engine, event(device, "command_result", "fixed", t + 60.0, command.message.command_id))
        assert len(engine.resolved_lately) <= 11
    kept = [t for _, t, _ in engine.resolved_lately.values()]
    assert min(kept) >= 199 * HOUR + 60.0 - window
    assert len(engine.snapshot().resolved_lately) == len(kept)
