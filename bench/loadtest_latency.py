"""Publish-to-ingest latency and loss under Locust load: the engine against a bare paho subscriber, same run.

Both consumers sit behind the same Mosquitto (:func:`loadtest.broker.start_load_broker`) and take
the same load: ``sot loadtest``'s runner with a Locust master and workers, one MQTT connection per
device, per-device JSON ``Telemetry`` at ``--rate`` messages per second (no events), QoS 1. Both
answer every ``--ack-every``-th message with an ``IngestAck`` receipt, which the Locust workers time
from the publish timestamp in the payload:

- **bare** — a paho subscriber in its own process (MQTT 5, persistent session, QoS 1, the engine's
  topic filters, acknowledged on receipt) that decodes each message with ``contracts.codec`` (to
  know its source and seq) and publishes the receipt at once; it counts under the engine's metric
  names on a ``/metrics`` of its own, so that the runner reconciles it like an engine;
- **engine** — ``python -m support_engine --clock wall --ack-every N --http PORT`` with the
  scenario's engine configuration: its receipt goes out after the SQLite commit.

Rounds alternate bare, engine, each on its own topic prefix. The quantiles leave out the warm-up
(the devices connecting, ``--warmup``; its messages are still counted). The engine/bare ratios of
the publish-to-receipt quantiles are the engine's cost; loss is reconciled per run (published by
Locust, ingested by the consumer).

    python bench/loadtest_latency.py                              # 2,000 freezers at 2,000 msg/s, 60 s, 2 rounds
    python bench/loadtest_latency.py --rounds 1 --duration 20 --json /tmp/latency.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from contracts import codec  # noqa: E402
from contracts.errors import PayloadError, TopicError  # noqa: E402
from contracts.messages import IngestAck  # noqa: E402
from contracts.topics import Topics  # noqa: E402
from loadtest.broker import start_load_broker  # noqa: E402
from loadtest.fleet import from_scenario  # noqa: E402
from loadtest.runner import LoadTestOptions, run_loadtest  # noqa: E402
from loadtest.witnesses import free_port, start_engine  # noqa: E402
from sim.scenario_file import load  # noqa: E402

__all__ = ["main"]

_RECEIPT_KINDS = {"telemetry", "batch", "event"}


# -- the bare consumer (child process) ------------------------------------------------------------
def bare(port: int, prefix: str, ack_every: int, http: int) -> None:
    """Child: subscribe like the engine, decode, acknowledge on receipt, publish receipts, count on /metrics."""
    from prometheus_client import Counter, start_http_server

    ingested = Counter("sot_messages_ingested", "Messages taken in.")
    rejected = Counter("sot_messages_rejected", "Messages that did not decode.", ["reason"])
    start_http_server(http, addr="127.0.0.1")
    topics = Topics(prefix)
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-bare-{prefix}"[:64], protocol=paho.MQTTv5)
    client.max_inflight_messages_set(1000)
    subscribed = threading.Event()

    def on_message(c: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        try:
            kind, key, _ = topics.parse(message.topic)
            decoded = codec.decode(kind, bytes(message.payload), key=key)
        except (TopicError, PayloadError) as exc:
            rejected.labels(reason=getattr(exc, "reason", "topic")).inc()
            return
        ingested.inc()
        seq = getattr(decoded, "seq", None)
        if ack_every and kind.value in _RECEIPT_KINDS and seq is not None and seq % ack_every == 0:
            source = getattr(decoded, "device_id", None) or getattr(decoded, "gateway_id", "")
            receipt = IngestAck(
                kind=kind.value,  # type: ignore[arg-type]
                source=source,
                boot_id=decoded.boot_id,  # type: ignore[attr-defined]
                seq=seq,
                ts=decoded.ts,  # type: ignore[attr-defined]
                committed_s=time.time(),
            )
            c.publish(topics.ingest_ack, codec.encode(receipt), qos=0)

    client.on_message = on_message
    client.on_subscribe = lambda *args: subscribed.set()
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = 3600  # the engine's session kind
    client.connect("127.0.0.1", port, keepalive=60, clean_start=False, properties=properties)
    client.loop_start()
    client.subscribe([(f, 1) for f in topics.engine_subscriptions()])
    if not subscribed.wait(10):
        raise RuntimeError("no SUBACK")
    print("ready", flush=True)
    sys.stdin.readline()  # until the parent closes our stdin
    client.disconnect()
    client.loop_stop()


class _Bare:
    def __init__(self, port: int, prefix: str, ack_every: int) -> None:
        self.http = free_port()
        self.metrics_url = f"http://127.0.0.1:{self.http}/metrics"
        self._proc = subprocess.Popen(
            [
                *(sys.executable, __file__, "--role", "bare", "--port", str(port), "--prefix", prefix),
                *("--ack-every", str(ack_every), "--http", str(self.http)),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        assert self._proc.stdout is not None
        if self._proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the bare subscriber did not start (exit {self._proc.wait()})")

    @property
    def pid(self) -> int:
        return self._proc.pid

    def stop(self) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.close()
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def _cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of ``pid`` (all its threads) so far; None without /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- the coordinator ------------------------------------------------------------------------------
def _figures(consumer: str, report: dict[str, Any], cpu_s: float | None) -> dict[str, Any]:
    m, lat, rates = report["messages"], report["latency_ms"], report["rates"]
    return {
        "consumer": consumer,
        "published": m["published"],
        "ingested": m["ingested"],
        "lost": m["lost"],
        "publish_failed": m["publish_failed"],
        "receipts_timed": m["receipts"]["timed"],
        "receipts_missing": m["receipts"]["missing"],
        "msgs_per_s_median": rates["published_per_s_median"],
        "ingest_ms": {k: lat["ingest"][k] for k in ("p50", "p90", "p99", "max")},
        "publish_ms": {k: lat["publish"][k] for k in ("p50", "p99")},
        "engine_lag_ms": {k: lat["engine_lag"][k] for k in ("p50", "p99")},
        "consumer_cpu_us_per_msg": None if cpu_s is None or not m["ingested"] else cpu_s / m["ingested"] * 1e6,
    }


def run_round(args: argparse.Namespace, k: int, broker_port: int, workdir: Path) -> list[dict[str, Any]]:
    """One bare run and one engine run on the same broker, each on a topic prefix of its own."""
    scenario = load(args.scenario)
    mix = from_scenario(scenario)
    from harness.broker import BrokerUrl

    url = BrokerUrl("127.0.0.1", broker_port)
    found = []
    for consumer in ("bare", "engine"):
        prefix = f"bench{k}{consumer}/v1"
        if consumer == "bare":
            proc: Any = _Bare(broker_port, prefix, args.ack_every)
            pid, metrics_url = proc.pid, proc.metrics_url
        else:
            proc = start_engine(
                url, workdir / f"engine-{k}", scenario.engine, prefix=prefix, ack_every=args.ack_every,
                client_id=f"bench-engine-{k}",
            )  # fmt: skip
            pid, metrics_url = proc.process.pid, proc.metrics_url
        options = LoadTestOptions(
            users=args.users,
            spawn_rate=args.spawn_rate,
            duration_s=args.duration,
            workers=args.workers,
            broker_url=url,
            engine_metrics_url=metrics_url,
            prefix=prefix,
            rate=args.rate,
            ack_every=args.ack_every,
            event_share=0.0,
            warmup_s=args.warmup
            if args.warmup is not None
            else min(args.users / args.spawn_rate + 5, args.duration / 2),
        )
        cpu = _cpu_s(pid)
        try:
            outcome = run_loadtest(mix, options, workdir / f"{consumer}-{k}")
        finally:
            used = _cpu_s(pid)
            proc.stop()
        figures = _figures(consumer, outcome.report, None if cpu is None or used is None else used - cpu)
        figures["load_average"] = os.getloadavg()
        print(json.dumps(figures), flush=True)
        found.append(figures)
    return found


def _ratio(runs: list[dict[str, Any]], key: str, q: str) -> list[float | None]:
    bare = [r for r in runs if r["consumer"] == "bare"]
    engine = [r for r in runs if r["consumer"] == "engine"]
    out: list[float | None] = []
    for b, e in zip(bare, engine, strict=True):
        vb, ve = b[key][q], e[key][q]
        out.append(None if not vb or ve is None else ve / vb)
    return out


def _print(runs: list[dict[str, Any]]) -> None:
    head = ("consumer", "msg/s", "published", "ingested", "lost", "rcpt miss", "p50 ms", "p90 ms", "p99 ms", "max ms")
    print("\npublish -> ingest receipt (Locust, per run)")
    print(" | ".join(head))
    for r in runs:
        i = r["ingest_ms"]
        cells = [r["consumer"], f"{r['msgs_per_s_median']:,.0f}", f"{r['published']:,}", f"{r['ingested']:,}"]
        cells += [
            f"{r['lost']:,}",
            f"{r['receipts_missing']:,}",
            *(f"{i[q]:,.2f}" for q in ("p50", "p90", "p99", "max")),
        ]
        print(" | ".join(cells))
    for q in ("p50", "p99"):
        ratios = [x for x in _ratio(runs, "ingest_ms", q) if x is not None]
        if ratios:
            print(
                f"ratio engine / bare, {q}: "
                + ", ".join(f"{x:.1f}x" for x in ratios)
                + f" (median {statistics.median(ratios):.1f}x)"
            )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--role", choices=["bare"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    parser.add_argument("--http", type=int, help=argparse.SUPPRESS)
    parser.add_argument(
        "--scenario", default=str(ROOT / "scenarios" / "freezers.yaml"), help="fleet (default: freezers)"
    )
    parser.add_argument("--users", type=int, default=2000, help="devices, one connection each (default 2000)")
    parser.add_argument("--rate", type=float, default=2000.0, help="messages per second at the peak (default 2000)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load per run (default 60)")
    parser.add_argument("--spawn-rate", type=float, default=200.0, help="devices started per second (default 200)")
    parser.add_argument("--workers", type=int, default=None, help="Locust workers (default: one per core)")
    parser.add_argument("--ack-every", type=int, default=10, help="receipt for every N-th message (default 10)")
    parser.add_argument(
        "--warmup", type=float, default=None, help="seconds left out of the quantiles (default: the spawn time + 5 s)"
    )
    parser.add_argument("--rounds", type=int, default=2, help="bare + engine rounds (default 2)")
    parser.add_argument("--json", type=Path, help="also write every run's figures here")
    args = parser.parse_args(argv)
    if args.role == "bare":
        bare(args.port, args.prefix, args.ack_every, args.http)
        return
    machine = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}
    print(json.dumps({"machine": machine, "load_average": os.getloadavg()}), flush=True)
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="sot-bench-latency-") as tmp:
        workdir = Path(tmp)
        with start_load_broker(workdir / "broker") as broker:
            print(json.dumps({"broker": broker.version}), flush=True)
            for k in range(args.rounds):
                runs += run_round(args, k, broker.url.port, workdir)
    _print(runs)
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {"machine": machine, "args": vars(args) | {"json": str(args.json)}, "runs": runs}, indent=2, default=str
            )
        )


if __name__ == "__main__":
    main()
