"""The world's one MQTT adapter (paho 2.x): publish QoS 1 with a bounded backlog, receive into a queue.

paho callbacks only enqueue. Each run uses its own client id and starts clean: the world is new
every run. Over MQTT 5 its session outlives a dropped connection for :data:`SESSION_EXPIRY_S`, so
what the broker queued for the world meanwhile (the engine's outputs) waits for it; after every
reconnect the world subscribes again (a broker that lost its state has forgotten the
subscriptions too) and :attr:`WorldTransport.connects` tells the barrier to send its open step
again. It also reads the broker's count of dropped messages (:attr:`WorldTransport.broker_drops`):
a step the broker threw away is sent again too.
"""

from __future__ import annotations

import contextlib
import queue
import secrets
import socket
import ssl
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from contracts.broker_stats import SYS_DROPPED, DropCount
from harness.errors import BrokerError

if TYPE_CHECKING:
    from harness.broker import BrokerUrl

__all__ = ["WorldTransport", "handshake", "secure"]

MAX_UNACKED = 2000
SESSION_EXPIRY_S = 600
"""How long (MQTT 5) the broker keeps the world's session and queue while it is disconnected."""


class WorldTransport:
    """Publishes the world's messages and collects the engine's."""

    def __init__(self, host: str, port: int, *, protocol: int = 5, login: BrokerUrl | None = None) -> None:
        """``login``: the user, password and TLS files of :func:`secure` (``host``/``port`` still rule)."""
        self.host, self.port = host, port
        self.protocol = protocol
        self.inbox: queue.SimpleQueue[tuple[str, bytes]] = queue.SimpleQueue()
        self._client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"sot-world-{uuid.uuid4().hex[:8]}",
            protocol=paho.MQTTv5 if protocol == 5 else paho.MQTTv311,
        )
        self._client.max_inflight_messages_set(1000)
        self._client.max_queued_messages_set(0)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.on_publish = self._on_publish
        self._client.on_socket_open = _nodelay
        if login is not None:
            secure(self._client, login)
        self._connack: tuple[bool, str] | None = None
        self._unacked = 0
        self._lock = threading.Condition()
        self._subscriptions: list[str] = []
        self.published = 0
        self.broker_drops = DropCount()
        self.dropped_at = 0.0  # time.monotonic() of the latest growth of the broker's dropped count
        self.connects = 0
        """Successful connections so far: more than one means the connection dropped and came back."""

    def connect(self, subscriptions: list[str], timeout_s: float = 10.0) -> None:
        """Connect and subscribe; raise :class:`BrokerError` with what to do next on failure."""
        properties = None
        if self.protocol == 5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = SESSION_EXPIRY_S
        try:
            self._client.connect(self.host, self.port, keepalive=30, properties=properties)
        except (OSError, ssl.SSLError) as exc:
            raise BrokerError(f"cannot reach the MQTT broker at {self.host}:{self.port}: {exc}") from exc
        self._client.loop_start()
        deadline = time.monotonic() + timeout_s
        while self._connack is None and time.monotonic() < deadline:
            time.sleep(0.01)
        if self._connack is None or not self._connack[0]:
            self.close()
            raise BrokerError(f"the broker at {self.host}:{self.port} refused the world: {self._connack}")
        done = threading.Event()
        self._client.on_subscribe = lambda *args: done.set()
        self._subscriptions = list(subscriptions)
        self._client.subscribe(self._filters())
        if not done.wait(timeout_s):
            raise BrokerError("no SUBACK from the broker")

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        self._connack = (not reason.is_failure, str(reason))
        if reason.is_failure:
            return
        if self._subscriptions:  # a reconnect: the broker may have lost the subscriptions with its state
            client.subscribe(self._filters())
        self.connects += 1

    def _filters(self) -> list[tuple[str, int]]:
        return [(f, 1) for f in self._subscriptions] + [(SYS_DROPPED, 0)]

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        if message.topic == SYS_DROPPED:  # the broker's own count, not the engine's
            if self.broker_drops.observe(bytes(message.payload)):
                self.dropped_at = time.monotonic()
            return
        self.inbox.put((message.topic, bytes(message.payload)))

    def _on_publish(self, client: paho.Client, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        with self._lock:
            self._unacked -= 1
            self._lock.notify_all()

    def publish(self, topic: str, payload: bytes, timeout_s: float = 60.0) -> None:
        """Publish at QoS 1, waiting while too many are un-acknowledged (never a silent drop)."""
        with self._lock:
            if not self._lock.wait_for(lambda: self._unacked < MAX_UNACKED, timeout_s):
                raise BrokerError(f"broker has not acknowledged {self._unacked} messages for {timeout_s} s")
            self._unacked += 1
        info = self._client.publish(topic, payload, qos=1)
        # Not connected: paho keeps the message and sends it once the connection is back.
        if info.rc not in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN):
            raise BrokerError(f"publish to {topic} refused: {paho.error_string(info.rc)}")
        self.published += 1

    def flush(self, timeout_s: float = 60.0) -> None:
        """Wait until the broker has acknowledged everything published."""
        with self._lock:
            if not self._lock.wait_for(lambda: self._unacked == 0, timeout_s):
                raise BrokerError(f"{self._unacked} messages not acknowledged by the broker after {timeout_s} s")

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def _nodelay(client: paho.Client, userdata: Any, sock: Any) -> None:
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def secure(client: paho.Client, url: BrokerUrl) -> None:
    """Give ``client`` the user name, password and TLS settings of ``url`` (TLS verifies the host name)."""
    if url.username is not None:
        client.username_pw_set(url.username, url.password)
    if url.tls:
        try:
            client.tls_set(
                ca_certs=None if url.ca is None else str(url.ca),
                certfile=None if url.cert is None else str(url.cert),
                keyfile=None if url.key is None else str(url.key),
                cert_reqs=ssl.CERT_REQUIRED,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise BrokerError(f"cannot use the TLS files of {url}: {exc}") from exc


def handshake(url: BrokerUrl, timeout_s: float, protocol: int = 4) -> str | None:
    """Do one clean-session CONNECT to ``url`` (with its login and TLS), MQTT 3.1.1 (``protocol`` 4)
    or 5; None on CONNACK success, else the reason."""
    host, port = url.host, url.port
    deadline = time.monotonic() + timeout_s
    outcome: list[str | None] = []

    def on_connect(client: paho.Client, userdata: object, flags: object, reason_code: object, props: object) -> None:
        failed = getattr(reason_code, "is_failure", False)
        outcome.append(f"the broker refused the connection ({reason_code})" if failed else None)

    v5 = protocol == 5
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"sot-probe-{secrets.token_hex(6)}",
        clean_session=None if v5 else True,
        protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
    )
    client.on_connect = on_connect
    client.connect_timeout = max(timeout_s, 0.001)
    secure(client, url)
    try:
        client.connect(host, port, keepalive=max(5, int(timeout_s) + 1))
    except ConnectionRefusedError:
        return "connection refused"
    except TimeoutError:
        return f"no TCP connection within {timeout_s:g} s"
    except ssl.SSLError as exc:
        return f"TLS handshake failed ({exc.reason or exc})"
    except OSError as exc:
        return str(exc) or type(exc).__name__
    try:
        while not outcome:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return f"no CONNACK within {timeout_s:g} s"
            rc = client.loop(timeout=min(remaining, 0.05))
            if rc != paho.MQTT_ERR_SUCCESS and not outcome:
                return f"the connection closed before CONNACK ({paho.error_string(rc)})"
        return outcome[0]
    finally:
        _close_quietly(client)


def _close_quietly(client: paho.Client) -> None:
    """Send DISCONNECT if connected and close the probe's socket, without raising."""
    with contextlib.suppress(Exception):
        if client.is_connected():
            client.disconnect()
            client.loop(timeout=0.01)
    sock = client.socket()
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.close()
