"""A short load test through real Mosquitto and the engine, as CI runs it: ``sot loadtest`` end to end.

Three runs of a few seconds each: tens of devices across a Locust master and two workers whose gate
holds; a single process with a saboteur device whose gate (``lost>0``) fails because the
reconciliation finds the message it sent to a topic nobody subscribes; and gateways with columnar
batches. Each writes ``loadtest.html`` (the verdict, the books, the run over time) and a JUnit file;
the last two are compared with a hand-written baseline. No timing is asserted.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from harness.broker import mosquitto_available

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not mosquitto_available(), reason="load tests need Mosquitto (apt-get install mosquitto)"),
]

ROOT = Path(__file__).resolve().parents[2]
SABOTEUR = Path(__file__).with_name("saboteur_locustfile.py")
# A short run: 3 s of load, receipts given 2 s, a drain that leaves Locust's workers time to report.
SHORT = ["--duration", "3s", "--drain", "5s", "--receipt-timeout", "1s", "--spawn-rate", "40", "--ack-every", "1"]


def sot_loadtest(out: Path, *args: str, scenario: str = "scenarios/city.yaml") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", "loadtest", scenario, "--out", str(out), "-q", *SHORT, *args],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )


def report(out: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((out / "loadtest.json").read_text())
    return document


def junit(path: Path) -> dict[str, ET.Element]:
    """The JUnit file's test cases by name, after checking the suite's counts."""
    (suite,) = ET.parse(path).getroot().iter("testsuite")
    assert suite.get("name") == "sot loadtest"
    found = suite.findall("testcase")
    assert suite.get("tests") == str(len(found))
    assert suite.get("failures") == str(sum(1 for c in found if c.find("failure") is not None))
    assert suite.get("errors") == str(sum(1 for c in found if c.find("error") is not None))
    assert float(suite.get("time") or "nan") > 0
    return {str(c.get("name")): c for c in found}


def page(out: Path) -> str:
    """``loadtest.html``, with the verdict and the books checked against ``loadtest.json``."""
    html = (out / "loadtest.html").read_text(encoding="utf-8")
    r = report(out)
    word, flag = ("PASSED", "true") if r["passed"] else ("FAILED", "false")
    assert f'data-passed="{flag}">\n<span class="word">{word}</span>' in html
    for key in ("published", "ingested", "rejected", "lost"):
        cell = re.search(rf'<tr[^>]* data-key="{key}">.*?<td class="num">([^<]*)</td>', html, re.S)
        assert cell is not None and cell.group(1) == f"{r['messages'][key]:,}", key
    assert 'href="locust.html"' in html and "<script" not in html
    return html


def baseline(directory: Path, **figures: float) -> Path:
    """A hand-written earlier report holding only the headline figures (the rest as ``sot loadtest`` writes them)."""
    directory.mkdir(parents=True)
    values = {"p50": 1e6, "p95": 1e6, "p99": 1e6}
    document = {
        "schema_version": 2,
        "latency_ms": {"ingest": dict(values), "publish": dict(values)},
        "rates": {"published_per_s": 0.01, "ingested_per_s": 0.01},
        "messages": {"lost": figures.get("lost", 0), "rejected": figures.get("rejected", 0)},
    }
    (directory / "loadtest.json").write_text(json.dumps(document))
    return directory


def processes_in(directory: Path) -> list[str]:
    """Command lines of live processes working in, or naming, ``directory``: a broker, an engine or Locust left behind."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if str(directory) in cmdline or cwd.startswith(str(directory)):
            found.append(cmdline)
    return found


def test_devices_across_two_workers_are_all_ingested_and_the_gate_holds(tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = sot_loadtest(
        out, "--users", "30", "--rate", "60", "--workers", "2", "--fail-on", "lost>0,p99_ingest_ms>30000",
        "--junit", str(tmp_path / "ci" / "junit.xml"),
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert "ok lost>0 is false: measured lost = 0" in done.stderr
    r = report(out)
    m = r["messages"]
    assert r["passed"] is True and r["manifest"]["workers"] == 2
    assert sum(r["fleet"].values()) == 30 and len(r["fleet"]) == 5  # city.yaml's five fleets share the users
    assert m["published"] > 0
    assert m["ingested"] == m["published"] and m["lost"] == 0 and m["rejected"] == 0
    assert m["receipts"]["timed"] > 0  # the engine's receipts came back to the workers that sent the messages
    assert r["latency_ms"]["ingest"]["p99"] is not None and r["latency_ms"]["publish"]["p50"] is not None
    assert r["connections"]["made"] >= 30
    assert r["broker"]["from_devices"] >= m["published"]  # the broker saw every acknowledged publish
    for name in ("locust_stats.csv", "locust_failures.csv", "locust.html", "locust.json", "engine.log"):
        assert (out / name).exists(), name
    # The run over time: the workers' response times per interval reached the master, every one of them.
    assert r["schema_version"] == 2
    t = r["timeline"]
    assert sum(t["latency_ms"]["ingest"]["count"]) == m["receipts"]["timed"]
    assert sum(t["latency_ms"]["connect"]["count"]) >= 30
    assert max(t["users"]["users"]) == 30
    assert any(v for v in t["engine"]["ingested_per_s"] if v) and any(v for v in t["broker"]["received_per_s"] if v)
    html = page(out)
    for figure in ("fig-latency", "fig-throughput", "fig-connections", "fig-lag", "fig-broker"):
        assert re.search(rf'<figure id="{figure}" class="plot">\s*<svg', html), figure
    cases = junit(tmp_path / "ci" / "junit.xml")
    assert set(cases) == {"lost>0", "p99_ingest_ms>30000", "no acknowledged message lost"}
    assert all(list(c) == [] or c[0].tag == "system-out" for c in cases.values())  # all passed
    assert processes_in(out) == []


def test_a_message_nobody_subscribes_is_lost_and_fails_the_gate(tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = sot_loadtest(
        out, "--users", "10", "--rate", "20", "--workers", "0", "--locustfile", str(SABOTEUR), "--fail-on", "lost>0",
        "--junit", str(out / "junit.xml"), "--baseline", str(baseline(tmp_path / "old")), "--fail-on-regression",
    )  # fmt: skip

    assert done.returncode == 1, done.stderr
    assert "FAIL lost>0 is true: measured lost = 1" in done.stderr
    assert "regressed lost: 0 → 1 (new, tolerance 10 %)" in done.stderr
    r = report(out)
    m = r["messages"]
    assert r["passed"] is False
    assert r["thresholds"] == [
        {"condition": "lost>0", "metric": "lost", "op": ">", "limit": 0.0, "measured": 1.0, "failed": True}
    ]
    assert r["comparison"]["failed"] is True and r["comparison"]["regressions"] == 2  # lost, and rejected from 0
    assert "FAILED" in page(out)
    cases = junit(out / "junit.xml")
    failure = cases["lost>0"].find("failure")
    assert failure is not None and failure.get("message") == "measured lost = 1; fails when >0"
    lost = cases["no acknowledged message lost"].find("failure")
    assert lost is not None and "lost 1 of" in str(lost.get("message"))
    assert cases["lost within 10 % of the baseline"].find("failure") is not None
    # The broker acknowledged both bad messages; the engine rejected one and never saw the other.
    assert m["lost"] == 1
    assert m["rejected"] == 1 and m["rejected_by_reason"] == {"device_mismatch": 1}
    assert m["ingested"] == m["published"] - 2
    assert r["broker"]["from_devices"] >= m["published"]
    assert processes_in(out) == []


def test_gateways_send_batches_whose_readings_the_engine_counts(tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = sot_loadtest(
        out, "--kind", "gateway", "--users", "3", "--speed", "600", "--workers", "0", "--fail-on", "lost>0",
        "--baseline", str(baseline(tmp_path / "old")), "--fail-on-regression", scenario="scenarios/cars.yaml",
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    r = report(out)
    comparison = r["comparison"]
    assert comparison["regressions"] == 0 and comparison["not_comparable"] == 0 and comparison["failed"] is False
    assert {x["status"] for x in comparison["figures"]} == {"improved", "unchanged"}
    assert "2 of 8 headline figures within 10 % of the baseline" in done.stderr  # lost and rejected: 0 as before
    page(out)
    m = r["messages"]
    assert m["published"] > 0 and set(m["by_kind"]) == {"batch"}
    assert m["ingested"] == m["published"] and m["lost"] == 0
    assert m["readings"] == 1000 * m["published"]  # a car gateway carries 1,000 cars
    assert processes_in(out) == []
