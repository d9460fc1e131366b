"""A short load test through real Mosquitto and the engine, as CI runs it: ``sot loadtest`` end to end.

Three runs of a few seconds each: tens of devices across a Locust master and two workers whose gate
holds; a single process with a saboteur device whose gate (``lost>0``) fails because the
reconciliation finds the message it sent to a topic nobody subscribes; and gateways with columnar
batches. No timing is asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
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
        out, "--users", "30", "--rate", "60", "--workers", "2", "--fail-on", "lost>0,p99_ingest_ms>30000"
    )

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
    assert processes_in(out) == []


def test_a_message_nobody_subscribes_is_lost_and_fails_the_gate(tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = sot_loadtest(
        out, "--users", "10", "--rate", "20", "--workers", "0", "--locustfile", str(SABOTEUR), "--fail-on", "lost>0"
    )

    assert done.returncode == 1, done.stderr
    assert "FAIL lost>0 is true: measured lost = 1" in done.stderr
    r = report(out)
    m = r["messages"]
    assert r["passed"] is False
    assert r["thresholds"] == [{"condition": "lost>0", "measured": 1.0, "failed": True}]
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
        scenario="scenarios/cars.yaml",
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    m = report(out)["messages"]
    assert m["published"] > 0 and set(m["by_kind"]) == {"batch"}
    assert m["ingested"] == m["published"] and m["lost"] == 0
    assert m["readings"] == 1000 * m["published"]  # a car gateway carries 1,000 cars
    assert processes_in(out) == []
