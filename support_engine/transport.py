"""What the engine needs of a broker connection, and an in-memory twin of one for tests and benchmarks.

:class:`~support_engine.mqtt_transport.MqttTransport` is the real one (paho). :class:`MemoryTransport`
plays broker and connection at once: messages offered to it wait in a queue and are handed to the
engine while fewer than ``window`` of them are un-acknowledged, as a broker's in-flight window does.
"""

from __future__ import annotations

import collections
import queue
from typing import NamedTuple, Protocol

__all__ = ["Delivery", "MemoryTransport", "Transport"]


class Delivery(NamedTuple):
    """One inbound message; ``mid`` and ``qos`` acknowledge it."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    dup: bool


class Transport(Protocol):
    """A connection to a broker; inbound messages wait in :attr:`inbox` until acknowledged."""

    inbox: queue.SimpleQueue[Delivery]
    version: str  # "5" or "3.1.1" once connected
    session_present: bool
    receive_window: int | None  # un-acknowledged QoS 1 messages the broker may deliver at most; None: unknown

    def connect(self) -> None: ...

    def subscribe(self, filters: list[str]) -> None: ...

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> object: ...

    def ack(self, mid: int, qos: int) -> None: ...


class MemoryTransport:
    """A broker and the engine's connection to it in one object, in memory (no threads)."""

    def __init__(
        self,
        *,
        window: int | None = 1000,
        version: str = "5",
        session_present: bool = False,
        asked: int | None = None,
    ) -> None:
        """``window``: un-acknowledged deliveries at most (None: no limit); ``asked``: the window the
        connection reports (MQTT 5's Receive Maximum; default ``window``, and None on 3.1.1), which a
        broker may grant less of."""
        if window is not None and window < 1:
            raise ValueError(f"window must be >= 1 or None, not {window}")
        self.inbox: queue.SimpleQueue[Delivery] = queue.SimpleQueue()
        self.version = version
        self.session_present = session_present
        self.receive_window = None if version != "5" else window if asked is None else asked
        self.window = window
        self.published: list[tuple[str, bytes, int]] = []  # what the engine sent
        self.acked: list[int] = []  # mids, in the order the engine acknowledged them
        self.subscriptions: list[str] = []
        self.in_flight: dict[int, Delivery] = {}  # delivered, not acknowledged yet, by mid
        self._queued: collections.deque[tuple[str, bytes, int]] = collections.deque()
        self._mid = 0

    @property
    def unacked(self) -> int:
        """QoS 1 messages delivered and not acknowledged yet."""
        return len(self.in_flight)

    @property
    def queued(self) -> int:
        """Messages offered but held back by the window."""
        return len(self._queued)

    def offer(self, topic: str, payload: bytes, qos: int = 1) -> None:
        """A message for the engine arrives at the broker: delivered now if the window allows, else later."""
        self._queued.append((topic, payload, qos))
        self._pump()

    def hand_over(self, successor: MemoryTransport) -> None:
        """The session outlives this connection: ``successor`` gets what was delivered and not
        acknowledged (again, first), then what is still queued."""
        for d in self.in_flight.values():
            successor.offer(d.topic, d.payload, d.qos)
        for topic, payload, qos in self._queued:
            successor.offer(topic, payload, qos)
        self.in_flight.clear()
        self._queued.clear()

    def connect(self) -> None:
        pass

    def subscribe(self, filters: list[str]) -> None:
        self.subscriptions += filters

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        self.published.append((topic, payload, qos))

    def ack(self, mid: int, qos: int) -> None:
        if qos > 0:
            if self.in_flight.pop(mid, None) is None:
                raise ValueError(f"mid {mid} is not an un-acknowledged delivery")
            self.acked.append(mid)
            self._pump()

    def _pump(self) -> None:
        while self._queued and (self.window is None or self._queued[0][2] == 0 or len(self.in_flight) < self.window):
            topic, payload, qos = self._queued.popleft()
            mid = 0
            if qos > 0:
                self._mid += 1
                mid = self._mid
            d = Delivery(topic, payload, mid, qos, False)
            if qos > 0:
                self.in_flight[mid] = d
            self.inbox.put(d)
