"""Input bounded at the boundary: every number on the wire has a range, a message and the engine have
limits, and a message that still breaks its handler is dead-lettered, never redelivered.

The engine runs in process against the in-memory broker (:class:`MemoryTransport`) and a SQLite file,
as in ``test_engine_hold``; a restart is a new engine on the same file, handed what the broker still
holds for its session.
"""

from __future__ import annotations

import gc
import json
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import msgspec
import numpy as np
import pytest

from contracts import EngineConfig, Kind, Topics, codec
from contracts.codec import encode_batch
from contracts.engine_config import Limits
from contracts.errors import PayloadError
from contracts.messages import MAX_COUNT, MAX_SECONDS, Clock, DeviceRecord, Telemetry
from support_engine.service import EngineService
from support_engine.storage import Storage
from support_engine.transport import MemoryTransport
from tests.unit.test_engine_hold import CONFIG

TOPICS = Topics("bounds/v1")
OUT_OF_RANGE = [2**53, 2**63 - 1, 2**63, 2**64, -1]
"""Integers no ``seq`` or ``boot_id`` may be: past 2^53 - 1 (what every JSON reader holds exactly) or negative."""
FEW_MB = 4 * 2**20


def telemetry(device: str, seq: int, *, ts: float = 60.0, boot_id: int = 0, values: object = None) -> bytes:
    values = {"temp": 4.0} if values is None else values
    return json.dumps({"device_id": device, "ts": ts, "boot_id": boot_id, "seq": seq, "values": values}).encode()


def event(device: str, seq: int, *, boot_id: int = 0, code: str = "E1") -> bytes:
    body = {"device_id": device, "ts": 60.0, "boot_id": boot_id, "seq": seq, "kind": "fault", "code": code}
    return json.dumps(body).encode()


def status(work_order: str, seq: int, *, visit: int = 1) -> bytes:
    body = {
        "work_order_id": work_order, "device_id": "d-1", "ts": 60.0, "seq": seq, "status": "accepted",
        "technician_id": "t-1", "visit": visit,
    }  # fmt: skip
    return json.dumps(body).encode()


def batch(gateway: str, seq: int, devices: list[str], *, boot_id: int = 0, sensors: int = 1) -> bytes:
    n = len(devices)
    return msgspec.msgpack.encode(
        {
            "gateway_id": gateway, "ts": 60.0, "boot_id": boot_id, "seq": seq, "devices": devices,
            "index": np.arange(n, dtype="<u4").tobytes(), "reading_ts": np.full(n, 60.0).tobytes(),
            "reading_seq": np.ones(n, dtype="<u4").tobytes(),
            "values": {f"s{k}": np.full(n, 4.0).tobytes() for k in range(sensors)},
        }
    )  # fmt: skip


def poison() -> list[tuple[str, bytes]]:
    """Schema-valid but for one number out of range: seq and boot_id of telemetry, events and batches,
    seq of field statuses, a time (such payloads once killed the engine, and again after each restart)."""
    out: list[tuple[str, bytes]] = []
    for n in OUT_OF_RANGE:
        out += [
            (TOPICS.telemetry("p-1"), telemetry("p-1", n)),
            (TOPICS.telemetry("p-1"), telemetry("p-1", 1, boot_id=n)),
            (TOPICS.event("p-1"), event("p-1", n)),
            (TOPICS.event("p-1"), event("p-1", 1, boot_id=n)),
            (TOPICS.field_status("wo-1"), status("wo-1", n)),
        ]
    out += [
        (TOPICS.batch("gw-p"), batch("gw-p", 2**63, ["p-2"])),
        (TOPICS.batch("gw-p"), batch("gw-p", 1, ["p-2"], boot_id=2**64 - 1)),
    ]
    out.append((TOPICS.telemetry("p-1"), telemetry("p-1", 1, ts=1e308)))
    return out


def engine(db: Path, transport: MemoryTransport, config: EngineConfig = CONFIG, clock: str = "wall") -> EngineService:
    service = EngineService(config, transport, Storage(db), topics=TOPICS, clock=clock)  # type: ignore[arg-type]
    service.start()
    return service


def drain(service: EngineService) -> None:
    """Wall clock: handle everything offered, then commit (and acknowledge) it."""
    while not service.transport.inbox.empty():
        service.poll(timeout_s=0)
    service._flush(now=service.wall_now())


def dead_letters(service: EngineService) -> list[str]:
    return [row["reason"] for row in json.loads(service.storage.dump_json("dead_letters"))]


# -- ranges ------------------------------------------------------------------------------------
@pytest.mark.parametrize("topic_and_payload", poison(), ids=lambda tp: tp[0].rsplit("/", 1)[-1])
def test_an_integer_out_of_range_is_refused_by_the_decoder(topic_and_payload: tuple[str, bytes]) -> None:
    topic, payload = topic_and_payload
    kind, key, _ = TOPICS.parse(topic)
    with pytest.raises(PayloadError) as info:
        codec.decode_batch(payload, key=key) if kind is Kind.BATCH else codec.decode(kind, payload, key=key)
    assert info.value.reason == "schema"


def test_the_largest_count_and_time_are_taken() -> None:
    message = codec.decode(Kind.TELEMETRY, telemetry("d", MAX_COUNT, ts=MAX_SECONDS, boot_id=MAX_COUNT))
    assert isinstance(message, Telemetry) and message.seq == MAX_COUNT
    view = codec.decode_batch(batch("gw", MAX_COUNT, ["d"], boot_id=MAX_COUNT))
    assert (view.seq, view.boot_id) == (MAX_COUNT, MAX_COUNT)


def test_a_visit_and_a_nul_in_a_text_are_bounded_too() -> None:
    with pytest.raises(PayloadError, match="visit"):
        codec.decode(Kind.FIELD_STATUS, status("wo-1", 1, visit=1001))
    with pytest.raises(PayloadError, match="detail"):
        body = json.loads(event("d", 1))
        codec.decode(Kind.EVENT, json.dumps({**body, "detail": "a\x00b"}).encode())


def test_poison_integers_are_dead_lettered_and_a_restart_does_not_see_them_again(tmp_path: Path) -> None:
    db = tmp_path / "e.sqlite"
    broker = MemoryTransport()
    service = engine(db, broker)
    payloads = poison()
    for topic, payload in payloads:
        broker.offer(topic, payload)
    broker.offer(TOPICS.telemetry("d-1"), telemetry("d-1", 1))
    drain(service)
    assert service.counters["msg_rejected_schema"] == len(payloads)
    assert service.counters["msg_ingested"] == 1 and broker.unacked == 0
    restarted_broker = MemoryTransport()
    broker.hand_over(restarted_broker)
    restarted = engine(db, restarted_broker)
    restarted_broker.offer(TOPICS.telemetry("d-1"), telemetry("d-1", 2))
    drain(restarted)
    assert restarted.counters["msg_rejected"] == len(payloads) and restarted.counters["msg_ingested"] == 2
    assert dead_letters(restarted) == ["schema"] * len(payloads)


# -- limits ------------------------------------------------------------------------------------
def test_limits_default_and_refuse_unknown_keys() -> None:
    assert EngineConfig().limits == Limits()
    assert (Limits().max_sensors, Limits().max_roster, Limits().max_sensor_names) == (64, 10_000, 256)
    with pytest.raises(msgspec.ValidationError, match="max_sensorz"):
        msgspec.convert({"limits": {"max_sensorz": 1}}, EngineConfig)


def growth(attack: Callable[[], None]) -> int:
    """Bytes the Python heap holds after ``attack`` that it did not hold before."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        attack()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def served(service: EngineService, broker: MemoryTransport, device: str = "d-1") -> bool:
    """Whether a normal reading is still taken in (and twins the device)."""
    before = service.counters["msg_ingested"]
    broker.offer(TOPICS.telemetry(device), telemetry(device, 1000 + before))
    drain(service)
    return service.counters["msg_ingested"] == before + 1 and device in service.core.twins.slot_of


@pytest.mark.parametrize("max_payload_bytes", [Limits().max_payload_bytes, 4 * 2**20], ids=["default", "4MiB"])
def test_forty_thousand_sensor_names_in_one_message_grow_nothing(tmp_path: Path, max_payload_bytes: int) -> None:
    config = msgspec.structs.replace(CONFIG, limits=Limits(max_payload_bytes=max_payload_bytes))
    broker = MemoryTransport()
    service = engine(tmp_path / "e.sqlite", broker, config)
    assert served(service, broker)
    payload = telemetry("d-2", 1, values={f"s{i:06d}x": 1.0 for i in range(40_000)})
    assert len(payload) > 640_000

    def attack() -> None:
        broker.offer(TOPICS.telemetry("d-2"), payload)
        drain(service)

    assert growth(attack) < FEW_MB
    assert service.counters["msg_rejected"] == 1 and len(service.core.twins.values) == 1  # temp only
    assert served(service, broker)


@pytest.mark.parametrize(
    ("max_payload_bytes", "reason"),
    [(Limits().max_payload_bytes, "too_large"), (4 * 2**20, "roster_too_large")],
    ids=["default", "4MiB"],
)
def test_a_batch_naming_two_hundred_thousand_devices_grows_nothing(
    tmp_path: Path, max_payload_bytes: int, reason: str
) -> None:
    config = msgspec.structs.replace(CONFIG, limits=Limits(max_payload_bytes=max_payload_bytes))
    broker = MemoryTransport()
    service = engine(tmp_path / "e.sqlite", broker, config)
    assert served(service, broker)
    payload = encode_batch(
        gateway_id="gw-x", ts=60.0, boot_id=0, seq=1, devices=[f"n{i:06d}" for i in range(200_000)],
        index=[], reading_ts=[], reading_seq=[], values={},
    )  # fmt: skip
    assert len(payload) > 1_600_000

    def attack() -> None:
        broker.offer(TOPICS.batch("gw-x"), payload)
        drain(service)

    assert growth(attack) < FEW_MB
    assert service.counters[f"msg_rejected_{reason}"] == 1 and len(service.core.twins) == 1
    assert served(service, broker)


def test_sensor_names_beyond_the_budget_are_refused_as_unknown_sensor(tmp_path: Path) -> None:
    broker = MemoryTransport()
    service = engine(tmp_path / "e.sqlite", broker)
    for m in range(20):  # 20 messages of 51 new names each: the rules' `temp` and 5 x 51 fill the budget
        broker.offer(TOPICS.telemetry("d-1"), telemetry("d-1", m + 1, values={f"m{m}-{k}": 1.0 for k in range(51)}))
    broker.offer(TOPICS.telemetry("d-1"), telemetry("d-1", 30, values={"m0-1": 1.0, "temp": 2.0}))  # known: taken
    drain(service)
    assert service.counters["msg_rejected_unknown_sensor"] == 15
    assert len(service.core.twins.values) == 256
    assert set(dead_letters(service)) == {"unknown_sensor"}
    assert served(service, broker)


def test_too_many_sensors_in_one_message_are_refused(tmp_path: Path) -> None:
    broker = MemoryTransport()
    service = engine(tmp_path / "e.sqlite", broker)
    broker.offer(TOPICS.telemetry("d-1"), telemetry("d-1", 1, values={f"s{k}": 1.0 for k in range(65)}))
    broker.offer(TOPICS.batch("gw-1"), batch("gw-1", 1, ["d-2"], sensors=65))
    drain(service)
    assert service.counters["msg_rejected_too_many_sensors"] == 2


def test_unregistered_devices_beyond_the_budget_are_refused_as_device_budget(tmp_path: Path) -> None:
    config = msgspec.structs.replace(CONFIG, limits=Limits(max_unregistered_devices=1_000))
    broker = MemoryTransport()
    service = engine(tmp_path / "e.sqlite", broker, config)
    for g in range(5):  # 5 gateways of 400 new devices each: 2 fit
        broker.offer(TOPICS.batch(f"gw-{g}"), batch(f"gw-{g}", 1, [f"g{g}-{d}" for d in range(400)]))
    for d in range(300):  # then single devices: 200 fit
        broker.offer(TOPICS.telemetry(f"t-{d}"), telemetry(f"t-{d}", 1))
    broker.offer(TOPICS.batch("gw-0"), batch("gw-0", 2, [f"g0-{d}" for d in range(400)]))  # known devices: taken
    drain(service)
    assert service.counters["msg_rejected_device_budget"] == 3 + 100
    assert len(service.core.twins) == 1_000
    assert service.counters["msg_ingested"] == 2 + 200 + 1
    assert not served(service, broker, "d-new")  # the budget holds
    assert served(service, broker, "t-0")


def test_a_registered_device_is_outside_the_budget(tmp_path: Path) -> None:
    config = msgspec.structs.replace(CONFIG, limits=Limits(max_unregistered_devices=0))
    broker = MemoryTransport()
    service = engine(tmp_path / "e.sqlite", broker, config)
    service.provision([DeviceRecord(device_id="d-1")])
    assert served(service, broker, "d-1")
    assert not served(service, broker, "d-2") and service.counters["msg_rejected_device_budget"] == 1


def test_wall_clock_refuses_a_message_stamped_far_in_the_future(tmp_path: Path) -> None:
    broker = MemoryTransport()
    service = engine(tmp_path / "e.sqlite", broker)
    now = service.wall_now()
    broker.offer(TOPICS.telemetry("d-1"), telemetry("d-1", 1, ts=now + 2 * 86400))
    broker.offer(TOPICS.telemetry("d-1"), telemetry("d-1", 2, ts=now + 3600))
    drain(service)
    assert (service.counters["msg_rejected_future_ts"], service.counters["msg_ingested"]) == (1, 1)


# -- a handler that raises -----------------------------------------------------------------------
def test_a_message_whose_handling_raises_is_dead_lettered_once_and_the_step_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "e.sqlite"
    broker = MemoryTransport()
    service = engine(db, broker, clock="event")
    handle, readings = service.core.handle, service.core.handle_readings

    def bad_handle(message: object, now: float) -> object:
        if getattr(message, "code", None) == "boom":
            raise RuntimeError("boom")
        return handle(message, now)  # type: ignore[arg-type]

    def bad_readings(messages: list[Telemetry]) -> object:
        if any(m.device_id == "d-bad" for m in messages):
            raise OverflowError("a reading the core cannot take")
        return readings(messages)

    monkeypatch.setattr(service.core, "handle", bad_handle)
    monkeypatch.setattr(service.core, "handle_readings", bad_readings)
    sent = [
        (TOPICS.telemetry("d-1"), telemetry("d-1", 1, values={"temp": 20.0})),  # hot: an alert and a case
        (TOPICS.telemetry("d-bad"), telemetry("d-bad", 1)),
        (TOPICS.telemetry("d-2"), telemetry("d-2", 1)),
        (TOPICS.event("d-3"), event("d-3", 1, code="boom")),
        (TOPICS.event("d-3"), event("d-3", 2, code="E2")),
        (TOPICS.batch("gw-1"), batch("gw-1", 1, ["d-4", "d-5"])),
    ]
    for topic, payload in sent:
        broker.offer(topic, payload)
    broker.offer(TOPICS.clock, codec.encode(Clock(t=3600.0, published=len(sent))))
    for _ in range(100):
        service.poll(timeout_s=0)
    assert [t for t, _, _ in broker.published].count(TOPICS.clock_ack) == 1
    assert broker.unacked == 0  # the bad ones too: acknowledged with their step
    counters = service._all_counters()
    assert counters["msg_rejected_handler_error"] == 2 and counters["msg_rejected"] == 2
    assert counters["msg_ingested"] == len(sent) - 2
    assert counters["readings"] == 2 + 2  # d-1, d-2, and the batch's two
    assert counters["device_events"] == 1 and counters["cases_opened"] == 1
    assert sorted(service.core.twins.ids) == ["d-1", "d-2", "d-4", "d-5"]
    assert dead_letters(service) == ["handler_error", "handler_error"]
    assert [t for t, _, _ in broker.published].count(TOPICS.dead_letter) == 2

    restarted_broker = MemoryTransport()
    broker.hand_over(restarted_broker)
    assert restarted_broker.queued == 0 and restarted_broker.inbox.empty()  # nothing to redeliver
    restarted = engine(db, restarted_broker, clock="event")
    restarted_broker.offer(TOPICS.event("d-3"), event("d-3", 1, code="boom"))  # a device sending it again
    restarted_broker.offer(TOPICS.clock, codec.encode(Clock(t=7200.0, published=len(sent))))  # nothing new
    for _ in range(100):
        restarted.poll(timeout_s=0)
    assert restarted.counters["msg_duplicates"] == 1  # taken once, never handled again
    assert dead_letters(restarted) == ["handler_error", "handler_error"]


def test_a_held_message_whose_handling_raises_leaves_the_inbox_with_its_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "e.sqlite"
    broker = MemoryTransport(window=4)  # the step outgrows the window: its messages go to the inbox first
    service = engine(db, broker, clock="event")
    handle = service.core.handle

    def bad_handle(message: object, now: float) -> object:
        if getattr(message, "seq", None) == 3:
            raise KeyError("boom")
        return handle(message, now)  # type: ignore[arg-type]

    monkeypatch.setattr(service.core, "handle", bad_handle)
    for seq in range(1, 9):
        broker.offer(TOPICS.event("d-1"), event("d-1", seq))
    broker.offer(TOPICS.clock, codec.encode(Clock(t=3600.0, published=8)))
    for _ in range(200):
        service.poll(timeout_s=0)
    assert service.spills > 0
    assert service.storage.count("inbox") == 0 and broker.unacked == 0
    assert service.counters["msg_rejected_handler_error"] == 1 and service._all_counters()["device_events"] == 7


def test_a_message_whose_intake_raises_is_dead_lettered_as_handler_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = MemoryTransport()
    service = engine(tmp_path / "e.sqlite", broker)

    def broken(payload: bytes, *, key: str | None = None) -> object:
        raise ValueError("a decoder bug")

    monkeypatch.setattr(service._batches, "decode", broken)
    broker.offer(TOPICS.batch("gw-1"), batch("gw-1", 1, ["d-2"]))
    drain(service)
    assert service.counters["msg_rejected_handler_error"] == 1 and broker.unacked == 0
    assert served(service, broker)
