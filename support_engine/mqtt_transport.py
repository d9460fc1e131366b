"""The engine's one MQTT adapter (paho 2.x): persistent session, QoS 1, acknowledged after commit.

paho callbacks only enqueue; all engine work happens on the caller's thread. MQTT 5 with a fixed
client id, ``clean_start=False`` and a session expiry, so that messages queued while the engine is
down are delivered when it returns; MQTT 3.1.1 brokers get ``clean_session=False``. MQTT 5 also
sends a Receive Maximum, so that the engine knows how many un-acknowledged messages the broker may
hand it (:attr:`MqttTransport.receive_window`; unknown on 3.1.1, where the broker's own setting rules).
A :class:`MqttLogin` adds a user name and password and TLS (verified against a CA, with an optional
client certificate). Beside its own topics it reads the broker's count of dropped messages
(:data:`~contracts.broker_stats.SYS_DROPPED`, QoS 0) into :attr:`MqttTransport.broker_drops`.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from contracts.broker_stats import SYS_DROPPED, DropCount
from support_engine.errors import TransportError
from support_engine.transport import Delivery

__all__ = ["RECEIVE_MAXIMUM", "Delivery", "MqttLogin", "MqttTransport", "Protocol"]

Protocol = Literal["auto", "5", "3.1.1"]
RECEIVE_MAXIMUM = 1000
"""MQTT 5 Receive Maximum the engine asks for: the broker hands it at most this many un-acknowledged
QoS 1 messages (Mosquitto takes it in place of its ``max_inflight_messages``)."""


@dataclass(frozen=True)
class MqttLogin:
    """How the engine proves who it is and checks who the broker is: user and password, TLS files.

    ``tls`` without ``ca`` verifies the broker against the system's CAs; ``cert``/``key`` are the
    engine's client certificate, for a broker that asks for one."""

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None

    @property
    def scheme(self) -> str:
        return "mqtts" if self.tls else "mqtt"

    def apply(self, client: paho.Client) -> None:
        """Set the login on a paho client; raise :class:`TransportError` for unusable TLS files."""
        if self.username is not None:
            client.username_pw_set(self.username, self.password)
        if not self.tls:
            return
        try:
            client.tls_set(
                ca_certs=None if self.ca is None else str(self.ca),
                certfile=None if self.cert is None else str(self.cert),
                keyfile=None if self.key is None else str(self.key),
                cert_reqs=ssl.CERT_REQUIRED,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        except (OSError, ValueError) as exc:
            raise TransportError(f"cannot use the TLS files (ca={self.ca}, cert={self.cert}): {exc}") from exc


class MqttTransport:
    """A connected paho client; inbound messages wait in :attr:`inbox` until acknowledged."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        client_id: str,
        protocol: Protocol = "auto",
        session_expiry_s: int = 3600,
        keepalive_s: int = 30,
        receive_maximum: int = RECEIVE_MAXIMUM,
        login: MqttLogin | None = None,
        watch_broker: bool = True,
    ) -> None:
        if not 1 <= receive_maximum <= 65535:
            raise ValueError(f"receive_maximum must be 1-65535, not {receive_maximum}")
        self.host, self.port, self.client_id = host, port, client_id
        self.protocol = protocol
        self.session_expiry_s = session_expiry_s
        self.keepalive_s = keepalive_s
        self.receive_maximum = receive_maximum
        self.login = login or MqttLogin()
        self.receive_window: int | None = None  # once connected: at most this many un-acknowledged deliveries
        self.inbox: queue.SimpleQueue[Delivery] = queue.SimpleQueue()
        self.session_present = False
        self.connected = threading.Event()
        self.lost = threading.Event()
        self._connack: tuple[bool, str] | None = None
        self._client: paho.Client | None = None
        self.version = ""
        # Reconnects: paho's loop reconnects by itself; every connection after the first subscribes
        # again (a broker that lost our session lost our subscriptions with it) and counts.
        self.connects = 0  # CONNACKs accepted
        self.sessions_lost = 0  # reconnects on which the broker had no session for us
        self.dropped = 0  # QoS 0 messages (dead letters, receipts) not sent while disconnected
        self.watch_broker = watch_broker
        self.broker_drops = DropCount()  # the broker's $SYS count of dropped messages, as it comes
        self._filters: list[tuple[str, int]] = []
        self._generation = 0  # of the connection; a delivery's mid carries it (see :meth:`ack`)

    # -- lifecycle ------------------------------------------------------------------------------
    def connect(self, timeout_s: float = 10.0) -> None:
        """Connect (MQTT 5 first when ``auto``), raising :class:`TransportError` on failure."""
        versions = ["5", "3.1.1"] if self.protocol == "auto" else [self.protocol]
        last = ""
        for version in versions:
            try:
                self._connect(version, timeout_s)
                self.version = version
                self.receive_window = self.receive_maximum if version == "5" else None
                return
            except TransportError as exc:
                last = str(exc)
        raise TransportError(last)

    def _connect(self, version: str, timeout_s: float) -> None:
        v5 = version == "5"
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
            clean_session=None if v5 else False,
            manual_ack=True,
        )
        client.max_inflight_messages_set(1000)
        client.max_queued_messages_set(0)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_socket_open = _nodelay
        self.login.apply(client)
        self._connack = None
        self.connected.clear()
        properties = None
        if v5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = self.session_expiry_s
            properties.ReceiveMaximum = self.receive_maximum  # the broker delivers at most this many un-acknowledged
        try:
            if v5:
                client.connect(self.host, self.port, self.keepalive_s, clean_start=False, properties=properties)
            else:
                client.connect(self.host, self.port, self.keepalive_s)
        except OSError as exc:
            raise TransportError(f"cannot connect to {self._where}: {exc}") from exc
        client.loop_start()
        deadline = time.monotonic() + timeout_s
        while self._connack is None and time.monotonic() < deadline:
            time.sleep(0.01)
        if self._connack is None or not self._connack[0]:
            client.loop_stop()
            client.disconnect()
            why = self._connack[1] if self._connack else f"no CONNACK within {timeout_s} s"
            raise TransportError(f"MQTT {version} connect to {self._where} failed: {why}")
        self._client = client

    @property
    def _where(self) -> str:
        user = "" if self.login.username is None else f"{self.login.username}@"
        return f"{self.login.scheme}://{user}{self.host}:{self.port}"

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        ok = not reason.is_failure
        self._connack = (ok, str(reason))
        if ok:
            self.session_present = bool(flags.session_present)
            self.connects += 1
            self._generation += 1
            if self.connects > 1:  # a reconnect: subscribe again, whatever the broker kept
                if not self.session_present:
                    self.sessions_lost += 1
                if self._filters:
                    client.subscribe(self._filters)
            self.lost.clear()
            self.connected.set()

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        self.connected.clear()
        self.lost.set()
        if self._connack is None:
            self._connack = (False, str(reason))

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        if message.topic == SYS_DROPPED:  # the broker's own count (QoS 0): not a message for the engine
            self.broker_drops.observe(bytes(message.payload))
            return
        mid = (self._generation << 16) | message.mid  # a packet id is 16 bits: the connection's number above it
        self.inbox.put(Delivery(message.topic, bytes(message.payload), mid, message.qos, bool(message.dup)))

    def subscribe(self, filters: list[str], qos: int = 1, timeout_s: float = 10.0) -> None:
        """Subscribe to ``filters`` and wait for the broker's SUBACK."""
        client = self._require()
        done = threading.Event()
        client.on_subscribe = lambda *args: done.set()
        self._filters = [(f, qos) for f in filters] + ([(SYS_DROPPED, 0)] if self.watch_broker else [])
        rc, _ = client.subscribe(self._filters)
        if rc != paho.MQTT_ERR_SUCCESS or not done.wait(timeout_s):
            raise TransportError(f"subscribe to {filters} failed (rc={rc})")

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> paho.MQTTMessageInfo:
        """Queue ``payload`` for ``topic``; raise when paho refuses it (never a silent drop).

        While the connection is down a QoS 1 message waits in paho's queue and goes out on the next
        connection (the engine's outputs are QoS 1); a QoS 0 one (a dead letter's copy, a receipt) is
        not sent and is counted in :attr:`dropped`."""
        info = self._require().publish(topic, payload, qos=qos)
        if info.rc == paho.MQTT_ERR_NO_CONN:
            if qos == 0:
                self.dropped += 1
            return info
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise TransportError(f"publish to {topic} refused: {paho.error_string(info.rc)}")
        return info

    def ack(self, mid: int, qos: int) -> None:
        """Acknowledge an inbound message (after it is committed).

        A delivery of an earlier connection is not acknowledged: its packet id may name another
        message on this one, and the broker delivers it again (the engine takes that copy for a
        duplicate and acknowledges it)."""
        if qos > 0 and mid >> 16 == self._generation:
            self._require().ack(mid & 0xFFFF, qos)

    def close(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None

    def _require(self) -> paho.Client:
        if self._client is None:
            raise TransportError("not connected")
        return self._client


def _nodelay(client: paho.Client, userdata: Any, sock: Any) -> None:
    """Disable Nagle: small QoS 1 messages must not wait for delayed ACKs."""
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
