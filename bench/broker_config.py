"""Measure what the harness's no-loss Mosquitto configuration costs against Mosquitto's defaults, in one run.

Three configurations, each on a broker started fresh (its own port and persistence directory) for
every workload, interleaved (defaults, no-loss, snapshot, defaults, ...) so that the noise of a
shared machine hits them alike:

- ``defaults``: Mosquitto's own defaults. The file names only a loopback listener,
  ``allow_anonymous true`` and the user to stay (as root Mosquitto would switch to ``mosquitto``):
  max_queued_messages 1000, max_inflight_messages 20, no persistence, sys_interval 10.
- ``no-loss (harness)``: the harness's configuration, rendered by :mod:`harness.broker` itself.
- ``snapshot every change``: the same with ``autosave_interval 1`` and ``autosave_on_changes true``,
  the harness's earlier configuration, for reference.

The clients are paho-mqtt (MQTT 5, QoS 1, JSON telemetry readings of about 215 bytes): a publisher
that keeps at most 1,000 messages un-acknowledged, as the world's transport, and a subscriber with
the engine's kind of session (``clean_start`` False, a session expiry, Receive Maximum 1,000, which
Mosquitto takes in place of its ``max_inflight_messages``, so the defaults' 20 does not throttle it).
The publisher runs in a process of its own, as the world does.

- live: the subscriber connected, ``--messages`` published (at most ``--snapshot-messages`` to
  the snapshot configuration: its rate does not depend on the count, and 20,000 would take it a
  minute); timed from the first publish to the subscriber's last message.
- backlog: the subscriber away (its session kept), ``--backlog`` published; timed from the first
  publish to the last PUBACK. Then the subscriber comes back and counts what it gets, and the
  broker's own count, ``$SYS/broker/publish/messages/dropped``, is read.
- restart: ``--restart-backlog`` queued for the away subscriber (by default 1,000, which the
  defaults still queue whole, so that what they lose is the restart's doing), then the broker
  stopped with SIGTERM (a clean stop) or SIGKILL (a crash) and started again on the same
  persistence directory; what the subscriber gets after it.

The baseline is ``defaults``: each ratio is a configuration's median against the defaults' median
(the per-round ratios, each against the defaults of the same round, are in the JSON).

    python bench/broker_config.py                                    # 2 rounds: 20,000 live, 5,000 backlog, 1,000 across restarts
    python bench/broker_config.py --quick --json broker_config.json  # 1 round, small sizes
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import pwd
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from types import FrameType
from typing import Any, Literal

import paho.mqtt.client as paho
from broker_ceiling import load_average
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from contracts import codec
from contracts.broker_stats import SYS_DROPPED
from contracts.errors import PayloadError
from contracts.messages import Telemetry
from harness.broker import MosquittoConf, RunningBroker, _mosquitto_conf, start_broker
from support_engine.mqtt_transport import RECEIVE_MAXIMUM

__all__ = ["BASELINE", "CONFIGS", "Backlog", "Live", "Restarted", "defaults_conf", "main", "snapshot_conf"]

DEFAULTS, NO_LOSS, SNAPSHOT = "defaults", "no-loss (harness)", "snapshot every change"
BASELINE = DEFAULTS
PUBLISH_INFLIGHT = 1000  # harness.mqtt_transport.WorldTransport's window
SESSION_EXPIRY_S = 3600  # the engine's
HOST = "127.0.0.1"
TOPIC = "sot-bench/broker-config/dev/telemetry"
_SYS_UPTIME = "$SYS/broker/uptime"
_CONNECT_TIMEOUT_S = 10.0
_PHASE_TIMEOUT_S = 300.0  # one publish or one drain; a snapshot per change took 22-39 s for 5,000 on 2 cores
_QUIET_S = 1.0  # a drain is over once nothing has come for this long
_SYS_TIMEOUT_S = 15.0  # Mosquitto's default sys_interval is 10 s
_SYS_SETTLE_S = 0.3  # a $SYS pass publishes uptime and the counters together: let them all arrive


def defaults_conf(host: str, port: int, workdir: Path, max_queued_messages: int) -> str:
    """Render Mosquitto's defaults: a loopback listener and anonymous clients, nothing else that matters."""
    user = pwd.getpwuid(os.geteuid()).pw_name
    return f"""\
# Mosquitto's defaults (max_queued_messages 1000, max_inflight_messages 20, no persistence).
# Stay the user who started us: as root, Mosquitto would switch to `mosquitto`.
user {user}
listener {port} {host}
allow_anonymous true
"""


def snapshot_conf(host: str, port: int, workdir: Path, max_queued_messages: int) -> str:
    """Render the harness's configuration with a snapshot of the whole database after every change."""
    conf = _mosquitto_conf(host, port, workdir, max_queued_messages)
    for option, value in (("autosave_interval", "1"), ("autosave_on_changes", "true")):
        conf, found = re.subn(rf"^{option} \S+$", f"{option} {value}", conf, flags=re.MULTILINE)
        if found != 1:
            raise RuntimeError(f"harness.broker's configuration sets {option} {found} times, not once")
    return conf


CONFIGS: dict[str, MosquittoConf] = {DEFAULTS: defaults_conf, NO_LOSS: _mosquitto_conf, SNAPSHOT: snapshot_conf}


# -- clients --------------------------------------------------------------------------------------
def payloads(count: int, seed: int = 7) -> list[bytes]:
    """``count`` JSON telemetry readings of one freezer sensor set, ``seq`` 0 to count - 1 (~215 bytes each)."""
    rng = random.Random(seed)
    out = []
    for seq in range(count):
        values = {
            "temp_c": round(rng.gauss(-18.0, 0.5), 3),
            "duty": round(rng.uniform(0.3, 0.5), 3),
            "power_w": round(rng.gauss(150.0, 10.0), 2),
            "compressor_a": round(rng.gauss(1.2, 0.1), 2),
            "ambient_c": round(rng.gauss(21.0, 1.5), 2),
            "evaporator_c": round(rng.gauss(-24.0, 0.8), 2),
            "door_open_s": round(rng.uniform(0.0, 30.0), 1),
        }
        reading = Telemetry(device_id=f"frz-{seq % 1000:06d}", ts=900.0 * seq, boot_id=0, seq=seq, values=values)
        out.append(codec.encode(reading))
    return out


def _connect(
    port: int, client_id: str, *, persistent: bool, on_message: Callable[..., None] | None = None
) -> tuple[paho.Client, bool]:
    """An MQTT 5 client connected on its own network thread, and whether the broker had its session."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    client.max_inflight_messages_set(PUBLISH_INFLIGHT)
    connack: list[tuple[bool, str, bool]] = []
    ready = threading.Event()

    def on_connect(client: paho.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        connack.append((bool(flags.session_present), str(reason_code), bool(reason_code.is_failure)))
        ready.set()

    client.on_connect = on_connect
    if on_message is not None:
        client.on_message = on_message  # before CONNECT: a kept session's queue comes right after the CONNACK
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    if persistent:
        properties.SessionExpiryInterval = SESSION_EXPIRY_S
        properties.ReceiveMaximum = RECEIVE_MAXIMUM
    client.connect(HOST, port, keepalive=60, clean_start=not persistent, properties=properties)
    client.loop_start()
    if not ready.wait(_CONNECT_TIMEOUT_S) or connack[0][2]:
        _close(client)
        why = connack[0][1] if connack else f"no CONNACK within {_CONNECT_TIMEOUT_S:g} s"
        raise RuntimeError(f"MQTT 5 connect of {client_id} to port {port} failed: {why}")
    return client, connack[0][0]


def _close(client: paho.Client) -> None:
    client.disconnect()
    client.loop_stop()


@dataclass(frozen=True)
class _Published:
    """What one publisher run saw: when it began, when the last PUBACK came, the PUBACKs' reason codes."""

    started: float  # time.monotonic(), which every process on the machine shares
    acked_at: float
    reason_codes: dict[str, int]

    @property
    def seconds(self) -> float:
        return self.acked_at - self.started


def publish_here(port: int, count: int) -> _Published:
    """Publish ``count`` readings at QoS 1 (at most 1,000 un-acknowledged) and wait for every PUBACK."""
    messages = payloads(count)
    codes: Counter[int] = Counter()
    lock, done = threading.Lock(), threading.Event()
    last = [math.nan]

    def on_publish(client: paho.Client, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        with lock:
            codes[int(reason_code.value)] += 1
            if codes.total() == count:
                last[0] = time.monotonic()
                done.set()

    client, _ = _connect(port, "sot-bench-publisher", persistent=False)
    client.on_publish = on_publish
    try:
        started = time.monotonic()
        for payload in messages:
            info = client.publish(TOPIC, payload, qos=1)
            if info.rc != paho.MQTT_ERR_SUCCESS:
                raise RuntimeError(f"publish failed: {paho.error_string(info.rc)}")
        if not done.wait(_PHASE_TIMEOUT_S):
            raise RuntimeError(f"{codes.total():,} PUBACKs of {count:,} within {_PHASE_TIMEOUT_S:g} s")
    finally:
        _close(client)
    return _Published(started, last[0], {str(code): n for code, n in sorted(codes.items())})


def _publish(port: int, count: int, scratch: Path) -> _Published:
    """Publish from a process of its own, as the world does: in ours it would take the subscriber's GIL."""
    out = scratch / "published.json"
    out.unlink(missing_ok=True)
    command = [sys.executable, str(Path(__file__).resolve()), "--role", "publish", "--port", str(port)]
    subprocess.run(
        [*command, "--messages", str(count), "--out", str(out)],
        check=True,
        stdin=subprocess.DEVNULL,
        timeout=_PHASE_TIMEOUT_S + _CONNECT_TIMEOUT_S + 30.0,  # run() kills the child on a timeout or an interrupt
    )
    return _Published(**json.loads(out.read_text(encoding="utf-8")))


class _Subscriber:
    """The engine's kind of session (persistent, Receive Maximum 1,000); counts the readings' distinct ``seq``."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.seqs: set[int] = set()
        self.received = self.garbage = 0
        self.last_at = math.nan
        self._arrived = threading.Condition()
        self._client: paho.Client | None = None

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        try:
            seq = codec.decode_as(Telemetry, bytes(message.payload)).seq
        except PayloadError:
            seq = None
        with self._arrived:
            self.received += 1
            if seq is None:
                self.garbage += 1
            else:
                self.seqs.add(seq)
            self.last_at = time.monotonic()
            self._arrived.notify_all()

    def connect(self) -> bool:
        """Connect (resuming the session if the broker has it); tell whether it had it."""
        self._client, present = _connect(
            self.port, "sot-bench-subscriber", persistent=True, on_message=self._on_message
        )
        return present

    def subscribe(self) -> None:
        assert self._client is not None
        granted = threading.Event()
        self._client.on_subscribe = lambda *_: granted.set()
        self._client.subscribe(TOPIC, qos=1)
        if not granted.wait(_CONNECT_TIMEOUT_S):
            raise RuntimeError(f"no SUBACK within {_CONNECT_TIMEOUT_S:g} s")

    def close(self) -> None:
        """Disconnect; the broker keeps the session (its expiry is an hour)."""
        if self._client is not None:
            _close(self._client)
            self._client = None

    def drain(self, expected: int, since: float) -> int:
        """Wait for ``expected`` distinct readings, or until none has come for 1 s after ``since``; return the count."""
        deadline = time.monotonic() + _PHASE_TIMEOUT_S
        with self._arrived:
            while len(self.seqs) < expected:
                now = time.monotonic()
                quiet_from = since if math.isnan(self.last_at) else max(since, self.last_at)
                if now - quiet_from >= _QUIET_S:
                    break
                if now >= deadline:
                    raise RuntimeError(
                        f"{len(self.seqs):,} of {expected:,} still arriving after {_PHASE_TIMEOUT_S:g} s"
                    )
                self._arrived.wait(min(_QUIET_S - (now - quiet_from), deadline - now) + 0.01)
            return len(self.seqs)


class _SysMonitor:
    """Read the broker's ``$SYS`` count of dropped messages, waiting for a value newer than a given moment."""

    def __init__(self, port: int) -> None:
        self.dropped: int | None = None
        self._fresh_dropped: int | None = None  # published after we subscribed, not the retained copy
        self._last_tick = -math.inf
        self._changed = threading.Condition()
        self._client, _ = _connect(port, "sot-bench-sys", persistent=False, on_message=self._on_message)
        self._client.subscribe([(SYS_DROPPED, 0), (_SYS_UPTIME, 0)])

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        with self._changed:
            if message.topic == SYS_DROPPED and message.payload.strip().isdigit():
                self.dropped = int(message.payload)
                if not message.retain:
                    self._fresh_dropped = self.dropped
            elif message.topic == _SYS_UPTIME and not message.retain:
                self._last_tick = time.monotonic()
            self._changed.notify_all()

    def dropped_since(self, since: float, at_least: int) -> int | None:
        """The count once it is ``at_least`` (> 0) or the broker has published its ``$SYS`` after ``since``."""
        deadline = time.monotonic() + _SYS_TIMEOUT_S
        with self._changed:
            while not (0 < at_least <= (self._fresh_dropped or 0)) and self._last_tick < since:
                left = deadline - time.monotonic()
                if left <= 0:
                    return self.dropped
                self._changed.wait(left)
        time.sleep(_SYS_SETTLE_S)
        with self._changed:
            return self.dropped

    def close(self) -> None:
        _close(self._client)


# -- workloads ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Live:
    """The subscriber connected: first publish to its last message."""

    messages: int
    delivered: int
    seconds: float
    broker: str

    @property
    def messages_per_s(self) -> float:
        return self.delivered / self.seconds


@dataclass(frozen=True)
class Backlog:
    """The subscriber away while the backlog is published; what it gets when it comes back."""

    messages: int
    publish_s: float  # first publish to the last PUBACK
    puback_reason_codes: dict[str, int]
    session_present: bool
    delivered: int  # distinct readings
    duplicates: int
    drain_s: float  # reconnect to the last message
    sys_dropped: int | None  # $SYS/broker/publish/messages/dropped; None if the broker did not say

    @property
    def lost(self) -> int:
        return self.messages - self.delivered


@dataclass(frozen=True)
class Restarted:
    """A backlog queued for the away subscriber, then the broker stopped (SIGTERM or SIGKILL) and started again."""

    signal: str
    messages: int
    restart_s: float  # signal to the broker answering MQTT again
    session_present: bool
    delivered: int

    @property
    def lost(self) -> int:
        return self.messages - self.delivered


def _broker(conf: MosquittoConf, workdir: Path) -> RunningBroker:
    shutil.rmtree(workdir, ignore_errors=True)  # fresh persistence for each workload
    return start_broker("mosquitto", host=HOST, workdir=workdir, mosquitto_conf=conf)


def measure_live(conf: MosquittoConf, workdir: Path, count: int) -> Live:
    with _broker(conf, workdir) as broker:
        subscriber = _Subscriber(broker.url.port)
        try:
            subscriber.connect()
            subscriber.subscribe()
            published = _publish(broker.url.port, count, workdir.parent)
            delivered = subscriber.drain(count, since=published.acked_at)
        finally:
            subscriber.close()
    return Live(count, delivered, subscriber.last_at - published.started, broker.version)


def measure_backlog(conf: MosquittoConf, workdir: Path, count: int) -> Backlog:
    with _broker(conf, workdir) as broker:
        subscriber = _Subscriber(broker.url.port)
        monitor = _SysMonitor(broker.url.port)
        try:
            subscriber.connect()
            subscriber.subscribe()
            subscriber.close()
            published = _publish(broker.url.port, count, workdir.parent)
            back = time.monotonic()
            present = subscriber.connect()
            delivered = subscriber.drain(count, since=back)
            subscriber.close()
            dropped = monitor.dropped_since(published.acked_at, at_least=count - delivered)
        finally:
            subscriber.close()
            monitor.close()
    return Backlog(
        messages=count,
        publish_s=published.seconds,
        puback_reason_codes=published.reason_codes,
        session_present=present,
        delivered=delivered,
        duplicates=subscriber.received - subscriber.garbage - delivered,
        drain_s=0.0 if math.isnan(subscriber.last_at) else subscriber.last_at - back,
        sys_dropped=dropped,
    )


def measure_restart(conf: MosquittoConf, workdir: Path, count: int, how: Literal["SIGTERM", "SIGKILL"]) -> Restarted:
    with _broker(conf, workdir) as broker:
        subscriber = _Subscriber(broker.url.port)
        try:
            subscriber.connect()
            subscriber.subscribe()
            subscriber.close()
            _publish(broker.url.port, count, workdir.parent)
            stopped = time.monotonic()
            if how == "SIGKILL":
                broker.kill()
            broker.restart()  # SIGTERM if it still runs, then the same port and persistence directory
            restart_s = time.monotonic() - stopped
            back = time.monotonic()
            present = subscriber.connect()
            delivered = subscriber.drain(count, since=back)
        finally:
            subscriber.close()
    return Restarted(how, count, restart_s, present, delivered)


# -- figures --------------------------------------------------------------------------------------
def _spread(values: Sequence[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summary(rounds: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Median, min and max over the rounds of each figure of one configuration."""
    figures = {
        "live_messages_per_s": [r["live"]["messages_per_s"] for r in rounds],
        "live_lost": [r["live"]["messages"] - r["live"]["delivered"] for r in rounds],
        "backlog_publish_s": [r["backlog"]["publish_s"] for r in rounds],
        "backlog_publish_messages_per_s": [r["backlog"]["messages"] / r["backlog"]["publish_s"] for r in rounds],
        "backlog_delivered": [r["backlog"]["delivered"] for r in rounds],
        "backlog_lost": [r["backlog"]["lost"] for r in rounds],
        "backlog_drain_s": [r["backlog"]["drain_s"] for r in rounds],
        "sigterm_delivered": [r["sigterm"]["delivered"] for r in rounds],
        "sigterm_restart_s": [r["sigterm"]["restart_s"] for r in rounds],
        "sigkill_delivered": [r["sigkill"]["delivered"] for r in rounds],
        "sigkill_restart_s": [r["sigkill"]["restart_s"] for r in rounds],
    }
    out: dict[str, Any] = {name: _spread(values) for name, values in figures.items()}
    dropped = [r["backlog"]["sys_dropped"] for r in rounds if r["backlog"]["sys_dropped"] is not None]
    out["backlog_sys_dropped"] = _spread(dropped) if dropped else None
    return out


def ratios(configs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each configuration against the baseline: medians, and each round against the baseline's same round."""
    base = configs[BASELINE]
    out = {}
    for name, config in configs.items():
        if name == BASELINE:
            continue
        paired = zip(config["rounds"], base["rounds"], strict=True)
        rounds = [
            {
                "live_throughput": r["live"]["messages_per_s"] / b["live"]["messages_per_s"],
                "backlog_publish_time": r["backlog"]["publish_s"] / b["backlog"]["publish_s"],
            }
            for r, b in paired
        ]
        s, bs = config["summary"], base["summary"]
        out[name] = {
            "live_throughput": s["live_messages_per_s"]["median"] / bs["live_messages_per_s"]["median"],
            "backlog_publish_time": s["backlog_publish_s"]["median"] / bs["backlog_publish_s"]["median"],
            "rounds": rounds,
        }
    return out


def _table(configs: dict[str, dict[str, Any]], backlog: int, restart: int) -> str:
    def med(s: dict[str, float], spec: str) -> str:
        return f"{s['median']:{spec}} ({s['min']:{spec}}-{s['max']:{spec}})"

    def count(s: dict[str, float] | None) -> str:
        if s is None:
            return "unknown"
        return f"{s['median']:,.0f}" if s["min"] == s["max"] else f"{s['min']:,.0f}-{s['max']:,.0f}"

    header = (
        f"{'configuration':<22} | live msgs/s, median (min-max) | live lost | backlog {backlog:,}: publish s | "
        f"delivered | $SYS dropped | {restart:,} after SIGTERM | after SIGKILL"
    )
    lines = [header, "-" * len(header)]
    for name, config in configs.items():
        s = config["summary"]
        lines.append(
            f"{name:<22} | {med(s['live_messages_per_s'], ',.0f'):>29} | {count(s['live_lost']):>9} | "
            f"{med(s['backlog_publish_s'], '.2f'):>24} | {count(s['backlog_delivered']):>9} | "
            f"{count(s['backlog_sys_dropped']):>12} | {count(s['sigterm_delivered']):>19} | "
            f"{count(s['sigkill_delivered']):>13}"
        )
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    """What the figures were measured on, and how busy it was when they started."""
    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "paho_mqtt": metadata.version("paho-mqtt"),
        "load_average": load_average(),
    }


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=None, help="live messages (default 20,000; --quick 2,000)")
    parser.add_argument("--backlog", type=int, default=None, help="backlog messages (default 5,000; --quick 1,500)")
    parser.add_argument(
        "--restart-backlog",
        type=int,
        default=None,
        help="messages queued across a restart (default 1,000; --quick 500)",
    )
    parser.add_argument(
        "--snapshot-messages",
        type=int,
        default=None,
        help=f"live messages at most for {SNAPSHOT!r} (default 2,000; --quick 1,000)",
    )
    parser.add_argument(
        "--repeat", type=int, default=None, help="rounds, each config once a round (default 2; --quick 1)"
    )
    parser.add_argument("--quick", action="store_true", help="small sizes and one round")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the figures here")
    parser.add_argument("--role", choices=["publish"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)  # stop every broker and child on the way out
    if args.role == "publish":
        published = publish_here(args.port, args.messages)
        args.out.write_text(json.dumps(asdict(published)), encoding="utf-8")
        return 0
    sizes = (2_000, 1_500, 500, 1_000, 1) if args.quick else (20_000, 5_000, 1_000, 2_000, 2)
    given = (args.messages, args.backlog, args.restart_backlog, args.snapshot_messages, args.repeat)
    live_n, backlog_n, restart_n, snapshot_n, repeat = (
        default if value is None else value for value, default in zip(given, sizes, strict=True)
    )
    if min(live_n, backlog_n, restart_n, snapshot_n, repeat) < 1:
        parser.error("--messages, --backlog, --restart-backlog, --snapshot-messages and --repeat must be >= 1")
    live_counts = {name: min(live_n, snapshot_n) if name == SNAPSHOT else live_n for name in CONFIGS}

    info = machine()
    payload_bytes = statistics.mean(len(p) for p in payloads(max(live_n, backlog_n, restart_n)))
    print(
        f"broker configurations: {', '.join(CONFIGS)}; {repeat} round(s) of {live_n:,} live "
        f"({live_counts[SNAPSHOT]:,} for {SNAPSHOT!r}), {backlog_n:,} backlog, {restart_n:,} across restarts; "
        f"QoS 1, {payload_bytes:.0f}-byte readings, baseline {BASELINE!r}"
    )
    print(
        f"machine: {info['cpu_count']} CPUs, {info['platform']}; python {info['python']}, paho-mqtt "
        f"{info['paho_mqtt']}; load average {info['load_average']}",
        flush=True,
    )
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in CONFIGS}
    broker_version = ""
    with tempfile.TemporaryDirectory(prefix="sot-broker-config-") as tmp:
        workdir = Path(tmp) / "broker"
        for r in range(repeat):
            rows: dict[str, dict[str, Any]] = {name: {"round": r, "load_average": load_average()} for name in CONFIGS}
            for name, conf in CONFIGS.items():  # interleaved, workload by workload
                rows[name]["live"] = asdict(live := measure_live(conf, workdir, live_counts[name]))
                rows[name]["live"]["messages_per_s"] = live.messages_per_s
                broker_version = live.broker
            for name, conf in CONFIGS.items():
                rows[name]["backlog"] = asdict(backlog := measure_backlog(conf, workdir, backlog_n))
                rows[name]["backlog"]["lost"] = backlog.lost
            for how in ("SIGTERM", "SIGKILL"):
                for name, conf in CONFIGS.items():
                    restarted = measure_restart(conf, workdir, restart_n, how)
                    rows[name][how.lower()] = asdict(restarted) | {"lost": restarted.lost}
            for name, row in rows.items():
                results[name].append(row)
                print(
                    f"round {r + 1}, {name}: live {row['live']['messages_per_s']:,.0f} msgs/s "
                    f"({row['live']['delivered']:,} of {row['live']['messages']:,}); backlog published in "
                    f"{row['backlog']['publish_s']:.2f} s, {row['backlog']['delivered']:,} delivered, $SYS dropped "
                    f"{row['backlog']['sys_dropped']}; after SIGTERM {row['sigterm']['delivered']:,}, after SIGKILL "
                    f"{row['sigkill']['delivered']:,}; load {row['load_average'][0]:.2f}",
                    flush=True,
                )
    configs = {name: {"rounds": rounds, "summary": summary(rounds)} for name, rounds in results.items()}
    versus = ratios(configs)
    print(f"\n{broker_version}; load average at the end {load_average()}")
    print(_table(configs, backlog_n, restart_n))
    for name, ratio in versus.items():
        print(
            f"{name} / {BASELINE}: live throughput {ratio['live_throughput']:.2f}x, "
            f"backlog publish time {ratio['backlog_publish_time']:.2f}x"
        )
    if args.json is not None:
        document = {
            "machine": info | {"broker": broker_version, "load_average_end": load_average()},
            "settings": {
                "messages": live_counts,
                "backlog": backlog_n,
                "restart_backlog": restart_n,
                "repeat": repeat,
                "payload_bytes": payload_bytes,
                "publish_inflight": PUBLISH_INFLIGHT,
                "receive_maximum": RECEIVE_MAXIMUM,
                "session_expiry_s": SESSION_EXPIRY_S,
            },
            "baseline": BASELINE,
            "configs": configs,
            "ratios": versus,
        }
        args.json.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
