"""Kill the engine with SIGKILL mid-stream and start it again: no acknowledged message is lost, no case
is opened twice. A small independent publisher stands in for the devices (not sim/)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import msgspec
import paho.mqtt.client as paho
import pytest
import sqlalchemy as sa
from paho.mqtt.enums import CallbackAPIVersion

from contracts import codec
from contracts.engine_config import EngineConfig, IssueType, ThresholdRule
from contracts.messages import Contact, Telemetry
from contracts.topics import Topics
from harness.broker import start_broker
from harness.engine_process import EngineProcess
from support_engine import database
from support_engine.schema import ingest_ledger

pytestmark = pytest.mark.integration

DEVICES = 200
READINGS_PER_DEVICE = 15
CALLERS = 40  # devices whose owners call three times each
TOPICS = Topics("crash/v1")


def engine_args(url: str, db: str, config: Path) -> list[str]:
    return [
        "--broker", url, "--db", db, "--clock", "wall", "--config", str(config), "--prefix", TOPICS.prefix,
        "--client-id", "crash-engine", "--protocol", "5", "--log-level", "INFO",
    ]  # fmt: skip


def messages() -> list[tuple[str, bytes]]:
    """Telemetry of every device, with three contacts per calling device spread through the stream."""
    out = []
    for k in range(READINGS_PER_DEVICE):
        for d in range(DEVICES):
            device = f"unit-{d:04d}"
            temp = 30.0 if d % 10 == 0 and k > 5 else 4.0  # every tenth device runs hot half way through
            reading = Telemetry(device_id=device, ts=1000.0 + 60 * k, boot_id=1, seq=k + 1, values={"temp_c": temp})
            out.append((TOPICS.telemetry(device), codec.encode(reading)))
        if k % 5 == 0:
            for d in range(CALLERS):
                device = f"unit-{d * 5 + 1:04d}"
                contact = Contact(
                    contact_id=f"c-{d}-{k}",
                    owner_id=f"o-{d}",
                    device_id=device,
                    channel="phone",
                    ts=1000.0 + 60 * k,
                    symptom="warm",
                )
                out.append((TOPICS.contact("phone"), codec.encode(contact)))
    return out


INGESTED = sa.text("SELECT coalesce(max(value), 0) FROM counters WHERE name = 'msg_ingested'")  # committed, unique


def db_count(db: str, query: sa.Executable, params: dict[str, object] | None = None) -> int:
    """One number from the engine's database (SQLite or PostgreSQL), through a read-only connection."""
    readers = database.Database.at(db)
    try:
        with readers.reader() as conn:
            return int(conn.scalar(query, params))
    finally:
        readers.dispose()


def test_sigkill_mid_stream_loses_no_acknowledged_message_and_opens_no_case_twice(
    tmp_path: Path, db_location: str
) -> None:
    config = EngineConfig(
        policy="proactive",
        rules=[ThresholdRule(name="hot", sensor="temp_c", above=20.0, for_s=60.0, issue="cooling")],
        issues={"cooling": IssueType(skill="refrigeration", parts=["compressor"])},
        symptoms={"warm": "cooling"},
    )
    config_path = tmp_path / "engine.json"
    config_path.write_bytes(msgspec.json.encode(config))
    db = db_location  # a SQLite file, then a PostgreSQL database
    stream = messages()
    with start_broker("mosquitto", workdir=tmp_path / "broker") as broker:
        engine = EngineProcess(engine_args(str(broker.url), db, config_path), tmp_path / "engine-1.log")
        publisher = paho.Client(CallbackAPIVersion.VERSION2, client_id="crash-devices", protocol=paho.MQTTv5)
        acked = threading.Semaphore(0)
        publisher.on_publish = lambda *args: acked.release()
        publisher.connect(broker.url.host, broker.url.port)
        publisher.loop_start()
        second: EngineProcess | None = None
        try:
            deadline = time.monotonic() + 30
            while "engine connected" not in engine.log_tail():  # subscribed: its session holds what comes
                assert engine.alive() and time.monotonic() < deadline, engine.log_tail()
                time.sleep(0.1)
            cut = len(stream) // 3
            for n, (topic, payload) in enumerate(stream):
                publisher.publish(topic, payload, qos=1)
                if n == cut:
                    while db_count(db, INGESTED) < cut // 2:  # the engine is busy ingesting
                        time.sleep(0.01)
                    engine.kill()  # SIGKILL: no goodbye, no last commit
                    second = EngineProcess(engine_args(str(broker.url), db, config_path), tmp_path / "engine-2.log")
            for _ in stream:
                assert acked.acquire(timeout=30), "the broker did not acknowledge every message"
            deadline = time.monotonic() + 60
            assert second is not None
            while db_count(db, INGESTED) < len(stream):
                assert second.alive(), second.log_tail()
                assert time.monotonic() < deadline, f"ingested {db_count(db, INGESTED)}"
                time.sleep(0.2)
            time.sleep(1.0)  # let the last group commit land
            assert db_count(db, INGESTED) == len(stream)  # every message, exactly once
            # ... and the ledger has every device's readings up to the last one, none missing in between.
            ledger = ingest_ledger.c
            never = (1 << READINGS_PER_DEVICE).to_bytes(2, "little")  # seq 0, READINGS_PER_DEVICE below the last
            complete = sa.select(sa.func.count()).where(
                ledger.kind == "telemetry", ledger.high == READINGS_PER_DEVICE, ledger.missing == never
            )
            assert db_count(db, complete) == DEVICES
            # Each case dispatches one work order (nothing is resolved here): a second one for a device would
            # be a second case, even one that reused an id and overwrote the first row.
            doubles = db_count(
                db,
                sa.text(
                    "SELECT count(*) FROM (SELECT device_id FROM outbox WHERE kind = 'CreateWorkOrder'"
                    " GROUP BY device_id HAVING count(*) > 1) AS doubled"
                ),
            )
            assert doubles == 0, "a device got a second case after the restart"
            hot = DEVICES // 10
            callers_not_hot = sum(1 for d in range(CALLERS) if (d * 5 + 1) % 10 != 0)
            assert db_count(db, sa.text("SELECT count(*) FROM cases")) == hot + callers_not_hot
            assert "resumed" in (tmp_path / "engine-2.log").read_text()
        finally:
            publisher.loop_stop()
            publisher.disconnect()
            engine.stop()
            if second is not None:
                second.stop()
