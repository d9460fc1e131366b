"""Locust users that act as a scenario's fleet against a broker and the support engine.

- **DeviceUser**: one MQTT connection per device; per-device JSON ``Telemetry`` at its product's
  interval (divided by ``--sot-speed``) with random jitter, and now and then a ``DeviceEvent``.
- **GatewayUser**: one connection per gateway; a columnar ``GatewayBatch`` for all its devices
  (``devices_per_gateway``) at the product's interval.

Both build on :class:`locust.contrib.mqtt.MqttUser` (``use_loop_selectors``: past ~340 connections
``select()`` runs out). Request types in Locust's statistics, named by message kind:

| type | name | time |
|---|---|---|
| ``publish`` | telemetry, event, batch | publish to the broker's PUBACK |
| ``ingest`` | telemetry, event, batch | publish to the engine's receipt (``IngestAck``) for sampled messages |
| ``connect`` | device, gateway | CONNECT to CONNACK; ``lost``: a dropped connection |
| ``resend`` | telemetry, event, batch | untimed: a copy the device's outbox sent again (``publish`` counts each message once) |
| ``outbox`` | overflow, unconfirmed | untimed failures: a message dropped from a full outbox; one still without its receipt when its device stopped |

The MQTT client is :mod:`loadtest.client`. QoS 1 devices keep what is not yet acknowledged in an
outbox (:mod:`loadtest.outbox`; ``--sot-outbox`` ``puback`` or ``receipt``, at most
``--sot-outbox-size`` messages) and send it again after a reconnect.

Each request is also counted per interval (:mod:`loadtest.intervals`): the workers send their
counts with their reports, and the master (or the single process) writes them to ``--sot-timeline``
when it quits, for ``loadtest.html``'s latency over time.

The fleet comes from ``--sot-fleet`` (JSON, what ``sot loadtest`` passes) or ``--sot-scenario``.
The one shape class runs the shape ``--sot-shape`` over ``-u``/``-r``/``-t`` and then drains.
Run it alone (``sot loadtest`` does all this for you; see docs/loadtest.md)::

    locust -f loadtest/locustfile.py --headless -H mqtt://127.0.0.1:1883 -u 50 -r 10 -t 30s \\
        --sot-scenario scenarios/freezers.yaml --sot-speed 100 DeviceUser

or debug one user with ``python loadtest/locustfile.py -H mqtt://127.0.0.1:1883 --sot-scenario ...``.
"""

from __future__ import annotations

import gc
import json
import logging
import random
import socket
import ssl
import time
import uuid
import warnings
from dataclasses import dataclass, field
from typing import Any

import gevent
import locust.stats
import numpy as np
import numpy.typing as npt
import paho.mqtt.client as paho
from locust import LoadTestShape, events, task
from locust.contrib.mqtt import MqttUser
from locust.env import Environment
from locust.exception import StopUser
from locust.runners import MasterRunner, WorkerRunner
from paho.mqtt.enums import CallbackAPIVersion

from contracts import codec
from contracts.errors import PayloadError
from contracts.messages import DeviceEvent, IngestAck, Telemetry
from contracts.topics import DEFAULT_PREFIX, Kind, Topics
from harness.broker import BrokerUrl
from harness.errors import BrokerError
from harness.mqtt_transport import secure
from loadtest.client import GatewayClient, SotClient, fire, message_name, nodelay
from loadtest.fleet import Allocator, FleetMix, FleetSpec, UserKind, from_scenario_file
from loadtest.intervals import IntervalBook, bucket_ms
from loadtest.outbox import ACK_MODES, DEFAULT_CAPACITY, Entry, Outbox
from loadtest.receipts import Receipts
from loadtest.shapes import Plan, parse_shape

__all__ = ["DeviceUser", "GatewayUser", "SotShape"]

log = logging.getLogger("sot.loadtest")

CONNECT_TIMEOUT_S = 30.0
CONNECT_SPREAD_S = 1.0  # a starting device dials in at a random moment within this
STOP_WAIT_S = 5.0  # at most: on stop, wait this long for the user's un-acknowledged publishes
_POLL_S = 0.05
_EXPIRE_EVERY_S = 0.5


class ReceiptMissing(Exception):
    """A sampled message's receipt did not come back within the timeout."""


# Locust's documented hook for custom bucketing; float keys travel fine (msgpack, strict_map_key=False).
locust.stats.bucket_response_time = bucket_ms  # type: ignore[assignment]


def _socketpair() -> tuple[socket.socket, socket.socket]:
    """paho's wake-up pipe as a Unix socket pair. paho makes it a TCP connection through 127.0.0.1
    (for Windows): two more ephemeral ports a client, and the kernel's search for a free one to bind
    grows with the ports in use, until connecting the 8,000th device costs milliseconds of CPU in
    ``bind`` alone (70 % of a worker's time while 6,000 devices connect)."""
    read, write = socket.socketpair()
    read.setblocking(False)
    write.setblocking(False)
    return read, write


paho._socketpair_compat = _socketpair  # paho's private helper, used by loop_start and loop

# Locust's MqttUser builds its paho clients on callback API 1; paho says so once per client.
warnings.filterwarnings("ignore", "Callback API version 1 is deprecated", DeprecationWarning)


# -- options ------------------------------------------------------------------------------------
@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    add = parser.add_argument  # Locust's own parser: it knows include_in_web_ui (an argument group does not)
    add("--sot-fleet", default="", env_var="SOT_LOADTEST_FLEET", include_in_web_ui=False, help="Fleet mix (JSON).")
    add("--sot-scenario", default="", env_var="SOT_LOADTEST_SCENARIO", help="Scenario file (when no --sot-fleet).")
    add("--sot-prefix", default=DEFAULT_PREFIX, env_var="SOT_LOADTEST_PREFIX", help="Topic prefix.")
    add("--sot-speed", type=float, default=1.0, help="Telemetry intervals are divided by this.")
    add("--sot-jitter", type=float, default=0.1, help="Each interval varies by up to this share.")
    add("--sot-event-share", type=float, default=0.01, help="Share of device ticks that also send an event.")
    add("--sot-ack-every", type=int, default=10, help="The engine's --ack-every (0: no receipts).")
    add("--sot-qos", type=int, default=1, choices=[0, 1], help="QoS of the devices' publishes.")
    add("--sot-shape", default="soak", help="Load shape: soak, ramp, step or spike, with :key=value,...")
    add("--sot-drain", type=float, default=10.0, help="Seconds without users at the end, for the last receipts.")
    add("--sot-receipt-timeout", type=float, default=5.0, help="Seconds before a receipt counts as missing.")
    add("--sot-warmup", type=float, default=0.0, help="Seconds from the start whose messages are named warm-up.")
    add("--sot-outbox", default="puback", choices=list(ACK_MODES), help="QoS 1: keep a message until this ack.")
    add("--sot-outbox-size", type=int, default=DEFAULT_CAPACITY, help="Messages an outbox holds at most.")
    add("--sot-timeline", default="", include_in_web_ui=False, help="Write response times per interval here (JSON).")
    add("--sot-timeline-step", type=float, default=1.0, include_in_web_ui=False, help="Seconds per interval.")


@dataclass
class _Process:
    """What every user of this Locust process shares: options, the fleet, ids, the receipt book."""

    options: Any
    mix: FleetMix
    topics: Topics
    host: str
    port: int
    worker: int
    url: BrokerUrl
    receipts: Receipts = field(default_factory=Receipts)
    allocators: dict[str, Allocator] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    listener: _ReceiptListener | None = None
    outboxes: dict[tuple[str, int], SotClient] = field(default_factory=dict)  # (source, boot_id): receipt mode
    warmup_until: float = 0.0  # wall time: messages sent before it are named WARMUP

    def next_fleet(self, kind: UserKind) -> FleetSpec:
        alloc = self.allocators.setdefault(kind, self.mix.allocator(kind))
        return self.mix.fleets[alloc.next()]

    def next_id(self, fleet: FleetSpec, kind: UserKind) -> str:
        """A unique id per process and run: fleet, worker index, number (gateways: ``g`` before the number)."""
        n = self.counts.get(kind, 0)
        self.counts[kind] = n + 1
        return f"{fleet.name[:40]}-{self.worker}-{'g' if kind == 'gateway' else ''}{n:06d}"

    @property
    def ack_every(self) -> int:
        return int(self.options.sot_ack_every)

    @property
    def receipt_outboxes(self) -> bool:
        """Whether devices keep their messages until the engine's receipt (``--sot-outbox receipt``)."""
        return str(self.options.sot_outbox) == "receipt"

    @property
    def stop_wait_s(self) -> float:
        """How long a stopping user waits for its PUBACKs: the drain leaves time for the last report."""
        return min(STOP_WAIT_S, max(0.5, float(self.options.sot_drain) - 4.0))


_SHARED: dict[str, _Process] = {}  # "process": this process's state, once built
_TIMES = IntervalBook()  # this process's requests per interval; a master's: its workers' reports


def _broker(host: str | None) -> BrokerUrl:
    """The broker of ``-H``: ``mqtt[s]://[user@]host[:port][?ca=...]``, the password from ``$SOT_MQTT_PASSWORD``."""
    try:
        return BrokerUrl.parse(host or "")
    except BrokerError as exc:
        raise ValueError(f"-H/--host: {exc}") from exc


def _tls_context(url: BrokerUrl) -> ssl.SSLContext | None:
    """The TLS context of an ``mqtts`` URL (the broker verified against ``ca``), None for ``mqtt``."""
    if not url.tls:
        return None
    context = ssl.create_default_context(cafile=None if url.ca is None else str(url.ca))
    if url.cert is not None:
        context.load_cert_chain(str(url.cert), None if url.key is None else str(url.key))
    return context


def _mix(options: Any) -> FleetMix:
    if options.sot_fleet:
        return FleetMix.decode(options.sot_fleet)
    if options.sot_scenario:
        return from_scenario_file(options.sot_scenario)
    raise ValueError("give the fleet: --sot-scenario FILE (or --sot-fleet JSON)")


def _parsed(environment: Environment) -> Any:
    options = environment.parsed_options
    if options is None:
        raise RuntimeError("the locustfile needs Locust's parsed options (run it with locust, or run_single_user)")
    return options


def _state(environment: Environment) -> _Process:
    """This process's shared state, built on first use from the options (a worker's come from the master)."""
    state = _SHARED.get("process")
    if state is None:
        options = _parsed(environment)
        url = _broker(environment.host)
        worker = max(0, int(getattr(environment.runner, "worker_index", 0) or 0))
        topics = Topics(options.sot_prefix)
        state = _SHARED["process"] = _Process(options, _mix(options), topics, url.host, url.port, worker, url)
    return state


@events.init.add_listener
def _on_init(environment: Environment, **kwargs: Any) -> None:
    """A master reads the scenario once and hands its workers the fleet itself (they need no file)."""
    options = environment.parsed_options
    if isinstance(environment.runner, MasterRunner) and options is not None and not options.sot_fleet:
        options.sot_fleet = _mix(options).encode()
    if options is not None and not isinstance(environment.runner, WorkerRunner):
        _TIMES.step_s = float(options.sot_timeline_step)  # a worker counts by second and reports every few


@events.test_start.add_listener
def _on_test_start(environment: Environment, **kwargs: Any) -> None:
    if isinstance(environment.runner, MasterRunner):
        return  # the master runs no users: its workers listen for their own receipts
    state = _state(environment)
    state.warmup_until = time.time() + float(state.options.sot_warmup)
    if state.ack_every and state.listener is None:
        state.listener = _ReceiptListener(environment, state)
        state.listener.start()


@events.spawning_complete.add_listener
def _on_spawning_complete(**kwargs: Any) -> None:
    """Move every object the users hold for their lifetime out of the garbage collector's sight.

    Thousands of users are millions of long-lived objects (clients, sockets, greenlets); a full
    collection walks them all and stops every device for a second or two, which shows as the
    top percent of publish latencies. Frozen objects are still freed by reference counting. (No
    collection first: that alone would be such a pause.)
    """
    gc.freeze()


@events.quitting.add_listener
def _on_quitting(environment: Environment, **kwargs: Any) -> None:
    state = _SHARED.get("process")
    if state is not None and state.listener is not None:
        state.listener.stop()
        state.listener = None
    options = environment.parsed_options
    if options is not None and options.sot_timeline and not isinstance(environment.runner, WorkerRunner):
        with open(options.sot_timeline, "w", encoding="utf-8") as out:
            json.dump(_TIMES.document(), out)


# -- response times per interval (loadtest.intervals) ----------------------------------------------
@events.request.add_listener
def _on_request(request_type: str, response_time: float | None, exception: Any, **kwargs: Any) -> None:
    _TIMES.record(request_type, time.time(), response_time, exception is not None)


@events.report_to_master.add_listener
def _on_report_to_master(client_id: str, data: dict[str, Any], **kwargs: Any) -> None:
    data["sot_intervals"] = _TIMES.take()


@events.worker_report.add_listener
def _on_worker_report(client_id: str, data: dict[str, Any], **kwargs: Any) -> None:
    _TIMES.merge(data.get("sot_intervals") or ())


# -- the receipt listener -------------------------------------------------------------------------
class _ReceiptListener:
    """One connection per process subscribed to the engine's receipts; fires ``ingest`` requests."""

    def __init__(self, environment: Environment, state: _Process) -> None:
        self.environment, self.state = environment, state
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"sot-receipts-{uuid.uuid4().hex[:12]}")
        self.client.on_message = self._on_message
        self.client.on_socket_open = nodelay
        secure(self.client, state.url)
        self._subscribed = False
        self._expiry: Any = None

    def start(self) -> None:
        topic = self.state.topics.ingest_ack
        self.client.on_subscribe = lambda *args: setattr(self, "_subscribed", True)
        self.client.on_connect = lambda client, *args: client.subscribe(topic, qos=0)
        self.client.connect_async(self.state.host, self.state.port, keepalive=30)
        self.client.loop_start()
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        while not self._subscribed:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no SUBACK for {topic} from mqtt://{self.state.host}:{self.state.port}")
            gevent.sleep(_POLL_S)
        self._expiry = gevent.spawn(self._expire_forever)

    def stop(self) -> None:
        if self._expiry is not None:
            self._expiry.kill(block=False)
        self.client.disconnect()
        self.client.loop_stop()

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        now = time.time()
        try:
            ack = codec.decode(Kind.INGEST_ACK, bytes(message.payload))
        except PayloadError:
            return  # not a receipt we can read: nothing to time
        assert isinstance(ack, IngestAck)
        got = self.state.receipts.receive(ack.source, ack.boot_id, ack.seq, now)
        if got is not None:
            fire(self.environment, "ingest", got.kind, got.latency_s * 1000, None)
        device = self.state.outboxes.get((ack.source, ack.boot_id))
        if device is not None:
            device.confirmed(ack.seq, now)

    def _expire_forever(self) -> None:
        timeout = float(self.state.options.sot_receipt_timeout)
        while True:
            gevent.sleep(_EXPIRE_EVERY_S)
            for m in self.state.receipts.expire(time.time(), timeout):
                error = ReceiptMissing(f"no receipt within {timeout:g} s")
                fire(self.environment, "ingest", m.kind, None, error)  # untimed: the histogram holds receipts only


# -- users ----------------------------------------------------------------------------------------
def _paced(user: Any) -> float:
    """Wait until the user's next tick is due (no catch-up bursts when the machine falls behind)."""
    return max(0.0, float(user.next_at) - time.monotonic())


class _FleetUser(MqttUser):  # type: ignore[misc]
    """A member of the scenario's fleet with its own connection, ticking at its fleet's interval."""

    abstract = True
    use_loop_selectors = True
    wait_time = _paced
    kind: UserKind = "device"
    client: SotClient

    def __init__(self, environment: Environment) -> None:
        state = _state(environment)
        self.state = state
        self.fleet = state.next_fleet(self.kind)
        self.source = state.next_id(self.fleet, self.kind)
        self.client_id = self.source  # type: ignore[assignment]  # MqttUser declares it None
        self.host, self.port = state.host, state.port
        self.username = state.url.username  # type: ignore[assignment]  # MqttUser declares them None
        self.password = state.url.password  # type: ignore[assignment]
        self.tls_context = _tls_context(state.url)  # type: ignore[assignment]
        super().__init__(environment)
        self.rng = random.Random(f"{self.source}-{time.time_ns()}")
        self.boot_id = self.rng.getrandbits(31)
        # Start each user's seq anywhere within one sample: short runs still get receipts.
        self.seq = self.rng.randrange(max(1, state.ack_every))
        self.interval_s = self.fleet.interval_s / float(state.options.sot_speed)
        self.jitter = min(max(float(state.options.sot_jitter), 0.0), 1.0)
        self.qos = int(state.options.sot_qos)
        self.client.warmup_until = state.warmup_until
        if self.qos == 1:  # QoS 0 has nothing to wait for: no outbox
            mode, size = state.options.sot_outbox, int(state.options.sot_outbox_size)
            self.client.outbox = Outbox(mode, size, resend_after_s=float(state.options.sot_receipt_timeout))
        self.next_at = 0.0

    def on_start(self) -> None:
        # Locust hands a worker each second's new users at once; devices that all dial in the same
        # millisecond overflow the broker's listen backlog (SYN retries: seconds of connect time).
        gevent.sleep(self.rng.uniform(0.0, CONNECT_SPREAD_S))
        self.client.start_network()
        if not self.client.connected.wait(CONNECT_TIMEOUT_S):
            error = ConnectionError(f"not connected after {CONNECT_TIMEOUT_S:g} s")
            fire(self.environment, "connect", self.kind, None, error)
            raise StopUser()
        if self.client.outbox is not None and self.state.receipt_outboxes:
            self.state.outboxes[(self.source, self.boot_id)] = self.client  # the receipt listener confirms
        phase = self.rng.uniform(0.0, self.interval_s)  # devices do not tick in step
        self.next_at = time.monotonic() + phase
        gevent.sleep(phase)

    def on_stop(self) -> None:
        """Wait a little for un-acknowledged messages (sending again what is overdue), count the rest, disconnect."""
        deadline = time.monotonic() + self.state.stop_wait_s
        while self.client.awaiting() and time.monotonic() < deadline:
            self.client.resend_overdue()
            gevent.sleep(_POLL_S)
        self.state.outboxes.pop((self.source, self.boot_id), None)
        self.client.give_up()
        self.client.disconnect()
        self.client.loop_stop()

    def _advance(self) -> None:
        step = self.interval_s * (1.0 + self.jitter * self.rng.uniform(-1.0, 1.0))
        self.next_at = max(self.next_at + step, time.monotonic())

    def _send(self, kind: str, topic: str, payload: bytes, seq: int, ts: float) -> None:
        """Publish (through the outbox at QoS 1), noting the message for its receipt when the engine samples its seq."""
        sampled = self.state.ack_every > 0 and seq % self.state.ack_every == 0
        if sampled:
            self.state.receipts.expect(
                message_name(kind, ts, self.state.warmup_until), self.source, self.boot_id, seq, ts
            )
        if self.client.outbox is not None:
            self.client.resend_overdue()  # older messages first
            sent = self.client.send(Entry(seq=seq, kind=kind, topic=topic, payload=payload, created_s=ts))
        else:
            sent = self.client.publish(topic, payload, qos=self.qos).rc == paho.MQTT_ERR_SUCCESS
        if sampled and not sent:
            self.state.receipts.forget(self.source, self.boot_id, seq)


class DeviceUser(_FleetUser):
    """One device, one connection: JSON telemetry every interval, now and then an event."""

    client_cls = SotClient
    kind: UserKind = "device"

    @task
    def tick(self) -> None:
        topics, fleet, rng = self.state.topics, self.fleet, self.rng
        if rng.random() < float(self.state.options.sot_event_share):
            self.seq += 1
            event_kind, code = fleet.event(rng.random())
            ts = time.time()
            event = DeviceEvent(
                device_id=self.source, ts=ts, boot_id=self.boot_id, seq=self.seq, kind=event_kind, code=code
            )
            self._send("event", topics.event(self.source), codec.encode(event), self.seq, ts)
        self.seq += 1
        ts = time.time()
        values = {s.name: round(s.baseline + s.noise_sd * rng.gauss(0.0, 1.0), 4) for s in fleet.sensors}
        reading = Telemetry(device_id=self.source, ts=ts, boot_id=self.boot_id, seq=self.seq, values=values)
        self._send("telemetry", topics.telemetry(self.source), codec.encode(reading), self.seq, ts)
        self._advance()


class GatewayUser(_FleetUser):
    """One gateway, one connection: a columnar batch with a reading of each of its devices every interval."""

    client_cls = GatewayClient
    kind: UserKind = "gateway"

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        n = self.fleet.devices_per_gateway
        self.roster = [f"{self.source}-{j:05d}" for j in range(n)]
        self.index = np.arange(n, dtype=np.uint32)
        self.baseline = {s.name: s.baseline for s in self.fleet.sensors}
        self.noise = {s.name: s.noise_sd for s in self.fleet.sensors}
        self.np_rng = np.random.default_rng(self.rng.getrandbits(63))

    @task
    def tick(self) -> None:
        n = len(self.roster)
        self.seq += 1
        ts = time.time()
        values: dict[str, npt.ArrayLike] = {
            k: self.baseline[k] + self.noise[k] * self.np_rng.standard_normal(n) for k in self.baseline
        }
        payload = codec.encode_batch(
            gateway_id=self.source,
            ts=ts,
            boot_id=self.boot_id,
            seq=self.seq,
            devices=self.roster,
            index=self.index,
            reading_ts=np.full(n, ts),
            reading_seq=np.full(n, self.seq),
            values=values,
        )
        self._send("batch", self.state.topics.batch(self.source), payload, self.seq, ts)
        self._advance()


# -- the shape -------------------------------------------------------------------------------------
class SotShape(LoadTestShape):  # type: ignore[misc]
    """``--sot-shape`` over the run's users (-u), spawn rate (-r) and run time (-t), then the drain."""

    use_common_options = True

    def __init__(self) -> None:
        super().__init__()
        self._plan: Plan | None = None

    def plan(self) -> Plan:
        if self._plan is None:
            if self.runner is None:
                raise RuntimeError("the shape runs inside a Locust runner")
            options = _parsed(self.runner.environment)
            if not options.run_time:
                raise ValueError("give the run time (-t/--run-time): every shape has an end")
            shape = parse_shape(
                options.sot_shape,
                users=int(options.num_users or 1),
                spawn_rate=float(options.spawn_rate or 1),
                duration_s=float(options.run_time),
            )
            self._plan = Plan(shape, drain_s=float(options.sot_drain))
            log.info("shape %s", self._plan.describe())
        return self._plan

    def tick(self) -> tuple[int, float] | None:
        return self.plan().at(self.get_run_time())


if __name__ == "__main__":
    from locust import run_single_user

    run_single_user(DeviceUser)
