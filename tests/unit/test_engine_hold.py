"""The engine's intake in event time: a step's messages are held in memory and acknowledged after the
step's commit while they fit the broker's window, spilled to the inbox when they do not, and found
again after a crash; wall-clock commit groups stay under the window; a gateway's roster is checked
once, with the verdicts of a check per id; a registry file is provisioned a chunk at a time.

An in-memory transport plays the broker (it hands out at most ``window`` un-acknowledged messages);
a SQLite file is the database. Every acknowledgement is checked against what is committed then.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import numpy as np
import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from contracts import ClockAck, EngineConfig, IssueType, Kind, ThresholdRule, Topics, codec
from contracts.codec import BatchDecoder, decode_batch, encode_batch
from contracts.errors import PayloadError
from contracts.messages import Clock, DeviceRecord, GatewayBatch
from support_engine import database
from support_engine.errors import ConfigError
from support_engine.registry import iter_devices, load_devices
from support_engine.service import EngineService
from support_engine.storage import Storage
from support_engine.transport import MemoryTransport
from tests import strategies as s

TOPICS = Topics("hold/v1")
CONFIG = EngineConfig(
    policy="proactive",
    rules=[ThresholdRule(name="hot", sensor="temp", above=10.0, for_s=0.0, issue="cooling")],
    issues={"cooling": IssueType(skill="refrigeration", parts=["compressor"])},
)
GATEWAYS, DEVICES = 30, 4  # a step: one batch per gateway, and the clock


def batch(g: int, step: int) -> tuple[str, bytes]:
    """Gateway ``g``'s batch of sync step ``step`` (one reading a device; gateway 0's first device runs hot)."""
    roster = [f"dev-{g:02d}-{d}" for d in range(DEVICES)]
    temps = [20.0 if g == 0 and d == 0 else 4.0 for d in range(DEVICES)]
    t = 3600.0 * step
    payload = encode_batch(
        gateway_id=f"gw-{g:02d}", ts=t, boot_id=0, seq=step, devices=roster, index=np.arange(DEVICES),
        reading_ts=np.full(DEVICES, t), reading_seq=np.full(DEVICES, step), values={"temp": temps},
    )  # fmt: skip
    return TOPICS.batch(f"gw-{g:02d}"), payload


def clock(step: int, published: int) -> tuple[str, bytes]:
    return TOPICS.clock, codec.encode(Clock(t=3600.0 * step, published=published))


ACCOUNTED = (
    sa.text(  # every message the engine has committed an account of: taken in, a duplicate, refused, a registry entry
        "SELECT coalesce(sum(value), 0) FROM counters"
        " WHERE name IN ('msg_ingested', 'msg_duplicates', 'msg_rejected', 'registry_received')"
    )
)
HELD = sa.text("SELECT count(*) FROM inbox")


class CheckedTransport(MemoryTransport):
    """Checks, at every acknowledgement, that the database has committed at least what is acknowledged."""

    def __init__(self, db: Path, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.reader = database.Database.at(db)
        self.data_acked = 0  # acknowledged device messages (the clock aside)
        self.inbox_seen = 0  # the most inbox rows seen committed at an acknowledgement

    def ack(self, mid: int, qos: int) -> None:
        delivery = self.in_flight.get(mid)
        super().ack(mid, qos)
        if delivery is None or delivery.topic == TOPICS.clock:
            return
        self.data_acked += 1
        with self.reader.reader() as db:
            counted = db.scalar(ACCOUNTED)
            self.inbox_seen = max(self.inbox_seen, db.scalar(HELD))
        assert counted >= self.data_acked, "acknowledged before it was committed"


def die(engine: EngineService) -> None:
    """The engine's process dies: nothing uncommitted survives (its SQLite connection, underneath SQLAlchemy)."""
    raw = engine.storage._db.connection.connection.dbapi_connection
    assert raw is not None
    raw.rollback()
    raw.close()


def service(db: Path, transport: MemoryTransport) -> EngineService:
    engine = EngineService(CONFIG, transport, Storage(db), topics=TOPICS, clock="event")
    engine.start()
    return engine


def drive(engine: EngineService, transport: MemoryTransport, polls: int = 10_000) -> int:
    """Poll until a clock ack is out and nothing is left to deliver; return the clock acks published."""
    for _ in range(polls):
        engine.poll(timeout_s=0)
        acks = [p for p in transport.published if p[0] == TOPICS.clock_ack]
        if acks and transport.inbox.empty() and not transport.queued:
            return len(acks)
    raise AssertionError(f"stuck: {transport.unacked} un-acknowledged, {transport.queued} queued at the broker")


def outcome(engine: EngineService, transport: MemoryTransport) -> tuple[object, ...]:
    """What a run leaves: the counters, the ledger, the outputs (clock acks decoded)."""
    published = [
        (t, msgspec.structs.asdict(codec.decode(Kind.CLOCK_ACK, p)) if t == TOPICS.clock_ack else p)
        for t, p, _ in transport.published
    ]
    return engine._all_counters(), sorted(engine.storage.ledger()), published


def one_step(db: Path, **transport: object) -> tuple[EngineService, CheckedTransport]:
    t = CheckedTransport(db, **transport)
    engine = service(db, t)
    for g in range(GATEWAYS):
        t.offer(*batch(g, 1))
    t.offer(*clock(1, GATEWAYS))
    assert drive(engine, t) == 1
    return engine, t


def test_a_step_that_fits_the_window_is_held_in_memory_and_acknowledged_after_its_commit(tmp_path: Path) -> None:
    t = CheckedTransport(tmp_path / "e.sqlite", window=1000)
    engine = service(tmp_path / "e.sqlite", t)
    for g in range(GATEWAYS):
        t.offer(*batch(g, 1))
        engine.poll(timeout_s=0)
    assert (t.unacked, t.acked, engine.storage.count("inbox"), engine.spills) == (GATEWAYS, [], 0, 0)  # held
    t.offer(*clock(1, GATEWAYS))
    assert drive(engine, t) == 1
    assert (t.unacked, t.data_acked, t.inbox_seen, engine.spills) == (0, GATEWAYS, 0, 0)  # no inbox write at all
    ack = codec.decode(Kind.CLOCK_ACK, t.published[-1][1])
    assert isinstance(ack, ClockAck) and ack.received == GATEWAYS and ack.stats["alerts"] == 1
    assert engine.storage.count("ingest_ledger") == GATEWAYS  # one row a gateway's stream, committed


def test_a_step_that_outgrows_the_window_spills_to_the_inbox_and_ends_the_same(tmp_path: Path) -> None:
    held, t_held = one_step(tmp_path / "held.sqlite", window=1000)
    spilled, t_spilled = one_step(tmp_path / "spilled.sqlite", window=8)  # 30 batches through 8 at a time
    assert spilled.spills >= GATEWAYS // 8 and t_spilled.inbox_seen > 0  # acknowledged once in the inbox
    assert spilled.storage.count("inbox") == 0  # and deleted in the step's own commit
    assert outcome(spilled, t_spilled) == outcome(held, t_held)


def test_a_broker_granting_less_than_asked_only_makes_the_engine_spill_when_it_stalls(tmp_path: Path) -> None:
    held, t_held = one_step(tmp_path / "held.sqlite", window=1000)
    stalled, t_stalled = one_step(tmp_path / "stalled.sqlite", window=5, asked=1000)  # no progress: spill
    assert stalled.spills > 0
    assert outcome(stalled, t_stalled) == outcome(held, t_held)


def test_an_unknown_window_spills_every_group_as_before(tmp_path: Path) -> None:
    held, t_held = one_step(tmp_path / "held.sqlite", window=1000)
    old, t_old = one_step(tmp_path / "old.sqlite", window=20, version="3.1.1")
    assert t_old.receive_window is None and old.spills > 0
    assert outcome(old, t_old) == outcome(held, t_held)


def test_a_crash_loses_nothing_acknowledged_and_takes_nothing_twice(tmp_path: Path) -> None:
    whole, t_whole = one_step(tmp_path / "whole.sqlite", window=1000)
    db = tmp_path / "crash.sqlite"
    first = CheckedTransport(db, window=8)
    engine = service(db, first)
    for g in range(GATEWAYS):
        first.offer(*batch(g, 1))
    for _ in range(20):  # 8 at a time: some spilled and acknowledged, some held
        engine.poll(timeout_s=0)
    assert engine.spills > 0 and first.unacked > 0 and first.queued > 0
    die(engine)

    second = CheckedTransport(db, window=8, session_present=True)
    second.data_acked = first.data_acked
    first.hand_over(second)  # the broker delivers again what was not acknowledged, then the rest
    restarted = service(db, second)
    second.offer(*clock(1, GATEWAYS))
    assert drive(restarted, second) == 1
    counters, ledger, published = outcome(restarted, second)
    whole_counters, whole_ledger, whole_published = outcome(whole, t_whole)
    assert ledger == whole_ledger and restarted.storage.count("inbox") == 0
    assert counters == whole_counters  # every batch counted once: none lost, none taken twice
    assert published[-1] == whole_published[-1]  # the same clock ack


def test_a_step_of_duplicates_alone_does_not_stall_a_small_window(tmp_path: Path) -> None:
    engine, t = one_step(tmp_path / "e.sqlite", window=8)
    for g in range(GATEWAYS):  # the whole step again: nothing new to hold, 30 acknowledgements owed
        t.offer(*batch(g, 1))
    t.offer(*clock(2, GATEWAYS))
    assert drive(engine, t) == 2
    assert (engine.counters["msg_duplicates"], engine.received, t.unacked) == (GATEWAYS, GATEWAYS, 0)


def test_a_registry_entry_is_held_with_its_step_and_found_again_after_a_crash(tmp_path: Path) -> None:
    db = tmp_path / "e.sqlite"
    t = CheckedTransport(db, window=3)
    engine = service(db, t)
    t.offer(TOPICS.registry("fz-9"), codec.encode(DeviceRecord(device_id="fz-9", product="freezer")))
    for g in range(4):
        t.offer(*batch(g, 1))
    for _ in range(20):
        engine.poll(timeout_s=0)
    assert engine.spills > 0 and engine.storage.count("inbox") >= 1
    die(engine)
    second = MemoryTransport(window=3, session_present=True)
    t.hand_over(second)
    restarted = service(db, second)
    second.offer(*clock(1, 4))
    assert drive(restarted, second) == 1
    assert restarted.core.devices["fz-9"].product == "freezer" and restarted.counters["registry_received"] == 1


def test_held_messages_are_spilled_and_acknowledged_when_the_engine_stops(tmp_path: Path) -> None:
    t = CheckedTransport(tmp_path / "e.sqlite", window=1000)
    engine = service(tmp_path / "e.sqlite", t)
    for g in range(3):
        t.offer(*batch(g, 1))
        engine.poll(timeout_s=0)
    engine.finish()
    assert (t.unacked, engine.storage.count("inbox")) == (0, 3)
    restarted = EngineService(CONFIG, MemoryTransport(), Storage(tmp_path / "e.sqlite"), topics=TOPICS)
    assert restarted.received == 3 and len(restarted._step.pending) == 3  # found again, not counted again


def test_wall_clock_groups_stay_under_the_window(tmp_path: Path) -> None:
    t = MemoryTransport(window=None, asked=20)  # the broker would send everything; the engine asked for 20
    engine = EngineService(CONFIG, t, Storage(tmp_path / "e.sqlite"), topics=TOPICS, clock="wall")
    engine.start()
    for step in range(1, 4):
        for g in range(GATEWAYS):
            t.offer(*batch(g, step))
    groups = []
    while t.unacked:
        before = len(t.acked)
        engine.poll(timeout_s=0)
        groups.append(len(t.acked) - before)
    assert max(groups) <= 18  # committed before a group holds more than the window less a tenth
    assert sum(groups) == 3 * GATEWAYS and engine.counters["msg_ingested"] == 3 * GATEWAYS


# -- a gateway's roster, checked once -----------------------------------------------------------------

ROSTER_IDS = st.one_of(
    s.ids, st.text(max_size=70), st.sampled_from(["", "a\n", "\na", "a\nb", "x" * 64, "x" * 65, *s.BAD_IDS])
)


def verdict(decode: object, payload: bytes) -> object:
    try:
        view = decode(payload)  # type: ignore[operator]
    except PayloadError as exc:
        return exc.reason, exc.detail
    return view.devices


@given(st.lists(ROSTER_IDS, max_size=8))
def test_the_roster_check_refuses_what_a_check_per_id_refuses_with_the_same_detail(devices: list[str]) -> None:
    fields = {"gateway_id": "gw-1", "ts": 0.0, "boot_id": 0, "seq": 0, "devices": devices}
    payload = msgspec.msgpack.encode({**fields, "index": b"", "reading_ts": b"", "reading_seq": b"", "values": {}})
    try:  # a strict decode runs the id pattern on every device id
        expected: object = msgspec.msgpack.decode(payload, type=GatewayBatch).devices
    except msgspec.ValidationError as exc:
        expected = ("schema", str(exc))
    assert verdict(decode_batch, payload) == expected
    decoder = BatchDecoder()
    assert verdict(decoder.decode, payload) == verdict(decoder.decode, payload) == expected  # checked, then kept


def test_a_gateway_that_repeats_its_roster_gets_the_same_checked_list_back() -> None:
    decoder = BatchDecoder()
    first, second = decoder.decode(batch(0, 1)[1]), decoder.decode(batch(0, 2)[1])
    assert second.devices is first.devices and len(decoder) == 1
    changed = encode_batch(
        gateway_id="gw-00", ts=0.0, boot_id=0, seq=3, devices=["dev-00-0", "bad id"], index=[0], reading_ts=[0.0],
        reading_seq=[1], values={"temp": [1.0]},
    )  # fmt: skip
    with pytest.raises(PayloadError, match=r"\$\.devices\[1\]") as info:
        decoder.decode(changed)
    assert info.value.reason == "schema"
    assert decoder.decode(batch(0, 4)[1]).devices == first.devices  # checked again, and kept again


# -- the registry at start, a chunk at a time -----------------------------------------------------------


def test_a_registry_file_is_read_and_provisioned_a_chunk_at_a_time_as_if_whole(tmp_path: Path) -> None:
    records = [
        DeviceRecord(device_id=f"fz-{i}", product="freezer", firmware=f"2.{i % 2}", cohorts={"batch": "B7"})
        for i in range(25)
    ]
    path = tmp_path / "devices.jsonl"
    path.write_bytes(b"".join(msgspec.json.encode(r) + b"\n" for r in records))
    chunks = list(iter_devices(path, chunk=10))
    assert [len(c) for c in chunks] == [10, 10, 5] and [r for c in chunks for r in c] == records == load_devices(path)

    whole = EngineService(CONFIG, MemoryTransport(), Storage(tmp_path / "whole.sqlite"), topics=TOPICS)
    whole.provision(records)
    chunked = EngineService(CONFIG, MemoryTransport(), Storage(tmp_path / "chunked.sqlite"), topics=TOPICS)
    chunked.provision_chunks(iter_devices(path, chunk=10))
    assert chunked.storage.dump_json("devices") == whole.storage.dump_json("devices")
    assert chunked.storage.counters() == whole.storage.counters()


def test_a_bad_record_late_in_a_registry_leaves_nothing_committed(tmp_path: Path) -> None:
    path = tmp_path / "devices.jsonl"
    good = b"".join(msgspec.json.encode(DeviceRecord(device_id=f"fz-{i}")) + b"\n" for i in range(25))
    path.write_bytes(good + b'{"device_id": "a b"}\n')
    engine = EngineService(CONFIG, MemoryTransport(), Storage(tmp_path / "e.sqlite"), topics=TOPICS)
    with pytest.raises(ConfigError, match="record 26"):
        engine.provision_chunks(iter_devices(path, chunk=10))
    with database.Database.at(tmp_path / "e.sqlite").reader() as db:
        assert db.scalar(sa.text("SELECT count(*) FROM devices")) == 0
    path.write_bytes(good + b'{"device_id": "a b"}\n{"device_id": \n')  # not JSON further on: said first, as before
    with pytest.raises(ConfigError, match="not valid jsonl"):
        list(iter_devices(path, chunk=10))
