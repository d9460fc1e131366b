"""``--junit``: one test case per condition, one for the reconciliation, one per baseline figure; CI reads the counts."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import pytest

from loadtest.junit import SUITE, junit_xml
from tests.loadtest.report_fixture import sample_report


def suite_of(report: dict[str, Any]) -> ET.Element:
    root = ET.fromstring(junit_xml(report, hostname="ci-runner"))
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    for key in ("tests", "failures", "errors", "skipped", "time"):
        assert root.get(key) == suite.get(key), key
    return suite


def cases(suite: ET.Element) -> dict[str, ET.Element]:
    return {f"{c.get('classname')}: {c.get('name')}": c for c in suite.findall("testcase")}


def test_the_suite_has_the_standard_attributes_and_counts_its_cases() -> None:
    suite = suite_of(sample_report(lost=1, fail_on="lost>0,p99_ingest_ms>100,p99_engine_lag_ms>1"))
    assert suite.get("name") == SUITE == "sot loadtest"
    assert suite.get("hostname") == "ci-runner"
    assert suite.get("timestamp") == "2027-01-15T09:00:00+00:00"
    assert float(suite.get("time", "")) == pytest.approx(52.4)
    found = suite.findall("testcase")
    assert int(suite.get("tests", "")) == len(found) == 4
    assert int(suite.get("failures", "")) == sum(1 for c in found if c.find("failure") is not None) == 3
    assert int(suite.get("errors", "")) == 0 and int(suite.get("skipped", "")) == 0
    properties = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert properties["scenario"] == "city" and properties["users"] == "200" and properties["shape"] == "soak"


def test_a_condition_that_held_fails_with_what_was_measured_and_the_limit() -> None:
    found = cases(suite_of(sample_report(lost=1, fail_on="lost>0,p99_ingest_ms>100")))
    failure = found["sot loadtest.thresholds: lost>0"].find("failure")
    assert failure is not None
    assert failure.get("type") == "ThresholdCrossed"
    assert failure.get("message") == "measured lost = 1; fails when >0"
    assert "lost>0 held" in (failure.text or "")
    passing = found["sot loadtest.thresholds: p99_ingest_ms>100"]
    assert list(passing) == []  # a test case without a child passed


def test_a_figure_the_run_did_not_measure_is_an_error() -> None:
    report = sample_report(fail_on="p99_ingest_ms>100")
    report["thresholds"][0].update(measured=None, failed=True)
    suite = suite_of(report)
    error = cases(suite)["sot loadtest.thresholds: p99_ingest_ms>100"].find("error")
    assert error is not None and error.get("message") == "p99_ingest_ms was not measured in this run"
    assert suite.get("errors") == "1"


def test_the_reconciliation_is_a_case_of_its_own() -> None:
    name = "sot loadtest.reconciliation: no acknowledged message lost"
    balanced = cases(suite_of(sample_report(fail_on="")))[name]
    assert balanced.find("failure") is None
    assert "published 12000, ingested 11997, rejected 3, lost 0" in (balanced.findtext("system-out") or "")

    lost = cases(suite_of(sample_report(lost=2, fail_on="")))[name].find("failure")
    assert (
        lost is not None
        and lost.get("message") == "lost 2 of 12000 acknowledged messages (published - ingested - rejected)"
    )

    unwatched = sample_report(fail_on="")
    unwatched["messages"]["lost"] = None
    skipped = cases(suite_of(unwatched))[name].find("skipped")
    assert skipped is not None and "--engine-metrics" in (skipped.get("message") or "")


def test_each_baseline_figure_is_a_case_and_a_regression_fails() -> None:
    report = sample_report(slow_after_s=25, fail_on="", baseline=sample_report())
    found = cases(suite_of(report))
    baseline = {k: c for k, c in found.items() if k.startswith("sot loadtest.baseline")}
    assert len(baseline) == len(report["comparison"]["figures"]) == 8
    regressed = baseline["sot loadtest.baseline: p99_ingest_ms within 10 % of the baseline"].find("failure")
    assert regressed is not None and regressed.get("type") == "Regression"
    assert "baseline 12, this run 93" in (regressed.get("message") or "")
    assert baseline["sot loadtest.baseline: p99_publish_ms within 10 % of the baseline"].find("failure") is None


@pytest.mark.parametrize(("gate", "child"), [(False, "skipped"), (True, "failure")])
def test_a_figure_that_cannot_be_compared_fails_only_under_the_gate(gate: bool, child: str) -> None:
    old = sample_report()
    old["latency_ms"]["ingest"]["p99"] = None
    report = sample_report(fail_on="", baseline=old, gate=gate)
    case = cases(suite_of(report))["sot loadtest.baseline: p99_ingest_ms within 10 % of the baseline"]
    (only,) = list(case)
    assert only.tag == child
    assert only.get("message") == "ingest p99: the baseline did not measure it"
