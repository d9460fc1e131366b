"""``sot run`` with bad input: a usage error (exit 2) naming the option and the problem, before any
broker or engine starts; never a traceback."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness import cli
from harness.cli import app

ROOT = Path(__file__).resolve().parents[2]
FREEZERS = str(ROOT / "scenarios" / "freezers.yaml")


def plain(output: str) -> str:
    """The words of an error panel, without its frame and line breaks."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", output).split())


@pytest.mark.parametrize(
    ("args", "option", "says"),
    [
        (["--broker", "mqtt://[::1"], "--broker", "bad broker URL"),
        (["--broker", "mqtt://host:99999"], "--broker", "port"),
        (["--days", "1e308"], "--days", "must be <= 36525"),
        (["--warmup-days", "1e300"], "--warmup-days", "must be <= 36525"),
        (["--seed", "-1"], "--seed", "greater than or equal to 0"),
        (["--seed", "99999999999999999999"], "--seed", "less than or equal to"),
        (["--prefix", "a/#"], "--prefix", "bad topic prefix"),
        (["--out", "/proc/sot-run"], "--out", "cannot write to /proc/sot-run"),
        (["--out", FREEZERS], "--out", "is a file, not a directory"),
        (["--engines", "0"], "--engines", ""),
    ],
)
def test_bad_options_are_usage_errors_that_name_the_option(args: list[str], option: str, says: str) -> None:
    result = CliRunner().invoke(app, ["run", FREEZERS, *args, "--quiet"])
    assert result.exit_code == 2, result.output
    assert option in result.output and says in plain(result.output)
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_a_fleet_that_does_not_fit_in_memory_is_refused_with_what_fits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "_available_bytes", lambda: 2 * 2**30)  # a machine with 2 GB available
    result = CliRunner().invoke(app, ["run", FREEZERS, "--devices", "5000000", "--quiet"])
    assert result.exit_code == 2
    text = plain(result.output)
    assert "5,000,000 devices need about 9.3 GB" in text and "at most about 966,367 devices fit" in text


def test_a_scenario_file_far_beyond_any_scenario_is_refused_unread(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("fleets: []\n" + "#" * (5 * 2**20), encoding="utf-8")
    result = CliRunner().invoke(app, ["validate", str(big)])
    assert result.exit_code == 2
    assert "the file is 5 MB; a scenario file is at most 4 MB" in result.output
