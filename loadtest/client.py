"""The MQTT client of a load-test device or gateway: Locust's, with requests named by message kind,
and the device's outbox (:mod:`loadtest.outbox`) wired to paho.

Request types fired into Locust's statistics (see the locustfile for the table): ``publish`` once
per message (at the first PUBACK of any copy, or as a failure), ``resend`` per copy sent again,
``connect``, and ``outbox`` (``overflow``, ``unconfirmed``). paho's callbacks only update the
outbox and fire requests. Imported by the locustfile only: it loads Locust, and so gevent.
"""

from __future__ import annotations

import contextlib
import socket
import time
from typing import Any

import gevent.event
import paho.mqtt.client as paho
from locust.contrib.mqtt import MqttClient, PublishedMessageContext
from locust.env import Environment

from loadtest.outbox import Entry, Outbox

__all__ = [
    "WARMUP",
    "GatewayClient",
    "OutboxOverflow",
    "OutboxUnconfirmed",
    "PublishRefused",
    "PublishUnacknowledged",
    "SotClient",
    "fire",
    "message_name",
    "nodelay",
]

# paho's network loop wakes every second when idle; 10,000 idle wake-ups a second cost a core. A
# publish wakes the loop through paho's socket pair anyway, and keep-alive is 60 s.
LOOP_IDLE_WAKE_S = 10.0
WARMUP = "warm-up"  # the name of messages sent during --sot-warmup: counted, left out of the quantiles


class PublishRefused(Exception):
    """paho refused a publish (its return code says why)."""


class PublishUnacknowledged(Exception):
    """A publish the broker had not acknowledged when its device stopped."""


class OutboxOverflow(Exception):
    """A message dropped from a full outbox (the oldest goes first)."""


class OutboxUnconfirmed(Exception):
    """A message the broker acknowledged and the engine had not receipted when its device stopped."""


def fire(
    environment: Environment,
    request_type: str,
    name: str,
    ms: float | None,
    error: Exception | None,
    length: int = 0,
) -> None:
    """Fire one request into Locust's statistics (``ms`` None: untimed)."""
    hook: Any = environment.events.request  # Locust's event hooks are not annotated
    hook.fire(
        request_type=request_type, name=name, response_time=ms, response_length=length, exception=error, context={}
    )


def nodelay(client: paho.Client, userdata: Any, sock: Any) -> None:
    """Small messages must not wait for Nagle's algorithm (see docs/mqtt-field-notes)."""
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


# -- the MQTT client: Locust's, with requests named by message kind and an outbox ----------------
class SotClient(MqttClient):  # type: ignore[misc]
    """Locust's MQTT client with ``publish``/``connect`` request types named by message kind, not topic
    (a topic per device would make one statistics row per device), and the device's outbox.

    A message :meth:`send` publishes stays in :attr:`outbox` until acknowledged and goes out again on
    the next connection: paho's own copy is dropped when it reconnects (:meth:`_new_connection`), so
    that the outbox alone decides what is sent again, in order, within its bound. :meth:`publish`
    (Locust's) stays paho's as it was: a message nobody keeps but paho.
    """

    label = "device"
    warmup_until = 0.0  # set by the user: messages published before it are named WARMUP

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_socket_open = nodelay
        self.on_pre_connect = self._new_connection
        self.connect_started = time.time()
        self.connected_once = False
        self.connected = gevent.event.Event()  # set at the first CONNACK: a starting user waits on it
        self.outbox: Outbox | None = None  # set by a QoS 1 user
        self._copies: dict[int, int] = {}  # packet id -> seq: the outbox's copies on this connection
        self._connection = 0  # the number of the current (or next) connection
        self._dup = False  # the PUBLISH being written is a copy sent again
        self.max_inflight_messages_set(0)  # a copy goes on the wire at once: "sent" means sent

    def loop_start(self) -> Any:
        """Not yet: MqttUser's constructor calls this, but Locust may drop a user between building and
        starting it (a new spawn message kills the spawning greenlet), which would leave a connection
        nobody uses. The user connects when it starts (:meth:`start_network`)."""
        return paho.MQTT_ERR_SUCCESS

    def start_network(self) -> None:
        """Connect (asynchronously, as MqttUser set up) and start the network loop."""
        self.connect_started = time.time()
        super().loop_start()

    def _loop(self, timeout: float = 1.0) -> Any:
        return super()._loop(max(timeout, LOOP_IDLE_WAKE_S))

    def publish(
        self,
        topic: str,
        payload: paho.PayloadType | None = None,
        qos: int = 0,
        retain: bool = False,
        properties: Any = None,
    ) -> paho.MQTTMessageInfo:
        size = len(payload) if isinstance(payload, (bytes, bytearray, str)) else 0
        context = PublishedMessageContext(qos=qos, topic=topic, start_time=time.time(), payload_size=size)
        info = paho.Client.publish(self, topic, payload=payload, qos=qos, retain=retain, properties=properties)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            error = PublishRefused(paho.error_string(info.rc))
            fire(self.environment, "publish", self.name_of(context), None, error)
        else:
            self._publish_requests[info.mid] = context
        return info

    def name_of(self, context: PublishedMessageContext) -> str:
        return message_name(_kind(context.topic), context.start_time, self.warmup_until)

    def _entry_name(self, entry: Entry) -> str:
        return message_name(entry.kind, entry.created_s, self.warmup_until)

    # -- the outbox ---------------------------------------------------------------------------------
    def send(self, entry: Entry) -> bool:
        """Keep a new QoS 1 message in the outbox and publish it; False when paho refused it outright.

        Without a connection (or before its CONNACK) it only waits in the outbox: the CONNACK sends the
        backlog oldest first, so that nothing new overtakes what waited."""
        assert self.outbox is not None, "send() is for a client with an outbox"
        for old in self.outbox.put(entry):
            self._overflowed(old)
        return self._transmit(entry) if self.is_connected() else True

    def _transmit(self, entry: Entry) -> bool:
        """Publish a copy of an outbox message, with DUP when an earlier copy went out."""
        assert self.outbox is not None
        if entry.seq not in self.outbox:
            return True  # acknowledged (or dropped) while the caller held it: nothing to send
        self._dup = entry.copies > 0
        try:
            info = paho.Client.publish(self, entry.topic, payload=entry.payload, qos=1)
        finally:
            self._dup = False
        if info.rc == paho.MQTT_ERR_SUCCESS:
            self._copies[info.mid] = entry.seq
            if self.outbox.sent(entry.seq, time.monotonic(), self._connection):
                fire(self.environment, "resend", self._entry_name(entry), None, None)
            return True
        if info.rc == paho.MQTT_ERR_NO_CONN:  # the connection just went: it goes out after the next CONNACK
            self._copies[info.mid] = entry.seq
            return True
        self.outbox.drop(entry.seq)
        if not entry.acked:
            fire(self.environment, "publish", self._entry_name(entry), None, PublishRefused(paho.error_string(info.rc)))
        return False

    def _send_publish(
        self,
        mid: int,
        topic: bytes,
        payload: bytes | bytearray = b"",
        qos: int = 0,
        retain: bool = False,
        dup: bool = False,
        info: paho.MQTTMessageInfo | None = None,
        properties: Any = None,
    ) -> Any:
        """paho's PUBLISH packet, DUP set on an outbox copy sent again (paho's publish() takes no DUP)."""
        return super()._send_publish(mid, topic, payload, qos, retain, dup or self._dup, info, properties)

    def _new_connection(self, client: Any, userdata: Any) -> None:
        """Before each connection: take the outbox's copies out of paho's queue. paho would send them
        again itself after the CONNACK, outside the outbox's bound and books; the outbox does it."""
        self._connection += 1
        if self._copies:
            with self._out_message_mutex:  # paho's own lock over its queue of QoS > 0 messages
                for mid in self._copies:
                    self._out_messages.pop(mid, None)
            self._copies.clear()

    def _send_backlog(self) -> None:
        """After a CONNACK: every outbox message not yet sent on this connection, oldest first."""
        if self.outbox is not None:
            for entry in self.outbox.backlog(self._connection):
                self._transmit(entry)

    def resend_overdue(self) -> None:
        """Receipt mode: send again what the engine has not receipted in time (only while connected)."""
        if self.outbox is not None and self.is_connected():
            for entry in self.outbox.overdue(time.monotonic()):
                self._transmit(entry)

    def confirmed(self, seq: int, now: float) -> None:
        """The engine's receipt for ``seq`` (receipt mode): the message leaves the outbox."""
        if self.outbox is None:
            return
        entry = self.outbox.confirm(seq)
        if entry is not None and not entry.acked:  # the engine has it, though no PUBACK reached us
            fire(self.environment, "publish", self._entry_name(entry), (now - entry.created_s) * 1000, None)

    def awaiting(self) -> bool:
        """Whether anything sent is still waiting for its acknowledgement (PUBACK, or receipt)."""
        return bool(self._publish_requests) or bool(self.outbox)

    def give_up(self) -> None:
        """The device stops: count what is still unacknowledged as failed, once per message."""
        for context in list(self._publish_requests.values()):
            error = PublishUnacknowledged("no PUBACK before the device disconnected")
            fire(self.environment, "publish", self.name_of(context), None, error)
        self._publish_requests.clear()
        if self.outbox is None:
            return
        for entry in self.outbox.clear():
            if entry.acked:
                unconfirmed = OutboxUnconfirmed("no receipt before the device disconnected")
                fire(self.environment, "outbox", "unconfirmed", None, unconfirmed)
            else:
                error = PublishUnacknowledged("no PUBACK before the device disconnected")
                fire(self.environment, "publish", self._entry_name(entry), None, error)

    def _overflowed(self, entry: Entry) -> None:
        error = OutboxOverflow(f"outbox full ({self.outbox.capacity if self.outbox else 0} messages): oldest dropped")
        fire(self.environment, "outbox", "overflow", None, error)
        if not entry.acked:  # it will never be acknowledged: its publish failed
            fire(self.environment, "publish", self._entry_name(entry), None, error)

    # -- callbacks (paho's network loop) --------------------------------------------------------------
    def _on_publish_cb(self, client: Any, userdata: Any, mid: int) -> None:
        now = time.time()
        seq = self._copies.pop(mid, None)
        if seq is not None:
            assert self.outbox is not None
            entry = self.outbox.acknowledge(seq)
            if entry is not None:  # the first PUBACK of any copy: the message counts once
                ms = (now - entry.created_s) * 1000
                fire(self.environment, "publish", self._entry_name(entry), ms, None, len(entry.payload))
            return
        context = self._publish_requests.pop(mid, None)
        if context is None:
            fire(self.environment, "publish", "unknown", None, AssertionError(f"no record of message id {mid}"))
            return
        ms = (now - context.start_time) * 1000
        fire(self.environment, "publish", self.name_of(context), ms, None, context.payload_size)

    def _on_connect_cb(self, client: Any, userdata: Any, flags: Any, rc: Any) -> None:
        now = time.time()
        error = None if rc == 0 else ConnectionError(f"CONNACK {rc}")
        name = self.label if not self.connected_once else "reconnect"
        fire(self.environment, "connect", name, (now - self.connect_started) * 1000, error)
        self.connected_once = self.connected_once or error is None
        if error is None:
            self.connected.set()
            self._send_backlog()
        self.connect_started = now  # a reconnect counts from here

    def _on_disconnect_cb(self, client: Any, userdata: Any, rc: Any) -> None:
        if rc != 0:  # a normal disconnect is no request; a lost connection is a failure
            fire(self.environment, "connect", "lost", None, ConnectionError(f"connection lost: {rc}"))
            self.connect_started = time.time()


class GatewayClient(SotClient):  # type: ignore[misc]
    label = "gateway"


def _kind(topic: str) -> str:
    return topic.rsplit("/", 1)[-1]


def message_name(kind: str, sent_s: float, warmup_until: float) -> str:
    """The statistics row of a message: its kind, or WARMUP while the load is still building up."""
    return WARMUP if sent_s < warmup_until else kind
