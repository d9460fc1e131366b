"""A restarted engine's Prometheus counters continue from what its database holds, as ``/kpis`` does:
the counters table, the open cases, and the commands sent by action (only the outbox keeps those).

One engine takes in readings, a contact that starts a fleet-wide OTA rollout and a malformed
message, and stops; a second engine opens the same SQLite file, as ``sot engine`` does after a
restart, and its ``/metrics`` text must show the stored totals; so must a read-only inspection
of the file (``sot engine --inspect``).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from contracts import Contact, EngineConfig, IssueType, Telemetry, ThresholdRule, Topics, codec
from contracts.messages import Clock, Command
from support_engine import database, inspection
from support_engine.errors import StorageError
from support_engine.inspection import commands_sent
from support_engine.metrics import EngineMetrics
from support_engine.service import EngineService
from support_engine.storage import Storage
from support_engine.transport import MemoryTransport

TOPICS = Topics("restart/v1")
CONFIG = EngineConfig(
    rules=[
        ThresholdRule(name="hot", sensor="temp", above=10.0, issue="cooling"),
        ThresholdRule(
            name="crashing", sensor="crashes", above=5.0, issue="firmware"
        ),  # a rollout reaches its sensor's devices
    ],
    issues={
        "cooling": IssueType(skill="refrigeration", parts=["compressor"], priority=1),
        "firmware": IssueType(skill="general", remote="ota", ota_version="2.0", rollout_after=1),
    },
    symptoms={"stuck": "firmware"},
)
DEVICES = ("d1", "d2", "d3", "d4")


def engine(db: Path, *, again: bool = False) -> tuple[EngineService, MemoryTransport, EngineMetrics]:
    """An engine on ``db`` whose metrics are taken up as ``sot engine`` takes them up at start
    (``again``: a restart, and the broker has kept its session)."""
    transport = MemoryTransport(session_present=again)
    service = EngineService(CONFIG, transport, Storage(db), topics=TOPICS, clock="event")
    metrics = EngineMetrics(clock="event")
    service.metrics = metrics
    metrics.start(service.core, service.counters, commands_sent(str(db)))
    service.start()
    return service, transport, metrics


def step(service: EngineService, transport: MemoryTransport, t: float, messages: list[tuple[str, bytes]]) -> None:
    """Deliver a sync step's messages and its clock; poll until the step is answered."""
    for topic, payload in messages:
        transport.offer(topic, payload)
    transport.offer(TOPICS.clock, codec.encode(Clock(t=t, published=service.received + len(messages))))
    answered = len([p for p in transport.published if p[0] == TOPICS.clock_ack])
    for _ in range(1000):
        service.poll(timeout_s=0)
        if len([p for p in transport.published if p[0] == TOPICS.clock_ack]) > answered:
            return
    raise AssertionError("the step was not answered")


def reading(device: str, ts: float, temp: float, seq: int = 1) -> tuple[str, bytes]:
    values = {"temp": temp, "crashes": 0.0}
    return TOPICS.telemetry(device), codec.encode(Telemetry(device_id=device, ts=ts, boot_id=1, seq=seq, values=values))


def samples(metrics: EngineMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the ``/metrics`` text, by name and labels."""
    text = metrics.exposition().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_a_restarted_engine_exposes_the_stored_totals(tmp_path: Path) -> None:
    db = tmp_path / "engine.sqlite"
    first, transport, _ = engine(db)
    readings = [reading(d, 60.0, t) for d, t in zip(DEVICES, (4.0, 15.0, 4.0, 4.0), strict=True)]  # d2 runs hot
    step(first, transport, 900.0, [*readings, (TOPICS.telemetry("d3"), b"not json")])
    stuck = Contact(contact_id="c1", owner_id="o1", device_id="d1", channel="phone", ts=1000.0, symptom="stuck")
    step(first, transport, 1800.0, [(TOPICS.contact("phone"), codec.encode(stuck))])  # a firmware case: OTA to all
    sent = [codec.decode(TOPICS.parse(t).kind, p) for t, p, _ in transport.published if "/cmd" in t]
    assert sum(isinstance(m, Command) and m.action == "ota" for m in sent) == len(DEVICES)
    first.finish()
    first.storage.close()

    second, _, metrics = engine(db, again=True)  # the restart
    with database.Database.at(db).reader() as conn:
        stored = dict(conn.rows(sa.text("SELECT name, value FROM counters")))
        open_cases = conn.rows(sa.text("SELECT count(*) FROM cases WHERE state IN ('open', 'in_progress')"))[0][0]
        commands = conn.rows(sa.text("SELECT count(*) FROM outbox WHERE kind = 'SendCommand'"))[0][0]
    got = samples(metrics)
    assert stored["rollout_commands"] > 0 and stored["msg_rejected_json"] == 1 and open_cases == 2
    assert got[("sot_commands_total", (("action", "ota"),))] == commands == len(DEVICES)
    assert got[("sot_messages_ingested_total", ())] == stored["msg_ingested"]
    assert got[("sot_messages_rejected_total", (("reason", "json"),))] == stored["msg_rejected_json"]
    assert got[("sot_readings_total", ())] == stored["readings"]
    assert got[("sot_work_orders_total", ())] == stored["work_orders"]
    assert got[("sot_rollouts_total", ())] == stored["rollouts"] == 1
    for origin in ("telemetry", "contact"):
        assert got[("sot_cases_opened_total", (("origin", origin),))] == stored[f"cases_opened_{origin}"]
    assert got[("sot_open_cases", ())] == open_cases
    assert metrics.snapshot.counters["rollout_commands"] == stored["rollout_commands"]  # what /kpis shows
    second.finish()
    second.storage.close()

    inspected = inspection.read(str(db), CONFIG)  # sot engine --inspect: the same figures, nothing run
    looked = EngineMetrics(clock="event")
    looked.start(inspected.core, inspected.counters, inspected.commands)
    assert without_created(samples(looked)) == without_created(got)
    assert dict(looked.snapshot.counters) == dict(metrics.snapshot.counters)
    assert dict(looked.snapshot.open_case_of) == dict(metrics.snapshot.open_case_of)


def without_created(found: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> dict[object, float]:
    """The samples but their ``_created`` times (each process's own)."""
    return {k: v for k, v in found.items() if not k[0].endswith("_created")}


def test_counters_survive_a_restart_without_a_snapshot(tmp_path: Path) -> None:
    db = tmp_path / "engine.sqlite"
    first, transport, _ = engine(db)
    quiet = [reading(d, 60.0, 4.0) for d in DEVICES]  # nothing to act on: no snapshot is ever saved
    step(first, transport, 900.0, quiet)
    first.finish()
    first.storage.close()
    second, transport, metrics = engine(db, again=True)
    assert second.storage.state() is None and second.core.stats["readings"] == len(DEVICES)
    assert samples(metrics)[("sot_readings_total", ())] == len(DEVICES)
    step(second, transport, 1800.0, [reading(d, 960.0, 4.0, seq=2) for d in DEVICES])
    second.finish()
    assert second.storage.counters()["readings"] == 2 * len(DEVICES)  # the stored total goes on, not again from 0
    second.storage.close()


def test_an_inspection_needs_an_engine_database(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="no database file"):
        inspection.read(str(tmp_path / "none.sqlite"), CONFIG)
    assert list(tmp_path.iterdir()) == []
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE counters (name TEXT, value INTEGER)")
    with pytest.raises(StorageError, match="not a support engine's database: no table engine_state, devices"):
        inspection.read(str(other), CONFIG)


def test_a_fresh_database_has_sent_no_commands(tmp_path: Path) -> None:
    Storage(tmp_path / "engine.sqlite").close()
    assert commands_sent(str(tmp_path / "engine.sqlite")) == {}
    assert commands_sent(":memory:") == {}
