"""The scorecard on a hand-built ground truth and engine log, every figure worked out by hand.

Ten freezers, ten days. A compressor wears with a two-day precursor on ``duty`` (W = 48 h); a door
seal leaks at random and shows on ``temp`` (no precursor: W = 24 h). The story, by device:

- fz-1: compressor fails on day 3 (owner notices at 3.2); alert on day 2 (24 h ahead), then the
  device's own fault case at 3.0 and a second alert at 3.2: repeats.
- fz-2: compressor prevented on day 5 (it would have failed on day 6); alert at 4.5 (36 h ahead).
- fz-3: seal leaks on day 4 (noticed 4.1); alert at 4.05 (1.2 h late), its case names the wrong issue.
- fz-4: seal leaks on day 2, never alerted: missed.
- fz-5: compressor fails on day 7 (noticed 7.1); alert at 7.5: detected, but after the owner.
- fz-6 and fz-8: seal alerts with no failure: false alarms (fz-8's on day 8.5 is more than W = 24 h
  before the end, so it is decided).
- fz-7: compressor alert on day 9.5, within W = 48 h of the end, no failure: undecided.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from experiments.rundata import AlertRow, CaseRow, EngineLog, OutboxRow, RunData, WorkOrderRow
from experiments.scorecard import DEFAULT_WINDOW_S, REMOTE_FIX_TEXT, fits, mode_specs, score
from sim.records import POWER, Failure, Incident, Job, Records
from sim.scenario import Scenario
from sim.scenario_file import loads

D = 86400.0
H = 3600.0
NAN = math.nan

SCENARIO = """\
name: scorecard
duration_days: 10
fleets:
  - name: fz
    product: fz100
    count: 10
    sensors:
      - {name: temp, baseline: -18.0, noise_sd: 0.4}
      - {name: duty, baseline: 0.45, noise_sd: 0.03}
    failure_modes:
      - name: compressor
        life_days: {dist: weibull, shape: 2.5, scale: 1800}
        symptom: not_cooling
        precursor: {sensor: duty, lead_time_days: 2, delta: 0.4}
        effects: [{sensor: temp, delta: 25.0}]
        repair: {skill: refrigeration, part: compressor}
      - name: seal
        life_days: {dist: exponential, mean: 3000}
        severity: degraded
        symptom: warm
        effects: [{sensor: temp, delta: 5.0}]
        repair: {skill: general, part: seal}
contact_centre: {agents: 1}
technicians: {count: 1}
engine:
  issues:
    comp: {skill: refrigeration, parts: [compressor]}
    cooling: {skill: refrigeration, parts: [compressor, seal]}
    seal_issue: {skill: general, parts: [seal]}
    reset_it: {skill: general, remote: reset}
  symptoms: {not_cooling: cooling, warm: seal_issue}
  rules:
    - {name: duty_high, sensor: duty, issue: comp, above: 0.8}
    - {name: warm, sensor: temp, issue: seal_issue, above: -14}
"""


def scenario() -> Scenario:
    return loads(SCENARIO)


def dev(n: int) -> str:
    return f"fz-{n:06d}"


def failure(
    n: int, mode: str, onset: float, restored: float, *, prevented: bool = False, by: str = "technician"
) -> Failure:
    severity = "down" if mode == "compressor" else "degraded"
    return Failure(dev(n), "fz", mode, severity, onset, prevented=prevented, restored_s=restored, fixed_by=by)


def incident(n: int, onset: float, noticed: float, restored: float) -> Incident:
    return Incident(dev(n), "fz", 1, onset, "down", noticed_s=noticed, restored_s=restored)


def alert(k: int, n: int, rule: str, t: float, case: str | None) -> AlertRow:
    return AlertRow(f"alert-{k:07d}", dev(n), rule, case, t, None)


def case(k: str, n: int, issue: str, t: float, origin: str = "telemetry") -> CaseRow:
    return CaseRow(k, dev(n), issue, "resolved", 1, origin, t, t, t)


def resolved(n: int, t: float, case_id: str, text: str = "Your device has been repaired.") -> OutboxRow:
    payload = {"kind": "resolved", "text": text, "device_id": dev(n), "case_id": case_id, "ts": t}
    return OutboxRow(t, "Notify", dev(n), f"note-{case_id}", json.dumps(payload))


def claim(n: int, t: float) -> OutboxRow:
    payload = {"kind": "resolved", "text": REMOTE_FIX_TEXT, "device_id": dev(n), "ts": t}
    return OutboxRow(t, "Notify", dev(n), f"note-{n}", json.dumps(payload))


def story(start_s: float = 0.0) -> RunData:
    records = Records(
        failures=[
            failure(1, "compressor", 3 * D, 3.5 * D),
            failure(2, "compressor", 6 * D, 5 * D, prevented=True),
            failure(3, "seal", 4 * D, 5 * D, by="remote"),
            failure(4, "seal", 2 * D, 2.5 * D),
            failure(5, "compressor", 7 * D, 8 * D),
        ],
        incidents=[
            incident(1, 3 * D, 3.2 * D, 3.5 * D),
            incident(3, 4 * D, 4.1 * D, 5 * D),
            incident(4, 2 * D, 2.1 * D, 2.5 * D),
            incident(5, 7 * D, 7.1 * D, 8 * D),
        ],
        jobs={
            "wo-1": Job("wo-1", dev(1), "comp", 2 * D, visits=1, outcome="fixed"),
            "wo-2": Job("wo-2", dev(6), "seal_issue", 5 * D, visits=1, outcome="no_fault_found"),
        },
    )
    engine = EngineLog(
        alerts=[
            alert(1, 1, "duty_high", 2 * D, "case-1"),
            alert(2, 1, "duty_high", 3.2 * D, "case-1"),
            alert(3, 2, "duty_high", 4.5 * D, "case-3"),
            alert(4, 3, "warm", 4.05 * D, "case-4"),
            alert(5, 6, "warm", 5 * D, "case-5"),
            alert(7, 5, "duty_high", 7.5 * D, "case-7"),
            alert(8, 8, "warm", 8.5 * D, "case-8"),
            alert(6, 7, "duty_high", 9.5 * D, "case-6"),
        ],
        cases=[
            case("case-1", 1, "comp", 2 * D),
            case("case-d", 1, "cooling", 3 * D, origin="device"),
            case("case-3", 2, "comp", 4.5 * D),
            case("case-4", 3, "comp", 4.05 * D),  # the wrong issue: the seal leaks
            case("case-5", 6, "seal_issue", 5 * D),
            case("case-7", 5, "comp", 7.5 * D),
            case("case-8", 8, "seal_issue", 8.5 * D),
            case("case-6", 7, "comp", 9.5 * D),
            case("case-c", 9, "seal_issue", 6 * D, origin="contact"),  # the owner called: not scored
        ],
        outbox=[claim(3, 5 * D), claim(6, 5.5 * D)],
        counters={"remote_fixes": 2},
    )
    s = scenario()
    return RunData(s, "proactive", records, engine, {}, s.duration_s, start_s)


@pytest.fixture(scope="module")
def card() -> dict[str, Any]:
    return score(story())


def test_precision_false_alarms_and_undecided(card: dict[str, Any]) -> None:
    o = card["overall"]
    assert (o["signals"], o["alerts"], o["device_cases"]) == (9, 8, 1)
    assert (o["matched"], o["repeats"], o["false_alarms"], o["undecided"]) == (6, 2, 2, 1)
    assert o["precision"] == pytest.approx(6 / 8)  # the undecided alert counts neither way
    assert o["false_alarms_per_1000_device_days"] == pytest.approx(1000 * 2 / (10 * 10))


def test_recall_counts_the_prevented_failure_and_not_the_one_caught_after_the_owner(card: dict[str, Any]) -> None:
    o = card["overall"]
    assert (o["failures"], o["prevented"], o["detected"], o["detected_before_owner"]) == (5, 1, 4, 3)
    assert o["recall"] == pytest.approx(3 / 5)
    assert o["missed_failures"] == 2


def test_lead_times_are_onset_minus_first_match(card: dict[str, Any]) -> None:
    leads = [-12.0, -1.2, 24.0, 36.0]  # fz-5, fz-3, fz-1, fz-2 (prevented: onset is when it would have failed)
    assert card["lead_hours"]["overall"] == pytest.approx(leads)
    o = card["overall"]
    assert o["lead_hours_n"] == 4
    assert o["lead_hours_mean"] == pytest.approx(sum(leads) / 4)
    assert o["lead_hours_median"] == pytest.approx((-1.2 + 24.0) / 2)
    assert o["lead_hours_p10"] == pytest.approx(-12.0 + 0.3 * 10.8)  # linear between order statistics
    assert o["lead_hours_p90"] == pytest.approx(24.0 + 0.7 * 12.0)


def test_figures_per_mode(card: dict[str, Any]) -> None:
    comp, seal = card["by_mode"]["compressor"], card["by_mode"]["seal"]
    assert (comp["signals"], comp["matched"], comp["repeats"], comp["false_alarms"], comp["undecided"]) == (
        6,
        5,
        2,
        0,
        1,
    )
    assert comp["precision"] == 1.0
    assert (comp["failures"], comp["prevented"], comp["detected_before_owner"]) == (3, 1, 2)
    assert comp["recall"] == pytest.approx(2 / 3)
    assert card["lead_hours"]["by_mode"]["compressor"] == pytest.approx([-12.0, 24.0, 36.0])
    assert (seal["signals"], seal["matched"], seal["false_alarms"]) == (3, 1, 2)
    assert seal["precision"] == pytest.approx(1 / 3)
    assert seal["false_alarms_per_1000_device_days"] == pytest.approx(20.0)
    assert (seal["failures"], seal["detected_before_owner"], seal["recall"]) == (2, 1, 0.5)
    assert seal["lead_hours_mean"] == pytest.approx(-1.2)
    assert card["window_h"] == {"default": 24.0, "compressor": 48.0, "seal": 24.0}


def test_right_issue_over_matched_telemetry_and_device_cases(card: dict[str, Any]) -> None:
    o = card["overall"]
    assert (o["cases"], o["right_issue"], o["right_issue_rate"]) == (5, 4, 0.8)
    assert (card["by_mode"]["seal"]["cases"], card["by_mode"]["seal"]["right_issue"]) == (1, 0)
    assert card["by_source"]["device"]["cases"] == card["by_source"]["device"]["right_issue"] == 1
    assert card["by_source"]["warm"]["right_issue_rate"] == 0.0


def test_figures_per_source(card: dict[str, Any]) -> None:
    duty, warm = card["by_source"]["duty_high"], card["by_source"]["warm"]
    assert (duty["alerts"], duty["matched"], duty["repeats"], duty["undecided"], duty["precision"]) == (5, 4, 1, 1, 1.0)
    assert (warm["alerts"], warm["matched"], warm["false_alarms"]) == (3, 1, 2)
    assert "recall" not in duty  # failures belong to modes, not to rules


def test_remote_fix_claims_and_no_fault_found_visits(card: dict[str, Any]) -> None:
    assert card["remote_fixes"] == {
        "claimed": 2,
        "engine_counter": 2,
        "true": 1,
        "confirmed": 1,
        "false_claims": 1,
        "unclaimed": 0,
    }
    assert card["field"] == {"work_orders": 2, "no_fault_found_visits": 1, "no_fault_found_rate": 0.5}
    assert card["overall"]["no_fault_found_visits"] == 1


def test_a_warm_up_leaves_out_early_signals_and_failures_but_matches_with_them() -> None:
    card = score(story(start_s=2.5 * D))
    o = card["overall"]
    # fz-4's failure (day 2) and fz-1's first alert (day 2) fall in the warm-up; that alert still
    # makes fz-1's failure (day 3) detected 24 h ahead, and fz-1's later signals are repeats.
    assert (o["failures"], o["detected"], o["detected_before_owner"]) == (4, 4, 3)
    assert (o["signals"], o["matched"], o["repeats"], o["false_alarms"], o["undecided"]) == (8, 5, 2, 2, 1)
    assert o["false_alarms_per_1000_device_days"] == pytest.approx(1000 * 2 / (10 * 7.5))
    assert 24.0 in card["lead_hours"]["overall"]
    assert card["field"]["work_orders"] == 1  # wo-1 was created in the warm-up
    assert card["period"] == {"start_s": 2.5 * D, "end_s": 10 * D, "device_days": 75.0}


def test_every_counter_is_present_when_nothing_happened() -> None:
    s = scenario()
    card = score(RunData(s, "reactive", Records(), EngineLog(), {}, s.duration_s))
    o = card["overall"]
    assert o["signals"] == o["false_alarms"] == o["failures"] == o["cases"] == o["no_fault_found_visits"] == 0
    assert o["precision"] is None and o["recall"] is None and o["right_issue_rate"] is None
    assert o["lead_hours_mean"] is None and o["false_alarms_per_1000_device_days"] == 0.0
    assert set(card["by_mode"]) == {"compressor", "seal"}
    assert set(card["by_source"]) == {"duty_high", "warm", "device"}
    assert all(v == 0 for v in card["remote_fixes"].values())
    assert all(v == 0 for v in card["visit_fixes"].values())
    assert all(v == 0 for v in card["delivery_fixes"].values())
    assert card["by_mode"]["seal"] == {k: v for k, v in o.items() if k != "no_fault_found_visits"}


def test_an_alert_in_two_windows_prefers_the_failure_its_issue_fits() -> None:
    run = story()
    both = [failure(9, "seal", 5 * D, 6 * D), failure(9, "compressor", 5.5 * D, 6 * D)]
    run.records.failures.extend(both)
    run.engine.alerts.append(alert(9, 9, "duty_high", 5.2 * D, None))
    card = score(run)
    assert card["overall"]["detected"] == 5  # fz-9's compressor, not its seal
    assert any(x == pytest.approx(0.3 * 24) for x in card["lead_hours"]["by_mode"]["compressor"])


def test_fits_and_windows() -> None:
    specs = mode_specs(scenario())
    issues = scenario().engine.issues
    comp, seal = specs["fz", "compressor"], specs["fz", "seal"]
    assert (comp.window_s, seal.window_s) == (2 * D, DEFAULT_WINDOW_S)
    assert comp.sensors == {"duty", "temp"} and seal.sensors == {"temp"}
    assert fits(issues["comp"], comp) and fits(issues["cooling"], comp) and not fits(issues["comp"], seal)
    assert fits(issues["seal_issue"], seal) and not fits(issues["reset_it"], comp)
    assert not fits(None, comp)


def test_a_low_level_warning_without_a_run_out_is_unjudged_not_false() -> None:
    text = (
        SCENARIO.replace(
            "    failure_modes:\n",
            "    consumables:\n"
            "      - {name: ink, sensor: ink_level, capacity: 100, low_fraction: 0.2, symptom: empty,"
            " drain_per_day: {dist: fixed, value: 5}}\n"
            "    failure_modes:\n",
            1,
        )
        .replace("  symptoms: {", "  symptoms: {empty: refill, ")
        .replace("    reset_it:", "    refill: {skill: general, consumable: ink}\n    reset_it:")
    )
    s = loads(text)
    assert mode_specs(s)["fz", "ink"].window_s == 0.2 * 100 / 5 * D  # low to empty at the mean drain
    records = Records(failures=[failure(4, "ink", 5 * D, 5.5 * D, by="delivery")])
    cases = [case("case-a", 3, "refill", 2 * D, origin="device"), case("case-b", 4, "refill", 3 * D, origin="device")]
    card = score(RunData(s, "proactive", records, EngineLog(cases=cases), {}, s.duration_s))
    o = card["overall"]
    assert (o["signals"], o["matched"], o["unjudged"], o["false_alarms"], o["precision"]) == (2, 1, 1, 0, 1.0)
    assert card["lead_hours"]["by_mode"]["ink"] == [48.0]
    assert card["by_mode"]["ink"]["right_issue_rate"] == 1.0


def test_a_signal_about_one_mode_does_not_match_another_modes_failure() -> None:
    run = story()
    run.records.failures.append(failure(9, "seal", 5 * D, 6 * D))  # seal moves temp only
    run.engine.alerts.append(alert(9, 9, "duty_high", 5.2 * D, None))  # about the compressor (issue and duty)
    card = score(run)
    o, seal = card["overall"], card["by_mode"]["seal"]
    assert (o["false_alarms"], o["matched"]) == (3, 6)  # a false alarm, not a detection of the seal
    assert (seal["failures"], seal["detected"]) == (3, 1)
    assert card["by_mode"]["compressor"]["false_alarms"] == 1


def test_a_signal_that_names_no_mode_matches_any_failure_in_the_window() -> None:
    run = story()
    run.engine.cases.append(case("case-m", 4, "mystery", 2.2 * D, origin="device"))  # an issue of no mode
    card = score(run)
    assert card["overall"]["detected"] == 5  # fz-4's seal leak, missed before
    assert card["by_mode"]["seal"]["lead_hours_mean"] == pytest.approx((-1.2 - 4.8) / 2)
    assert (card["overall"]["cases"], card["overall"]["right_issue"]) == (6, 4)  # "mystery" fits nothing


def test_right_issue_judges_a_case_by_the_failure_its_first_alert_matched() -> None:
    run = story()
    run.records.failures += [failure(9, "seal", 5 * D, 6 * D), failure(9, "compressor", 5.5 * D, 6 * D)]
    run.engine.alerts.append(alert(9, 9, "warm", 5.2 * D, "case-9"))  # fits the seal: matches it
    run.engine.cases.append(case("case-9", 9, "comp", 5.2 * D))  # the case names the compressor
    card = score(run)
    o = card["overall"]
    assert (o["cases"], o["right_issue"]) == (6, 4)  # wrong for the seal it matched
    assert (card["by_mode"]["seal"]["cases"], card["by_mode"]["seal"]["right_issue"]) == (2, 0)


def outage_scenario(*, power_loss: bool) -> Scenario:
    text = SCENARIO.replace(
        "contact_centre:", "outages:\n  - {name: storm, start_day: 5, duration_h: 12, power: true}\ncontact_centre:"
    )
    text = text.replace("    reset_it:", "    power_issue: {skill: general, advice: The power is out.}\n    reset_it:")
    text = text.replace("  symptoms: {", "  symptoms: {no_power: power_issue, ")
    if power_loss:
        text = text.replace(
            "    failure_modes:\n",
            "    failure_modes:\n"
            "      - name: breaker\n"
            "        life_days: {dist: exponential, mean: 3000}\n"
            "        symptom: dead\n"
            "        effects: [{sensor: temp, delta: 3.0}]\n"
            "        repair: {skill: general}\n",
            1,
        ).replace("  symptoms: {", "  symptoms: {dead: power_issue, ")
    return loads(text)


@pytest.mark.parametrize("power_loss", [True, False])
def test_a_power_cut_moves_what_the_fleets_power_loss_moves(power_loss: bool) -> None:
    s = outage_scenario(power_loss=power_loss)
    assert mode_specs(s)["fz", POWER].sensors == ({"temp"} if power_loss else set())
    records = Records(failures=[Failure(dev(9), "fz", POWER, "down", 5 * D, restored_s=5.5 * D, fixed_by="self")])
    engine = EngineLog(alerts=[alert(1, 9, "warm", 5.2 * D, None)])  # a warm cabinet during the power cut
    card = score(RunData(s, "proactive", records, engine, {}, s.duration_s))
    power = card["by_mode"][POWER]
    assert (power["detected"], card["overall"]["false_alarms"]) == ((1, 0) if power_loss else (0, 1))


def test_visit_claims_against_the_technicians_fixes() -> None:
    run = story()
    run.engine.work_orders.extend(
        [
            WorkOrderRow("wo-1", "case-1", dev(1), "closed", 1, 3.5 * D, "tech-1"),
            WorkOrderRow("wo-2", "case-5", dev(6), "closed", 1, 5.2 * D, "tech-1"),
            WorkOrderRow("wo-3", "case-4", dev(3), "closed", 1, 5 * D + H, "tech-1"),
        ]
    )
    run.engine.outbox.extend(
        [
            resolved(1, 3.5 * D, "case-1"),  # fz-1's compressor, fixed by the technician at 3.5 d: true
            resolved(6, 5.2 * D, "case-5"),  # wo-2 found no fault: false
            resolved(3, 5 * D + H, "case-4"),  # fz-3's seal was fixed remotely before the visit: false
            resolved(8, 8.6 * D, "case-8", "Glad we could fix it together."),  # no work order: not a visit claim
        ]
    )
    card = score(run)
    # true: the technician fixed fz-1 (3.5 d), fz-4 (2.5 d), fz-5 (8 d), and prevented fz-2's failure (5 d)
    assert card["visit_fixes"] == {
        "claimed": 3,
        "true": 4,
        "confirmed": 1,
        "false_claims": 2,
        "unclaimed": 3,
        "no_fault_found": 1,
    }
    assert card["remote_fixes"]["claimed"] == 2  # the visit claims are not remote ones


def test_delivery_claims_against_the_couriers_deliveries() -> None:
    text = (
        SCENARIO.replace(
            "    failure_modes:\n",
            "    consumables:\n"
            "      - {name: ink, sensor: ink_level, capacity: 100, low_fraction: 0.2, symptom: empty,"
            " drain_per_day: {dist: fixed, value: 5}}\n"
            "    failure_modes:\n",
            1,
        )
        .replace("  symptoms: {", "  symptoms: {empty: refill, ")
        .replace("    reset_it:", "    refill: {skill: general, consumable: ink}\n    reset_it:")
    )
    s = loads(text)
    records = Records(failures=[failure(4, "ink", 5 * D, 5.5 * D, by="delivery")])
    for n, t in [(3, 2.5 * D), (4, 5.5 * D), (7, 6 * D)]:
        records.log(t, "courier", "delivered", dev(n), f"order-{n}", "ink")
    cases = [
        case("case-a", 3, "refill", 2 * D, origin="device"),  # refilled before it ran empty
        case("case-b", 4, "refill", 3 * D, origin="device"),  # ran empty at 5 d, refilled at 5.5 d
        case("case-c", 8, "refill", 6 * D, origin="device"),  # resolved with no delivery
    ]
    outbox = [resolved(3, 2.5 * D, "case-a"), resolved(4, 5.5 * D, "case-b"), resolved(8, 7 * D, "case-c")]
    card = score(RunData(s, "proactive", records, EngineLog(cases=cases, outbox=outbox), {}, s.duration_s))
    # fz-7's delivery came under another case's order: nobody claimed it
    assert card["delivery_fixes"] == {
        "claimed": 3,
        "true": 3,
        "confirmed": 2,
        "false_claims": 1,
        "unclaimed": 1,
        "ran_empty": 1,
    }
