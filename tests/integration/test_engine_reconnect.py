"""A standalone engine outlives its broker: after the broker is killed (SIGKILL: it comes back
without the engine's session, and so without its subscriptions) the engine reconnects, subscribes
again, counts the lost session, and ingests what devices publish afterwards; /healthz says
"disconnected" while the broker is away. An engine frozen (SIGSTOP) past its keepalive, which the
broker drops, reconnects when it resumes and takes what its session kept."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import paho.mqtt.client as paho
import pytest
import sqlalchemy as sa
from paho.mqtt.enums import CallbackAPIVersion

from contracts import codec
from contracts.messages import Telemetry
from contracts.topics import Topics
from harness.broker import start_broker
from harness.engine_process import EngineProcess
from support_engine import database

pytestmark = pytest.mark.integration

TOPICS = Topics("reconnect/v1")
COUNTED = sa.text("SELECT coalesce(max(value), 0) FROM counters WHERE name = :name")


def count(db: Path, name: str) -> int:
    readers = database.Database.at(db)
    try:
        with readers.reader() as conn:
            return int(conn.scalar(COUNTED, {"name": name}))
    finally:
        readers.dispose()


def wait_for(check: object, what: str, engine: EngineProcess, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        assert engine.alive(), engine.log_tail()
        assert time.monotonic() < deadline, f"{what}\n{engine.log_tail()}"
        time.sleep(0.2)


def health(port: int) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def publish(broker_port: int, first_seq: int, n: int) -> None:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"devices-{first_seq}", protocol=paho.MQTTv5)
    client.connect("127.0.0.1", broker_port)
    client.loop_start()
    infos = []
    for seq in range(first_seq, first_seq + n):
        reading = Telemetry(device_id="d-1", ts=1000.0 + seq, boot_id=1, seq=seq, values={"temp_c": 4.0})
        infos.append(client.publish(TOPICS.telemetry("d-1"), codec.encode(reading), qos=1))
    for info in infos:
        info.wait_for_publish(10)
    client.disconnect()
    client.loop_stop()


def start_engine(broker_url: str, db: Path, client_id: str, log: Path, *extra: str) -> EngineProcess:
    """A standalone engine on the wall clock, started and connected."""
    engine = EngineProcess(
        [
            "--broker", broker_url, "--db", str(db), "--clock", "wall", "--prefix", TOPICS.prefix,
            "--client-id", client_id, "--protocol", "5", "--log-level", "INFO", *extra,
        ],
        log,
    )  # fmt: skip
    wait_for(lambda: "engine connected" in engine.log_tail(50), "the engine did not connect", engine)
    return engine


def test_the_engine_resubscribes_after_its_broker_forgot_it_and_ingests_again(tmp_path: Path) -> None:
    db = tmp_path / "engine.sqlite"
    with start_broker("mosquitto", workdir=tmp_path / "broker") as broker:
        engine = start_engine(str(broker.url), db, "reconnect-engine", tmp_path / "engine.log", "--http", "0")
        try:
            wait_for(lambda: "HTTP API on " in engine.log_tail(50), "the HTTP API did not start", engine)
            url = engine.log_tail(50).split("HTTP API on ")[1].split()[0]
            port = int(url.rstrip("/").rsplit(":", 1)[1])
            publish(broker.url.port, 1, 20)
            wait_for(lambda: count(db, "msg_ingested") == 20, "the first 20 readings were not ingested", engine)

            broker.kill()  # no goodbye: its last save was at start, before the engine subscribed
            wait_for(lambda: health(port)[0] == 503, "/healthz did not notice the broker was gone", engine)
            assert health(port)[1]["status"] == "disconnected"
            broker.restart()
            wait_for(lambda: health(port)[0] == 200, "the engine did not reconnect", engine)

            publish(broker.url.port, 21, 20)
            wait_for(lambda: count(db, "msg_ingested") == 40, "readings after the restart were not ingested", engine)
            wait_for(lambda: count(db, "broker_session_lost") >= 1, "the lost session was not counted", engine)
            assert engine.alive()
        finally:
            engine.stop()


def test_an_engine_frozen_past_its_keepalive_reconnects_when_it_resumes(tmp_path: Path) -> None:
    db = tmp_path / "engine.sqlite"
    with start_broker("mosquitto", workdir=tmp_path / "broker") as broker:
        engine = start_engine(str(broker.url), db, "frozen-engine", tmp_path / "engine.log", "--keepalive", "5")
        try:
            publish(broker.url.port, 1, 10)
            wait_for(lambda: count(db, "msg_ingested") == 10, "the first readings were not ingested", engine)
            engine.pause()  # longer than 1.5 x the keepalive: the broker drops it
            publish(broker.url.port, 11, 10)  # queued in its session meanwhile
            deadline = time.monotonic() + 60
            while "frozen-engine has exceeded timeout" not in broker.log_path.read_text(errors="replace"):
                assert time.monotonic() < deadline, "the broker never dropped the frozen engine"
                time.sleep(0.5)
            engine.resume()
            wait_for(lambda: count(db, "msg_ingested") == 20, "the engine did not come back and ingest", engine)
            publish(broker.url.port, 21, 10)
            wait_for(lambda: count(db, "msg_ingested") == 30, "readings after the resume were not ingested", engine)
            assert engine.alive()
        finally:
            engine.stop()
