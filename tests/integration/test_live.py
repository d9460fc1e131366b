"""Live runs (``sot run --live FACTOR``): the world paced in real time, the engine on the wall clock, no barrier."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import paho.mqtt.client as paho
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from contracts import codec
from contracts.messages import Clock, ClockAck
from contracts.topics import Kind, Topics
from harness.broker import start_broker
from harness.engine_process import EngineProcess
from harness.live import run_live
from sim.scenario_file import load, with_overrides
from tests.integration.cli import FREEZERS, ROOT, SOT, processes_mentioning, sot

pytestmark = pytest.mark.integration


def failing_freezers(tmp_path: Path) -> Path:
    """freezers.yaml with control boards that die twenty times as often, so that the engine has work."""
    doc = yaml.safe_load(FREEZERS.read_text())
    modes = doc["fleets"][0].setdefault("failure_modes", [])
    modes.append({"name": "control_board", "life_days": {"dist": "exponential", "mean": 300}})
    path = tmp_path / "failing.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.mark.parametrize("factor", [86400.0, 43200.0])
def test_a_live_run_loses_nothing_and_the_engine_answers_during_it(tmp_path: Path, factor: float) -> None:
    scenario = with_overrides(load(failing_freezers(tmp_path)), duration_days=2)
    workdir = tmp_path / "live"
    started = time.monotonic()
    outcome = run_live(scenario, factor=factor, broker_kind="mosquitto", workdir=workdir)
    elapsed = time.monotonic() - started
    result = outcome.result
    print(f"factor {factor:g}: {elapsed:.2f} s in all, timing {result['timing']}")
    assert processes_mentioning(str(workdir)) == [], "broker or engine left running"

    assert result["manifest"]["mode"] == "live"
    assert result["manifest"]["live_factor"] == factor
    assert result["manifest"]["caught_up"] is True
    m = result["messages"]
    assert m["published"] == m["ingested"] > 0
    assert m["lost"] == 0 and m["rejected"] == 0
    assert m["engine_emitted"] == m["engine_outputs_received"] > 0

    assert result["engine"]["cases_opened"] > 0
    end = scenario.duration_s
    work_orders = [row for row in outcome.records.events if row[1] == "engine" and row[2] == "work_order"]
    assert work_orders, "the world received no work order"
    # Without a barrier the answers still arrive while the world runs, not only at the end.
    assert any(row[0] < end for row in work_orders)

    # Paced: never faster than the factor allows (half of it, for timer slack). No upper bound.
    assert result["timing"]["wall_s"] >= end / factor * 0.5
    assert elapsed >= end / factor * 0.5


def test_a_wall_clock_engine_answers_a_clock_at_once(tmp_path: Path) -> None:
    """It counts what it has and holds nothing back for the messages the clock says are out."""
    topics = Topics("wall/v1")
    with start_broker("mosquitto") as broker:
        engine = EngineProcess(
            [
                "--broker", str(broker.url), "--db", str(tmp_path / "engine.sqlite"), "--clock", "wall",
                "--time-origin", repr(time.time()), "--speed", "3600", "--prefix", topics.prefix,
                "--client-id", "wall-test", "--log-level", "WARNING",
            ],
            tmp_path / "engine.log",
        )  # fmt: skip
        acks: list[ClockAck] = []
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id="wall-test-world")
        client.on_message = lambda c, u, msg: acks.append(codec.decode(Kind.CLOCK_ACK, msg.payload))  # type: ignore[arg-type]
        client.connect(broker.url.host, broker.url.port)
        client.subscribe(topics.clock_ack, qos=1)
        client.loop_start()
        try:
            deadline = time.monotonic() + 30
            while not acks and time.monotonic() < deadline:
                client.publish(topics.clock, codec.encode(Clock(t=5.0, published=1000)), qos=1)
                time.sleep(0.2)
            assert acks, engine.log_tail()
            ack = acks[0]
            assert ack.t == 5.0
            assert ack.received == 0  # answered although none of the 1000 counted messages came
            assert engine.alive()
        finally:
            client.loop_stop()
            client.disconnect()
            engine.stop()


def test_the_cli_runs_live_and_says_so(tmp_path: Path) -> None:
    out = tmp_path / "cli"
    proc = sot("run", str(FREEZERS), "--days", "1", "--live", "86400", "--out", str(out), "--broker-kind", "mosquitto")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "expected wall time" in proc.stderr and "1 s" in proc.stderr
    assert processes_mentioning(str(out)) == []
    result = json.loads((out / "result.json").read_text())
    assert result["manifest"]["mode"] == "live"
    assert result["manifest"]["live_factor"] == 86400
    assert result["messages"]["lost"] == 0
    assert (out / "events.csv").read_text().startswith("t_s,actor,kind,device_id,ref,detail")
    assert (out / "ground_truth.csv").exists()


def test_the_cli_refuses_a_factor_that_is_not_positive(tmp_path: Path) -> None:
    for bad in ("0", "-5", "nan"):
        proc = sot("run", str(FREEZERS), "--live", bad, "--out", str(tmp_path / "never"), timeout=60)
        assert proc.returncode == 2, proc.stderr
        assert "--live" in proc.stderr
    assert not (tmp_path / "never" / "result.json").exists()


def test_ctrl_c_stops_a_live_run(tmp_path: Path) -> None:
    out = tmp_path / "interrupted"
    proc = subprocess.Popen(
        [*SOT, "run", str(FREEZERS), "--days", "30", "--live", "86400", "--out", str(out), "--broker-kind", "mosquitto"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (out / "engine.sqlite").exists():
        time.sleep(0.1)
    time.sleep(4.0)  # past the engine's start-up allowance: the world is pacing itself
    assert processes_mentioning(str(out)), "broker and engine should be running mid-run"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted" in err
    assert processes_mentioning(str(out)) == []
    assert not (out / "result.json").exists()
