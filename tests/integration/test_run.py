"""Whole runs of scenarios/freezers.yaml through a real broker and the engine process, as a user runs them."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from harness.broker import start_broker
from tests.integration.cli import FREEZERS, ROOT, SOT, processes_mentioning, sot

pytestmark = pytest.mark.integration


def run_freezers(out: Path, *extra: str) -> dict:
    proc = sot("run", str(FREEZERS), "--seed", "7", "--out", str(out), "--quiet", *extra)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert processes_mentioning(str(out)) == [], "broker or engine left running"
    return json.loads((out / "result.json").read_text())


DAYS = ("--days", "30")  # a month of the freezers: enough failures to compare, quick enough for CI


@pytest.fixture(scope="module")
def mosquitto_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    base = tmp_path_factory.mktemp("mosquitto")
    return {
        "proactive_1": run_freezers(base / "p1", *DAYS, "--policy", "proactive", "--broker-kind", "mosquitto"),
        "proactive_2": run_freezers(base / "p2", *DAYS, "--policy", "proactive", "--broker-kind", "mosquitto"),
        "reactive": run_freezers(base / "r", *DAYS, "--policy", "reactive", "--broker-kind", "mosquitto"),
    }


def kpi_bytes(result: dict) -> bytes:
    return json.dumps(result["kpis"], sort_keys=True).encode()


def test_same_seed_same_kpis_through_mosquitto(mosquitto_runs: dict[str, dict]) -> None:
    a, b = mosquitto_runs["proactive_1"], mosquitto_runs["proactive_2"]
    assert a["manifest"]["broker"].startswith("mosquitto")
    assert kpi_bytes(a) == kpi_bytes(b)
    assert a["kpis"]["failures"] > 0 and a["kpis"]["work_orders"] > 0


def test_same_seed_same_kpis_through_the_embedded_broker(tmp_path: Path, mosquitto_runs: dict[str, dict]) -> None:
    a = run_freezers(tmp_path / "a1", *DAYS, "--policy", "proactive", "--broker-kind", "amqtt")
    b = run_freezers(tmp_path / "a2", *DAYS, "--policy", "proactive", "--broker-kind", "amqtt")
    assert a["manifest"]["broker"].startswith("amqtt")
    assert a["manifest"]["mqtt_protocol"] == "3.1.1"
    assert kpi_bytes(a) == kpi_bytes(b)
    # The broker does not change the outcome either.
    assert kpi_bytes(a) == kpi_bytes(mosquitto_runs["proactive_1"])


def test_nothing_is_lost(mosquitto_runs: dict[str, dict]) -> None:
    for result in mosquitto_runs.values():
        m = result["messages"]
        assert m["lost"] == 0
        assert m["published"] == m["ingested"] > 0
        assert m["rejected"] == 0 and m["duplicates"] == 0
        assert m["engine_emitted"] == m["engine_outputs_received"]


def test_proactive_beats_reactive_on_contacts_and_downtime(mosquitto_runs: dict[str, dict]) -> None:
    proactive, reactive = mosquitto_runs["proactive_1"]["kpis"], mosquitto_runs["reactive"]["kpis"]
    assert proactive["contacts_per_1000_devices"] < reactive["contacts_per_1000_devices"]
    assert proactive["downtime_hours_per_device_year"] < reactive["downtime_hours_per_device_year"]
    assert proactive["detected_before_owner_rate"] > reactive["detected_before_owner_rate"]


def test_outputs_are_written(tmp_path: Path) -> None:
    out = tmp_path / "short"
    result = run_freezers(out, "--days", "3")
    assert set(result) >= {"scenario", "seed", "policy", "sim_days", "manifest", "messages", "kpis"}
    assert result["sim_days"] == 3
    events = (out / "events.csv").read_text().splitlines()
    truth = (out / "ground_truth.csv").read_text().splitlines()
    assert events[0] == "t_s,actor,kind,device_id,ref,detail" and len(events) > 1
    assert truth[0].startswith("device_id,fleet,mode,severity,onset_s")
    assert truth[0].endswith(",fixed_by")
    assert (out / "connectivity.csv").read_text().splitlines()[0] == "t_s,who,kind,detail"
    series = (out / "timeseries.csv").read_text().splitlines()
    assert series[0] == "t_s,t_days,series,value" and len(series) == 1 + 3 * 24 * 6  # hourly steps, six series


def most_connected(log: Path) -> int:
    """The most clients connected at once, from Mosquitto's log of connections and disconnections
    (in the broker's order: no sampling, unlike its once-a-second ``$SYS`` count)."""
    now = most = 0
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        if "New client connected from" in line:
            now += 1
        elif re.search(r"Client \S+ (disconnected|closed its connection|has exceeded timeout)", line):
            now -= 1
        most = max(most, now)
    return most


def test_engine_process_receives_the_telemetry_through_the_broker(tmp_path: Path) -> None:
    """A subscriber beside the engine sees every batch the engine ingested, and the broker has three
    clients connected at once."""
    broker = start_broker("mosquitto")
    try:
        batches: list[int] = []
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id="observer")
        ready = threading.Event()

        def on_message(c: paho.Client, u: object, msg: paho.MQTTMessage) -> None:
            batches.append(len(msg.payload))

        client.on_message = on_message
        client.on_subscribe = lambda *a: ready.set()
        client.connect(broker.url.host, broker.url.port)
        client.subscribe([("obs/v1/gw/+/batch", 1)])
        client.loop_start()
        assert ready.wait(10)
        out = tmp_path / "observed"
        result = run_freezers(out, "--days", "4", "--broker", str(broker.url), "--prefix", "obs/v1")
        deadline = time.monotonic() + 10
        expected = 4 * 24 * 4 * 4  # days x ticks per day x gateways
        while len(batches) < expected and time.monotonic() < deadline:
            time.sleep(0.05)
        client.loop_stop()
        client.disconnect()
        assert len(batches) == expected
        assert result["messages"]["readings"] == expected * 500
        assert result["messages"]["ingested"] >= expected
        assert result["manifest"]["broker"].startswith("external")
        assert most_connected(broker.workdir / "mosquitto.log") >= 3  # world, engine and this observer
        assert broker.alive(), "a run against an external broker must not stop it"
    finally:
        broker.stop()


def test_unreachable_broker_fails_fast_and_leaves_nothing(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "unreachable"
    proc = sot("run", str(FREEZERS), "--broker", f"mqtt://127.0.0.1:{port}", "--out", str(out), timeout=60)
    assert proc.returncode == 1
    assert "cannot reach the MQTT broker" in proc.stderr
    assert "sot broker" in proc.stderr
    assert processes_mentioning(str(out)) == []


def test_ctrl_c_stops_broker_and_engine(tmp_path: Path) -> None:
    out = tmp_path / "interrupted"
    proc = subprocess.Popen(
        [*SOT, "run", str(FREEZERS), "--out", str(out), "--broker-kind", "mosquitto"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (out / "engine.sqlite").exists():
        time.sleep(0.1)
    time.sleep(1.0)
    assert processes_mentioning(str(out)), "broker and engine should be running mid-run"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted" in err
    assert processes_mentioning(str(out)) == []
    assert not (out / "result.json").exists()


def test_bad_scenario_gets_every_error_with_its_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        FREEZERS.read_text()
        .replace("count: 2000", "count: -5")
        .replace("{dist: exponential, mean: 1500}", "{dist: exponential, mean: 0}")
        .replace("agents: 4", "agents: four")
    )
    for command in (["validate", str(bad)], ["run", str(bad), "--out", str(tmp_path / "never")]):
        proc = sot(*command, timeout=60)
        assert proc.returncode == 2
        assert "fleets[0].count: must be >= 1" in proc.stderr
        assert "fleets[0].failure_modes[0].life_days.mean: must be > 0" in proc.stderr  # the user's own index
        assert "contact_centre.agents: expected int, got str" in proc.stderr
    ok = sot("validate", str(FREEZERS), timeout=60)
    assert ok.returncode == 0 and "2,000 devices" in ok.stdout
