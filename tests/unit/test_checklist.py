"""The effortless-service checklist: each point's share on hand-built records, its verdict boundaries,
and "not exercised" when the run has nothing to count."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from experiments import checklist
from experiments.checklist import TARGETS, Target, evaluate, verdict
from experiments.ledger import cost_ledger
from experiments.rundata import CaseRow, EngineLog, OutboxRow, RunData, owner_contacts
from sim.records import Failure, Incident, Job, Records
from sim.scenario import Scenario
from sim.scenario_file import validate_data

DAY = 86400.0
H = 3600.0
END = 10 * DAY
OUTAGE = {"name": "storm", "region": "east", "start_day": 5, "duration_h": 12, "power": True}


def scenario(
    outages: list[dict[str, Any]] | None = None, resolution_s: float = 86400.0, sync_interval_s: float = 3600.0
) -> Scenario:
    data = {
        "name": "checklist",
        "duration_days": 10,
        "sync_interval_s": sync_interval_s,
        "fleets": [
            {
                "name": "freezer",
                "product": "freezer",
                "count": 100,
                "telemetry_interval_s": min(900.0, sync_interval_s),
                "regions": {"east": 0.5, "west": 0.5},
                "owners": {"channels": {"app": 0.25, "phone": 0.75}},
            }
        ],
        "contact_centre": {"agents": 2},
        "technicians": {"count": 2},
        "outages": outages or [],
        "engine": {"symptoms": {"no_power": "freezer_power"}, "sla": {"resolution_s": resolution_s}},
    }
    result, problems = validate_data(data)
    assert result is not None, problems
    return result


def run(records: Records, engine: EngineLog | None = None, start_s: float = 0.0, **kw: Any) -> RunData:
    return RunData(
        scenario=kw.get("scenario") or scenario(),
        policy="proactive",
        records=records,
        engine=engine or EngineLog(),
        stats={},
        end_s=END,
        start_s=start_s,
    )


def dev(n: int) -> str:
    return f"freezer-{n:06d}"


def note(ts: float, device: str, kind: str) -> OutboxRow:
    return OutboxRow(ts, "Notify", device, f"note-{ts:.0f}", json.dumps({"kind": kind, "device_id": device}))


def resolved_note(ts: float, device: str, case_id: str) -> OutboxRow:
    payload = {"kind": "resolved", "device_id": device, "case_id": case_id}
    return OutboxRow(ts, "Notify", device, f"note-{ts:.0f}", json.dumps(payload))


def contact(r: Records, t: float, device: str, channel: str = "phone") -> None:
    r.log(t, "owner", "contact", device, f"contact-{t:.0f}", f"{channel}: not_cooling")


def point(data: RunData, key: str) -> dict[str, Any]:
    return dict(evaluate(data)["points"][key])


def case(cid: str, device: str, opened: float, updated: float, state: str = "resolved") -> CaseRow:
    return CaseRow(cid, device, "freezer_cooling", state, 1, "telemetry", opened, updated, None)


# -- verdicts and targets ---------------------------------------------------------------------------


def test_targets_follow_the_checklist_and_the_domain_figures() -> None:
    assert [t.number for t in TARGETS] == list(range(1, 8))
    targets = {t.key: t for t in TARGETS}
    assert list(targets) == list(evaluate(run(Records()))["points"])
    assert targets["right_first_time"].target == 0.88 and targets["right_first_time"].partial_from == 0.75
    assert targets["instant_validation"].target == 0.95
    assert all(t.target == 0.80 for t in TARGETS if t.key not in ("right_first_time", "instant_validation"))
    assert all(0 < t.partial_from < t.target <= 1 for t in TARGETS)


@pytest.mark.parametrize(
    ("share", "expected"),
    [(1.0, "pass"), (0.88, "pass"), (0.8799, "partial"), (0.75, "partial"), (0.7499, "fail"), (0.0, "fail")],
)
def test_verdict_boundaries(share: float, expected: str) -> None:
    assert verdict(share, TARGETS[1]) == expected


def test_no_share_is_not_exercised() -> None:
    assert verdict(None, TARGETS[0]) == "not exercised"


@pytest.mark.parametrize("share", [None, 0.0, 0.6999, 0.7, 0.85, 0.8799, 0.88, 1.0])
def test_the_comparison_grades_a_mean_share_as_the_checklist_does(share: float | None) -> None:
    from experiments import compare  # the comparison's imports are heavier; only these tests need them

    for t in TARGETS:
        assert compare._verdict(share, t.target, t.partial_from) == verdict(share, t)
    assert compare._verdict(share, None, 0.5) == "not exercised"
    without_partial = "not exercised" if share is None else "pass" if share >= 0.8 else "fail"
    assert compare._verdict(share, 0.8, None) == without_partial


def test_the_comparison_grades_with_the_checklists_own_verdict(monkeypatch: pytest.MonkeyPatch) -> None:
    from experiments import compare

    seen = []

    def spy(share: float | None, target: Target) -> str:
        seen.append((share, target.target, target.partial_from))
        return "pass"

    monkeypatch.setattr(checklist, "verdict", spy)
    assert compare._verdict(0.5, 0.9, 0.6) == "pass"
    assert seen == [(0.5, 0.9, 0.6)]


def test_an_empty_run_exercises_nothing() -> None:
    result = evaluate(run(Records()))
    assert result["summary"] == {"pass": 0, "partial": 0, "fail": 0, "not exercised": 7}
    for p in result["points"].values():
        assert (p["share"], p["verdict"], p["denominator"]) == (None, "not exercised", 0)
        assert p["reason"]
    assert result["points"]["in_context"]["reason"] == "no owner contact reached support"
    assert result["points"]["contingency"]["reason"] == "the scenario has no outage"


# -- 1. in context -----------------------------------------------------------------------------------


def test_in_context_counts_contacts_that_found_a_case_open_or_the_device_online() -> None:
    r = Records()
    contact(r, 1 * DAY, dev(1))  # a case opened at 0.5 d is still open: in context
    contact(r, 2 * DAY, dev(2), "app")  # its case was resolved at 1.5 d and it is offline: not
    contact(r, 3 * DAY, dev(3))  # no case, but online: in context
    contact(r, 4 * DAY, dev(4), "self_service")  # offline; its case opens with this very contact: not
    r.link += [(1.9 * DAY, dev(2), "offline", "3.000 h"), (3.9 * DAY, dev(4), "offline", "5.000 h")]
    cases = [
        case("c1", dev(1), 0.5 * DAY, 0.5 * DAY, "in_progress"),
        case("c2", dev(2), 1 * DAY, 1.5 * DAY),
        case("c4", dev(4), 4 * DAY, 4 * DAY, "in_progress"),
    ]
    p = point(run(r, EngineLog(cases=cases)), "in_context")
    assert (p["numerator"], p["denominator"], p["share"], p["verdict"]) == (2, 4, 0.5, "fail")
    assert (p["details"]["case_already_open"], p["details"]["device_online"]) == (1, 2)
    assert p["details"]["channels_used"] == {"app": 0.25, "phone": 0.5, "self_service": 0.25}
    assert p["details"]["channels_preferred"] == {"app": 0.25, "phone": 0.75}


def test_a_case_stops_giving_context_when_the_engine_said_it_was_resolved() -> None:
    r = Records()
    contact(r, 2 * DAY, dev(2))  # offline; its case was resolved at 1.5 d and updated once more at 2.5 d
    r.link.append((1.9 * DAY, dev(2), "offline", "3.000 h"))
    later = EngineLog(cases=[case("c2", dev(2), 1 * DAY, 2.5 * DAY)], outbox=[resolved_note(1.5 * DAY, dev(2), "c2")])
    assert point(run(r, later), "in_context")["numerator"] == 0
    unnotified = EngineLog(cases=[case("c2", dev(2), 1 * DAY, 2.5 * DAY)])  # no notice: its last update
    assert point(run(r, unnotified), "in_context")["numerator"] == 1


def test_the_ledger_and_the_checklist_count_the_same_owner_contacts() -> None:
    r = Records()
    contact(r, 0.5 * DAY, dev(1))  # in the warm-up
    contact(r, 2 * DAY, dev(2), "app")
    contact(r, 3 * DAY, dev(3), "self_service")
    data = run(r, start_s=1 * DAY)
    assert owner_contacts(data) == [(2 * DAY, dev(2), "app"), (3 * DAY, dev(3), "self_service")]
    assert point(data, "in_context")["denominator"] == cost_ledger(data)["lines"]["agent_time"]["contacts"] == 2


def test_a_device_without_power_in_an_outage_gives_no_context() -> None:
    r = Records()
    r.failures.append(Failure(dev(1), "freezer", "power_outage", "down", 5 * DAY, restored_s=5.5 * DAY))
    contact(r, 5.2 * DAY, dev(1))
    contact(r, 5.6 * DAY, dev(1))  # power is back: online again
    p = point(run(r, scenario=scenario([OUTAGE])), "in_context")
    assert (p["numerator"], p["denominator"]) == (1, 2)


# -- 2. right person the first time ----------------------------------------------------------------------


def test_right_first_time_is_the_first_time_fix_of_jobs_that_found_a_fault() -> None:
    r = Records()
    for k in range(9):
        r.jobs[f"wo-{k}"] = Job(f"wo-{k}", dev(k), "cooling", 1 * DAY, visits=1, outcome="fixed")
    r.jobs["wo-9"] = Job("wo-9", dev(9), "cooling", 1 * DAY, visits=2, second_visit_causes=["part"], outcome="fixed")
    r.jobs["wo-nff"] = Job("wo-nff", dev(10), "cooling", 1 * DAY, visits=1, outcome="no_fault_found")
    r.jobs["wo-open"] = Job("wo-open", dev(11), "cooling", 1 * DAY)
    r.jobs["wo-early"] = Job("wo-early", dev(12), "cooling", 0.5 * DAY, visits=3, outcome="fixed")  # warm-up
    p = point(run(r, start_s=0.75 * DAY), "right_first_time")
    assert (p["numerator"], p["denominator"], p["share"], p["verdict"]) == (9, 10, 0.9, "pass")
    assert p["details"] == {"second_visits_by_cause": {"part": 1}, "no_fault_found": 1, "still_open": 1}


# -- 3. fewer than four steps --------------------------------------------------------------------------


def test_few_steps_counts_ended_incidents_and_open_ones_already_at_four() -> None:
    r = Records()
    for n, steps in enumerate((0, 1, 3, 4)):
        r.incidents.append(Incident(dev(n), "freezer", 1, 1 * DAY, "down", restored_s=2 * DAY, contacts=steps))
    r.incidents.append(Incident(dev(5), "freezer", 1, 1 * DAY, "down", contacts=2, abandoned=2, visits=1))  # open, 5
    r.incidents.append(Incident(dev(6), "freezer", 1, 1 * DAY, "down", contacts=1))  # open, 1 step: undecided
    r.incidents.append(Incident(dev(7), "freezer", 1, 0.1 * DAY, "down", restored_s=1 * DAY, contacts=9))  # warm-up
    p = point(run(r, start_s=0.5 * DAY), "few_steps")
    assert (p["numerator"], p["denominator"], p["share"], p["verdict"]) == (3, 5, 0.6, "fail")
    assert p["details"] == {"steps_mean": pytest.approx(13 / 5), "undecided": 1}


# -- 4. within a day ---------------------------------------------------------------------------------


def test_within_a_day_judges_incidents_that_began_a_day_before_the_end() -> None:
    r = Records()
    r.incidents += [
        Incident(dev(1), "freezer", 1, 1 * DAY, "down", restored_s=1 * DAY + 10 * H),  # yes
        Incident(dev(2), "freezer", 1, 2 * DAY, "down", restored_s=2 * DAY + 30 * H),  # no
        Incident(dev(3), "freezer", 1, 3 * DAY, "degraded"),  # still open: no
        Incident(dev(4), "freezer", 1, 9 * DAY, "down", restored_s=10 * DAY),  # exactly 24 h: yes
        Incident(dev(5), "freezer", 1, 9.5 * DAY, "down"),  # too late to judge
    ]
    p = point(run(r), "within_a_day")
    assert (p["numerator"], p["denominator"], p["share"], p["verdict"]) == (2, 4, 0.5, "fail")
    assert p["details"] == {"window_h": 24.0}


def test_within_a_day_allows_a_longer_sla() -> None:
    r = Records()
    r.incidents += [
        Incident(dev(1), "freezer", 1, 1 * DAY, "down", restored_s=1 * DAY + 30 * H),  # in 72 h: yes
        Incident(dev(2), "freezer", 1, 2 * DAY, "down", restored_s=2 * DAY + 80 * H),  # no
        Incident(dev(3), "freezer", 1, 8 * DAY, "down", restored_s=8 * DAY + H),  # after end - 72 h: not judged
    ]
    p = point(run(r, scenario=scenario(resolution_s=3 * DAY)), "within_a_day")
    assert (p["numerator"], p["denominator"], p["details"]["window_h"]) == (1, 2, 72.0)


# -- 5. automatic triage and proactive outreach ---------------------------------------------------------


def test_proactive_counts_owners_told_before_they_noticed_and_prevented_failures_told() -> None:
    r = Records()
    r.incidents += [
        Incident(dev(1), "freezer", 1, 1 * DAY, "down", noticed_s=1.3 * DAY, informed_s=1.1 * DAY),  # yes
        Incident(dev(2), "freezer", 1, 1 * DAY, "down", noticed_s=1.1 * DAY, informed_s=1.3 * DAY),  # no
        Incident(dev(3), "freezer", 1, 1 * DAY, "down", informed_s=1.1 * DAY),  # never noticed, told: yes
        Incident(dev(4), "freezer", 1, 1 * DAY, "down", restored_s=1.1 * DAY),  # nobody knew: no
    ]
    r.failures += [
        Failure(dev(5), "freezer", "compressor_wear", "down", 3 * DAY, True, 2 * DAY, "technician", 1.5 * DAY),
        Failure(dev(6), "freezer", "compressor_wear", "down", 3 * DAY, True, 2 * DAY, "technician"),
        Failure(dev(7), "freezer", "compressor_wear", "down", 3 * DAY, restored_s=4 * DAY),  # not prevented
    ]
    p = point(run(r), "proactive")
    assert (p["numerator"], p["denominator"], p["share"], p["verdict"]) == (3, 6, 0.5, "fail")
    assert p["details"] == {"incidents": 4, "incidents_told_first": 2, "prevented": 2, "prevented_told": 1}


# -- 6. instant validation -----------------------------------------------------------------------------


def test_instant_validation_allows_the_first_sync_step_after_the_restoration() -> None:
    r = Records()  # sync steps of an hour: a notice can reach the owner at the next full hour at best
    restored = [1 * DAY + 600, 2 * DAY + 600, 3 * DAY, 4 * DAY + 600, 5 * DAY + 600]
    confirmed = [
        1 * DAY + H,  # the first step after the restoration: yes
        2 * DAY + 2 * H,  # a step later: no
        3 * DAY + H,  # restored on a step: the next one: yes
        math.nan,  # never told: no
        5 * DAY,  # told before the restoration: premature, no
    ]
    for n, (t, c) in enumerate(zip(restored, confirmed, strict=True)):
        r.incidents.append(Incident(dev(n), "freezer", 1, t - 5 * H, "down", restored_s=t, confirmed_s=c))
    r.incidents.append(Incident(dev(9), "freezer", 1, END - H, "down", restored_s=END - 600))  # undecided
    p = point(run(r), "instant_validation")
    assert (p["numerator"], p["denominator"], p["share"], p["verdict"]) == (2, 5, 0.4, "fail")
    assert p["details"] == {"confirmed": 4, "premature": 1, "never_confirmed": 1}


def test_instant_validation_is_15_minutes_when_the_sync_steps_are_shorter() -> None:
    r = Records()
    for n, delay in enumerate((0.0, 900.0, 901.0)):
        t = (n + 1) * DAY + 100
        r.incidents.append(Incident(dev(n), "freezer", 1, t - H, "down", restored_s=t, confirmed_s=t + delay))
    p = point(run(r, scenario=scenario(sync_interval_s=300.0)), "instant_validation")
    assert (p["numerator"], p["denominator"]) == (2, 3)


def test_instant_validation_passes_at_95_percent() -> None:
    r = Records()
    for n in range(20):
        c = n * 0.4 * DAY + 1 * H
        r.incidents.append(
            Incident(dev(n), "freezer", 1, c - H, "down", restored_s=c, confirmed_s=c + (2 * H if n == 0 else 0))
        )
    p = point(run(r), "instant_validation")
    assert (p["share"], p["verdict"]) == (0.95, "pass")


def test_a_resolved_notice_while_the_incident_was_still_on_is_premature() -> None:
    r = Records()
    for n, early in enumerate((0, 1, 2)):
        t = (n + 1) * DAY
        r.incidents.append(
            Incident(
                dev(n), "freezer", 1, t - 5 * H, "down", restored_s=t, confirmed_s=t + 60, premature_resolved=early
            )
        )
    r.incidents.append(Incident(dev(5), "freezer", 1, 5 * DAY, "down", restored_s=6 * DAY, premature_resolved=1))
    p = point(run(r), "instant_validation")
    # only dev(0) was told once, in time; the others heard "resolved" while their device was still down
    assert (p["numerator"], p["denominator"]) == (1, 4)
    assert p["details"] == {"confirmed": 3, "premature": 3, "never_confirmed": 1}
    alone = Records(incidents=[r.incidents[-1]])  # told only prematurely: exercised, and a fail
    told = EngineLog(outbox=[note(5.5 * DAY, dev(5), "resolved")])
    q = point(run(alone, told), "instant_validation")
    assert (q["share"], q["details"]["premature"]) == (0.0, 1)


def test_instant_validation_is_not_exercised_when_the_records_carry_no_confirmations() -> None:
    r = Records()
    r.incidents.append(Incident(dev(1), "freezer", 1, 1 * DAY, "down", restored_s=2 * DAY))
    told = EngineLog(outbox=[note(2 * DAY, dev(1), "resolved")])
    p = point(run(r, told), "instant_validation")
    assert (p["share"], p["verdict"], p["denominator"]) == (None, "not exercised", 1)
    assert "confirmed_s" in p["reason"]
    silent = point(run(r), "instant_validation")  # the engine never said "resolved": a true 0
    assert (silent["share"], silent["verdict"]) == (0.0, "fail")


# -- 7. contingency plan -----------------------------------------------------------------------------


def outage_records() -> tuple[Records, list[OutboxRow]]:
    start = 5 * DAY
    r = Records()
    r.link.append((start, "east", "outage", "storm: 4 devices for 12.0 h"))
    for n in range(1, 5):
        r.failures.append(Failure(dev(n), "freezer", "power_outage", "down", start, restored_s=start + 12 * H))
    r.failures.append(Failure(dev(9), "freezer", "power_loss", "down", start + H))  # its own power cut: not hit
    contact(r, start + 0.5 * H, dev(2))
    contact(r, start + 3 * H, dev(3))
    outbox = [
        note(start + H, dev(1), "outage"),  # told, never called: yes
        note(start + 0.5 * H, dev(2), "outage"),  # told by the agent it called: not before
        note(start + 2 * H, dev(3), "outage"),  # told, then called: yes
        note(start - DAY, dev(4), "outage"),  # told the day before, not during: no
        note(start + H, dev(4), "case_opened"),  # not an outage notice
    ]
    return r, outbox


def test_contingency_counts_owners_hit_who_were_told_before_they_called() -> None:
    r, outbox = outage_records()
    p = point(run(r, EngineLog(outbox=outbox), scenario=scenario([OUTAGE])), "contingency")
    assert (p["numerator"], p["denominator"], p["share"], p["verdict"]) == (2, 4, 0.5, "fail")
    assert p["details"]["outages"] == {"storm": {"owners": 4, "told_before_calling": 2}}


def test_contingency_is_not_exercised_without_an_outage_or_before_the_warm_up_ends() -> None:
    r, outbox = outage_records()
    none = point(run(r, EngineLog(outbox=outbox)), "contingency")  # the scenario has no outage
    assert (none["verdict"], none["reason"]) == ("not exercised", "the scenario has no outage")
    late = point(run(r, EngineLog(outbox=outbox), 6 * DAY, scenario=scenario([OUTAGE])), "contingency")
    assert (late["verdict"], late["reason"]) == ("not exercised", "no outage took place after the warm-up")


def test_a_link_only_regional_outage_cannot_be_judged_from_the_records() -> None:
    r, outbox = outage_records()
    link_only = scenario([{**OUTAGE, "power": False}])
    p = point(run(r, EngineLog(outbox=outbox), scenario=link_only), "contingency")
    assert p["verdict"] == "not exercised"
    assert p["details"]["unresolved_outages"] == ["storm"]


def test_a_link_outage_of_the_whole_fleet_hits_the_owners_with_an_incident_during_it() -> None:
    r = Records()
    r.link.append((5 * DAY, "everywhere", "outage", "storm: 100 devices for 12.0 h"))
    r.incidents += [
        Incident(dev(1), "freezer", 1, 4 * DAY, "down"),  # open through the outage
        Incident(dev(2), "freezer", 1, 5.1 * DAY, "down", restored_s=5.2 * DAY),
        Incident(dev(3), "freezer", 1, 6 * DAY, "down"),  # after it
    ]
    everywhere = scenario([{"name": "storm", "start_day": 5, "duration_h": 12}])
    p = point(run(r, EngineLog(outbox=[note(5.05 * DAY, dev(2), "outage")]), scenario=everywhere), "contingency")
    assert (p["numerator"], p["denominator"]) == (1, 2)
