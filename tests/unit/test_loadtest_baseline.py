"""``--baseline``: direction-aware regressions beyond a tolerance, and a bad baseline named before anything runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from harness.cli import app
from loadtest.baseline import HEADLINE, BaselineError, compare, read_baseline, summary_lines
from loadtest.report import REPORT_SCHEMA_VERSION

ROOT = Path(__file__).resolve().parents[2]


def report(**figures: float | None) -> dict[str, Any]:
    """A report holding the headline figures (defaults below), set by their ``--fail-on`` names."""
    values: dict[str, float | None] = {
        "p50_ingest_ms": 3.0,
        "p95_ingest_ms": 8.0,
        "p99_ingest_ms": 10.0,
        "p99_publish_ms": 4.0,
        "published_per_s": 1000.0,
        "ingested_per_s": 1000.0,
        "lost": 0,
        "rejected": 0,
        **figures,
    }
    doc: dict[str, Any] = {"schema_version": REPORT_SCHEMA_VERSION, "scenario": "city", "users": 200}
    for f in HEADLINE:
        node = doc
        for key in f.path[:-1]:
            node = node.setdefault(key, {})
        node[f.path[-1]] = values[f.name]
    return doc


def status(current: dict[str, Any], baseline: dict[str, Any], figure: str, **kwargs: Any) -> str:
    found = {x["figure"]: x for x in compare(current, baseline, **kwargs)["figures"]}
    return str(found[figure]["status"])


@pytest.mark.parametrize(
    ("figure", "now", "expected"),
    [
        ("p99_ingest_ms", 12.0, "regressed"),  # latency up: worse
        ("p99_ingest_ms", 8.0, "improved"),
        ("p99_publish_ms", 4.2, "unchanged"),
        ("published_per_s", 800.0, "regressed"),  # throughput down: worse
        ("ingested_per_s", 1200.0, "improved"),
        ("rejected", 0, "unchanged"),
    ],
)
def test_worse_depends_on_the_figures_direction(figure: str, now: float, expected: str) -> None:
    assert status(report(**{figure: now}), report(), figure) == expected


@pytest.mark.parametrize(
    ("now", "tolerance", "expected"),
    [
        (11.0, 0.10, "unchanged"),  # exactly the tolerance is within it
        (11.0001, 0.10, "regressed"),
        (9.0, 0.10, "unchanged"),
        (8.9999, 0.10, "improved"),
        (10.0, 0.0, "unchanged"),
        (10.0001, 0.0, "regressed"),
        (14.9, 0.5, "unchanged"),
        (15.1, 0.5, "regressed"),
    ],
)
def test_the_tolerance_is_a_share_of_the_baselines_value(now: float, tolerance: float, expected: str) -> None:
    assert status(report(p99_ingest_ms=now), report(), "p99_ingest_ms", tolerance=tolerance) == expected


def test_the_tolerance_edge_holds_for_rates_too() -> None:
    assert status(report(published_per_s=900.0), report(), "published_per_s") == "unchanged"
    assert status(report(published_per_s=899.9), report(), "published_per_s") == "regressed"


def test_from_a_baseline_of_zero_any_worsening_regresses() -> None:
    comparison = compare(report(lost=1), report(lost=0))
    lost = next(x for x in comparison["figures"] if x["figure"] == "lost")
    assert (lost["status"], lost["change"], lost["baseline"], lost["current"]) == ("regressed", None, 0.0, 1.0)
    assert status(report(lost=0), report(lost=0), "lost") == "unchanged"
    assert status(report(lost=0), report(lost=4), "lost") == "improved"
    assert ("red", "regressed lost: 0 \u2192 1 (new, tolerance 10 %)") in summary_lines(comparison)


def test_a_figure_either_run_did_not_measure_cannot_be_compared_and_the_gate_says_so() -> None:
    old, new = report(p99_ingest_ms=None), report(ingested_per_s=None)
    comparison = compare(new, old)
    found = {x["figure"]: x for x in comparison["figures"]}
    assert found["p99_ingest_ms"]["note"] == "the baseline did not measure it"
    assert found["ingested_per_s"]["note"] == "this run did not measure it"
    assert comparison["not_comparable"] == 2 and comparison["regressions"] == 0
    assert comparison["failed"] is False
    assert compare(new, old, gate=True)["failed"] is True
    assert compare(report(), report(), gate=True)["failed"] is False

    partial = report()
    del partial["rates"]
    found = {x["figure"]: x for x in compare(report(), partial)["figures"]}
    assert found["published_per_s"]["note"] == "absent from the baseline"


def test_runs_asked_for_different_things_are_named() -> None:
    comparison = compare({**report(), "users": 400}, report())
    assert comparison["differences"] == ["users: 200 \u2192 400"]
    assert ("yellow", "the runs differ in users: 200 \u2192 400") in summary_lines(comparison)


def test_a_negative_tolerance_is_refused() -> None:
    with pytest.raises(ValueError, match="tolerance"):
        compare(report(), report(), tolerance=-0.1)


def test_a_baseline_is_read_from_its_file_or_its_directory(tmp_path: Path) -> None:
    (tmp_path / "loadtest.json").write_text(json.dumps(report()))
    assert read_baseline(tmp_path) == read_baseline(tmp_path / "loadtest.json") == report()


def test_a_baseline_of_schema_1_has_its_headline_figures_where_they_are_now(tmp_path: Path) -> None:
    path = tmp_path / "v1.json"
    path.write_text(json.dumps({**report(p99_ingest_ms=20.0), "schema_version": 1}))
    comparison = compare(report(), read_baseline(path))
    assert comparison["baseline_schema_version"] == 1
    assert status(report(), read_baseline(path), "p99_ingest_ms") == "improved"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        ("{not json", "not JSON"),
        (json.dumps([1, 2]), "has no schema_version"),
        (json.dumps({"published": 3}), "has no schema_version"),
        (
            json.dumps({**report(), "schema_version": 99}),
            "schema_version 99; this sot compares against load-test reports of schema 1 and 2",
        ),
        (json.dumps({"schema_version": 2, "scenario": "x"}), "none of the headline figures is in it"),
    ],
)
def test_a_bad_baseline_says_what_is_wrong(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "old" / "loadtest.json"
    if content is not None:
        path.parent.mkdir()
        path.write_text(content)
    with pytest.raises(BaselineError, match=message) as caught:
        read_baseline(path)
    assert str(path) in str(caught.value)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--baseline", "nowhere/loadtest.json"], "no such file"),
        (["--fail-on-regression"], "needs a --baseline"),
        (["--tolerance", "-1"], "must be a number >= 0"),
    ],
)
def test_the_command_refuses_a_bad_baseline_before_it_starts_anything(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["loadtest", str(ROOT / "scenarios" / "city.yaml"), *args])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
