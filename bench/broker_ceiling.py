"""What Mosquitto carries between its own C clients: the ceiling for a run's own batches.

The payloads are those the world publishes for a scenario resized to ``--devices`` over ``--days``
(the world advanced alone, step by step, so the device answers to engine commands are missing),
each byte 0x00 or 0x0A replaced by another byte so that ``mosquitto_pub -l`` sends one message per
payload at its exact size (it splits lines at 0x0A and stops at 0x00). They are published at QoS
1 (MQTT 5, 1,000 in flight, as the world's transport) on one topic of a fresh harness broker to
``mosquitto_sub`` (MQTT 5, persistent session, QoS 1, as the engine). A run is timed from the
subscriber's first message to its last (``mosquitto_pub -l`` sleeps 100 ms while it connects, so
its start is no mark); the best of ``--repeat`` counts. ``bench/scaling.py`` runs it for its
largest size and gives end-to-end readings/s as a share of this ceiling.

    python bench/broker_ceiling.py --devices 1000000 --days 0.0833 --repeat 3
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any, NamedTuple

__all__ = ["Ceiling", "load_average", "measure_ceiling", "terminate"]

ROOT = Path(__file__).resolve().parents[1]
PUBLISH_INFLIGHT = 1000  # harness.mqtt_transport.WorldTransport's window
_NEWLINE_FREE = bytes.maketrans(b"\x00\n", b"\x01\x0b")  # mosquitto_pub -l splits at 0x0A and stops at 0x00
_CEILING_TOPIC = "sot-bench/ceiling/batch"
_READY_TOPIC = "sot-bench/ceiling/ready"
_TIMEOUT_S = 600.0


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def terminate(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- broker ceiling -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Ceiling:
    """What Mosquitto carries between its own C clients for one size's payloads: the best of the runs.

    A run is timed from the subscriber's first message to its last, so it counts the messages after
    the first (``mosquitto_pub -l`` sleeps 100 ms while it connects: its start is no mark).
    """

    devices: int
    days: float
    messages: int
    payload_bytes: int
    readings: int
    seconds: float  # best run: the subscriber's first message to its last
    runs_s: list[float]
    to_first_message_s: list[float]  # each run: mosquitto_pub started to the subscriber's first message
    broker: str
    clients: str
    load_average: list[float]
    method: str = (
        "the world's payloads for this size and horizon (world advanced alone), 0x00 and 0x0A bytes replaced so "
        "that mosquitto_pub -l sends each at its exact size; QoS 1, MQTT 5, 1000 in flight, one topic, a fresh "
        "harness broker per run; mosquitto_sub with a persistent session; timed first to last message received"
    )

    @property
    def _timed_share(self) -> float:
        return (self.messages - 1) / self.messages

    @property
    def messages_per_s(self) -> float:
        return (self.messages - 1) / self.seconds

    @property
    def readings_per_s(self) -> float:
        return self.readings * self._timed_share / self.seconds

    @property
    def mb_per_s(self) -> float:
        return self.payload_bytes * self._timed_share / self.seconds / 1e6


class _Carried(NamedTuple):
    to_first_s: float
    first_to_last_s: float
    broker: str


def _child_payloads(args: argparse.Namespace) -> int:
    """Advance the world alone as the runner would and write each payload as one newline-free line."""
    from harness.cli import resized
    from sim import scenario_file
    from sim.world import World

    scenario = resized(
        scenario_file.with_overrides(scenario_file.load(args.scenario), duration_days=args.days), args.devices
    )
    world = World(scenario, seed=args.seed)
    messages = payload_bytes = 0
    end, step = scenario.duration_s, scenario.sync_interval_s
    with open(args.out, "wb") as lines:
        for k in range(1, math.ceil(end / step) + 1):
            for _, payload in world.advance(min(k * step, end)):
                lines.write(payload.translate(_NEWLINE_FREE) + b"\n")
                messages += 1
                payload_bytes += len(payload)
    summary = {"messages": messages, "payload_bytes": payload_bytes, "readings": world.readings}
    Path(f"{args.out}.json").write_text(json.dumps(summary), encoding="utf-8")
    return 0


def _client(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is not installed: apt-get install mosquitto-clients")
    return found


def _client_version() -> str:
    done = subprocess.run([_client("mosquitto_pub"), "--help"], capture_output=True, text=True, check=False)
    words = (done.stdout + done.stderr).split()
    return f"mosquitto_pub {words[words.index('version') + 1]}" if "version" in words else "mosquitto_pub"


@contextlib.contextmanager
def _lines_of(stream: IO[str]) -> Iterator[queue.SimpleQueue[tuple[float, str]]]:
    """Each line of ``stream`` with the monotonic time it arrived, read on a thread."""
    lines: queue.SimpleQueue[tuple[float, str]] = queue.SimpleQueue()

    def read() -> None:
        for line in stream:
            lines.put((time.monotonic(), line))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    yield lines


def _next_line(lines: queue.SimpleQueue[tuple[float, str]], deadline: float) -> tuple[float, str]:
    try:
        return lines.get(timeout=max(0.0, deadline - time.monotonic()))
    except queue.Empty:
        raise RuntimeError("mosquitto_sub stopped printing before the end of the ceiling run") from None


def _carry(lines_file: Path, messages: int, payload_bytes: int, run: int) -> _Carried:
    """One ceiling run on a fresh harness broker."""
    from harness.broker import start_broker

    pub, sub = _client("mosquitto_pub"), _client("mosquitto_sub")
    with start_broker("mosquitto") as broker:
        port = str(broker.url.port)
        topics = ["-t", _CEILING_TOPIC, "-t", _READY_TOPIC, "-F", "%t %l"]  # print each message's topic and size
        subscriber = subprocess.Popen(
            [sub, "-p", port, "-V", "mqttv5", "-q", "1", "-c", "-i", f"sot-ceiling-sub-{run}", *topics],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert subscriber.stdout is not None
            with _lines_of(subscriber.stdout) as lines:
                deadline = time.monotonic() + 30.0
                while True:  # the subscription is in place once a probe comes back
                    subprocess.run([pub, "-p", port, "-q", "1", "-t", _READY_TOPIC, "-m", "ready"], check=True)
                    with contextlib.suppress(queue.Empty):
                        lines.get(timeout=0.2)
                        break
                    if time.monotonic() > deadline:
                        raise RuntimeError("mosquitto_sub did not subscribe within 30 s")
                started = time.monotonic()
                with open(lines_file, "rb") as stdin:
                    publisher = subprocess.Popen(
                        [
                            pub,
                            "-p",
                            port,
                            "-V",
                            "mqttv5",
                            "-q",
                            "1",
                            "-M",
                            str(PUBLISH_INFLIGHT),
                            "-t",
                            _CEILING_TOPIC,
                            "-l",
                        ],
                        stdin=stdin,
                    )
                try:
                    received = carried = 0
                    first = done = started
                    deadline = started + _TIMEOUT_S
                    while received < messages:
                        done, line = _next_line(lines, deadline)
                        topic, size = line.split()
                        if topic == _CEILING_TOPIC:
                            first = done if received == 0 else first
                            received += 1
                            carried += int(size)
                    if publisher.wait(_TIMEOUT_S) != 0:
                        raise RuntimeError(f"mosquitto_pub exited with code {publisher.returncode}")
                finally:
                    terminate(publisher)
        finally:
            terminate(subscriber)
        if carried != payload_bytes:
            raise RuntimeError(f"the subscriber got {carried:,} payload bytes of {payload_bytes:,}")
        return _Carried(first - started, done - first, broker.version)


def measure_ceiling(
    scenario_path: Path, devices: int, days: float, *, seed: int | None, repeat: int, tmp: Path
) -> Ceiling:
    """Write the world's payloads for one size (in a child process), then carry them ``repeat`` times."""
    lines_file = tmp / f"payloads-{devices}.lines"
    command = [sys.executable, str(Path(__file__).resolve()), "--role", "payloads", "--scenario", str(scenario_path)]
    command += ["--devices", str(devices), "--days", repr(days), "--out", str(lines_file)]
    if seed is not None:
        command += ["--seed", str(seed)]
    subprocess.run(command, check=True, stdin=subprocess.DEVNULL)
    summary = json.loads(Path(f"{lines_file}.json").read_text())
    if summary["messages"] < 2:
        raise RuntimeError(
            f"{devices:,} devices x {days:g} days publish {summary['messages']} message(s): too few to time"
        )
    load = load_average()
    try:
        runs = [_carry(lines_file, summary["messages"], summary["payload_bytes"], r) for r in range(repeat)]
    finally:
        lines_file.unlink(missing_ok=True)
    return Ceiling(
        devices=devices,
        days=days,
        messages=summary["messages"],
        payload_bytes=summary["payload_bytes"],
        readings=summary["readings"],
        seconds=round(min(r.first_to_last_s for r in runs), 4),
        runs_s=[round(r.first_to_last_s, 4) for r in runs],
        to_first_message_s=[round(r.to_first_s, 4) for r in runs],
        broker=runs[0].broker,
        clients=_client_version(),
        load_average=load,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--scenario", type=Path, default=ROOT / "scenarios" / "freezers.yaml", help="scenario file")
    parser.add_argument("--devices", type=int, default=1_000_000, help="devices in all (default 10^6)")
    parser.add_argument("--days", type=float, default=2 / 24, help="horizon in days (default two sync hours)")
    parser.add_argument("--seed", type=int, default=None, help="override the scenario's seed")
    parser.add_argument("--repeat", type=int, default=3, help="runs; the best counts (default 3)")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the figures here")
    parser.add_argument("--role", choices=["payloads"], help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "payloads":
        return _child_payloads(args)
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    with tempfile.TemporaryDirectory(prefix="sot-ceiling-") as tmp:
        ceiling = measure_ceiling(
            args.scenario, args.devices, args.days, seed=args.seed, repeat=args.repeat, tmp=Path(tmp)
        )
    print(
        f"{ceiling.broker}, {ceiling.clients}: {ceiling.messages:,} messages, {ceiling.payload_bytes / 1e6:,.1f} MB in "
        f"{ceiling.seconds:.3f} s (best of {len(ceiling.runs_s)}): {ceiling.messages_per_s:,.0f} msgs/s, "
        f"{ceiling.mb_per_s:,.1f} MB/s, {ceiling.readings_per_s:,.0f} readings/s"
    )
    if args.json is not None:
        figures = asdict(ceiling) | {"messages_per_s": ceiling.messages_per_s, "readings_per_s": ceiling.readings_per_s}
        args.json.write_text(json.dumps(figures | {"mb_per_s": ceiling.mb_per_s}, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
