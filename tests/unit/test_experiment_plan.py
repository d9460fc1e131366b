"""Planning experiments: override paths, policy files, common seeds, replication keys, Pareto fronts."""

from __future__ import annotations

from pathlib import Path

import pytest

from experiments.compare import flatten, pareto
from experiments.errors import ExperimentError
from experiments.overrides import apply, overlay, parse_setting, plain
from experiments.plan import compare_plan, replication_seeds, sweep_plan
from experiments.policies import apply_policy, read_policy
from sim.errors import ScenarioError
from sim.scenario_file import load

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def freezers():  # type: ignore[no-untyped-def]
    return load(ROOT / "scenarios" / "freezers.yaml")


def test_a_setting_reads_a_path_and_its_values() -> None:
    s = parse_setting("engine.rules[compressor_duty].above=0.55,0.65, 0.8")
    assert s.steps == ("engine", "rules", "compressor_duty", "above")
    assert s.values == (0.55, 0.65, 0.8)
    assert parse_setting("fleets[0].count=10,20").steps == ("fleets", 0, "count")
    assert parse_setting("engine.rules[x].products=[freezer],[car, printer]").values == (
        ["freezer"],
        ["car", "printer"],
    )


@pytest.mark.parametrize("text", ["engine.rules", "=3", "engine..x=1", "engine.rules[x]=", "[0].x=1"])
def test_a_malformed_setting_says_how_to_write_one(text: str) -> None:
    with pytest.raises(ExperimentError):
        parse_setting(text)


def test_a_path_finds_a_list_item_by_name_or_by_another_value(freezers) -> None:  # type: ignore[no-untyped-def]
    data = plain(freezers)
    by_sensor = apply(data, parse_setting("engine.rules[compressor_duty].above=0.6"), 0.6)
    by_name = apply(data, parse_setting("engine.rules[freezer_compressor_overwork].above=0.6"), 0.6)
    assert by_sensor == by_name
    rule = next(r for r in by_sensor["engine"]["rules"] if r["name"] == "freezer_compressor_overwork")
    assert rule["above"] == 0.6
    assert data["engine"]["rules"] != by_sensor["engine"]["rules"]  # the original is untouched


def test_a_path_that_matches_nothing_or_several_names_the_choices(freezers) -> None:  # type: ignore[no-untyped-def]
    data = plain(freezers)
    with pytest.raises(ExperimentError, match="freezer_compressor_overwork"):
        apply(data, parse_setting("engine.rules[no_such_rule].above=1"), 1)
    with pytest.raises(ExperimentError, match="match"):
        apply(data, parse_setting("engine.rules[cabinet_temp_c].above=1"), 1)  # two rules watch that sensor
    with pytest.raises(ExperimentError, match=r"\[7\]"):
        apply(data, parse_setting("fleets[7].count=1"), 1)


def test_an_overlay_merges_mappings_and_named_lists() -> None:
    base = {"sla": {"first_response_s": 10, "resolution_s": 20}, "rules": [{"name": "a", "above": 1, "for_s": 5}]}
    over = {"sla": {"first_response_s": 5}, "rules": [{"name": "a", "above": 2}, {"name": "b", "above": 3}]}
    assert overlay(base, over) == {
        "sla": {"first_response_s": 5, "resolution_s": 20},
        "rules": [{"name": "a", "above": 2, "for_s": 5}, {"name": "b", "above": 3}],
    }


def test_a_policy_file_is_engine_configuration(tmp_path: Path, freezers) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "early.yaml"
    path.write_text(
        "name: early\npolicy: proactive\nrules:\n  - {name: freezer_compressor_overwork, above: 0.6}\n"
        "sla: {first_response_s: 7200}\n"
    )
    spec = read_policy(str(path))
    assert (spec.label, spec.policy) == ("early", "proactive")
    s = apply_policy(freezers, spec)
    assert next(r for r in s.engine.rules if r.name == "freezer_compressor_overwork").above == 0.6
    assert s.engine.sla.first_response_s == 7200
    assert s.engine.sla.resolution_s == freezers.engine.sla.resolution_s
    assert s.fleets == freezers.fleets


def test_a_bad_policy_file_names_its_own_path(tmp_path: Path, freezers) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "bad.yaml"
    path.write_text("rules:\n  - {name: freezer_compressor_overwork, for_s: -5}\nsla: {resolution_s: soon}\n")
    with pytest.raises(ScenarioError) as caught:
        apply_policy(freezers, read_policy(str(path)))
    assert caught.value.source == str(path)
    paths = [p.path for p in caught.value.problems]
    assert any(p.startswith("sla.resolution_s") for p in paths), paths
    with pytest.raises(ExperimentError, match="not one of"):
        read_policy("proactiv")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ScenarioError, match="mapping"):
        read_policy(str(tmp_path / "list.yaml"))


def test_replication_seeds_are_stable_prefixes_of_the_scenario_seed() -> None:
    five, ten = replication_seeds(7, 5), replication_seeds(7, 10)
    assert ten[:5] == five
    assert len(set(ten)) == 10
    assert replication_seeds(8, 5) != five


def test_every_arm_runs_on_the_same_seeds_and_keys_follow_content(freezers) -> None:  # type: ignore[no-untyped-def]
    plan = compare_plan(freezers, [read_policy("reactive"), read_policy("proactive")])
    reps = plan.replications(3)
    assert [(r.arm, r.index) for r in reps[:2]] == [("reactive", 0), ("proactive", 0)]
    by_arm = {arm: [r.seed for r in reps if r.arm == arm] for arm in ("reactive", "proactive")}
    assert by_arm["reactive"] == by_arm["proactive"] == plan.seeds(3)
    assert len({r.key for r in reps}) == 6
    again = compare_plan(freezers, [read_policy("reactive"), read_policy("proactive")]).replications(3)
    assert [r.key for r in again] == [r.key for r in reps]
    with pytest.raises(ExperimentError, match="twice"):
        compare_plan(freezers, [read_policy("reactive"), read_policy("reactive")])


def test_a_sweep_is_a_grid_of_resolved_points(freezers) -> None:  # type: ignore[no-untyped-def]
    settings = [
        parse_setting("engine.rules[compressor_duty].above=0.6,0.8"),
        parse_setting("engine.sla.resolution_s=43200,86400"),
    ]
    plan = sweep_plan(freezers, read_policy("proactive"), settings)
    assert len(plan.arms) == 4
    assert plan.arms[0].label == "compressor_duty.above=0.6, sla.resolution_s=43200"
    with pytest.raises(ExperimentError, match="more than once"):
        sweep_plan(freezers, read_policy("proactive"), [parse_setting("engine.sla.resolution_s=600,600")])
    rules = [next(r for r in a.scenario["engine"]["rules"] if r["sensor"] == "compressor_duty") for a in plan.arms]
    assert [r["above"] for r in rules] == [0.6, 0.6, 0.8, 0.8]
    with pytest.raises(ScenarioError):
        sweep_plan(freezers, read_policy("proactive"), [parse_setting("fleets[0].count=-1")])


def test_pareto_keeps_the_points_nothing_beats() -> None:
    points = [("a", 1.0, 5.0), ("b", 2.0, 2.0), ("c", 3.0, 3.0), ("d", 5.0, 1.0), ("e", 2.0, 2.0)]
    assert pareto(points) == ["a", "b", "d", "e"]
    assert pareto(points, lower_y=False) == ["a"]


def test_flatten_keeps_numbers_under_dotted_keys() -> None:
    doc = {
        "kpis": {"a": 1, "cost": {"total": 2.5}, "by": {"x": None}, "names": ["x"]},
        "scorecard": {"overall": {"ok": True}, "period": {"start_s": 0.0}},
        "ledger": {"per_device_year": {"net": 3.0}, "lines": {"parts": {"price": 9.0}}},
        "checklist": {"points": {"few_steps": {"share": 0.5, "target": 0.8}}},
    }
    assert flatten(doc) == {
        "kpis.a": 1.0,
        "kpis.cost.total": 2.5,
        "kpis.by.x": None,
        "scorecard.overall.ok": 1.0,
        "ledger.per_device_year.net": 3.0,
        "checklist.points.few_steps.share": 0.5,
    }
