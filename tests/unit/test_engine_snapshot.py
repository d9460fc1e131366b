"""A restarted engine core takes up exactly where the old one stopped: same answers, same ids."""

from __future__ import annotations

import msgspec
import pytest

from contracts.engine_config import EngineConfig, IssueType
from contracts.messages import Contact, DeviceEvent, Message, WorkOrderStatus
from support_engine.core.actions import Action, SendCommand
from support_engine.core.engine import Engine, Snapshot

CONFIG = EngineConfig(
    issues={
        "broken": IssueType(skill="general", parts=["motor"]),
        "stuck": IssueType(skill="general", remote="reset"),
        "ink": IssueType(skill="general", consumable="ink"),
    },
    symptoms={"dead": "broken", "frozen": "stuck", "empty": "ink"},
)


def contact(device: str, t: float, symptom: str) -> Contact:
    return Contact(contact_id=f"c-{device}-{t:g}", owner_id="o", device_id=device, channel="app", ts=t, symptom=symptom)


def status(wo: str, device: str, t: float, seq: int, state: str) -> WorkOrderStatus:
    return WorkOrderStatus(
        work_order_id=wo,
        device_id=device,
        ts=t,
        seq=seq,
        status=state,
        technician_id="t-1",  # type: ignore[arg-type]
    )


def story() -> list[Message]:
    """Cases of every kind in flight at once, then what happens to them."""
    return [
        contact("a", 10.0, "dead"),
        contact("b", 20.0, "frozen"),
        contact("c", 30.0, "empty"),
        contact("d", 40.0, "dead"),
        status("wo-0000001", "a", 50.0, 1, "accepted"),
        # -- a restart may fall here --
        contact("a", 60.0, "dead"),
        status("wo-0000001", "a", 70.0, 2, "arrived"),
        DeviceEvent(
            device_id="b", ts=80.0, boot_id=1, seq=1, kind="command_result", code="fixed", command_id="cmd-0000001"
        ),
        DeviceEvent(device_id="c", ts=90.0, boot_id=1, seq=1, kind="consumable_refilled", code="ink"),
        status("wo-0000001", "a", 100.0, 3, "fixed"),
        status("wo-0000001", "a", 110.0, 4, "closed"),
        contact("e", 120.0, "dead"),
        contact("d", 130.0, "dead"),
    ]


def play(engine: Engine, messages: list[Message]) -> list[Action]:
    actions: list[Action] = []
    for m in messages:
        actions += engine.handle(m, m.ts)  # type: ignore[attr-defined]
        actions += engine.advance(m.ts)  # type: ignore[attr-defined]
    return actions


@pytest.mark.parametrize("cut", range(len(story()) + 1))
def test_a_restored_engine_answers_the_rest_of_the_story_as_the_original_would(cut: int) -> None:
    messages = story()
    original = Engine(CONFIG)
    play(original, messages[:cut])
    saved = msgspec.json.encode(original.snapshot())  # what the database keeps
    restored = Engine(CONFIG)
    restored.restore(msgspec.json.decode(saved, type=Snapshot), dict(original.stats))
    assert play(restored, messages[cut:]) == play(original, messages[cut:])
    assert restored.snapshot() == original.snapshot()


def test_the_snapshot_keeps_only_what_is_open() -> None:
    engine = Engine(CONFIG)
    actions = play(engine, story())
    snapshot = engine.snapshot()
    assert {c.device_id for c in snapshot.cases} == {"d", "e"}  # a, b and c were resolved
    assert all(w.case_id in {c.case_id for c in snapshot.cases} for w in snapshot.work_orders)
    assert snapshot.ids["case"] == 5
    assert [a.message.command_id for a in actions if isinstance(a, SendCommand)] == ["cmd-0000001"]
    assert snapshot.pending_commands == {}
