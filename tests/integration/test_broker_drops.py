"""Loss at the broker is seen at once, not at each device's next reading.

Mosquitto with its default queue limit (1,000 messages per client) and an engine frozen (SIGSTOP)
while 50 devices publish 100 readings each: the broker acknowledges all 5,000 and drops most of
them. When the engine resumes it reads the broker's dropped count from ``$SYS``: ``/metrics`` has
``sot_broker_dropped_total``, the log says what to do, ``/healthz`` is degraded, all before a
single device has published again. The devices' next readings then show the gaps per device.

In a run (world, broker, engine process) the same drop is seen by the world too, which sends the
step again: the run gives the KPIs of the undisturbed run.
"""

from __future__ import annotations

import re
import time
import urllib.request
from pathlib import Path

import msgspec
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from contracts import codec
from contracts.messages import Telemetry
from harness.broker import start_broker
from harness.engine_process import EngineProcess
from harness.faults import Fault
from harness.runner import run_scenario
from sim.scenario_file import load, with_overrides
from tests.integration.cli import FREEZERS
from tests.integration.test_engine_reconnect import TOPICS, count, health, start_engine, wait_for

pytestmark = pytest.mark.integration

DEVICES, READINGS = 50, 100
MOSQUITTO_DEFAULT_QUEUE = 1000


def metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    return float(found[1]) if found else 0.0


def publish_readings(broker_port: int, seqs: range) -> None:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"fleet-{seqs.start}", protocol=paho.MQTTv5)
    client.max_inflight_messages_set(1000)
    client.connect("127.0.0.1", broker_port)
    client.loop_start()
    infos = []
    for seq in seqs:
        for d in range(DEVICES):
            device = f"dr-{d:03d}"
            reading = Telemetry(device_id=device, ts=1000.0 + seq, boot_id=1, seq=seq, values={"temp_c": 4.0})
            infos.append(client.publish(TOPICS.telemetry(device), codec.encode(reading), qos=1))
    for info in infos:
        info.wait_for_publish(30)
        assert info.is_published()  # the broker acknowledged every one
    client.disconnect()
    client.loop_stop()


def http_port(engine: EngineProcess) -> int:
    wait_for(lambda: "HTTP API on " in engine.log_tail(50), "the HTTP API did not start", engine)
    url = engine.log_tail(50).split("HTTP API on ")[1].split()[0]
    return int(url.rstrip("/").rsplit(":", 1)[1])


def test_drops_at_a_default_queue_limit_are_reported_before_any_device_publishes_again(tmp_path: Path) -> None:
    db = tmp_path / "engine.sqlite"
    with start_broker("mosquitto", workdir=tmp_path / "broker", max_queued_messages=MOSQUITTO_DEFAULT_QUEUE) as broker:
        engine = start_engine(str(broker.url), db, "drops-engine", tmp_path / "engine.log", "--http", "0")
        try:
            port = http_port(engine)
            wait_for(lambda: health(port)[0] == 200, "the engine is not healthy at start", engine)
            engine.pause()
            publish_readings(broker.url.port, range(1, READINGS + 1))
            engine.resume()
            resumed = time.monotonic()

            wait_for(lambda: metric(port, "sot_broker_dropped_total") > 0, "the broker's drops were not seen", engine)
            seen_after_s = time.monotonic() - resumed
            dropped = metric(port, "sot_broker_dropped_total")
            status, body = health(port)
            log = engine.log_tail(200)
            # Seen from the broker's count before any device could show a gap: none has published since.
            assert metric(port, "sot_readings_missing_total") == 0
            assert status == 503 and body["status"] == "degraded", body
            assert "broker dropped" in str(body["degraded"])
            assert "the broker dropped" in log and "max_queued_messages" in log
            ingested = count(db, "msg_ingested")
            wait_for(lambda: count(db, "msg_ingested") == ingested, "the engine still ingests", engine)
            # What the broker kept (its queue and the engine's window) came; the rest is the drop.
            lost = DEVICES * READINGS - ingested
            assert lost > 0
            wait_for(lambda: metric(port, "sot_broker_dropped_total") >= lost, f"fewer than {lost} drops seen", engine)

            publish_readings(broker.url.port, range(READINGS + 1, READINGS + 2))  # each device's next reading
            wait_for(lambda: metric(port, "sot_readings_missing_total") > 0, "the gaps were not counted", engine)
            wait_for(
                lambda: "readings missing by devices' sequence numbers" in engine.log_tail(200), "no gap line", engine
            )
            assert re.search(r"e\.g\. dr-\d{3}: \d+ missing before seq 101", engine.log_tail(200))
            print(
                f"drops seen {seen_after_s:.1f} s after the engine resumed: {dropped:.0f} dropped, {ingested} ingested"
            )
        finally:
            engine.stop()


def test_a_run_whose_broker_drops_a_step_sends_it_again_and_gives_the_same_kpis(tmp_path: Path) -> None:
    """The engine frozen for 5 s as a step goes out, on a broker with Mosquitto's default queue
    limit: the broker drops most of the step; the world sees the drop in the broker's count, sends the step
    again, and the run ends as the undisturbed one does."""
    scenario = load(FREEZERS)
    fleets = msgspec.to_builtins(scenario.fleets)
    fleets[0]["devices_per_gateway"] = 1  # a batch per device: 8,000 messages a step, past queue and window
    freezers = with_overrides(scenario, duration_days=0.15, fleets=fleets)
    calm = run_scenario(freezers, workdir=tmp_path / "calm").result
    with start_broker("mosquitto", workdir=tmp_path / "broker", max_queued_messages=MOSQUITTO_DEFAULT_QUEUE) as broker:
        hit = run_scenario(
            freezers, workdir=tmp_path / "hit", broker_url=broker.url, faults=[Fault.parse("engine-pause@2h+5s")]
        ).result
    assert hit["messages"]["broker_dropped"] > 0  # the fault did overflow the queue
    assert hit["timing"]["messages_resent"] > 0
    assert hit["messages"]["lost"] == 0
    assert hit["messages"]["published"] == hit["messages"]["ingested"] + hit["messages"]["rejected"]
    assert hit["kpis"] == calm["kpis"]
    assert hit["engine"]["broker_dropped"] > 0  # the engine saw it too
    for name in ("cases_opened", "work_orders", "notifications", "remote_commands", "msg_emitted"):
        assert hit["engine"].get(name) == calm["engine"].get(name), name
