"""Measure the world's telemetry throughput alone (no broker, no engine) against a per-device baseline.

Both designs run the same scenario (``scenarios/freezers.yaml`` resized to ``--devices`` and
``--days``), advanced sync step by sync step to the end exactly as the harness would, and every
payload they publish is taken from them:

- **array** — :class:`sim.world.World`: one SimPy process per fleet, numpy columns, one msgpack
  batch per gateway per tick;
- **naive** — :class:`naive_world.NaiveWorld`: one SimPy process per device, a hazard draw per mode
  per tick, one JSON :class:`contracts.Telemetry` message per device per tick.

Each design runs ``--repeat`` times from scratch; the best wall time counts. A run's wall time
covers building the world and advancing it; counting the published bytes is left out.

``--memory`` adds the array world's memory: the peak resident set of a child process that builds
it and drives it to the end (``--memory-days``), less that of the same child with a one-device
fleet (the empty world), per device. It includes what one sync step publishes (the driver drops
each step's payloads once counted, as the harness does once the engine has acknowledged them).

    python bench/world_throughput.py                       # 2,000 devices x 7 days, both designs
    python bench/world_throughput.py --devices 20000 --array-only --json out.json
    python bench/world_throughput.py --devices 1000000 --days 0.25 --array-only --repeat 1 --memory
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import msgspec
import numpy as np
import simpy
from naive_world import NaiveWorld

from sim import scenario_file
from sim.scenario import Scenario
from sim.world import World

__all__ = ["Memory", "Run", "drive", "machine", "main", "measure", "memory", "with_devices"]

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SCENARIO = ROOT / "scenarios" / "freezers.yaml"


class Advancing(Protocol):
    """What both designs offer the driver: advance to a time, hand over what was published."""

    readings: int

    def advance(self, until: float) -> list[tuple[str, bytes]]: ...


@dataclass(frozen=True)
class Memory:
    """The array world's peak resident set, with ``devices`` and with one device (the empty world)."""

    devices: int
    days: float
    peak_mib: float
    empty_peak_mib: float

    @property
    def bytes_per_device(self) -> float:
        return (self.peak_mib - self.empty_peak_mib) * 2**20 / max(self.devices - 1, 1)


@dataclass(frozen=True)
class Run:
    """One design's figures: the best of ``repeat`` runs."""

    design: str
    devices: int
    days: float
    readings: int
    messages: int
    payload_bytes: int
    wall_s: float  # best of the runs
    runs_s: list[float]

    @property
    def readings_per_s(self) -> float:
        return self.readings / self.wall_s


def with_devices(scenario: Scenario, devices: int) -> Scenario:
    """Return ``scenario`` with its one fleet resized to ``devices`` units."""
    if len(scenario.fleets) != 1:
        raise ValueError(f"{scenario.name}: resizing needs a single-fleet scenario, it has {len(scenario.fleets)}")
    if devices <= 0:
        raise ValueError(f"devices must be > 0 (got {devices})")
    fleet = msgspec.structs.replace(scenario.fleets[0], count=devices)
    return msgspec.structs.replace(scenario, fleets=[fleet])


def drive(make: Callable[[Scenario], Advancing], scenario: Scenario) -> tuple[float, int, int, int]:
    """Build one world and advance it sync step by sync step to the end.

    Returns (wall seconds spent building and advancing, readings, messages, payload bytes).
    """
    step, end = scenario.sync_interval_s, scenario.duration_s
    messages = payload_bytes = 0
    gc.collect()
    started = time.perf_counter()
    world = make(scenario)
    wall = time.perf_counter() - started
    t = 0.0
    while t < end:
        t = min(t + step, end)
        started = time.perf_counter()
        out = world.advance(t)
        wall += time.perf_counter() - started
        messages += len(out)
        payload_bytes += sum(len(payload) for _, payload in out)
        del out  # not kept while the next step runs
    return wall, world.readings, messages, payload_bytes


def measure(design: str, make: Callable[[Scenario], Advancing], scenario: Scenario, repeat: int) -> Run:
    """Run ``design`` ``repeat`` times on ``scenario`` and keep the best wall time."""
    runs = [drive(make, scenario) for _ in range(repeat)]
    counts = {r[1:] for r in runs}
    if len(counts) != 1:  # same scenario, same seed: the same output every time
        raise RuntimeError(f"{design}: runs disagree on what they published: {sorted(counts)}")
    readings, messages, payload_bytes = counts.pop()
    return Run(
        design=design,
        devices=scenario.device_count,
        days=scenario.duration_days,
        readings=readings,
        messages=messages,
        payload_bytes=payload_bytes,
        wall_s=min(r[0] for r in runs),
        runs_s=[round(r[0], 4) for r in runs],
    )


def _peak_rss_mib() -> float:
    """This process's peak resident set so far.

    Linux's ``VmHWM``: its ``ru_maxrss`` starts a child at its parent's peak, whatever the child
    uses (elsewhere ``ru_maxrss``, in bytes on macOS, in KiB otherwise)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**10
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def memory(scenario_path: Path, days: float, devices: int, seed: int | None) -> Memory:
    """Peak resident set of a child driving the array world, with ``devices`` and with one device."""

    def child(count: int) -> float:
        command = [sys.executable, __file__, "--scenario", str(scenario_path), "--days", str(days)]
        command += ["--peak-of", str(count)] + ([] if seed is None else ["--seed", str(seed)])
        done = subprocess.run(command, check=True, capture_output=True, text=True)
        return float(json.loads(done.stdout.splitlines()[-1])["peak_mib"])

    return Memory(devices=devices, days=days, peak_mib=child(devices), empty_peak_mib=child(1))


def _peak_of(scenario: Scenario) -> int:
    """The child of :func:`memory`: drive the array world to the end, print the peak resident set."""
    drive(World, scenario)
    print(json.dumps({"devices": scenario.device_count, "peak_mib": _peak_rss_mib()}))
    return 0


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    return {
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "simpy": simpy.__version__,
        "msgspec": msgspec.__version__,
    }


def _table(runs: Sequence[Run]) -> str:
    head = f"{'design':<7} {'devices':>8} {'days':>5} {'readings':>12} {'messages':>10} {'MB':>8} {'best s':>8} {'readings/s':>13}"
    rows = [
        f"{r.design:<7} {r.devices:>8,} {r.days:>5g} {r.readings:>12,} {r.messages:>10,} "
        f"{r.payload_bytes / 1e6:>8.1f} {r.wall_s:>8.3f} {r.readings_per_s:>13,.0f}"
        for r in runs
    ]
    return "\n".join([head, *rows])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", type=Path, default=DEFAULT_SCENARIO, help="a single-fleet scenario file")
    parser.add_argument("--devices", type=int, default=2000, help="fleet size (default 2000)")
    parser.add_argument("--days", type=float, default=7.0, help="simulated days (default 7)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per design; the best counts (default 3)")
    parser.add_argument("--seed", type=int, default=None, help="override the scenario's seed")
    parser.add_argument("--array-only", action="store_true", help="skip the per-device baseline (for large sizes)")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the figures here")
    parser.add_argument("--memory", action="store_true", help="also measure the array world's peak memory per device")
    parser.add_argument(
        "--memory-days", type=float, default=None, metavar="DAYS", help="horizon of the memory runs (default --days)"
    )
    parser.add_argument("--peak-of", type=int, default=None, help=argparse.SUPPRESS)  # a --memory child
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")

    scenario = scenario_file.load(args.scenario)
    scenario = scenario_file.with_overrides(scenario, duration_days=args.days, seed=args.seed)
    if args.peak_of is not None:
        return _peak_of(with_devices(scenario, args.peak_of))
    scenario = with_devices(scenario, args.devices)
    info = machine()
    print(
        f"world throughput (sim only): {scenario.name}, {args.devices:,} devices x {args.days:g} days, best of {args.repeat}"
    )
    print(
        f"machine: {info['cpu_count']} CPUs ({info['processor']}), {info['platform']}; python {info['python']}, "
        f"numpy {info['numpy']}, simpy {info['simpy']}, msgspec {info['msgspec']}"
    )

    runs = [measure("array", World, scenario, args.repeat)]
    if not args.array_only:
        runs.append(measure("naive", NaiveWorld, scenario, args.repeat))
    print(_table(runs))
    ratio = None
    if len(runs) == 2:
        array, naive = runs
        if array.readings != naive.readings:
            raise RuntimeError(f"designs disagree on readings: array {array.readings:,}, naive {naive.readings:,}")
        ratio = array.readings_per_s / naive.readings_per_s
        print(f"ratio array/naive: {ratio:.1f}x readings/s")
    held = None
    if args.memory:
        days = args.days if args.memory_days is None else args.memory_days
        held = memory(args.scenario, days, args.devices, args.seed)
        ticks = scenario.sync_interval_s / scenario.fleets[0].telemetry_interval_s
        print(
            f"memory (array, {days:g} days): peak RSS {held.peak_mib:,.1f} MiB with {held.devices:,} devices, "
            f"{held.empty_peak_mib:,.1f} MiB with one: {held.bytes_per_device:,.0f} bytes per device "
            f"(with a sync step's payloads: {ticks:g} ticks)"
        )

    if args.json is not None:
        document = {
            "benchmark": "world_throughput",
            "command": " ".join(["python", "bench/world_throughput.py", *(argv if argv is not None else sys.argv[1:])]),
            "scenario": scenario.name,
            "devices": args.devices,
            "days": args.days,
            "repeat": args.repeat,
            "machine": info,
            "runs": [asdict(r) | {"readings_per_s": r.readings_per_s} for r in runs],
            "ratio_array_over_naive": ratio,
            "memory": None if held is None else asdict(held) | {"bytes_per_device": held.bytes_per_device},
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
