"""The scenario reader: YAML in, a frozen Scenario or every problem with its exact path out; distributions."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import numpy as np
import pytest
import yaml

from sim.distributions import Distribution, Exponential, Fixed, Gamma, Lognormal, Uniform, Weibull
from sim.errors import ScenarioError, SimError
from sim.scenario import Fleet, Scenario
from sim.scenario_file import json_schema, load, loads, validate_data, validate_text, with_overrides

MINIMAL = """\
name: mini
duration_days: 30
fleets:
  - name: freezer
    product: fz100
    count: 50
    telemetry_interval_s: 900
    sensors:
      - {name: cabinet_temp_c, baseline: -18.0, noise_sd: 0.4}
      - {name: compressor_duty, baseline: 0.45}
    failure_modes:
      - name: compressor
        life_days: {dist: weibull, shape: 2.5, scale: 1800}
        symptom: not_cooling
        precursor: {sensor: compressor_duty, lead_time_days: 10, delta: 0.4}
        effects:
          - {sensor: cabinet_temp_c, delta: 25.0}
        repair: {skill: refrigeration, part: compressor}
      - name: door_seal
        life_days: {dist: exponential, mean: 3000}
        severity: degraded
        symptom: warm
        repair: {skill: general}
contact_centre: {agents: 2}
technicians: {count: 1}
engine:
  issues:
    cooling: {skill: refrigeration, parts: [compressor]}
  symptoms: {not_cooling: cooling, warm: cooling}
  rules:
    - {name: hot, sensor: cabinet_temp_c, issue: cooling, above: -10}
"""

ROOT = Path(__file__).resolve().parents[2]


def minimal_data() -> dict[str, Any]:
    return yaml.safe_load(MINIMAL)


def problems_of(data: Any) -> list[str]:
    scenario, problems = validate_text(yaml.safe_dump(data, sort_keys=False))
    assert (scenario is None) == bool(problems)
    return [str(p) for p in problems]


def allowed(cls: type[msgspec.Struct]) -> str:
    return ", ".join(sorted(f.encode_name for f in msgspec.structs.fields(cls)))


# -- valid files -----------------------------------------------------------------------------------


def test_a_minimal_scenario_loads_into_a_frozen_scenario_with_defaults() -> None:
    scenario = loads(MINIMAL)
    assert isinstance(scenario, Scenario)
    assert (scenario.name, scenario.seed, scenario.sync_interval_s, scenario.engine.policy) == (
        "mini",
        0,
        3600.0,
        "proactive",
    )
    fleet = scenario.fleets[0]
    assert fleet.failure_modes[0].life_days == Weibull(shape=2.5, scale=1800.0)
    assert fleet.failure_modes[1].life_days == Exponential(mean_=3000.0)
    assert fleet.failure_modes[0].repair.duration_h == Fixed(value=1.0)
    assert scenario.device_count == 50
    assert scenario.duration_s == 30 * 86400.0
    with pytest.raises(AttributeError):
        scenario.name = "changed"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        fleet.count = 1  # type: ignore[misc]


def test_load_reads_a_file_and_reports_unreadable_ones(tmp_path: Path) -> None:
    good = tmp_path / "mini.yaml"
    good.write_text(MINIMAL, encoding="utf-8")
    assert load(good) == loads(MINIMAL)
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("name: caf\xe9\n".encode("latin-1"))
    for path in (bad, tmp_path / "missing.yaml"):
        with pytest.raises(ScenarioError) as info:
            load(path)
        assert info.value.source == str(path)
        assert info.value.problems[0].message.startswith("cannot read file")


def test_yaml_merge_keys_and_aliases_are_allowed() -> None:
    text = MINIMAL.replace("repair: {skill: general}", "repair: {<<: *rep, part: door_seal}").replace(
        "repair: {skill: refrigeration, part: compressor}", "repair: &rep {skill: refrigeration, part: compressor}"
    )
    repair = loads(text).fleets[0].failure_modes[1].repair
    assert (repair.skill, repair.part) == ("refrigeration", "door_seal")


def test_with_overrides_revalidates() -> None:
    scenario = loads(MINIMAL)
    assert with_overrides(scenario, duration_days=7, seed=None).duration_days == 7
    with pytest.raises(ScenarioError) as info:
        with_overrides(scenario, duration_days=-1)
    assert [str(p) for p in info.value.problems] == ["duration_days: must be > 0"]


@pytest.mark.parametrize("path", sorted((ROOT / "scenarios").glob("*.yaml")), ids=lambda p: p.name)
def test_every_committed_scenario_loads(path: Path) -> None:
    assert isinstance(load(path), Scenario)


# -- every problem, with its path ------------------------------------------------------------------


def test_every_independent_problem_is_reported_with_its_exact_path() -> None:
    data = minimal_data()
    data["duration_days"] = 0
    fleet = data["fleets"][0]
    fleet["colour"] = "white"
    fleet["count"] = "fifty"
    fleet["sensors"][0]["name"] = "cabinet temp"
    fleet["failure_modes"][0]["life_days"]["dist"] = "weibul"
    fleet["failure_modes"][0]["severity"] = "dead"
    fleet["failure_modes"][1]["life_days"] = {"dist": "weibull", "shape": 0, "scale": 10}
    del data["contact_centre"]["agents"]
    data["technicians"]["travel_h"] = {"dist": "lognormal", "mean": 1.0}
    data["engine"]["rules"][0]["for_s"] = "an hour"

    expected = [
        "duration_days: must be > 0",
        f"fleets[0].colour: unknown key (allowed here: {allowed(Fleet)})",
        "fleets[0].count: expected int, got str",
        "fleets[0].sensors[0].name: must be 1-64 letters, digits or '_.:-'",
        "fleets[0].failure_modes[0].life_days.dist: must be one of exponential, weibull, lognormal, gamma, uniform,"
        " fixed, wiener (got 'weibul'); did you mean 'weibull'?",
        "fleets[0].failure_modes[0].severity: must be one of 'degraded', 'down' (got 'dead')",
        "fleets[0].failure_modes[1].life_days.shape: must be > 0",
        "contact_centre: give `agents` (one group with every skill) or `groups`",
        "technicians.travel_h.sd: required",
        "engine.rules[0].for_s: expected float, got str",
    ]
    assert sorted(problems_of(data)) == sorted(expected)

    with pytest.raises(ScenarioError) as info:
        loads(yaml.safe_dump(data), source="bad.yaml")
    error = info.value
    assert isinstance(error, SimError) and isinstance(error, ValueError)
    assert str(error).startswith(f"bad.yaml: {len(expected)} problem(s)\n")
    assert all(f" {line}\n" in f"{error}\n" for line in expected)
    assert all(line.startswith("  bad.yaml:") for line in str(error).splitlines()[1:])  # with line and column
    assert error.path == error.problems[0].path


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d.pop("fleets"), "fleets: required"),
        (lambda d: d.update(fleets=[]), "fleets: must have at least 1 item(s)"),
        (lambda d: d.update(fleets={"a": 1}), "fleets: expected a list, got a mapping"),
        (lambda d: d["fleets"][0].update(sensors="temp"), "fleets[0].sensors: expected a list, got a string"),
        (lambda d: d.update(seed=True), "seed: expected int, got bool"),
        (lambda d: d.update(seed=-1), "seed: must be >= 0"),
        (lambda d: d.update(schema_version=2), "schema_version: must be <= 1"),
        (lambda d: d.update(sync_interval_s=float("nan")), "sync_interval_s: must be a finite number"),
        (lambda d: d.update(duration_days=float("inf")), "duration_days: must be a finite number"),
        (
            lambda d: d["fleets"][0]["failure_modes"][0].update(life_days={"shape": 2}),
            "fleets[0].failure_modes[0].life_days.dist: must be one of exponential, weibull, lognormal, gamma,"
            " uniform, fixed, wiener (got None)",
        ),
        (
            lambda d: d["fleets"][0]["failure_modes"][0].update(life_days=5),
            "fleets[0].failure_modes[0].life_days: expected a mapping, got int",
        ),
        (
            lambda d: d["fleets"][0]["failure_modes"][0].update(life_days={"dist": "uniform", "low": 5, "high": 1}),
            "fleets[0].failure_modes[0].life_days: `high` must be >= `low`",
        ),
        (
            lambda d: d["fleets"][0]["failure_modes"][0]["repair"].update(part=7),
            "fleets[0].failure_modes[0].repair.part: expected str, got int",
        ),
        (
            lambda d: d["engine"]["rules"][0].update(below=-30),
            "engine.rules[0]: give exactly one of `above` or `below`",
        ),
        (
            lambda d: d["engine"]["symptoms"].update(warm="plumbing"),
            "engine.symptoms.warm: unknown issue 'plumbing' (engine.issues: cooling)",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_a_single_problem_is_reported_at_its_path(change: Any, expected: str) -> None:
    data = minimal_data()
    change(data)
    assert problems_of(data) == [expected]


def test_the_document_must_be_a_mapping() -> None:
    assert [str(p) for p in validate_text("- a\n- b\n")[1]] == ["<document>: expected a mapping, got a list"]
    assert [str(p) for p in validate_text("")[1]] == ["<document>: the file is empty"]


# -- YAML-level problems ---------------------------------------------------------------------------


def test_duplicate_keys_are_refused_with_their_line() -> None:
    text = MINIMAL.replace("    count: 50\n", "    count: 50\n    count: 60\n")
    line = text.splitlines().index("    count: 60") + 1
    scenario, problems = validate_text(text)
    assert scenario is None
    assert [str(p) for p in problems] == [f"<line {line}, column 5>: not valid YAML: duplicate key 'count'"]


def test_unparsable_yaml_gives_line_and_column() -> None:
    text = MINIMAL.replace("contact_centre: {agents: 2}", "contact_centre: {agents: 2")
    line = text.splitlines().index("contact_centre: {agents: 2") + 2
    _, problems = validate_text(text)
    assert len(problems) == 1
    assert problems[0].path.startswith(f"<line {line}, column ")
    assert problems[0].message.startswith("not valid YAML: ")


@pytest.mark.parametrize(
    "text",
    [
        "? [a, b]\n: c\n",  # a key that is a list
        "? {a: 1}\n: c\n",  # a key that is a mapping
        "name: " + "[" * 5000 + "]" * 5000 + "\n",  # deeper than the parser's recursion
        "name: !!python/object:os.system x\n",  # a tag the safe loader does not know
        "name: a\n---\nname: b\n",  # two documents
        "\tname: a\n",  # a tab
    ],
    ids=["list-key", "mapping-key", "deep", "python-tag", "two-documents", "tab"],
)
def test_hostile_yaml_is_a_problem_never_an_exception(text: str) -> None:
    scenario, problems = validate_text(text)
    assert scenario is None
    assert len(problems) == 1
    assert problems[0].message.startswith("not valid YAML: ")


# -- cross-field checks ----------------------------------------------------------------------------


def _add_second_fleet(d: dict[str, Any]) -> None:
    d["fleets"].append(copy.deepcopy(d["fleets"][0]))


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda d: d["fleets"][0]["failure_modes"][0]["precursor"].update(sensor="pressure"),
            [
                "fleets[0].failure_modes[0].precursor.sensor: unknown sensor 'pressure'"
                " (fleet has: cabinet_temp_c, compressor_duty)"
            ],
        ),
        (
            lambda d: d["fleets"][0]["failure_modes"][0]["effects"][0].update(sensor="door"),
            [
                "fleets[0].failure_modes[0].effects[0].sensor: unknown sensor 'door' (fleet has: cabinet_temp_c, compressor_duty)"
            ],
        ),
        (_add_second_fleet, ["fleets[1].name: duplicate fleet name 'freezer'"]),
        (
            lambda d: d["engine"]["rules"][0].update(sensor="humidity"),
            ["engine.rules[0].sensor: no fleet has a sensor 'humidity'"],
        ),
        (
            lambda d: d["engine"]["symptoms"].pop("warm"),
            [
                "fleets[0].failure_modes[1].symptom: symptom 'warm' is not in engine.symptoms"
                " and there is no engine.default_issue"
            ],
        ),
        (lambda d: d["engine"].update(symptoms={}, default_issue="cooling"), []),
        (
            lambda d: d["fleets"][0]["sensors"].append({"name": "cabinet_temp_c", "baseline": 0}),
            ["fleets[0].sensors: sensor names (including consumables' sensors) must be unique"],
        ),
        (
            lambda d: d["fleets"][0].update(telemetry_interval_s=7200),
            ["fleets[0].telemetry_interval_s: must be <= sync_interval_s"],
        ),
        (
            lambda d: d.update(costs={"parts": {"door_seal": 45.0}}),
            ["engine.issues.cooling.parts: part 'compressor' has no price in costs.parts"],
        ),
    ],
    ids=[
        "precursor-sensor",
        "effect-sensor",
        "duplicate-fleet",
        "rule-sensor",
        "unmapped-symptom",
        "default-issue",
        "duplicate-sensor",
        "interval",
        "unpriced-part",
    ],
)
def test_cross_field_checks(change: Any, expected: list[str]) -> None:
    data = minimal_data()
    change(data)
    assert problems_of(data) == expected


# -- JSON Schema -----------------------------------------------------------------------------------


def test_json_schema_is_valid_and_agrees_with_the_reader() -> None:
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    data = minimal_data()
    validator.validate(data)
    for bad in (
        {**data, "colour": "white"},
        {**data, "fleets": [{**data["fleets"][0], "count": "fifty"}]},
        {k: v for k, v in data.items() if k != "name"},
    ):
        assert problems_of(bad)
        with pytest.raises(jsonschema.ValidationError):
            validator.validate(bad)
    typo = copy.deepcopy(data)
    typo["fleets"][0]["failure_modes"][0]["life_days"]["dist"] = "weibul"
    assert not validator.is_valid(typo)


# -- distributions ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dist",
    [
        Exponential(mean_=24.0),
        Weibull(shape=2.5, scale=1800.0),
        Weibull(shape=0.8, scale=10.0),
        Lognormal(mean_=6.0, sd=4.0),
        Gamma(shape=2.0, scale=3.0),
        Gamma(shape=0.5, scale=100.0),
        Uniform(low=2.0, high=5.0),
        Fixed(value=1.5),
    ],
    ids=repr,
)
def test_mean_matches_the_sample_mean_of_ppf(dist: Distribution) -> None:
    u = np.random.default_rng(20240601).random(200_000)
    x = dist.ppf(u)
    assert x.shape == u.shape
    assert np.isfinite(x).all() and (x >= 0).all()
    assert np.all(np.diff(dist.ppf(np.sort(u))) >= 0)  # an inverse CDF never decreases
    assert abs(x.mean() - dist.mean) <= 0.01 * dist.mean


def test_a_problem_in_an_override_points_at_the_users_item_and_one_from_the_product_names_it() -> None:
    data = {
        "name": "t",
        "duration_days": 1,
        "fleets": [
            {
                "name": "f",
                "product": "freezer",
                "count": 10,
                "failure_modes": [{"name": "door_seal_leak", "life_days": {"dist": "exponential", "mean": -1}}],
                "sensors": [{"name": "cabinet_temp_c", "baseline": -18.0, "noise_sd": -1}],
            }
        ],
        "contact_centre": {"agents": 1},
        "technicians": {"count": 1},
    }
    _, problems = validate_data(data)
    paths = {p.path for p in problems}
    assert "fleets[0].failure_modes[0].life_days.mean" in paths  # index 0 in the user's list, not the merged one
    assert "fleets[0].sensors[0].noise_sd" in paths
