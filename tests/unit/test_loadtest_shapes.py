"""Load shapes: durations, names and parameters, each shape's users over time, and the drain that ends it."""

from __future__ import annotations

import pytest

from loadtest.shapes import Plan, Ramp, ShapeError, Soak, Spike, Step, parse_duration, parse_shape


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90.0), ("90s", 90.0), ("2m", 120.0), ("1h30m", 5400.0), ("1.5h", 5400.0), (" 2m30s ", 150.0)],
)
def test_durations_read_like_locusts(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "s", "ten", "5x", "-3s", "1m1h"])
def test_a_duration_that_is_not_one_says_so(text: str) -> None:
    with pytest.raises(ShapeError, match="not a duration"):
        parse_duration(text)


def shape(spec: str, users: int = 100, rate: float = 10.0, duration: float = 60.0):  # type: ignore[no-untyped-def]
    return parse_shape(spec, users=users, spawn_rate=rate, duration_s=duration)


def test_soak_holds_the_users_for_the_whole_run() -> None:
    s = shape("soak")
    assert isinstance(s, Soak)
    assert [s.at(t) for t in (0, 30, 59.9)] == [(100, 10.0)] * 3


def test_ramp_rises_in_a_straight_line_then_holds_then_falls() -> None:
    s = shape("ramp:up=40s,down=10s")
    assert isinstance(s, Ramp)
    users = [s.at(t)[0] for t in (0, 10, 20, 40, 49, 50, 55, 59.9)]
    assert users[:4] == [1, 25, 50, 100]
    assert users[4] == 100  # held until the fall starts
    assert users[5:] == [100, 50, 1]
    assert s.at(10)[1] >= 100 / 40  # spawning keeps up with the line


def test_ramp_without_parameters_rises_over_the_whole_run() -> None:
    s = shape("ramp")
    assert s.at(30)[0] == 50 and s.at(59)[0] == 99


def test_step_climbs_in_equal_steps() -> None:
    s = shape("step:steps=4")
    assert isinstance(s, Step)
    assert [s.at(t)[0] for t in (0, 14.9, 15, 30, 45, 59)] == [25, 25, 50, 75, 100, 100]
    assert shape("step:steps=2,step=10s").at(25)[0] == 100  # after the last step: held


def test_spike_jumps_from_its_base_and_back() -> None:
    s = shape("spike")  # base a tenth, at a third, for a sixth of the run
    assert isinstance(s, Spike)
    assert [s.at(t)[0] for t in (0, 19.9, 20, 29.9, 30, 59)] == [10, 10, 100, 100, 10, 10]
    custom = shape("spike:base=5,at=5s,hold=2s")
    assert [custom.at(t)[0] for t in (4, 5, 6.9, 7)] == [5, 100, 100, 5]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("wave", "unknown shape 'wave'"),
        ("soak:up=3s", "unknown parameter 'up=3s'"),
        ("ramp:up", "unknown parameter 'up'"),
        ("step:steps=many", "steps must be a whole number"),
        ("step:steps=0", "steps must be 1 to users"),
        ("ramp:up=50s,down=20s", "must fit in the run"),
        ("spike:at=70s", "must fall inside the run"),
        ("spike:base=200", "base must be 0 to users"),
        ("ramp:down=ten", "not a duration"),
    ],
)
def test_a_bad_shape_names_its_problem(spec: str, message: str) -> None:
    with pytest.raises(ShapeError, match=message):
        shape(spec)


def test_users_rate_and_duration_are_checked() -> None:
    with pytest.raises(ShapeError, match="users must be >= 1"):
        shape("soak", users=0)
    with pytest.raises(ShapeError, match="spawn rate"):
        shape("soak", rate=0)
    with pytest.raises(ShapeError, match="duration"):
        shape("soak", duration=float("inf"))


def test_a_plan_drains_with_no_users_then_ends() -> None:
    plan = Plan(shape("spike"), drain_s=10.0)
    assert plan.total_s == 70.0
    assert plan.at(20) == (100, 10.0)
    assert plan.at(60) == (0, 100.0)  # every user stopped within about a second
    assert plan.at(69.9) == (0, 100.0)
    assert plan.at(70) is None
    assert plan.describe() == {
        "name": "spike",
        "users": 100,
        "spawn_rate": 10.0,
        "duration_s": 60.0,
        "base": 10,
        "at_s": 20.0,
        "hold_s": 10.0,
        "drain_s": 10.0,
    }
    with pytest.raises(ShapeError):
        Plan(shape("soak"), drain_s=-1)
