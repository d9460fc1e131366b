"""KPI definitions on hand-built records: detection lead, detection before the owner, zeros, warm-up."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from contracts.counters import ENGINE_COUNTERS, engine_counters
from sim.errors import ScenarioError
from sim.kpis import FIXERS, compute_kpis, mode_names
from sim.records import Failure, Incident, Job, Records
from sim.scenario import Scenario
from sim.scenario_file import load, validate_data, with_overrides

ROOT = Path(__file__).resolve().parents[2]
DAY = 86400.0
HOUR = 3600.0
NAN = math.nan


def freezers(days: float = 10.0, warmup: float = 0.0) -> Scenario:
    return with_overrides(load(ROOT / "scenarios" / "freezers.yaml"), duration_days=days, warmup_days=warmup)


def fail(
    device: str, onset: float, *, informed: float = NAN, prevented: bool = False, mode: str = "door_seal_leak"
) -> Failure:
    return Failure(device, "freezer", mode, "degraded", onset, prevented=prevented, informed_s=informed)


def incident(
    device: str, onset: float, *, noticed: float = NAN, informed: float = NAN, restored: float = NAN
) -> Incident:
    return Incident(device, "freezer", 1, onset, "down", noticed_s=noticed, informed_s=informed, restored_s=restored)


# -- detection ------------------------------------------------------------------------------------


def test_detection_lead_is_positive_when_the_owner_was_told_before_the_onset() -> None:
    records = Records(
        failures=[
            fail("a", 10 * HOUR, informed=4 * HOUR),  # told 6 h ahead
            fail("b", 2 * DAY, informed=2 * DAY + 2 * HOUR),  # told 2 h after it failed
            fail("c", 5 * DAY, informed=3 * DAY, prevented=True),  # caught while drifting, 48 h ahead
            fail("d", 3 * DAY),  # never told: no lead
        ]
    )
    kpis = compute_kpis(freezers(), records, {}, 10 * DAY)
    assert kpis["detection_lead_hours_mean"] == pytest.approx((6.0 - 2.0 + 48.0) / 3)


def test_detection_lead_is_zero_while_the_world_leaves_informed_unset() -> None:
    kpis = compute_kpis(freezers(), Records(failures=[fail("a", DAY), fail("b", 2 * DAY)]), {}, 10 * DAY)
    assert kpis["detection_lead_hours_mean"] == 0.0


def test_time_to_respond_keeps_its_meaning() -> None:
    records = Records(incidents=[incident("a", 0.0, informed=2 * HOUR), incident("b", DAY, informed=DAY + 4 * HOUR)])
    assert compute_kpis(freezers(), records, {}, 10 * DAY)["time_to_respond_hours_mean"] == pytest.approx(3.0)


def test_prevented_failures_count_as_detected_before_the_owner_when_the_owner_was_told() -> None:
    records = Records(
        incidents=[
            incident("a", DAY, noticed=DAY + HOUR, informed=DAY),  # told first
            incident("b", DAY, noticed=DAY + HOUR),  # never told
        ],
        failures=[
            fail("a", DAY),
            fail("b", DAY),
            fail("c", 4 * DAY, prevented=True, informed=3 * DAY),  # told while it drifted, then prevented
            fail("d", 5 * DAY, prevented=True),  # cleared by chance (a reactive visit, a silent update)
        ],
    )
    kpis = compute_kpis(freezers(), records, {}, 10 * DAY)
    assert kpis["detected_before_owner_rate"] == pytest.approx((1 + 1) / (2 + 2))
    assert (kpis["failures"], kpis["prevented_failures"]) == (2, 2)


def test_the_kpi_and_scoring_modules_do_not_load_the_world() -> None:
    code = (
        "import sys, sim.kpis, experiments.scorecard, experiments.checklist, experiments.ledger\n"
        "from sim.records import POWER\n"
        "print('sim.world' in sys.modules, POWER)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.split() == ["False", "power_outage"]
    from sim.world import POWER  # still importable where it was

    assert POWER == "power_outage"


# -- zeros ----------------------------------------------------------------------------------------


def test_every_mode_and_every_fixer_is_listed_with_zeros() -> None:
    s = freezers()
    records = Records(
        failures=[fail("a", DAY), fail("b", DAY, prevented=True, mode="compressor_wear")],
        incidents=[incident("a", DAY, restored=2 * DAY)],
    )
    records.incidents[0].fixed_by = "technician"
    kpis = compute_kpis(s, records, {}, 10 * DAY)
    assert kpis["failures_by_mode"] == {
        "compressor_wear": 0,  # prevented, so not a failure
        "control_board": 0,
        "defrost_fault": 0,
        "door_seal_leak": 1,
        "power_loss": 0,
    }
    assert kpis["restored_by"] == {f: int(f == "technician") for f in sorted(FIXERS)}


def test_a_power_cutting_outage_lists_power_outage() -> None:
    assert "power_outage" in mode_names(load(ROOT / "scenarios" / "regional_outage.yaml"))
    assert "power_outage" not in mode_names(freezers())


def test_the_engine_block_lists_every_counter_with_zeros() -> None:
    block = engine_counters({"alerts": 3, "msg_ingested": 10, "something_new": 1})
    assert block["alerts"] == 3 and block["something_new"] == 1
    assert "msg_ingested" not in block  # message accounting has a block of its own
    assert all(block[name] == 0 for name in ENGINE_COUNTERS if name != "alerts")
    assert list(block) == sorted(block)


def _engine_counter_names() -> tuple[set[str], set[str]]:
    """Counter names the engine's sources increment: literal names, and the prefixes of formatted ones."""
    literal: set[str] = set()
    prefixes: set[str] = set()
    for path in (ROOT / "support_engine").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        literal |= set(re.findall(r'(?:stats|counters)\["([a-z_]+)"\]', text))
        prefixes |= set(re.findall(r'(?:stats|counters)\[f"([a-z_]+)\{', text))
        # The SLA events count under a name chosen by a conditional: stats[kind], stats[f"{kind}_{clock}"].
        for chosen in re.findall(r'kind = "([a-z_]+)" if \w+ else "([a-z_]+)"', text):
            if "stats[kind]" in text:
                literal |= set(chosen)
                prefixes |= {f"{name}_" for name in chosen}
    return literal, prefixes


def test_the_counter_list_agrees_with_the_engine_both_ways() -> None:
    literal, prefixes = _engine_counter_names()
    assert {"alerts", "sla_breaches"} <= literal and "cases_opened_" in prefixes  # the scan sees the engine
    literal = {n for n in literal if not n.startswith("msg_")}
    prefixes = {p for p in prefixes if not p.startswith("msg_")}
    listed = set(ENGINE_COUNTERS)
    assert literal <= listed, f"counted by the engine, missing from ENGINE_COUNTERS: {sorted(literal - listed)}"
    for prefix in sorted(prefixes):
        assert any(n.startswith(prefix) for n in listed), f"no ENGINE_COUNTERS name for {prefix}..."
    unknown = {n for n in listed - literal if not any(n.startswith(p) for p in prefixes)}
    assert not unknown, f"in ENGINE_COUNTERS but never counted by the engine: {sorted(unknown)}"


# -- warm-up --------------------------------------------------------------------------------------


def _run_with_an_early_incident() -> Records:
    return Records(
        incidents=[
            incident("early", 1 * DAY, noticed=1 * DAY + HOUR, restored=1 * DAY + 5 * HOUR),
            incident("late", 6 * DAY, noticed=6 * DAY + HOUR, informed=6 * DAY, restored=6 * DAY + 3 * HOUR),
        ],
        failures=[fail("early", 1 * DAY), fail("late", 6 * DAY)],
        jobs={
            "w1": Job("w1", "early", "x", 1 * DAY, visits=2, outcome="fixed"),
            "w2": Job("w2", "late", "x", 6 * DAY, visits=1, outcome="fixed"),
        },
        link=[(0.5 * DAY, "gw", "offline", ""), (7 * DAY, "gw", "offline", "")],
    )


def test_a_warm_up_leaves_out_what_began_before_it_and_shortens_the_device_years() -> None:
    s = freezers(warmup=4.0)
    kpis = compute_kpis(s, _run_with_an_early_incident(), {}, 10 * DAY)  # start_s from the scenario
    assert (kpis["incidents"], kpis["failures"], kpis["work_orders"]) == (1, 1, 1)
    assert kpis["mttr_hours"] == pytest.approx(3.0)
    assert kpis["first_time_fix_rate"] == 1.0
    assert kpis["detected_before_owner_rate"] == 1.0
    assert kpis["truck_rolls_per_1000_devices"] == pytest.approx(1000 * 1 / 2000)
    device_years = 2000 * 6 * DAY / (365 * DAY)
    assert kpis["failures_per_device_year"] == pytest.approx(1 / device_years, abs=1e-6)
    assert kpis["downtime_hours_per_device_year"] == pytest.approx(3.0 / device_years, abs=1e-6)
    assert kpis["availability"] == pytest.approx(1 - 3.0 / (2000 * 6 * 24), abs=1e-6)
    assert kpis["connectivity"]["offline_spells"] == 1
    assert compute_kpis(freezers(), _run_with_an_early_incident(), {}, 10 * DAY, start_s=4 * DAY) == kpis


def test_no_warm_up_counts_everything() -> None:
    records = _run_with_an_early_incident()
    kpis = compute_kpis(freezers(), records, {}, 10 * DAY)
    assert kpis == compute_kpis(freezers(), records, {}, 10 * DAY, start_s=0.0)
    assert (kpis["incidents"], kpis["work_orders"], kpis["connectivity"]["offline_spells"]) == (2, 2, 2)


@pytest.mark.parametrize("start_s", [-1.0, 10 * DAY, 11 * DAY])
def test_a_warm_up_outside_the_run_is_refused(start_s: float) -> None:
    with pytest.raises(ValueError, match="start_s"):
        compute_kpis(freezers(), Records(), {}, 10 * DAY, start_s=start_s)


@pytest.mark.parametrize(
    ("warmup", "expected"),
    [
        (-1.0, "warmup_days: must be >= 0"),
        (10.0, "warmup_days: must be < duration_days (10)"),
        (12.5, "warmup_days: must be < duration_days (10)"),
    ],
)
def test_a_warm_up_is_validated_at_its_path(warmup: float, expected: str) -> None:
    data = yaml.safe_load((ROOT / "scenarios" / "freezers.yaml").read_text(encoding="utf-8"))
    data.update(duration_days=10, warmup_days=warmup)
    scenario, problems = validate_data(data)
    assert scenario is None
    assert [str(p) for p in problems] == [expected]


def test_a_warm_up_defaults_to_none_and_is_overridable() -> None:
    assert freezers().warmup_days == 0.0
    assert freezers(warmup=2.5).warmup_s == 2.5 * DAY
    with pytest.raises(ScenarioError) as caught:
        with_overrides(freezers(warmup=5.0), duration_days=4)
    assert caught.value.path == "warmup_days"
