"""A database written by the engine before migrations, on SQLite and on PostgreSQL: opened by this
engine, adopted and stamped, and read back whole; one a newer engine upgraded, refused; and
``sot engine db upgrade|current|history`` on both."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from typing import Any

import msgspec
import pytest
import sqlalchemy as sa

from contracts.messages import DeviceRecord, Notification
from support_engine import migrations, schema
from support_engine.core.actions import CaseChanged, Notify
from support_engine.core.ledger import Ledger
from support_engine.database import Database
from support_engine.errors import DatabaseTooNew, StorageError
from support_engine.storage import Storage
from tests.databases import Rows, schema_diffs, write_old
from tests.integration.cli import ROOT, SOT

pytestmark = pytest.mark.integration

BIG = 2**31 + 7
HUGE = 2**62 + 3
THIRD = 1 / 3
T = 1_795_400_000.123456
RECORD = DeviceRecord(device_id="fridge-1", product="freezer", owner_id="o-1", region="north", cohorts={"b": "B-7"})
NOTE = Notification(notification_id="n-1", device_id="fridge-1", ts=T, kind="case_opened", case_id="case-1")
GAPS = (1 << 1023) | 0b1010

V0: Rows = {
    "ingest_ledger": (
        ("kind", "source", "boot_id", "high", "missing", "ts"),
        [("telemetry", "fridge-1", HUGE, BIG, GAPS.to_bytes(128, "little"), T), ("event", "fridge-3", 0, 7, b"", THIRD)],
    ),
    "cases": (
        ("case_id", "device_id", "issue", "state", "priority", "origin", "opened_s", "updated_s", "escalation",
         "first_response_s"),
        [("case-1", "fridge-1", "cooling", "in_progress", 2, "telemetry", T, T + 5, 1, T + 60)],
    ),
    "work_orders": (
        ("work_order_id", "case_id", "device_id", "state", "visit", "updated_s", "technician_id"),
        [("wo-1", "case-1", "fridge-1", "accepted", 2, T + 4, "tech-1")],
    ),
    "alerts": (
        ("alert_id", "device_id", "rule", "case_id", "value", "raised_s", "cleared_s", "flapping"),
        [("alert-1", "fridge-1", "hot", "case-1", THIRD, T, T + 3, 1)],
    ),
    "sla_breaches": (("case_id", "clock", "ts"), [("case-1", "first_response", T + 1)]),
    "sla_warnings": (("case_id", "clock", "ts"), [("case-1", "resolution", T + 1)]),
    "devices": (
        ("device_id", "product", "owner_id", "region", "contract", "warranty_until_s", "record", "reported",
         "desired", "offline", "updated_s"),
        [("fridge-1", "freezer", "o-1", "north", None, None, msgspec.json.encode(RECORD).decode(),
          '{"firmware":"1.2"}', "{}", 0, T + 2)],
    ),
    "quarantine": (("device_id", "first_s", "last_s", "messages"), [("stray-1", T, T + 7, 2)]),
    "campaigns": (
        ("campaign_id", "rule", "action", "cohort", "state", "stage", "targets", "sent", "failed", "opened_s",
         "updated_s", "reason"),
        [("camp-1", "recall", "ota", "b=B-7", "aborted", 2, BIG, 5, 4, T, T + 8, "too many failed")],
    ),
    "outbox": (
        ("ts", "kind", "device_id", "ref", "payload"),
        [(T, "Notify", "fridge-1", "n-1", msgspec.json.encode(NOTE).decode())],
    ),
    "dead_letters": (("topic", "reason", "detail", "payload"), [("t/bad", "json", "not JSON", b"\xff\xfe{")]),
    "counters": (("name", "value"), [("msg_ingested", 2), ("big", HUGE)]),
    "inbox": (("topic", "payload"), [("t/raw", b"\x00\xff binary"), ("t/next", b"")]),
    "engine_state": (("id", "state"), [(1, b'{"state": 2}\xff')]),
    "ingest_audit": (("kind", "source", "boot_id", "seq"), [("telemetry", "fridge-1", HUGE, BIG)]),
}  # fmt: skip


def rows(storage: Storage, table: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads(storage.dump_json(table))
    return found


def stamped(where: str) -> tuple[str, ...]:
    database = Database.at(where)
    try:
        with database.reader() as reader:
            return migrations.current(reader.connection).revisions
    finally:
        database.dispose()


SAID = "no cold air, 100% warm — “it hums”"  # what the owner said: a % and not ASCII
V1: Rows = {  # v0's rows, and what only v1 has: a case's symptom, the log of changes of state
    **V0,
    "cases": (
        (*V0["cases"][0], "symptom"),
        [(*V0["cases"][1][0], SAID), ("case-2", "fridge-3", "leak", "resolved", 3, "contact", T, T + 9, 0, T + 1, None)],
    ),
    "state_changes": (
        ("case_id", "kind", "ref", "state", "ts", "priority", "visit", "technician_id"),
        [
            ("case-1", "case", "case-1", "open", T, 2, None, None),
            ("case-1", "work_order", "wo-1", "accepted", T + 4, None, 2, "tech-1"),
            ("case-1", "case", "case-1", "in_progress", T + 5, HUGE, None, None),
        ],
    ),
}  # fmt: skip
OLD: dict[str, Rows] = {"v0": V0, "v1": V1}
GAINED = {  # what adopting a database of each version adds to it (revision 0001 is v1's schema)
    "v0": {"added column cases.symptom", "created index outbox_by_device", "created table state_changes"},
    "v1": set(),
}


def read_back(version: str) -> Rows:
    """The rows of a database of ``version`` as they read after the upgrade: v0's cases with no
    symptom, and no changes of state logged."""
    if version == "v1":
        return V1
    (columns, values) = V0["cases"]
    return {
        **V0,
        "cases": ((*columns, "symptom"), [(*row, None) for row in values]),
        "state_changes": (V1["state_changes"][0], []),
    }


@pytest.mark.parametrize("version", ["v0", "v1"])
def test_a_database_of_the_engine_before_migrations_is_adopted_and_reads_back_whole(
    db_location: str, version: str, caplog: pytest.LogCaptureFixture
) -> None:
    write_old(db_location, version, OLD[version])
    caplog.set_level(logging.INFO, logger="sot.engine")
    storage = Storage(db_location)
    try:
        steps = [r.getMessage() for r in caplog.records if r.name == "sot.engine"]
        shown = f"database {storage.path}: "
        assert steps[-1] == f"{shown}stamped revision 0001 (the schema when migrations began)"
        assert {step.removeprefix(shown) for step in steps[:-1]} == GAINED[version]
        assert len(steps) == len(GAINED[version]) + 1
        assert sorted(storage.ledger()) == [
            ("event", "fridge-3", 0, 7, 0),
            ("telemetry", "fridge-1", HUGE, BIG, GAPS),
        ]
        assert storage.counters() == {"msg_ingested": 2, "big": HUGE}
        assert storage.state() == b'{"state": 2}\xff'
        assert storage.inbox() == [("t/raw", b"\x00\xff binary"), ("t/next", b"")]
        assert storage.devices() == [("fridge-1", RECORD, {"firmware": "1.2"}, {}, False)]
        for table, (columns, values) in read_back(version).items():  # every row, every column, as it was written
            got = [tuple(r[c] for c in columns) for r in rows(storage, table)]
            want = [tuple(v.hex() if isinstance(v, bytes) else v for v in row) for row in values]
            assert sorted(got, key=repr) == sorted(want, key=repr), table
        assert [r["id"] for r in rows(storage, "outbox")] == [1]
        logged = [r["id"] for r in rows(storage, "state_changes")]
        assert logged == ([1, 2, 3] if version == "v1" else [])
        assert storage.count("state_changes") == len(logged)

        storage.apply(
            [
                CaseChanged("case-3", "fridge-1", "leak", "open", 3, T + 9, T + 9, "contact", symptom="water on the floor"),
                Notify(Notification(notification_id="n-2", device_id="fridge-1", ts=T + 9, kind="resolved")),
            ]
        )  # fmt: skip
        storage.dead_letter("t/bad", "json", "again", b"\x00")
        storage.hold([("t/third", b"3")])
        storage.commit()
        assert [r["id"] for r in rows(storage, "outbox")] == [1, 2]  # the row numbers go on where they were
        assert [r["id"] for r in rows(storage, "dead_letters")] == [1, 2]
        assert [r["arrival"] for r in rows(storage, "inbox")] == [1, 2, 3]
        assert [r["id"] for r in rows(storage, "state_changes")] == [*logged, len(logged) + 1]
    finally:
        storage.close()
    database = Database.at(db_location)
    try:
        with database.reader() as reader:
            assert {"symptom"} <= reader.columns("cases") and "state_changes" in reader.tables()
            c, s = schema.cases.c, schema.state_changes.c
            said = dict(reader.rows(sa.select(c.case_id, c.symptom)))
            log = reader.rows(sa.select(s.case_id, s.kind, s.ref, s.state, s.ts, s.priority).order_by(s.id))
    finally:
        database.dispose()
    if version == "v1":
        assert said == {"case-1": SAID, "case-2": None, "case-3": "water on the floor"}
        assert log[:3] == [
            ("case-1", "case", "case-1", "open", T, 2),
            ("case-1", "work_order", "wo-1", "accepted", T + 4, None),
            ("case-1", "case", "case-1", "in_progress", T + 5, HUGE),
        ]
    else:
        assert said == {"case-1": None, "case-3": "water on the floor"}
    assert log[len(logged) :] == [("case-3", "case", "case-3", "open", T + 9, 3)]
    assert stamped(db_location) == ("0001",)
    assert schema_diffs(db_location) == []
    caplog.clear()
    Storage(db_location).close()  # at head: nothing more to do
    assert not [r for r in caplog.records if r.name == "sot.engine" and "database" in r.getMessage()]


OLDEST: Rows = {
    "ingest": (
        ("kind", "source", "boot_id", "seq", "ts"),
        [("telemetry", "fridge-1", 1, seq, 60.0 * seq) for seq in (5, 1, 2, 4)]  # seq 3 never came
        + [("contact", "c-1", 0, 0, THIRD), ("event", "fridge-3", BIG, 7, T)],
    ),
    "cases": (
        ("case_id", "device_id", "issue", "state", "priority", "origin", "opened_s", "updated_s"),
        [("case-0", "fridge-0", "cooling", "open", 2, "contact", 1.0, 1.0)],
    ),
    "work_orders": (
        ("work_order_id", "case_id", "device_id", "state", "visit", "updated_s"),
        [("wo-0", "case-0", "fridge-0", "created", 1, 1.0)],
    ),
    "alerts": (
        ("alert_id", "device_id", "rule", "case_id", "value", "raised_s", "cleared_s"),
        [("alert-0", "fridge-0", "hot", "case-0", 9.5, 1.0, None)],
    ),
    "counters": (("name", "value"), [("msg_ingested", 6)]),
}


def test_the_first_schema_on_postgresql_gets_the_later_tables_columns_and_ledger(
    db_location: str, caplog: pytest.LogCaptureFixture
) -> None:
    write_old(db_location, "oldest", OLDEST)
    caplog.set_level(logging.INFO, logger="sot.engine")
    storage = Storage(db_location)
    try:
        steps = {r.getMessage().partition(": ")[2] for r in caplog.records if r.name == "sot.engine"}
        assert {
            "created table devices", "created table campaigns", "created table ingest_ledger",
            "added column cases.escalation", "added column cases.first_response_s",
            "added column work_orders.technician_id", "added column alerts.flapping",
            "created index cases_by_device", "folded table ingest into ingest_ledger (3 streams) and dropped it",
        } <= steps  # fmt: skip
        case = rows(storage, "cases")[0]
        assert (case["case_id"], case["escalation"], case["first_response_s"]) == ("case-0", 0, None)
        assert rows(storage, "alerts")[0]["flapping"] == 0
        assert rows(storage, "work_orders")[0]["technician_id"] is None
        assert sorted(storage.ledger()) == [
            ("contact", "c-1", 0, 0, 0),
            ("event", "fridge-3", BIG, 7, 0b11111110),  # seqs 0-6 may still come
            ("telemetry", "fridge-1", 1, 5, 0b100100),  # seqs 3 and 0
        ]
        assert {r["source"]: r["ts"] for r in rows(storage, "ingest_ledger")}["fridge-1"] == 300.0  # the latest
        ledger = Ledger()
        ledger.restore(storage.ledger())
        assert [ledger.take(("telemetry", "fridge-1", 1, seq)) for seq in (4, 3, 3)] == [
            "duplicate",
            "new",
            "duplicate",
        ]
        assert storage.counters() == {"msg_ingested": 6} and storage.count("campaigns") == 0
    finally:
        storage.close()
    database = Database.at(db_location)
    try:
        with database.reader() as reader:
            assert "ingest" not in reader.tables()
    finally:
        database.dispose()
    assert stamped(db_location) == ("0001",)
    assert schema_diffs(db_location) == []


def test_a_new_database_is_the_engines_schema_at_the_head_revision(db_location: str) -> None:
    Storage(db_location).close()
    assert stamped(db_location) == (migrations.HEAD,)
    assert schema_diffs(db_location) == []


def test_tables_named_like_the_engines_that_are_not_are_refused_untouched(db_location: str) -> None:
    write_old(db_location, "v0", {})
    database = Database.at(db_location)
    writer = database.writer()
    writer.connection.execute(sa.text("ALTER TABLE alerts DROP COLUMN rule"))
    writer.commit()
    writer.close()
    database.dispose()
    with pytest.raises(StorageError, match=r"not the engine's \(alerts has no rule\)"):
        Storage(db_location)
    assert stamped(db_location) == ()  # nothing was changed


def _stamp(where: str, revision: str) -> None:
    database = Database.at(where)
    writer = database.writer()
    writer.connection.execute(sa.text("UPDATE alembic_version SET version_num = :r"), {"r": revision})
    writer.commit()
    writer.close()
    database.dispose()


def test_a_database_a_newer_engine_upgraded_is_refused_with_what_to_do(db_location: str) -> None:
    Storage(db_location).close()
    _stamp(db_location, "0042")
    with pytest.raises(DatabaseTooNew) as refused:
        Storage(db_location)
    text = str(refused.value)
    assert "is at schema revision 0042, which this engine does not know (it knows 0001; head 0001)" in text
    assert "a newer version of sot has upgraded it" in text and "Run that version" in text
    done = subprocess.run(
        [sys.executable, "-m", "support_engine", "--db", db_location, "--broker", "mqtt://127.0.0.1:1"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("sot engine: database ")
    assert "schema revision 0042" in done.stderr
    assert stamped(db_location) == ("0042",)  # left as it was


def test_another_applications_revision_is_refused_as_such(db_location: str) -> None:
    database = Database.at(db_location)
    writer = database.writer()
    writer.connection.execute(sa.text("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)"))
    writer.connection.execute(sa.text("INSERT INTO alembic_version VALUES ('3f2a9c1b7d4e')"))
    writer.commit()
    writer.close()
    database.dispose()
    with pytest.raises(DatabaseTooNew) as refused:
        Storage(db_location)
    text = str(refused.value)
    assert "is at schema revision 3f2a9c1b7d4e" in text and "another application's migrations" in text
    assert "newer version of sot" not in text and "a database of its own" in text
    assert stamped(db_location) == ("3f2a9c1b7d4e",)


def sot(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SOT, *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)


def test_sot_engine_db_upgrades_says_where_it_stands_and_lists_the_revisions(db_location: str) -> None:
    write_old(db_location, "oldest", OLDEST)
    shown = Database.at(db_location).location.shown
    before = sot("engine", "db", "current", "--db", db_location)
    assert before.returncode == 0, before.stderr
    assert (
        before.stdout
        == f"{shown}: none: a database of the engine before migrations (`sot engine db upgrade` adopts it)\n"
    )
    up = sot("engine", "db", "upgrade", "--db", db_location)
    assert up.returncode == 0, up.stderr
    assert f"{shown}: added column cases.escalation\n" in up.stdout
    assert up.stdout.endswith(f"{shown}: stamped revision 0001 (the schema when migrations began)\n")
    assert sot("engine", "db", "current", "--db", db_location).stdout == f"{shown}: 0001 (head)\n"
    again = sot("engine", "db", "upgrade", "--db", db_location)
    assert again.stdout == f"{shown}: already at 0001; nothing to do\n"
    _stamp(db_location, "0042")
    newer = sot("engine", "db", "current", "--db", db_location)
    assert newer.stdout == f"{shown}: 0042: newer than this engine, which knows up to 0001\n"
    refused = sot("engine", "db", "upgrade", "--db", db_location)
    assert refused.returncode == 2 and "schema revision 0042" in refused.stderr
    _stamp(db_location, "0001")
    unknown = sot("engine", "db", "upgrade", "--db", db_location, "--revision", "nonsense")
    assert unknown.returncode == 1 and unknown.stdout == ""
    assert unknown.stderr == (
        f"sot engine db: cannot upgrade {shown!r} to 'nonsense': Can't locate revision identified by 'nonsense'"
        " (sot engine db history lists them)\n"
    )
    history = sot("engine", "db", "history")
    assert history.returncode == 0 and history.stdout.startswith("<base> -> 0001 (head): The schema when migrations")
