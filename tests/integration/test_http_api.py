"""The engine's HTTP API and metrics (``--http``), against Mosquitto and a real engine process."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_args

import paho.mqtt.client as paho
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from contracts import codec
from contracts.messages import Clock, Contact, Telemetry
from contracts.topics import Topics
from harness.broker import start_broker
from harness.engine_process import EngineProcess
from support_engine.core.lifecycle import CASE, WORK_ORDER
from support_engine.http_api import CaseState, WorkOrderState

pytestmark = pytest.mark.integration

ENGINE_CONFIG = {
    "policy": "proactive",
    "rules": [{"name": "cabinet_hot", "sensor": "cabinet_temp_c", "above": -5.0, "issue": "cooling_failure"}],
    "issues": {"cooling_failure": {"skill": "refrigeration", "parts": ["compressor"], "priority": 1}},
    "symptoms": {"not_cooling": "cooling_failure"},
}
PATHS = {"/healthz", "/devices", "/devices/{device_id}", "/cases", "/cases/{case_id}", "/work-orders"}
PATHS |= {"/campaigns", "/rollouts", "/quarantine", "/kpis", "/metrics", "/clock", "/alerts", "/technicians"}
PATHS |= {"/dead-letters", "/dead-letters/reasons", "/fleet"}


def get(base: str, path: str) -> tuple[int, Any]:
    """GET ``path``: the status and the JSON body (the text for /metrics and the console's pages)."""
    try:
        with urllib.request.urlopen(base + path, timeout=5) as response:
            body = response.read().decode()
            status = response.status
    except urllib.error.HTTPError as exc:
        body, status = exc.read().decode(), exc.code
    return status, body if path in TEXT else json.loads(body)


TEXT = {"/metrics", "/", "/console/cases", "/docs"}


def items(base: str, path: str) -> list[Any]:
    """The items of a list route's answer (one page: the tests' lists are short)."""
    status, page = get(base, path)
    assert status == 200, page
    assert page["next_offset"] is None and page["total"] == len(page["items"])
    return list(page["items"])


def sample(metrics: str, name: str) -> float | None:
    """The value of one sample line (``name`` with its labels) of a Prometheus text exposition."""
    for line in metrics.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return None


def api_url(engine: EngineProcess, deadline: float) -> str:
    """The URL the engine logged (``--http 0`` picks a free port; ``--log-format json`` names it ``http_url``)."""
    while time.monotonic() < deadline:
        for line in engine.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("{") and "http_url" in (record := json.loads(line)):
                return str(record["http_url"])
        assert engine.alive(), engine.log_tail()
        time.sleep(0.05)
    raise AssertionError(f"no http_url logged: {engine.log_tail()}")


def test_the_api_shows_what_the_engine_took_in(tmp_path: Path, db_location: str) -> None:
    topics = Topics("http/v1")
    config = tmp_path / "engine.yaml"
    config.write_text(yaml.safe_dump(ENGINE_CONFIG))
    with start_broker("mosquitto") as broker:
        engine = EngineProcess(
            [
                "--broker", str(broker.url), "--db", db_location, "--clock", "wall",
                "--config", str(config), "--prefix", topics.prefix, "--client-id", "http-test",
                "--http", "0", "--log-format", "json",
            ],
            tmp_path / "engine.log",
        )  # fmt: skip
        acks: list[bytes] = []
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id="http-test-world")
        client.on_message = lambda c, u, msg: acks.append(msg.payload)
        try:
            deadline = time.monotonic() + 25
            base = api_url(engine, deadline)
            client.connect(broker.url.host, broker.url.port)
            client.subscribe(topics.clock_ack, qos=1)
            client.loop_start()
            while not acks and time.monotonic() < deadline:  # a wall-clock engine answers a clock once subscribed
                client.publish(topics.clock, codec.encode(Clock(t=0.0, published=0)), qos=1)
                time.sleep(0.1)
            assert acks, engine.log_tail()

            now = time.time()
            sent = [
                Telemetry(device_id="fridge-1", ts=now, boot_id=1, seq=1, values={"cabinet_temp_c": -18.0}),
                Telemetry(device_id="fridge-1", ts=now + 1, boot_id=1, seq=2, values={"cabinet_temp_c": -17.5}),
                Telemetry(device_id="fridge-2", ts=now, boot_id=1, seq=1, values={"cabinet_temp_c": 2.0}),  # too warm
            ]
            for message in sent:
                assert isinstance(message, Telemetry)
                client.publish(topics.telemetry(message.device_id), codec.encode(message), qos=1).wait_for_publish(5)
            client.publish(topics.telemetry("fridge-1"), codec.encode(sent[0]), qos=1).wait_for_publish(5)  # again
            call = Contact(
                contact_id="c1", owner_id="o1", device_id="fridge-3", channel="phone", ts=now, symptom="not_cooling"
            )
            client.publish(topics.contact("phone"), codec.encode(call), qos=1).wait_for_publish(5)
            client.publish(topics.telemetry("fridge-9"), b"{not json", qos=1).wait_for_publish(5)

            metrics = ""
            while time.monotonic() < deadline:
                status, metrics = get(base, "/metrics")
                assert status == 200
                if sample(metrics, "sot_messages_ingested_total") == 4 and sample(
                    metrics, 'sot_messages_rejected_total{reason="json"}'
                ):
                    break
                time.sleep(0.1)
            assert sample(metrics, "sot_messages_ingested_total") == 4, metrics
            assert sample(metrics, 'sot_messages_rejected_total{reason="json"}') == 1
            assert sample(metrics, "sot_messages_duplicates_total") == 1
            assert sample(metrics, "sot_open_cases") == 2
            assert sample(metrics, 'sot_cases_opened_total{origin="telemetry"}') == 1
            assert sample(metrics, 'sot_cases_opened_total{origin="contact"}') == 1
            assert sample(metrics, "sot_work_orders_total") == 2
            assert sample(metrics, "sot_readings_total") == 3
            assert (sample(metrics, "sot_ingest_lag_seconds_count") or 0) >= 4

            cases = items(base, "/cases")
            assert sorted((c["device_id"], c["origin"], c["state"]) for c in cases) == [
                ("fridge-2", "telemetry", "in_progress"),
                ("fridge-3", "contact", "in_progress"),
            ]
            assert [c["device_id"] for c in items(base, "/cases?device=fridge-3")] == ["fridge-3"]
            assert [c["device_id"] for c in items(base, "/cases?origin=contact")] == ["fridge-3"]
            assert items(base, "/cases?state=resolved") == []
            assert get(base, "/cases?state=bogus")[0] == 422
            status, refused = get(base, "/cases?stat=open")
            assert status == 422 and "'stat'" in refused["detail"][0]["msg"]
            opened = next(c for c in cases if c["device_id"] == "fridge-2")
            assert opened["opened_at"] == datetime.fromtimestamp(opened["opened_s"], UTC).isoformat(
                timespec="milliseconds"
            ).replace("+00:00", "Z")
            case_id = next(c["case_id"] for c in cases if c["device_id"] == "fridge-2")
            status, case = get(base, f"/cases/{case_id}")
            assert status == 200 and len(case["work_orders"]) == 1 and case["alerts"][0]["rule"] == "cabinet_hot"
            assert case["symptom"] == "cabinet_hot = 2" and case["notifications"][0]["kind"] == "case_opened"
            kinds = [e["kind"] for e in case["timeline"]]
            assert kinds[:2] == ["case", "alert_raised"] and "notification" in kinds and "work_order" in kinds
            assert get(base, "/cases/case-nope")[0] == 404

            status, twin = get(base, "/devices/fridge-2")
            assert status == 200
            assert twin["values"] == {"cabinet_temp_c": 2.0}
            assert twin["last_seen_s"] == pytest.approx(now)
            assert twin["open_case"] == case_id
            assert [a["rule"] for a in twin["alerts"]] == ["cabinet_hot"]
            assert [c["case_id"] for c in twin["cases"]] == [case_id]
            assert get(base, "/devices/fridge-1")[1]["values"] == {"cabinet_temp_c": -17.5}
            assert get(base, "/devices/fridge-404")[0] == 404
            devices = {d["device_id"]: d for d in items(base, "/devices")}
            assert set(devices) == {"fridge-1", "fridge-2", "fridge-3"}
            assert devices["fridge-3"]["last_seen_s"] is None and devices["fridge-3"]["open_case"] is not None

            assert len(items(base, "/work-orders?state=created")) == 2
            assert items(base, "/campaigns") == items(base, "/rollouts") == items(base, "/quarantine") == []
            (letter,) = items(base, "/dead-letters")
            assert (letter["reason"], letter["payload_hex"]) == ("json", b"{not json".hex())
            assert items(base, "/dead-letters/reasons") == [{"reason": "json", "dead_letters": 1, "rejected": 1}]
            status, kpis = get(base, "/kpis")
            assert kpis["open_cases"] == 2 and kpis["messages"]["ingested"] == 4
            assert kpis["messages"]["rejected"] == 1 and kpis["resolved_within_sla_share"] is None
            status, health = get(base, "/healthz")
            assert status == 200 and health["connected"] is True and health["clock"] == "wall"
            assert health["last_step_engine_s"] is not None and health["sim_epoch"] is None
            assert get(base, "/clock")[1]["simulated"] is False
            status, page = get(base, "/console/cases")
            assert status == 200 and case_id in page
            status, docs = get(base, "/docs")
            assert status == 200 and "/docs/assets/swagger-ui-bundle.js" in docs and "cdn" not in docs.lower()

            status, spec = get(base, "/openapi.json")
            assert status == 200 and set(spec["paths"]) >= PATHS
            assert spec["paths"]["/cases"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        finally:
            client.loop_stop()
            client.disconnect()
            code = engine.stop()
        assert code == 0, engine.log_tail()
        log = [json.loads(line) for line in engine.log_path.read_text().splitlines() if line.startswith("{")]
        assert {"time", "level", "logger", "message"} <= set(log[0])
        assert not any(record["level"] in ("ERROR", "CRITICAL") for record in log), engine.log_tail()
        with pytest.raises(OSError):
            urllib.request.urlopen(base + "/healthz", timeout=2)


def test_the_state_filters_name_every_lifecycle_state() -> None:
    assert set(get_args(CaseState)) == set(CASE.table)
    assert set(get_args(WorkOrderState)) == set(WORK_ORDER.table)
