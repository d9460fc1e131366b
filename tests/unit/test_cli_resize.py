"""``sot run --devices N``: the fleets resized in proportion, people and crews as they were."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli import app, resized
from sim.scenario_file import load

ROOT = Path(__file__).resolve().parents[2]
CITY = ROOT / "scenarios" / "city.yaml"  # five fleets: 800, 600, 1,500, 500, 600 devices


def test_fleets_keep_their_proportions_and_the_total_is_exact() -> None:
    city = load(CITY)
    big = resized(city, 40_000)
    assert [f.count for f in big.fleets] == [8_000, 6_000, 15_000, 5_000, 6_000]
    odd = resized(city, 1_001)  # remainders go to the largest fractions
    assert sum(f.count for f in odd.fleets) == 1_001
    assert [f.count for f in odd.fleets] == [200, 150, 376, 125, 150]  # 375.375 has the largest remainder
    assert big.technicians == city.technicians and big.contact_centre == city.contact_centre


def test_every_fleet_keeps_one_device_and_fewer_than_one_each_is_refused() -> None:
    city = load(CITY)
    assert [f.count for f in resized(city, 5).fleets] == [1, 1, 1, 1, 1]
    assert sum(f.count for f in resized(city, 6).fleets) == 6
    with pytest.raises(ValueError, match="at least 5"):
        resized(city, 4)


def test_the_cli_names_the_option_when_the_size_is_refused() -> None:
    result = CliRunner().invoke(app, ["run", str(CITY), "--devices", "3", "--quiet"])
    assert result.exit_code == 2
    assert "--devices" in result.output and "at least 5" in result.output
