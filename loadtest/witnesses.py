"""The two witnesses besides Locust: the engine (its ``/metrics``) and the broker (its ``$SYS`` counters).

:func:`start_engine` runs the engine as its own process on the wall clock, with ingest receipts and
its HTTP API; :func:`scrape` reads its counters. :class:`BrokerWatch` is the runner's own MQTT
connection: it keeps the broker's latest ``$SYS`` counters and counts what the engine publishes, so
that the devices' PUBLISH packets can be told from the engine's. It subscribes again after each
reconnect, and a broker restarted mid-run (its counters start again from 0) has the previous
one's last counts added to its own. :class:`Sampler` reads both witnesses about once a second for
the report's time series.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from contracts.engine_config import EngineConfig
from contracts.topics import DEFAULT_PREFIX, Topics
from harness.broker import BrokerUrl
from harness.engine_process import EngineProcess
from harness.errors import BrokerError
from harness.mqtt_transport import secure
from loadtest.errors import LoadTestError
from loadtest.report import BrokerCounts, EngineCounts, parse_metrics
from loadtest.timeline import BrokerReading, Sample

__all__ = ["BrokerWatch", "Sampler", "StartedEngine", "free_port", "scrape", "start_engine"]


@dataclass
class StartedEngine:
    """The engine process a load test started, and where its metrics are."""

    process: EngineProcess
    metrics_url: str

    def stop(self) -> None:
        self.process.stop()


def start_engine(
    broker: BrokerUrl,
    workdir: Path,
    config: EngineConfig,
    *,
    prefix: str = DEFAULT_PREFIX,
    ack_every: int = 10,
    client_id: str = "sot-loadtest-engine",
    timeout_s: float = 30.0,
) -> StartedEngine:
    """Start ``python -m support_engine`` on the wall clock with receipts and ``/metrics``; return it once
    it has subscribed (its session holds what comes from then on) and serves its metrics."""
    workdir.mkdir(parents=True, exist_ok=True)
    for stale in workdir.glob("engine.sqlite*"):
        stale.unlink()
    (workdir / "engine-config.json").write_bytes(msgspec.json.encode(config))
    port = free_port()
    args = [
        "--broker", str(broker), "--db", str(workdir / "engine.sqlite"), "--clock", "wall",
        "--config", str(workdir / "engine-config.json"), "--prefix", prefix, "--client-id", client_id,
        "--protocol", "5", "--http", str(port), "--ack-every", str(ack_every), "--log-level", "INFO",
    ]  # fmt: skip
    log = workdir / "engine.log"
    log.unlink(missing_ok=True)
    process = EngineProcess(args, log)
    engine = StartedEngine(process, f"http://127.0.0.1:{port}/metrics")
    deadline = time.monotonic() + timeout_s
    try:
        while "engine connected" not in process.log_tail(200) or scrape(engine.metrics_url) is None:
            if not process.alive():
                raise LoadTestError(f"the engine exited; its log ends with:\n{process.log_tail()}")
            if time.monotonic() > deadline:
                raise LoadTestError(f"the engine was not ready after {timeout_s:g} s:\n{process.log_tail()}")
            time.sleep(0.1)
    except BaseException:
        process.stop()
        raise
    return engine


def scrape(url: str, timeout_s: float = 5.0) -> EngineCounts | None:
    """The engine's counters from its ``/metrics``, or None when it does not answer."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return parse_metrics(response.read().decode())
    except (OSError, urllib.error.URLError, ValueError):
        return None


_SYS_TOPICS = {
    "$SYS/broker/publish/messages/received": "received",
    "$SYS/broker/publish/messages/sent": "sent",
    "$SYS/broker/publish/messages/dropped": "dropped",
    "$SYS/broker/clients/connected": "connected",
}
_CUMULATIVE = ("received", "sent", "dropped")  # counted since the broker started; "connected" is a level
_HEARTBEAT = "$SYS/broker/uptime"  # published every sys_interval, changed or not: when the counters were current


class BrokerWatch:
    """The runner's own connection: the broker's ``$SYS`` counters and a count of the engine's publishes."""

    def __init__(self, url: BrokerUrl, topics: Topics) -> None:
        self.url, self.topics = url, topics
        self._values: dict[str, float] = {}
        self._raw: dict[str, float] = {}  # the values as the current broker process counts them
        self._carried: dict[str, float] = {}  # what earlier broker processes had counted (restarts)
        self._updated: dict[str, float] = {}
        self._beat_unix: float | None = None  # wall time of the broker's last $SYS publication
        self.connected_max = 0.0
        self.engine_publishes = 0
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"sot-loadtest-watch-{os.getpid()}")
        self._client.on_message = self._on_message
        self._client.on_subscribe = lambda *args: self._ready.set()
        self._client.on_connect = self._on_connect
        secure(self._client, url)
        p = topics.prefix
        self._filters = [
            (f, 0) for f in (*_SYS_TOPICS, _HEARTBEAT, f"{p}/engine/#", f"{p}/dev/+/cmd", f"{p}/clock/ack")
        ]

    def start(self, timeout_s: float = 10.0) -> None:
        try:
            self._client.connect(self.url.host, self.url.port, keepalive=30)
        except OSError as exc:
            raise BrokerError(f"cannot reach the broker at {self.url}: {exc}") from exc
        self._client.loop_start()
        if not self._ready.wait(timeout_s):
            self.stop()
            raise BrokerError(f"the broker at {self.url} did not acknowledge the runner's subscriptions")
        deadline = time.monotonic() + 2.0  # retained $SYS values follow the SUBACK (none: not Mosquitto)
        while "received" not in self._values and time.monotonic() < deadline:
            time.sleep(0.02)

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        """Subscribe on every connection: a broker that restarted has forgotten the subscriptions."""
        if not reason.is_failure:
            client.subscribe(self._filters)

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        name = _SYS_TOPICS.get(message.topic)
        with self._lock:
            self._beat_unix = time.time() if message.topic.startswith("$SYS/") else self._beat_unix
            if message.topic == _HEARTBEAT:
                return
            if name is None:
                self.engine_publishes += 1
                return
            with contextlib.suppress(ValueError):
                value = float(message.payload)
                if name in _CUMULATIVE:
                    if value < self._raw.get(name, 0.0):  # a new broker process counts from 0 again
                        self._carried[name] = self._carried.get(name, 0.0) + self._raw[name]
                    self._raw[name] = value
                    value += self._carried.get(name, 0.0)
                self._values[name] = value
                self._updated[name] = time.monotonic()
                if name == "connected":
                    self.connected_max = max(self.connected_max, self._values[name])

    def counts(self) -> BrokerCounts:
        with self._lock:
            v = self._values
            return BrokerCounts(v.get("received"), v.get("sent"), v.get("dropped"), self.connected_max or None)

    def reading(self) -> BrokerReading:
        """The counters with the wall time the broker last published its ``$SYS`` tree (None: not yet)."""
        with self._lock:
            v, beat = self._values, self._beat_unix
            counts = BrokerCounts(v.get("received"), v.get("sent"), v.get("dropped"), self.connected_max or None)
            connected = v.get("connected")
        return BrokerReading(beat, counts, None if connected is None else int(connected))

    def connected(self) -> int | None:
        with self._lock:
            value = self._values.get("connected")
        return None if value is None else int(value)

    def settled(self, wait_s: float = 1.2) -> BrokerCounts:
        """The counters once they are current. The broker republishes a ``$SYS`` value each ``sys_interval``
        (1 s on the load broker) only when it changed: wait that long for a newer one, then take what is there."""
        since = time.monotonic()
        deadline = since + wait_s
        while time.monotonic() < deadline:
            with self._lock:
                updated = self._updated.get("received", 0.0)
            if updated > since:
                break
            time.sleep(0.05)
        return self.counts()


class Sampler:
    """Both witnesses' cumulative counters, read about once a second while Locust runs.

    Counters, not rates: :mod:`loadtest.timeline` takes the differences, so that a sample missed or
    late changes the resolution, never the totals.
    """

    def __init__(self, metrics_url: str | None, watch: BrokerWatch) -> None:
        self.metrics_url, self.watch = metrics_url, watch
        self.samples: list[Sample] = []

    def sample(self) -> Sample:
        engine = scrape(self.metrics_url, timeout_s=1.0) if self.metrics_url else None
        taken = Sample(time.time(), engine, self.watch.reading())
        self.samples.append(taken)
        return taken

    def ingested_per_s(self) -> float | None:
        """The engine's ingest rate between the last two samples that reached it."""
        seen = [s for s in self.samples[-4:] if s.engine is not None]
        if len(seen) < 2 or seen[-1].t_unix <= seen[-2].t_unix:
            return None
        a, b = seen[-2], seen[-1]
        assert a.engine is not None and b.engine is not None
        return (b.engine.ingested - a.engine.ingested) / (b.t_unix - a.t_unix)


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
