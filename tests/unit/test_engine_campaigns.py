"""Fleet patterns through the engine: a cohort that fails more than the fleet opens a staged campaign."""

from __future__ import annotations

import msgspec

from contracts import Contact, DeviceEvent, EngineConfig, IssueType, Telemetry
from contracts.engine_config import CampaignRule
from contracts.messages import DeviceRecord
from support_engine.core.actions import Action, CampaignChanged, CreateWorkOrder, SendCommand
from support_engine.core.engine import Engine, Snapshot

HOUR = 3600.0
DAY = 24 * HOUR
FLEET = [f"u-{i:03d}" for i in range(200)]
BAD = set(FLEET[:40])  # batch B7: a fifth of the fleet, on firmware 8.0


def config(action: str = "ota", abort: float = 0.05) -> EngineConfig:
    rule = CampaignRule(
        name="crashes",
        by="firmware" if action == "ota" else "batch",
        issues=["crash"],
        min_cases=5,
        alpha=0.001,
        action=action,  # type: ignore[arg-type]
        ota_version="8.1" if action == "ota" else None,
        recall_issue="recall" if action == "recall" else None,
        stages=[0.1, 0.5, 1.0],
        stage_wait_s=DAY,
        check_every_s=HOUR,
        abort_failure_rate=abort,
    )
    return EngineConfig(
        issues={
            "crash": IssueType(skill="electronics", remote="reset"),
            "recall": IssueType(skill="electronics", parts=["board"]),
        },
        symptoms={"crash": "crash"},
        campaigns=[rule],
    )


def fleet(engine: Engine) -> None:
    engine.provision(
        [
            DeviceRecord(
                device_id=d, firmware="8.0" if d in BAD else "7.4", cohorts={"batch": "B7" if d in BAD else "B6"}
            )
            for d in FLEET
        ]
    )
    for d in FLEET:  # every device is heard from (a twin)
        engine.handle(Telemetry(device_id=d, ts=0.0, boot_id=1, seq=1, values={"temp": 4.0}), 0.0)


def calls(engine: Engine, devices: list[str], t: float) -> None:
    for n, d in enumerate(devices):
        contact = Contact(
            contact_id=f"c-{d}-{t}", owner_id=f"o-{d}", device_id=d, channel="app", ts=t + n, symptom="crash"
        )
        engine.handle(contact, t + n)


def sent(actions: list[Action]) -> list[str]:
    return [a.message.device_id for a in actions if isinstance(a, SendCommand) and a.message.case_id is None]


def test_a_failing_firmware_cohort_gets_a_staged_update_that_completes() -> None:
    engine = Engine(config())
    fleet(engine)
    calls(engine, sorted(BAD)[:8] + FLEET[100:102], HOUR)  # 8 of 40 against 2 of 160
    actions = engine.advance(2 * HOUR)
    (opened, staged) = [a for a in actions if isinstance(a, CampaignChanged)]
    assert (opened.cohort, opened.targets, opened.state) == ("firmware=8.0", 40, "running")
    first = sent(actions)
    assert len(first) == 4 and set(first) <= BAD  # 10 % of the cohort, nobody outside it
    assert staged.sent == 4 and engine.desired[first[0]]["firmware"] == "8.1"
    assert sent(engine.advance(2 * HOUR + DAY / 2)) == []  # the stage waits its day
    second = sent(engine.advance(2 * HOUR + DAY + 1))
    assert len(second) == 16 and not set(second) & set(first)
    third = sent(engine.advance(2 * HOUR + 2 * DAY + 2))
    assert len(third) == 20 and set(first) | set(second) | set(third) == BAD
    done = [a for a in engine.advance(2 * HOUR + 3 * DAY + 3) if isinstance(a, CampaignChanged)]
    assert [c.state for c in done] == ["completed"]
    assert engine.stats["campaigns_opened"] == engine.stats["campaigns_completed"] == 1
    assert engine.campaigns == {}
    engine.advance(10 * DAY)  # the same cohort is not campaigned twice
    assert engine.stats["campaigns_opened"] == 1


def test_equal_rates_open_no_campaign() -> None:
    engine = Engine(config())
    fleet(engine)
    calls(engine, sorted(BAD)[:2] + FLEET[100:108], HOUR)  # 2 of 40 against 8 of 160: the same rate
    assert [a for a in engine.advance(2 * HOUR) if isinstance(a, CampaignChanged)] == []


def test_failures_after_an_update_abort_the_campaign() -> None:
    engine = Engine(config(abort=0.2))
    fleet(engine)
    calls(engine, sorted(BAD)[:8], HOUR)
    first = sent(engine.advance(2 * HOUR))
    for n, d in enumerate(first[:2]):  # half of the first stage reports the update failed
        event = DeviceEvent(device_id=d, ts=3 * HOUR, boot_id=1, seq=10 + n, kind="command_result", code="failed")
        engine.handle(msgspec.structs.replace(event, command_id=next(iter(engine.campaign_commands))), 3 * HOUR)
    ended = [a for a in engine.advance(2 * HOUR + DAY + 1) if isinstance(a, CampaignChanged)]
    assert [c.state for c in ended] == ["aborted"] and "more than the abort threshold" in ended[0].reason
    assert sent(engine.advance(5 * DAY)) == []  # no further stage
    assert engine.stats["campaigns_aborted"] == 1


def test_a_recall_opens_a_visit_per_device_of_the_batch_in_stages() -> None:
    engine = Engine(config(action="recall"))
    fleet(engine)
    calls(engine, sorted(BAD)[:8], HOUR)
    for d in sorted(BAD)[:8]:  # those owners' cases are over before the recall
        engine._resolve(engine.cases[engine.open_case_of[d]], 1.5 * HOUR, None)
    actions = engine.advance(2 * HOUR)
    visits = [a.message for a in actions if isinstance(a, CreateWorkOrder)]
    assert len(visits) == 4 and {v.issue for v in visits} == {"recall"} and {v.device_id for v in visits} <= BAD
    assert all(engine.cases[v.case_id].origin == "campaign" for v in visits)


def test_a_running_campaign_survives_a_restart() -> None:
    engine = Engine(config())
    fleet(engine)
    calls(engine, sorted(BAD)[:8], HOUR)
    first = sent(engine.advance(2 * HOUR))
    saved = msgspec.json.decode(msgspec.json.encode(engine.snapshot()), type=Snapshot)
    again = Engine(config())
    fleet(again)
    again.restore(saved)
    second = sent(again.advance(2 * HOUR + DAY + 1))
    assert len(second) == 16 and not set(second) & set(first)
    assert again.stats["campaigns_opened"] == 0  # not reopened: the restored one carries on
