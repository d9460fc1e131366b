"""The engine on its own: a small independent publisher (not sim/) plays the fleet, a test-local
subscriber listens on the engine's outputs, and each fault signature must open the expected case
and get the expected command, work order or notice.

Mosquitto and ``python -m support_engine`` run as separate processes; the engine runs on the wall
clock with engine time = Unix time, so every ``ts`` here is ``time.time()`` (or close to it). The
tests share one engine and run in file order, each with devices of its own; the last one checks the
engine's cumulative counters (``ClockAck.stats``) against what the publisher sent and the subscriber
saw. Nothing reads the engine's database: everything asserted arrived over MQTT.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any, Literal, TypeVar

import msgspec
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from contracts import codec
from contracts.engine_config import (
    EngineConfig,
    IssueType,
    Offline,
    RateLimit,
    Technician,
    ThresholdRule,
    TrendRule,
)
from contracts.errors import ContractError
from contracts.messages import (
    Clock,
    ClockAck,
    Command,
    ConsumableOrder,
    DeadLetter,
    DeviceEvent,
    DeviceRecord,
    Message,
    Notification,
    Telemetry,
    WorkOrder,
)
from contracts.topics import Topics
from harness.broker import BrokerUrl, start_broker
from harness.engine_process import EngineProcess

pytestmark = pytest.mark.integration

TOPICS = Topics(f"standalone-{uuid.uuid4().hex[:8]}/v1")  # a prefix of its own: a shared broker stays quiet
WAIT_S = 10.0  # the longest any single output may take to arrive
QUIET_S = 3600.0  # the reporting interval of every registered device but the beacon: none falls silent here
SILENT_ADVICE = "Your device stopped reporting: check its power and its network."

CONFIG = EngineConfig(
    policy="proactive",
    provisioning="registered",
    rules=[ThresholdRule(name="cpu_high", sensor="cpu", above=0.9, for_s=0.0, issue="frozen")],
    trends=[
        TrendRule(
            name="bearing_wear",
            sensor="wear",
            issue="bearing",
            reaches=100.0,
            within_s=2 * 86400.0,
            window_s=300.0,
            min_readings=6,
        )
    ],
    issues={
        "frozen": IssueType(skill="electronics", remote="reset"),
        "bearing": IssueType(skill="mechanical", parts=["bearing"], duration_s=5400.0),
        "power_supply": IssueType(skill="electrical", parts=["psu"]),
        "silent": IssueType(skill="network", advice=SILENT_ADVICE),
    },
    fault_codes={"E_PSU": "power_supply"},
    offline=Offline(after_intervals=3.0, min_s=1.0, issue="silent"),
    rate_limit=RateLimit(per_s=1.0, burst=5),
    technicians=[  # tech-a sorts first by id and could do a bearing too, but works in the other region
        Technician(id="tech-a-north", skills=["mechanical", "electrical"], region="north"),
        Technician(id="tech-b-south", skills=["mechanical"], region="south"),
    ],
)
REGISTRY = [
    DeviceRecord(device_id="box-1", product="kiosk", region="south", interval_s=QUIET_S),
    DeviceRecord(device_id="mill-1", product="mill", region="south", interval_s=QUIET_S),
    DeviceRecord(device_id="pump-1", product="pump", region="south", interval_s=QUIET_S),
    DeviceRecord(device_id="beacon-1", product="beacon", region="north", interval_s=0.3),
    DeviceRecord(device_id="flood-1", product="kiosk", region="north", interval_s=QUIET_S),
]

M = TypeVar("M", bound=Message)
EventKind = Literal["fault", "command_result"]


class Outputs:
    """The engine's outputs as they arrive on a subscriber of our own, decoded."""

    def __init__(self, client: paho.Client) -> None:
        self.messages: list[Message] = []
        self.garbage: list[tuple[str, bytes, str]] = []  # what the engine published that does not decode
        self._changed = threading.Condition()
        self._subscribed = threading.Event()
        client.on_message = self._on_message
        client.on_subscribe = lambda *args: self._subscribed.set()
        filters = [*TOPICS.world_subscriptions(), TOPICS.dead_letter]  # commands, work orders, notices, acks
        client.subscribe([(f, 1) for f in filters])
        assert self._subscribed.wait(WAIT_S), "the broker did not acknowledge our subscription"

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        try:
            kind = TOPICS.parse(msg.topic).kind
            message = codec.decode(kind, msg.payload)
        except ContractError as exc:
            self.garbage.append((msg.topic, msg.payload, str(exc)))
            return
        with self._changed:
            self.messages.append(message)
            self._changed.notify_all()

    def of(self, cls: type[M], **fields: Any) -> list[M]:
        """The outputs of type ``cls`` so far whose attributes equal ``fields``."""
        with self._changed:
            return [
                m for m in self.messages if isinstance(m, cls) and all(getattr(m, k) == v for k, v in fields.items())
            ]

    def wait(self, cls: type[M], count: int = 1, timeout_s: float = WAIT_S, **fields: Any) -> list[M]:
        """Wait until ``count`` outputs of type ``cls`` match ``fields``; return all that match."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while len(found := self.of(cls, **fields)) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = "\n  ".join(repr(m) for m in self.messages[-15:]) or "nothing"
                    raise AssertionError(
                        f"waited {timeout_s:g} s for {count} {cls.__name__} with {fields}, got {len(found)}; "
                        f"the last outputs:\n  {seen}"
                    )
                self._changed.wait(left)
            return found


class Fleet:
    """The publisher: sends device messages, registry entries and clock ticks, and counts them."""

    def __init__(self, client: paho.Client, outputs: Outputs, engine: EngineProcess) -> None:
        self.client, self.outputs, self.engine = client, outputs, engine
        self.registered = {r.device_id for r in REGISTRY}
        self.sent = 0  # device messages: the engine takes each in or rejects it
        self.sent_unregistered = 0  # device messages from devices the engine does not know (quarantine)
        self.records = 0  # registry entries over MQTT
        self._seq: Counter[str] = Counter()

    def reading(self, device: str, ts: float | None = None, **values: float) -> Telemetry:
        """The device's next reading (``ts`` now unless given)."""
        self._seq[device] += 1
        ts = time.time() if ts is None else ts
        return Telemetry(device_id=device, ts=ts, boot_id=1, seq=self._seq[device], values=values)

    def event(self, device: str, kind: EventKind, code: str, command_id: str | None = None) -> DeviceEvent:
        """The device's next event, stamped now."""
        self._seq[device] += 1
        return DeviceEvent(
            device_id=device,
            ts=time.time(),
            boot_id=1,
            seq=self._seq[device],
            kind=kind,
            code=code,
            command_id=command_id,
        )

    def send(self, message: Telemetry | DeviceEvent | DeviceRecord, *, wait: bool = True) -> paho.MQTTMessageInfo:
        """Publish ``message`` on its topic (QoS 1); by default, wait for the broker's PUBACK."""
        if isinstance(message, DeviceRecord):
            self.records += 1
            self.registered.add(message.device_id)
            topic = TOPICS.registry(message.device_id)
        else:
            self.sent += 1
            self.sent_unregistered += message.device_id not in self.registered
            is_reading = isinstance(message, Telemetry)
            topic = TOPICS.telemetry(message.device_id) if is_reading else TOPICS.event(message.device_id)
        return self.publish(topic, codec.encode(message), wait=wait)

    def send_raw(self, topic: str, payload: bytes) -> None:
        """Publish bytes that are meant to be a device message (counted as one)."""
        self.sent += 1
        self.publish(topic, payload)

    def publish(self, topic: str, payload: bytes, *, wait: bool = True) -> paho.MQTTMessageInfo:
        info = self.client.publish(topic, payload, qos=1)
        assert info.rc == paho.MQTT_ERR_SUCCESS, f"publish to {topic} refused: {paho.error_string(info.rc)}"
        if wait:
            info.wait_for_publish(WAIT_S)
            assert info.is_published(), f"the broker did not acknowledge our message on {topic}"
        return info

    def settle(self, until: Callable[[ClockAck], bool] = lambda ack: True) -> ClockAck:
        """Ask the engine for its counters (a ``clock`` tick; on the wall clock it answers at once) until
        it has taken in every device message we sent and ``until`` holds; return that answer.

        The engine publishes the outputs of what it has handled before it answers a tick, so once the
        answer counts everything sent, every output of it has been published before the answer.
        """
        deadline = time.monotonic() + WAIT_S
        while True:
            t = time.time()
            self.publish(TOPICS.clock, codec.encode(Clock(t=t, published=self.sent)))
            (ack,) = self.outputs.wait(ClockAck, t=t)
            if ack.received >= self.sent and until(ack):
                return ack
            assert self.engine.alive(), f"the engine died:\n{self.engine.log_tail()}"
            assert time.monotonic() < deadline, (
                f"after {WAIT_S:g} s the engine has taken in {ack.received} of {self.sent} device messages"
                f" (stats {ack.stats});\nengine log:\n{self.engine.log_tail()}"
            )
            time.sleep(0.05)


def _client(name: str, url: BrokerUrl) -> paho.Client:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"{TOPICS.prefix}-{name}", protocol=paho.MQTTv5)
    client.connect(url.host, url.port)
    client.loop_start()
    return client


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """Mosquitto, our subscriber (listening before the engine starts), the engine (its configuration and
    registry files written here) and our publisher."""
    tmp = tmp_path_factory.mktemp("standalone")
    config = tmp / "engine.json"
    config.write_bytes(msgspec.json.encode(CONFIG))
    devices = tmp / "devices.jsonl"
    devices.write_bytes(b"".join(msgspec.json.encode(r) + b"\n" for r in REGISTRY))
    with start_broker("mosquitto", workdir=tmp / "broker") as broker:
        clients = [_client("outputs", broker.url)]
        engine: EngineProcess | None = None
        try:
            outputs = Outputs(clients[0])
            engine = EngineProcess(
                [
                    "--broker", str(broker.url), "--db", str(tmp / "engine.sqlite"), "--clock", "wall",
                    "--config", str(config), "--devices", str(devices), "--prefix", TOPICS.prefix,
                    "--client-id", f"{TOPICS.prefix}-engine", "--protocol", "5", "--log-level", "INFO",
                ],
                tmp / "engine.log",
            )  # fmt: skip
            deadline = time.monotonic() + 30
            while "engine connected" not in engine.log_tail():
                assert engine.alive(), f"the engine exited:\n{engine.log_tail()}"
                assert time.monotonic() < deadline, f"the engine did not connect:\n{engine.log_tail()}"
                time.sleep(0.05)
            clients.append(_client("fleet", broker.url))
            yield Fleet(clients[1], outputs, engine)
        finally:
            for client in clients:
                client.loop_stop()
                client.disconnect()
            if engine is not None:
                engine.stop()


def test_registered_devices_are_not_offline_before_they_ever_report(fleet: Fleet) -> None:
    # The registry gives their reporting intervals, but a device never heard from has not fallen silent.
    ack = fleet.settle()  # answering a tick runs the engine's timers, offline detection among them
    assert not fleet.outputs.garbage, f"the engine published what does not decode: {fleet.outputs.garbage}"
    assert ack.stats.get("devices_offline", 0) == 0
    assert not fleet.outputs.of(Notification)


def test_a_cpu_spike_gets_one_remote_reset_and_its_fix_resolves_the_case(fleet: Fleet) -> None:
    fleet.send(fleet.reading("box-1", cpu=0.35))
    fleet.send(fleet.reading("box-1", cpu=0.97))
    (command,) = fleet.outputs.wait(Command, device_id="box-1")
    assert command.action == "reset"
    assert command.case_id is not None
    fleet.outputs.wait(Notification, device_id="box-1", kind="case_opened", case_id=command.case_id)

    fleet.send(fleet.event("box-1", "command_result", "fixed", command_id=command.command_id))
    fleet.outputs.wait(Notification, device_id="box-1", kind="resolved", case_id=command.case_id)
    fleet.settle()
    assert len(fleet.outputs.of(Command, device_id="box-1")) == 1
    assert not fleet.outputs.of(WorkOrder, device_id="box-1")  # the reset fixed it: nobody drives out


def test_rising_wear_sends_the_regional_mechanic_with_a_bearing(fleet: Fleet) -> None:
    start = time.time() - 60.0  # readings 5 s apart, wear up 2 a reading: 100 in a few minutes
    readings = [fleet.reading("mill-1", ts=start + 5.0 * k, wear=20.0 + 2.0 * k) for k in range(6)]
    for reading in readings[:5]:
        fleet.send(reading)
    fleet.settle()
    assert not fleet.outputs.of(WorkOrder, device_id="mill-1"), "the trend fired before min_readings (6)"

    time.sleep(1.2)  # the rate limit allows bursts of 5, then 1/s: the sixth waits for a token
    fleet.send(readings[5])
    (order,) = fleet.outputs.wait(WorkOrder, device_id="mill-1")
    assert (order.issue, order.skill, order.parts) == ("bearing", "mechanical", ["bearing"])
    assert order.duration_s == 5400.0
    assert order.technician_id == "tech-b-south"  # the mechanic of the device's region
    assert order.ts == readings[5].ts
    fleet.outputs.wait(Notification, device_id="mill-1", kind="case_opened", case_id=order.case_id)
    assert not fleet.outputs.of(Command, device_id="mill-1")


def test_a_fault_code_opens_its_mapped_issue(fleet: Fleet) -> None:
    fleet.send(fleet.event("pump-1", "fault", "E_PSU"))
    (order,) = fleet.outputs.wait(WorkOrder, device_id="pump-1")
    assert (order.issue, order.skill, order.parts) == ("power_supply", "electrical", ["psu"])
    assert order.technician_id == "tech-a-north"  # the only electrician: from another region rather than nobody
    fleet.outputs.wait(Notification, device_id="pump-1", kind="case_opened", case_id=order.case_id)


def test_an_unregistered_device_is_quarantined_until_its_registry_entry_arrives(fleet: Fleet) -> None:
    fleet.send(fleet.reading("stray-1", cpu=0.4))
    fleet.send(fleet.reading("stray-1", cpu=0.99))
    ack = fleet.settle()
    assert ack.stats.get("quarantined_messages") == 2
    assert not fleet.outputs.of(Command, device_id="stray-1")
    assert not fleet.outputs.of(Notification, device_id="stray-1")

    fleet.send(DeviceRecord(device_id="stray-1", product="kiosk", region="south", interval_s=QUIET_S))
    fleet.settle(until=lambda ack: ack.stats.get("registry_received", 0) >= 1)
    fleet.send(fleet.reading("stray-1", cpu=0.99))
    (command,) = fleet.outputs.wait(Command, device_id="stray-1")
    assert command.action == "reset"
    fleet.outputs.wait(Notification, device_id="stray-1", kind="case_opened", case_id=command.case_id)


def test_a_device_that_falls_silent_is_reported_offline(fleet: Fleet) -> None:
    # The registry says every 0.3 s: offline after max(3 x 0.3 s, min_s 1 s) = 1 s without a reading.
    now = time.time()
    readings = [fleet.reading("beacon-1", ts=now - 0.3 * k, rssi=-61.0) for k in (3, 2, 1, 0)]
    for reading in readings:
        fleet.send(reading)
    (notice,) = fleet.outputs.wait(Notification, device_id="beacon-1", kind="outage")
    assert notice.text == SILENT_ADVICE
    assert notice.ts == pytest.approx(readings[-1].ts + 1.0)  # when it went offline, in engine time
    assert notice.case_id is not None


def test_a_flood_is_rate_limited_and_garbage_is_dead_lettered(fleet: Fleet) -> None:
    now = time.time()
    sent = [fleet.send(fleet.reading("flood-1", ts=now + 0.001 * k, temp_c=21.0), wait=False) for k in range(20)]
    for info in sent:
        info.wait_for_publish(WAIT_S)
        assert info.is_published(), "the broker did not acknowledge the flood"
    garbage = b'{"device_id": "junk-1", "ts": '
    fleet.send_raw(TOPICS.telemetry("junk-1"), garbage)
    ack = fleet.settle()

    limited = fleet.outputs.wait(DeadLetter, count=ack.stats.get("msg_rejected_rate_limited", 0), reason="rate_limited")
    assert {d.topic for d in limited} == {TOPICS.telemetry("flood-1")}
    # Bursts of 5, refilled at 1/s on arrival: 20 sent at once reach the engine within milliseconds, so 15 go.
    assert len(limited) == 15, (
        f"{len(limited)} of 20 rate-limited (fewer: the engine took over a second to take them in)"
    )
    (junk,) = fleet.outputs.wait(DeadLetter, reason="json")
    assert junk.topic == TOPICS.telemetry("junk-1")
    assert bytes.fromhex(junk.payload_hex) == garbage


def test_the_counters_agree_with_what_was_sent_and_what_arrived(fleet: Fleet) -> None:
    ack = fleet.settle()
    stats = Counter(ack.stats)
    outputs = fleet.outputs
    assert ack.received == fleet.sent == stats["msg_ingested"] + stats["msg_rejected"]
    assert stats["msg_duplicates"] == 0
    assert stats["msg_rejected"] == len(outputs.of(DeadLetter))
    assert stats["msg_rejected_rate_limited"] == len(outputs.of(DeadLetter, reason="rate_limited"))
    assert stats["msg_rejected_json"] == len(outputs.of(DeadLetter, reason="json"))
    assert stats["quarantined_messages"] == fleet.sent_unregistered
    assert stats["registry_received"] == fleet.records
    assert stats["devices_provisioned"] == len(REGISTRY) + fleet.records
    assert stats["work_orders"] == len(outputs.of(WorkOrder))
    assert stats["work_orders_assigned"] == sum(w.technician_id is not None for w in outputs.of(WorkOrder))
    assert stats["remote_commands"] == len([c for c in outputs.of(Command) if c.case_id is not None])
    assert stats["remote_fixes"] == len(outputs.of(Notification, kind="resolved"))
    assert stats["cases_opened"] == len({n.case_id for n in outputs.of(Notification)})  # each case tells its owner
    assert stats["devices_offline"] == len(outputs.of(Notification, kind="outage"))  # the beacon only
    emitted = [m for m in outputs.messages if isinstance(m, (Command, WorkOrder, Notification, ConsumableOrder))]
    assert ack.emitted == stats["msg_emitted"] == len(emitted)  # our subscriber was there before the engine
    assert not outputs.garbage, f"the engine published what does not decode: {outputs.garbage}"
