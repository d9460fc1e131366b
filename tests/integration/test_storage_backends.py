"""The engine's storage on SQLite and on PostgreSQL: the same API, the same answers, and the HTTP API on both."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import psycopg
import pytest
import sqlalchemy as sa

from contracts.messages import Command, ConsumableOrder, DeviceRecord, Notification, WorkOrder
from support_engine import database
from support_engine.core.actions import (
    Action,
    AlertFlapping,
    CampaignChanged,
    CaseChanged,
    ClearAlert,
    CreateWorkOrder,
    DeviceChanged,
    Notify,
    OrderConsumable,
    Provisioned,
    Quarantined,
    RaiseAlert,
    SendCommand,
    SlaBreached,
    SlaWarned,
    WorkOrderChanged,
)
from support_engine.errors import StorageError
from support_engine.http_api import HttpApi, create_app
from support_engine.metrics import EngineMetrics
from support_engine.schema import counters
from support_engine.storage import Storage
from tests.postgres import with_database, with_password

pytestmark = pytest.mark.integration

BIG = 2**31 + 7  # past a 32-bit integer
HUGE = 2**62 + 3  # still a 64-bit one
THIRD = 1 / 3  # float64 precision: a 32-bit REAL would give 0.3333333432674408
EPOCH_MS = 1_795_400_000.123456  # a Unix time to the microsecond
PAYLOADS = [b"\x00\xff\xfe binary \x80", b'{"json": true}', b""]

WORK_ORDER = WorkOrder(
    work_order_id="wo-1", case_id="case-1", device_id="fridge-1", ts=EPOCH_MS, issue="cooling",
    skill="refrigeration", parts=["compressor"], duration_s=7200.0,
)  # fmt: skip
RECORD = DeviceRecord(
    device_id="fridge-1", product="freezer", owner_id="o-1", region="north", cohorts={"batch": "B-7"},
    warranty_until_s=EPOCH_MS + 86400,
)  # fmt: skip
ACTIONS: list[Action] = [
    Provisioned(RECORD),
    CaseChanged(
        case_id="case-1", device_id="fridge-1", issue="cooling", state="open", priority=1,
        opened_s=EPOCH_MS, ts=EPOCH_MS, origin="telemetry",
    ),
    RaiseAlert(
        alert_id="alert-1", device_id="fridge-1", rule="hot", ts=EPOCH_MS, value=np.float64(THIRD), case_id="case-1"
    ),
    CreateWorkOrder(WORK_ORDER),
    WorkOrderChanged(
        work_order_id="wo-1", case_id="case-1", device_id="fridge-1", state="created", ts=EPOCH_MS, visit=1
    ),
    Notify(Notification(notification_id="n-1", device_id="fridge-1", ts=EPOCH_MS, kind="case_opened", case_id="case-1")),
    SendCommand(Command(command_id="cmd-1", device_id="fridge-1", ts=EPOCH_MS, action="reset", case_id="case-1")),
    OrderConsumable(ConsumableOrder(order_id="ord-1", device_id="fridge-1", ts=EPOCH_MS, consumable="toner", quantity=2.0)),
    SlaBreached(case_id="case-1", device_id="fridge-1", clock="first_response", ts=EPOCH_MS + 1),
    SlaBreached(case_id="case-1", device_id="fridge-1", clock="first_response", ts=EPOCH_MS + 2),  # once per clock
    SlaWarned(case_id="case-1", device_id="fridge-1", clock="resolution", ts=EPOCH_MS + 1),
    SlaWarned(case_id="case-1", device_id="fridge-1", clock="resolution", ts=EPOCH_MS + 2),  # once per clock
    AlertFlapping(alert_id="alert-1", device_id="fridge-1", rule="hot", ts=EPOCH_MS + 2, flapping=True),
    DeviceChanged(device_id="fridge-1", ts=EPOCH_MS + 2, reported={"firmware": "1.2"}, desired={}, offline=False),
    DeviceChanged(device_id="fridge-9", ts=EPOCH_MS + 2, reported={}, desired={"firmware": "1.3"}, offline=True),
    Quarantined(device_id="stray-1", ts=EPOCH_MS),
    Quarantined(device_id="stray-1", ts=EPOCH_MS + 7),
    CampaignChanged(
        campaign_id="camp-1", rule="recall", action="ota", cohort="batch=B-7", state="running", stage=1,
        targets=BIG, sent=3, failed=0, opened_s=EPOCH_MS, ts=EPOCH_MS, reason="",
    ),
    CampaignChanged(
        campaign_id="camp-1", rule="recall", action="ota", cohort="batch=B-7", state="aborted", stage=2,
        targets=BIG, sent=5, failed=4, opened_s=EPOCH_MS, ts=EPOCH_MS + 8, reason="too many failed",
    ),
    ClearAlert(alert_id="alert-1", device_id="fridge-1", rule="hot", ts=EPOCH_MS + 3),
    WorkOrderChanged(
        work_order_id="wo-1", case_id="case-1", device_id="fridge-1", state="accepted", ts=EPOCH_MS + 4, visit=2
    ),
    CaseChanged(
        case_id="case-1", device_id="fridge-1", issue="cooling", state="in_progress", priority=2,
        opened_s=EPOCH_MS, ts=EPOCH_MS + 5, origin="telemetry",
    ),
    CaseChanged(
        case_id="case-2", device_id="fridge-2", issue="cooling", state="open", priority=3,
        opened_s=EPOCH_MS + 6, ts=EPOCH_MS + 6, origin="contact",
    ),
]  # fmt: skip


def rows(storage: Storage, table: str, columns: str) -> list[tuple[Any, ...]]:
    """``columns`` (space-separated) of a table's rows, in stored order (other columns may come and go)."""
    names = columns.split()
    return [tuple(r[n] for n in names) for r in json.loads(storage.dump_json(table))]


def test_every_storage_method_round_trips(db_location: str) -> None:
    storage = Storage(db_location)
    assert (storage.ledger(), storage.counters(), storage.state(), storage.inbox()) == ([], {}, None, [])
    gaps = (1 << 1023) | 0b1010  # a window's worth of missing seqs: 128 bytes
    streams = [("telemetry", "fridge-1", HUGE, BIG, gaps, EPOCH_MS), ("contact", "c-1", 0, 0, 0, THIRD)]
    storage.record_ledger(streams)
    storage.record_ledger([("telemetry", "fridge-1", HUGE, BIG, gaps, 0.0)])  # an older ts: the latest is kept
    storage.hold(("t/raw", p) for p in PAYLOADS)
    storage.save_state(b"\x00first")
    storage.save_state(b'{"state": 2}\xff')  # replaces the first
    storage.dead_letter("t/bad", "json", "not JSON", b"\xff\xfe{not json")
    storage.set_counters({"msg_ingested": 2, "big": BIG})
    storage.set_counters({"big": HUGE, "small": -1})
    storage.apply(ACTIONS)
    storage.commit()
    storage.close()

    storage = Storage(db_location)  # what was committed is there after a reopen
    try:
        assert sorted(storage.ledger()) == sorted(row[:5] for row in streams)
        assert [type(v) for row in storage.ledger() for v in row] == [str, str, int, int, int] * 2
        assert storage.counters() == {"msg_ingested": 2, "big": HUGE, "small": -1}
        assert storage.state() == b'{"state": 2}\xff'
        held = storage.inbox()
        assert held == [("t/raw", p) for p in PAYLOADS] and all(type(p) is bytes for _, p in held)
        ingest = dict(rows(storage, "ingest_ledger", "source ts"))
        assert ingest == {"fridge-1": EPOCH_MS, "c-1": THIRD}  # float64 on both
        counts = {t: storage.count(t) for t in ("ingest_ledger", "cases", "work_orders", "alerts", "outbox")}
        counts |= {t: storage.count(t) for t in ("dead_letters", "sla_breaches", "sla_warnings", "inbox")}
        counts |= {t: storage.count(t) for t in ("devices", "quarantine", "campaigns")}
        assert counts == {
            "ingest_ledger": 2, "cases": 2, "work_orders": 1, "alerts": 1, "outbox": 4, "dead_letters": 1,
            "sla_breaches": 1, "sla_warnings": 1, "inbox": 3, "devices": 2, "quarantine": 1, "campaigns": 1,
        }  # fmt: skip
        with pytest.raises(ValueError, match="no table"):
            storage.count("engine_state; DROP TABLE cases")

        columns = "case_id device_id issue state priority origin opened_s updated_s"
        assert rows(storage, "cases", columns) == [
            ("case-1", "fridge-1", "cooling", "in_progress", 2, "telemetry", EPOCH_MS, EPOCH_MS + 5),
            ("case-2", "fridge-2", "cooling", "open", 3, "contact", EPOCH_MS + 6, EPOCH_MS + 6),
        ]
        columns = "work_order_id case_id device_id state visit updated_s"
        assert rows(storage, "work_orders", columns) == [("wo-1", "case-1", "fridge-1", "accepted", 2, EPOCH_MS + 4)]
        columns = "alert_id device_id rule case_id value raised_s cleared_s flapping"
        assert rows(storage, "alerts", columns) == [
            ("alert-1", "fridge-1", "hot", "case-1", THIRD, EPOCH_MS, EPOCH_MS + 3, 1)
        ]
        assert rows(storage, "sla_breaches", "case_id clock ts") == [("case-1", "first_response", EPOCH_MS + 1)]
        assert rows(storage, "sla_warnings", "case_id clock ts") == [("case-1", "resolution", EPOCH_MS + 1)]
        assert rows(storage, "quarantine", "device_id first_s last_s messages") == [
            ("stray-1", EPOCH_MS, EPOCH_MS + 7, 2)
        ]
        columns = "campaign_id state stage targets sent failed opened_s updated_s reason"
        assert rows(storage, "campaigns", columns) == [
            ("camp-1", "aborted", 2, BIG, 5, 4, EPOCH_MS, EPOCH_MS + 8, "too many failed")
        ]
        assert storage.devices() == [
            ("fridge-1", RECORD, {"firmware": "1.2"}, {}, False),
            ("fridge-9", None, {}, {"firmware": "1.3"}, True),
        ]
        assert rows(storage, "devices", "device_id warranty_until_s")[0] == ("fridge-1", EPOCH_MS + 86400)
        outbox = [dict(zip(("id", "kind", "ref", "device_id", "ts", "payload"), r, strict=True))
                  for r in rows(storage, "outbox", "id kind ref device_id ts payload")]  # fmt: skip
        assert [(r["id"], r["kind"], r["ref"], r["device_id"], r["ts"]) for r in outbox] == [
            (1, "CreateWorkOrder", "wo-1", "fridge-1", EPOCH_MS),
            (2, "Notify", "n-1", "fridge-1", EPOCH_MS),
            (3, "SendCommand", "cmd-1", "fridge-1", EPOCH_MS),
            (4, "OrderConsumable", "ord-1", "fridge-1", EPOCH_MS),
        ]
        assert msgspec.json.decode(outbox[0]["payload"], type=WorkOrder) == WORK_ORDER

        storage.release()  # handled: the inbox empties, in the open transaction
        storage.hold([("t/next", b"\x01")])
        storage.set_counters({"big": HUGE + 1})
        storage.commit()
        storage.hold([("t/lost", b"\x02")])  # never committed: a crash here loses it
        storage.set_counters({"big": 0})
    finally:
        storage.close()  # ... but close() commits what is open
    storage = Storage(db_location)
    try:
        assert storage.inbox() == [("t/next", b"\x01"), ("t/lost", b"\x02")]
        assert storage.counters()["big"] == 0
    finally:
        storage.close()


def test_a_reader_sees_committed_writes_only_and_cannot_write(db_location: str) -> None:
    storage = Storage(db_location)
    readers = database.Database.at(db_location)
    named = sa.select(counters.c.name, counters.c.value)
    try:
        storage.set_counters({"n": 1})
        with readers.reader() as db:
            assert db.rows(named) == []
        storage.commit()
        with readers.reader() as db:
            assert db.dicts(named.where(counters.c.name == "n")) == [{"name": "n", "value": 1}]
            with pytest.raises(StorageError, match=r"read-only|readonly"):
                db.execute(sa.insert(counters).values(name="m", value=2))
    finally:
        storage.close()
        readers.dispose()


def test_the_engines_readers_share_its_database_object(db_location: str) -> None:
    """The HTTP API of an engine reads through the pool of the engine's own :class:`Database`."""
    storage = Storage(db_location)
    try:
        storage.set_counters({"n": 3})
        storage.commit()
        with storage.database.reader() as db:
            assert db.scalar(sa.select(counters.c.value)) == 3
        if db_location.startswith("postgresql"):  # one SQLAlchemy engine: the writer's connection and the readers'
            assert storage.database._engine("readers") is storage.database._engine("writer")
    finally:
        storage.close()


def test_closing_the_storage_closes_every_connection_it_opened(postgres_url: str) -> None:
    def sessions() -> int:
        with psycopg.connect(postgres_url) as admin:
            row = admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchone()
        return int(row[0]) if row else -1

    storage = Storage(postgres_url)
    with storage.database.reader() as reader:
        assert reader.rows(sa.text("SELECT 1")) == [(1,)]
    assert sessions() == 2  # the writer, and the reader back in the pool
    storage.close()
    assert sessions() == 0


def test_a_password_is_used_but_never_shown(postgres_url: str) -> None:
    url, password = with_password(postgres_url, "s3cret")
    storage = Storage(url)
    try:
        assert storage.path == url.replace(f":{password}@", "@") and password not in storage.path
    finally:
        storage.close()


# -- the HTTP API --------------------------------------------------------------------------------------


def get(base: str, path: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(base + path, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_http_api_reads_what_storage_wrote(db_location: str) -> None:
    storage = Storage(db_location)
    storage.record_ledger([("event", "fridge-3", 1, 1, 0, EPOCH_MS - 60)])
    storage.apply(ACTIONS)
    storage.commit()
    storage.close()
    api = HttpApi(create_app(db_location, EngineMetrics(), connected=lambda: True))
    api.start()
    try:
        status, found = get(api.url, "/cases")
        assert status == 200 and (found["total"], found["next_offset"]) == (2, None)
        cases = found["items"]
        assert [(c["case_id"], c["state"], c["opened_s"]) for c in cases] == [
            ("case-2", "open", EPOCH_MS + 6),
            ("case-1", "in_progress", EPOCH_MS),
        ]
        assert [c["case_id"] for c in get(api.url, "/cases?state=open")[1]["items"]] == ["case-2"]
        assert [c["case_id"] for c in get(api.url, "/cases?device=fridge-1&state=in_progress")[1]["items"]] == [
            "case-1"
        ]
        assert get(api.url, "/cases?device=fridge-1&state=open")[1]["items"] == []
        assert [c["case_id"] for c in get(api.url, "/cases?limit=1")[1]["items"]] == ["case-2"]
        status, case = get(api.url, "/cases/case-1")
        assert status == 200
        assert [(w["work_order_id"], w["state"], w["visit"]) for w in case["work_orders"]] == [("wo-1", "accepted", 2)]
        assert case["alerts"][0]["value"] == THIRD and case["alerts"][0]["cleared_s"] == EPOCH_MS + 3
        assert [(b["clock"], b["ts"]) for b in case["sla_breaches"]] == [("first_response", EPOCH_MS + 1)]
        assert get(api.url, "/cases/case-9")[0] == 404
        assert [w["work_order_id"] for w in get(api.url, "/work-orders?state=accepted")[1]["items"]] == ["wo-1"]
        assert get(api.url, "/work-orders?state=done")[1]["items"] == []
        devices = {d["device_id"]: d["last_seen_s"] for d in get(api.url, "/devices")[1]["items"]}
        assert devices == {
            "fridge-1": None,
            "fridge-2": None,
            "fridge-3": EPOCH_MS - 60,
            "fridge-9": None,
            "stray-1": None,
        }
        status, twin = get(api.url, "/devices/fridge-1")
        assert status == 200 and [c["case_id"] for c in twin["cases"]] == ["case-1"]
        assert [(a["alert_id"], a["flapping"]) for a in twin["alerts"]] == [("alert-1", True)]
        registration = twin["registration"]
        assert (registration["product"], registration["region"], registration["cohorts"]) == (
            "freezer",
            "north",
            {"batch": "B-7"},
        )
        assert registration["reported"] == {"firmware": "1.2"} and registration["in_sync"] is True
        unsynced = get(api.url, "/devices/fridge-9")[1]["registration"]  # heard of, never registered
        assert (unsynced["product"], unsynced["in_sync"], unsynced["offline"]) == (None, False, True)
        assert [(w["clock"], w["ts"]) for w in case["sla_warnings"]] == [("resolution", EPOCH_MS + 1)]
        (held,) = get(api.url, "/quarantine")[1]["items"]
        assert (held["device_id"], held["first_s"], held["last_s"], held["messages"]) == (
            "stray-1", EPOCH_MS, EPOCH_MS + 7, 2
        )  # fmt: skip
        (campaign,) = get(api.url, "/campaigns")[1]["items"]
        assert (campaign["cohort"], campaign["state"], campaign["sent"], campaign["failed"]) == (
            "batch=B-7",
            "aborted",
            5,
            4,
        )
    finally:
        api.stop()


def test_the_http_api_answers_503_when_the_database_is_gone(db_location: str, tmp_path: Path) -> None:
    if db_location.startswith("postgresql"):
        missing = with_database(db_location, "sot_no_such_database")
    else:
        missing = str(tmp_path / "missing.sqlite")
    api = HttpApi(create_app(missing, EngineMetrics(), connected=lambda: True))
    api.start()
    try:
        status, body = get(api.url, "/cases")
        assert status == 503 and body["detail"].startswith("database unavailable: cannot open database")
        assert get(api.url, "/kpis")[0] == 200  # live figures do not need the database
    finally:
        api.stop()


# -- the command line ----------------------------------------------------------------------------------


def engine(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "support_engine", "--broker", "mqtt://127.0.0.1:1", *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_an_unreachable_postgresql_is_one_line_and_exit_1(postgres_url: str) -> None:
    missing, password = with_password(with_database(postgres_url, "sot_no_such_database"), "s3cret")
    for url in (missing, f"postgresql://sot:{password}@127.0.0.1:1/sot"):  # no such database; no server
        done = engine("--db", url)
        assert done.returncode == 1, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("sot engine: cannot open database 'postgresql://"), lines
        assert "check that PostgreSQL is running" in lines[0] and password not in done.stderr


def test_the_db_option_takes_a_sqlite_url(tmp_path: Path) -> None:
    """``--db sqlite:///PATH`` opens PATH (it got as far as the broker, which is not there)."""
    target = tmp_path / "via-url.sqlite"
    done = engine("--db", f"sqlite:///{target}")
    assert target.exists(), done.stderr
    assert not (Path.cwd() / "sqlite:").exists()
