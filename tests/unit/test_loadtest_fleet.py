"""The fleet a load test simulates comes from the scenario file, and users follow its mix."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loadtest.fleet import Allocator, FleetMix, FleetSpec, SensorSpec, from_scenario_file
from tests import strategies as _profiles  # noqa: F401  # loads the suite's HYPOTHESIS_PROFILE

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


def test_a_scenarios_fleets_become_the_mix_with_their_products_counts_and_intervals() -> None:
    mix = from_scenario_file(SCENARIOS / "city.yaml")
    assert mix.scenario == "city"
    assert [(f.name, f.product, f.count) for f in mix.fleets] == [
        ("shop-freezer", "freezer", 800),
        ("vending", "vending_machine", 600),
        ("garage", "garage_door_opener", 1500),
        ("office-printer", "printer", 500),
        ("taxi", "car", 600),
    ]
    assert mix.devices == 4000
    assert all(f.interval_s == 900.0 for f in mix.fleets)
    printer = mix.fleets[3]
    names = [s.name for s in printer.sensors]
    assert names[:2] == ["fuser_temp_c", "jam_sensor_trips"]  # the catalogue's sensors ...
    assert "toner_black_pct" in names  # ... and its consumables' levels
    assert printer.fault_codes == ("fuser_error", "fw_watchdog", "paper_jam")
    assert mix.fleets[0].fault_codes == ()  # freezers report no fault codes


def test_devices_without_fault_codes_send_diagnoses_and_the_others_faults() -> None:
    mix = from_scenario_file(SCENARIOS / "city.yaml")
    assert mix.fleets[0].event(0.5) == ("diagnosis", "self_test_passed")
    assert mix.fleets[3].event(0.0) == ("fault", "fuser_error")
    assert mix.fleets[3].event(0.999) == ("fault", "paper_jam")


def test_gateways_carry_devices_per_gateway() -> None:
    mix = from_scenario_file(SCENARIOS / "cars.yaml")
    assert mix.full_size("device") == 5000
    assert mix.full_size("gateway") == 5  # 1,000 cars a gateway


def test_users_split_over_the_fleets_by_their_counts() -> None:
    mix = from_scenario_file(SCENARIOS / "city.yaml")
    split = mix.users_by_fleet(40, "device")
    assert split == {"shop-freezer": 8, "vending": 6, "garage": 15, "office-printer": 5, "taxi": 6}
    assert sum(mix.users_by_fleet(7, "device").values()) == 7


@given(st.lists(st.integers(0, 50), min_size=1, max_size=6).filter(lambda w: sum(w) > 0), st.integers(1, 300))
def test_every_prefix_of_users_keeps_each_fleets_share_within_two(weights: list[int], n: int) -> None:
    alloc = Allocator(weights)
    given_out = [0] * len(weights)
    for k in range(1, n + 1):
        given_out[alloc.next()] += 1
        for w, g in zip(weights, given_out, strict=True):
            assert abs(g - k * w / sum(weights)) < 2.0  # about one in practice
    assert all(g == 0 for w, g in zip(weights, given_out, strict=True) if w == 0)


def test_a_rate_sets_the_speed_and_the_speed_gives_the_rate_back() -> None:
    mix = from_scenario_file(SCENARIOS / "city.yaml")
    speed = mix.speed_for_rate(2000.0, 1000, "device", event_share=0.01)
    assert mix.message_rate(1000, "device", speed, event_share=0.01) == pytest.approx(2000.0)
    assert speed == pytest.approx(2000.0 * 900.0 / (1000 * 1.01))


def test_the_mix_travels_as_json() -> None:
    mix = from_scenario_file(SCENARIOS / "freezers.yaml")
    assert FleetMix.decode(mix.encode()) == mix
    with pytest.raises(ValueError, match="not valid JSON"):
        FleetMix.decode("{")
    with pytest.raises(ValueError, match="not a fleet mix"):
        FleetMix.decode('{"scenario": "x"}')


def test_a_mix_that_cannot_make_load_is_refused() -> None:
    sensor = SensorSpec(name="t", baseline=1.0)
    with pytest.raises(ValueError, match="at least one fleet"):
        FleetMix(scenario="s", fleets=())
    with pytest.raises(ValueError, match="must be > 0"):
        FleetMix(
            scenario="s",
            fleets=(
                FleetSpec(name="f", product="p", count=1, interval_s=0.0, devices_per_gateway=1, sensors=(sensor,)),
            ),
        )
    with pytest.raises(ValueError, match="no sensors"):
        FleetMix(
            scenario="s",
            fleets=(FleetSpec(name="f", product="p", count=1, interval_s=1.0, devices_per_gateway=1, sensors=()),),
        )
    with pytest.raises(ValueError, match="weights"):
        Allocator([0, 0])
