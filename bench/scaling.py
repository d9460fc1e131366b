"""Measure how a whole run scales with the fleet: 10^3 to 10^6 freezers, world → Mosquitto → engine.

Each size is one ``harness.runner.run_scenario`` of ``scenarios/freezers.yaml`` (event time, the
clock/ack barrier, detection on, the harness's Mosquitto), resized as ``sot run --days D --devices
N`` resizes it, in a child process of its own so that the world's peak memory is its own. The
horizon shrinks as the fleet grows: by default every size publishes about ``--readings`` readings
(a freezer reads every 900 s, 96 readings a day) in whole sync steps (1 h), at least one.

For each size: the runner's wall time of its run loop (handshake done to the last message flushed),
readings, readings/s, µs per reading, messages lost (from the result document), and the peak RSS
(``VmHWM`` in ``/proc/<pid>/status``, sampled every ``--sample-s`` until the process exits) of the
world process, the engine subprocess and the broker subprocess. Bytes per device are those peaks
less the peaks of an empty run (``--empty-devices`` devices, measured the same way), divided by the
extra devices.

The baseline is the smallest size: time per reading relative to it is the linearity ratio (1.0 is
linear). With ``--engines 1,2`` every size runs with every engine count in turn (``sot run --engines
N``: N engine partitions, each with its own session and database); the engine's peak RSS is then the
partitions' peaks summed (the largest is given too), and readings/s against the same size with one
engine in the same run is the partition ratio. ``--repeat`` runs each (size, engines) again, in the
same interleaved order. CPU seconds of every process during the run loop are recorded alongside. The ceiling is what the same Mosquitto carries between its own C clients for the payloads
of one size (``--ceiling-size``, by default the largest), measured by ``bench/broker_ceiling.py``
in the same run; end-to-end readings/s is given as a share of the ceiling's.

    python bench/scaling.py                                     # 1e3, 1e4, 1e5, 1e6 devices, ~8 M readings each
    python bench/scaling.py --sizes 1e3,1e4,1e5 --json scaling.json --plot scaling.png
    python bench/scaling.py --sizes 1e3,1e4 --days 30,3         # horizons set by hand, one per size
    python bench/scaling.py --sizes 1e5,1e6 --engines 1,2 --repeat 2 --plot-partitions partitions.png
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from broker_ceiling import Ceiling, load_average, measure_ceiling, terminate
from procs import ROLES, PeakSampler, cpu_seconds, vmhwm_bytes

from sim import scenario_file
from sim.scenario import Scenario

__all__ = [
    "Ceiling",
    "PeakSampler",
    "SizeRun",
    "cpu_seconds",
    "horizon_days",
    "main",
    "measure_ceiling",
    "measure_size",
    "resized",
    "vmhwm_bytes",
]

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SCENARIO = ROOT / "scenarios" / "freezers.yaml"
DEFAULT_SIZES = "1e3,1e4,1e5,1e6"
DEFAULT_READINGS = 8_000_000  # 10^6 freezers for two sync steps
PUBLISH_INFLIGHT = 1000  # harness.mqtt_transport.WorldTransport's window
_NEWLINE_FREE = bytes.maketrans(b"\x00\n", b"\x01\x0b")  # mosquitto_pub -l splits at 0x0A and stops at 0x00
_CEILING_TOPIC = "sot-bench/ceiling/batch"
_READY_TOPIC = "sot-bench/ceiling/ready"
_TIMEOUT_S = 600.0


# -- workload -------------------------------------------------------------------------------------
def resized(scenario: Scenario, devices: int, days: float) -> Scenario:
    """Return ``scenario`` over ``days`` with ``devices`` in all, as ``sot run --days D --devices N`` resizes it."""
    from harness.cli import resized as resize_fleets

    return resize_fleets(scenario_file.with_overrides(scenario, duration_days=days), devices)


def horizon_days(scenario: Scenario, devices: int, readings: int) -> float:
    """Days in whole sync steps (at least one) in which ``devices`` of the scenario's fleets send about ``readings``."""
    fleets = resized(scenario, devices, scenario.duration_days).fleets
    per_step = sum(f.count * scenario.sync_interval_s / f.telemetry_interval_s for f in fleets)
    steps = max(1, round(readings / per_step))
    return steps * scenario.sync_interval_s / 86400.0


# -- memory ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SizeRun:
    """One run's figures: what the runner reports and what the sampler saw."""

    devices: int
    engines: int
    repeat: int  # 0 for a (size, engines)'s first run, 1 for its second, ...
    days: float
    sync_steps: int
    readings: int
    published: int
    ingested: int
    lost: int
    wall_s: float  # the runner's run loop
    process_s: float  # the world process, start to exit: imports, registry, engine start-up and shutdown too
    peak_rss_bytes: dict[str, int]  # by role; the engine's is the partitions' summed
    engine_peak_rss_bytes: list[int]  # each partition's
    cpu_s: dict[str, float]  # CPU seconds during the run loop, by process (engine-pK for partition K)
    partitions: list[dict[str, int]]  # the result's engine_partitions: each partition's counts (several engines)
    load_average: list[float]
    broker: str

    @property
    def readings_per_s(self) -> float:
        return self.readings / self.wall_s if self.wall_s else math.nan

    @property
    def us_per_reading(self) -> float:
        return self.wall_s * 1e6 / self.readings if self.readings else math.nan


def measure_size(
    scenario_path: Path,
    devices: int,
    days: float,
    *,
    seed: int | None,
    step_timeout_s: float,
    sample_s: float,
    tmp: Path,
    engines: int = 1,
    repeat: int = 0,
) -> SizeRun:
    """Run one size in a child process (which starts the broker and the engines) and sample them all."""
    out, work = tmp / f"run-{devices}-{engines}.json", tmp / f"work-{devices}-{engines}"
    command = [sys.executable, str(Path(__file__).resolve()), "--role", "run", "--scenario", str(scenario_path)]
    command += ["--devices", str(devices), "--days", repr(days), "--step-timeout", repr(step_timeout_s)]
    command += ["--out", str(out), "--workdir", str(work), "--engines", str(engines)]
    if seed is not None:
        command += ["--seed", str(seed)]
    load = load_average()
    started = time.monotonic()
    proc = subprocess.Popen(command, stdin=subprocess.DEVNULL)
    sampler = PeakSampler(proc, sample_s, engines=engines)
    sampler.start()
    try:
        code = proc.wait()
    finally:
        terminate(proc)
        sampler.join()
        shutil.rmtree(work, ignore_errors=True)
    process_s = time.monotonic() - started
    if code != 0:
        raise RuntimeError(f"the run of {devices:,} devices x {engines} engines exited with code {code} (see above)")
    child = json.loads(out.read_text())
    peaks = dict(sampler.peaks)
    peaks["world"] = max(peaks.get("world", 0), child["world_vmhwm_bytes"])
    names = ["engine"] if engines == 1 else [f"engine-p{k}" for k in range(engines)]
    missing = [role for role in ["world", *names, "broker"] if role not in peaks]
    if missing:
        raise RuntimeError(f"no memory sample of the {', '.join(missing)} process (found {sampler.pids})")
    loop = child["run_loop_monotonic"]
    m = child["messages"]
    return SizeRun(
        devices=devices,
        engines=engines,
        repeat=repeat,
        days=days,
        sync_steps=child["sync_steps"],
        readings=m["readings"],
        published=m["published"],
        ingested=m["ingested"],
        lost=m["lost"],
        wall_s=child["timing"]["wall_s"],
        process_s=round(process_s, 3),
        peak_rss_bytes={"world": peaks["world"], "engine": sum(peaks[k] for k in names), "broker": peaks["broker"]},
        engine_peak_rss_bytes=[peaks[k] for k in names],
        cpu_s={role: sampler.cpu_between(role, *loop) for role in ["world", *names, "broker"]},
        partitions=child["engine_partitions"],
        load_average=load,
        broker=child["broker"],
    )


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _child_run(args: argparse.Namespace) -> int:
    """The world process: one ``run_scenario``; write the figures the parent needs to ``--out``."""
    from harness.runner import run_scenario

    signal.signal(signal.SIGTERM, _raise_interrupt)  # stop the broker and the engines on the way out
    scenario = resized(scenario_file.load(args.scenario), args.devices, args.days)
    stepped: list[float] = []  # when each sync step was done: the last one ends the run loop
    outcome = run_scenario(
        scenario,
        seed=args.seed,
        broker_kind="mosquitto",
        workdir=Path(args.workdir),
        step_timeout_s=args.step_timeout,
        engines=args.engines,
        progress=lambda t, end: stepped.append(time.monotonic()),
    )
    result = outcome.result
    wall_s = result["timing"]["wall_s"]
    document = {
        "messages": result["messages"],
        "timing": result["timing"],
        "broker": result["manifest"]["broker"],
        "sync_steps": math.ceil(scenario.duration_s / scenario.sync_interval_s),
        "world_vmhwm_bytes": vmhwm_bytes(os.getpid()) or 0,
        "run_loop_monotonic": [stepped[-1] - wall_s, stepped[-1]],  # begun about a final flush (ms) later
        "engine_partitions": result.get("engine_partitions", []),
    }
    Path(args.out).write_text(json.dumps(document), encoding="utf-8")
    return 0


# -- report ---------------------------------------------------------------------------------------
def bytes_per_device(run: SizeRun, empty: SizeRun) -> dict[str, float]:
    """Peak RSS above the empty run's, per device above the empty run's devices, by process and in all."""
    extra = run.devices - empty.devices
    out = {role: (run.peak_rss_bytes[role] - empty.peak_rss_bytes[role]) / extra for role in ROLES}
    out["all"] = sum(out[role] for role in ROLES)
    return out


def figures(runs: Sequence[SizeRun], empties: dict[int, SizeRun], ceiling: Ceiling | None) -> list[dict[str, Any]]:
    """Every run's absolute figures and ratios, as the JSON document and the plots take them.

    Linearity is against the smallest size with as many engines, ``vs_one_engine`` against the same
    size and repeat with one engine, memory per device against the empty run with as many engines."""
    one = {(r.devices, r.repeat): r.readings_per_s for r in runs if r.engines == 1}
    base: dict[int, float] = {}
    for r in runs:
        base.setdefault(r.engines, r.us_per_reading)  # the smallest size runs first
    return [
        asdict(r)
        | {
            "readings_per_s": r.readings_per_s,
            "us_per_reading": r.us_per_reading,
            "linearity": r.us_per_reading / base[r.engines],
            "vs_one_engine": r.readings_per_s / one[r.devices, r.repeat] if (r.devices, r.repeat) in one else None,
            "rss_bytes_per_device": bytes_per_device(r, empties[r.engines]),
            "ceiling_share": None if ceiling is None else r.readings_per_s / ceiling.readings_per_s,
        }
        for r in runs
    ]


def _tables(rows: Sequence[dict[str, Any]], empties: dict[int, SizeRun]) -> str:
    several = len(empties) > 1  # the engine columns only when engine counts are compared
    eng, ratio, largest = (" eng", " vs 1 eng", "  largest engine MB") if several else ("", "", "")

    def who(r: dict[str, Any]) -> str:
        return f"{r['devices']:>9,}" + (f" {r['engines']:>3}" if several else "")

    lines = [
        f"{'devices':>9}{eng} {'days':>7} {'steps':>5} {'readings':>12} {'wall s':>8} {'readings/s':>11} "
        f"{'us/rdg':>7} {'linear':>6}{ratio} {'ceiling':>7} {'lost':>5} {'load':>5}"
    ]
    for r in rows:
        share = "-" if r["ceiling_share"] is None else f"{r['ceiling_share']:.1%}"
        vs = "-" if r["vs_one_engine"] is None else f"{r['vs_one_engine']:.2f}x"
        lines.append(
            f"{who(r)} {r['days']:>7.3g} {r['sync_steps']:>5,} "
            f"{r['readings']:>12,} {r['wall_s']:>8.2f} {r['readings_per_s']:>11,.0f} {r['us_per_reading']:>7.2f} "
            f"{r['linearity']:>5.2f}x{f' {vs:>8}' if several else ''} {share:>7} {r['lost']:>5,} "
            f"{r['load_average'][0]:>5.2f}"
        )
    lines += [
        "",
        f"{'devices':>9}{eng} {'peak RSS MB world/engine/broker':>32} {'bytes/device world/engine/broker':>34}",
    ]
    lines[-1] += largest
    for r in [*(asdict(e) | {"rss_bytes_per_device": None} for e in empties.values()), *rows]:
        mb = " / ".join(f"{r['peak_rss_bytes'][role] / 1e6:.1f}" for role in ROLES)
        per = "(empty run)"
        if r["rss_bytes_per_device"] is not None:
            per = " / ".join(f"{r['rss_bytes_per_device'][role]:,.0f}" for role in ROLES)
        lines.append(f"{who(r)} {mb:>32} {per:>34}")
        lines[-1] += f"{max(r['engine_peak_rss_bytes']) / 1e6:>19.1f}" if several else ""
    if several:
        lines += ["", f"{'devices':>9} eng  CPU s in the run loop by process; readings by partition"]
        for r in rows:
            cpu = ", ".join(f"{role} {s:.1f}" for role, s in r["cpu_s"].items())
            split = " / ".join(f"{p['readings']:,}" for p in r["partitions"]) or "-"
            lines.append(f"{who(r)} {cpu}; {split}")
    return "\n".join(lines)


def plot(rows: Sequence[dict[str, Any]], ceiling: Ceiling | None, path: Path) -> None:
    """Readings/s and µs/reading against devices; peak RSS per device per process against devices."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    devices = [r["devices"] for r in rows]
    fig, (speed, memory) = plt.subplots(1, 2, figsize=(12, 4.8), constrained_layout=True)
    speed.plot(devices, [r["readings_per_s"] for r in rows], "o-", color="tab:blue", label="readings/s end to end")
    if ceiling is not None:
        label = f"broker ceiling (C clients, {ceiling.devices:,} devices' batches)"
        speed.axhline(ceiling.readings_per_s, color="tab:blue", linestyle="--", label=label)
    speed.set(xscale="log", yscale="log", xlabel="devices", ylabel="readings/s", title="end to end, event time")
    per = speed.twinx()
    per.plot(devices, [r["us_per_reading"] for r in rows], "s-", color="tab:red", label="µs per reading")
    per.set_ylabel("µs per reading")
    per.set_ylim(bottom=0)
    handles = speed.get_legend_handles_labels()[0] + per.get_legend_handles_labels()[0]
    speed.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize="small")
    for role, marker in zip(ROLES, "o^s", strict=True):
        points = [(r["devices"], r["rss_bytes_per_device"][role]) for r in rows if r["rss_bytes_per_device"][role] > 0]
        if points:
            memory.plot(*zip(*points, strict=True), marker=marker, label=role)
    memory.set(xscale="log", yscale="log", xlabel="devices", ylabel="bytes per device")
    memory.set_title("peak RSS above an empty run, per device")
    memory.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3, fontsize="small")
    for axes in (speed, memory):
        axes.set_xticks(devices, [f"{n:,}" for n in devices])
        axes.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_partitions(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """Readings/s by size and engine count, a bar per (size, engines) at the mean of its repeats."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    sizes = sorted({r["devices"] for r in rows})
    counts = sorted({r["engines"] for r in rows})
    width = 0.8 / len(counts)
    fig, axes = plt.subplots(figsize=(7.2, 4.4), constrained_layout=True)
    for j, engines in enumerate(counts):
        x = [i + (j - (len(counts) - 1) / 2) * width for i in range(len(sizes))]
        runs = [[r for r in rows if r["devices"] == n and r["engines"] == engines] for n in sizes]
        means = [sum(r["readings_per_s"] for r in rs) / len(rs) if rs else 0.0 for rs in runs]
        label = f"{engines} engine{'s' if engines > 1 else ''}"
        axes.bar(x, means, width, label=label, color=f"C{j}")
        for xi, rs in zip(x, runs, strict=True):
            axes.plot([xi] * len(rs), [r["readings_per_s"] for r in rs], "k.", markersize=5)
            ratios = [r["vs_one_engine"] for r in rs if r["vs_one_engine"] is not None and engines != 1]
            if ratios:
                text = "\n".join(f"{q:.2f}x" for q in ratios)
                axes.annotate(text, (xi, max(r["readings_per_s"] for r in rs)), ha="center", va="bottom", fontsize=7)
    axes.set_xticks(range(len(sizes)), [f"{n:,}" for n in sizes])
    axes.set(xlabel="devices", ylabel="readings/s end to end", title="engine partitions, event time")
    axes.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v / 1e3:,.0f} k"))
    axes.set_ylim(0, 1.35 * max(r["readings_per_s"] for r in rows))
    axes.plot([], [], "k.", label="each run (text: vs 1 engine, same run)")
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=len(counts) + 1, fontsize="small")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def machine() -> dict[str, Any]:
    """What the figures were measured on, and how busy it was when they started."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT, check=False
    )
    return {
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "commit": commit.stdout.strip() or None,
        "load_average": load_average(),
    }


def _sizes(text: str) -> list[int]:
    sizes = []
    for part in text.split(","):
        value = float(part)
        if not (value >= 1 and value == int(value)):
            raise argparse.ArgumentTypeError(f"{part!r} is not a whole number of devices >= 1")
        sizes.append(int(value))
    if sizes != sorted(set(sizes)):
        raise argparse.ArgumentTypeError("sizes must increase")
    return sizes


def _engines(text: str) -> list[int]:
    counts = [int(x) for x in text.split(",")]
    if not all(n >= 1 for n in counts) or len(set(counts)) != len(counts):
        raise argparse.ArgumentTypeError("engine counts must be >= 1, each once")
    return counts


def _days(text: str) -> list[float]:
    days = [float(x) for x in text.split(",")]
    if not all(d > 0 for d in days):
        raise argparse.ArgumentTypeError("days must be > 0")
    return days


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--scenario", type=Path, default=DEFAULT_SCENARIO, help="scenario file (default freezers)")
    parser.add_argument(
        "--sizes", type=_sizes, default=_sizes(DEFAULT_SIZES), help=f"devices (default {DEFAULT_SIZES})"
    )
    parser.add_argument(
        "--readings", type=float, default=DEFAULT_READINGS, help="readings a size publishes by default (default 8e6)"
    )
    parser.add_argument("--days", type=_days, default=None, help="days: one for every size, or one per size")
    parser.add_argument("--seed", type=int, default=None, help="override the scenario's seed")
    parser.add_argument("--engines", type=_engines, default=[1], help="engine counts, each size with each (default 1)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each (size, engines), interleaved (default 1)")
    parser.add_argument("--empty-devices", type=int, default=1, help="devices of the empty run (default 1)")
    parser.add_argument("--empty-days", type=float, default=1.0, help="days of the empty run (default 1)")
    parser.add_argument("--ceiling-size", type=int, default=None, help="whose payloads the ceiling carries (largest)")
    parser.add_argument("--ceiling-repeat", type=int, default=3, help="ceiling runs; the best counts (default 3)")
    parser.add_argument("--step-timeout", type=float, default=_TIMEOUT_S, help="seconds a sync step may take")
    parser.add_argument("--sample-s", type=float, default=0.05, help="seconds between memory samples (default 0.05)")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the figures here")
    parser.add_argument("--plot", type=Path, default=None, metavar="PATH", help="also draw them in this PNG")
    parser.add_argument(
        "--plot-partitions", type=Path, default=None, metavar="PATH", help="and readings/s by engine count in this one"
    )
    parser.add_argument("--role", choices=["run"], help=argparse.SUPPRESS)
    parser.add_argument("--devices", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "run":
        return _child_run(argparse.Namespace(**vars(args) | {"days": args.days[0], "engines": args.engines[0]}))
    if args.days is not None and len(args.days) not in (1, len(args.sizes)):
        parser.error(f"--days: give one value or one per size ({len(args.sizes)})")
    if args.empty_devices < 1 or args.empty_devices >= args.sizes[0]:
        parser.error("--empty-devices must be >= 1 and below the smallest size")
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    if args.ceiling_repeat < 0:
        parser.error("--ceiling-repeat must be >= 0 (0: no ceiling)")
    ceiling_size = args.sizes[-1] if args.ceiling_size is None else args.ceiling_size
    if ceiling_size not in args.sizes:
        parser.error(f"--ceiling-size must be one of --sizes ({args.sizes})")

    scenario = scenario_file.load(args.scenario)
    if args.days is None:
        days = [horizon_days(scenario, n, int(args.readings)) for n in args.sizes]
    else:
        days = args.days * len(args.sizes) if len(args.days) == 1 else args.days
    for n, d in zip(args.sizes, days, strict=True):
        resized(scenario, n, d)  # a bad size or horizon fails here, before anything runs
    info = machine()
    intervals = sorted({f.telemetry_interval_s for f in scenario.fleets})
    gateways = sorted({f.devices_per_gateway for f in scenario.fleets})
    print(
        f"scaling: {scenario.name}, sizes {', '.join(f'{n:,}' for n in args.sizes)} devices, days "
        f"{', '.join(f'{d:.4g}' for d in days)}; a reading every {'/'.join(f'{i:g}' for i in intervals)} s, "
        f"{'/'.join(map(str, gateways))} devices a gateway, sync every {scenario.sync_interval_s:g} s"
        + ("" if args.engines == [1] else f"; engines {', '.join(map(str, args.engines))}")
        + ("" if args.repeat == 1 else f"; each run {args.repeat} times")
    )
    print(
        f"machine: {info['cpu_count']} CPUs ({info['processor']}), {info['platform']}, {info['memory_gb']} GB; "
        f"python {info['python']}; commit {info['commit']}; load average {info['load_average']}",
        flush=True,
    )
    common = {"seed": args.seed, "step_timeout_s": args.step_timeout, "sample_s": args.sample_s}
    with tempfile.TemporaryDirectory(prefix="sot-scaling-") as tmp:
        empties = {}
        for e in args.engines:
            empty = measure_size(args.scenario, args.empty_devices, args.empty_days, tmp=Path(tmp), engines=e, **common)
            empties[e] = empty
            with_engines = "" if args.engines == [1] else f", {e} engine{'s' if e > 1 else ''}"
            print(f"empty run ({empty.devices} device, {empty.days:g} days{with_engines}): {empty.process_s:.1f} s")
        runs = []
        for n, d in zip(args.sizes, days, strict=True):
            for i, e in enumerate(args.engines * args.repeat):  # interleaved: 1, 2, 1, 2, ...
                run = measure_size(
                    args.scenario, n, d, tmp=Path(tmp), engines=e, repeat=i // len(args.engines), **common
                )
                runs.append(run)
                with_engines = "" if args.engines == [1] else f" with {e} engine{'s' if e > 1 else ''}"
                print(
                    f"{n:,} devices x {d:.4g} days{with_engines}: {run.readings:,} readings in {run.wall_s:.2f} s "
                    f"({run.readings_per_s:,.0f}/s, lost {run.lost}); process {run.process_s:.1f} s, "
                    f"load {run.load_average[0]:.2f}",
                    flush=True,
                )
        ceiling = None
        if args.ceiling_repeat:
            d = days[args.sizes.index(ceiling_size)]
            ceiling = measure_ceiling(
                args.scenario, ceiling_size, d, seed=args.seed, repeat=args.ceiling_repeat, tmp=Path(tmp)
            )
    rows = figures(runs, empties, ceiling)
    print(_tables(rows, empties))
    if ceiling is not None:
        print(
            f"broker ceiling ({ceiling.broker}, {ceiling.clients}): {ceiling.messages:,} messages, "
            f"{ceiling.payload_bytes / 1e6:,.1f} MB of {ceiling.devices:,} devices' payloads in {ceiling.seconds:.3f} s "
            f"(best of {len(ceiling.runs_s)}): {ceiling.messages_per_s:,.0f} msgs/s, {ceiling.mb_per_s:,.1f} MB/s, "
            f"{ceiling.readings_per_s:,.0f} readings/s"
        )
    curve = [r for r in rows if r["engines"] == args.engines[0] and r["repeat"] == 0]  # what --plot draws
    last = curve[-1]
    print(
        f"linearity ({last['devices']:,} against {rows[0]['devices']:,} devices): {last['linearity']:.2f}x µs/reading"
    )
    if last["ceiling_share"] is not None:
        print(f"end to end / broker ceiling at {last['devices']:,} devices: {last['ceiling_share']:.1%}")
    for r in rows:
        if r["engines"] != 1 and r["vs_one_engine"] is not None:
            print(
                f"{r['engines']} engines / 1 engine at {r['devices']:,} devices (run {r['repeat'] + 1}): "
                f"{r['vs_one_engine']:.2f}x readings/s"
            )

    if args.json is not None:
        document = {
            "benchmark": "scaling",
            "command": " ".join(["python", "bench/scaling.py", *(argv if argv is not None else sys.argv[1:])]),
            "scenario": scenario.name,
            "telemetry_interval_s": intervals,
            "sync_interval_s": scenario.sync_interval_s,
            "machine": info,
            "engines": args.engines,
            "repeat": args.repeat,
            "baseline": {
                "linearity": f"us_per_reading of {rows[0]['devices']} devices, same engine count",
                "memory": "the empty run, same engine count",
                "vs_one_engine": "readings_per_s of 1 engine, same size, same run (same repeat)",
            },
            "empty": asdict(empties[args.engines[0]]),
            "empties": [asdict(e) for e in empties.values()],
            "sizes": rows,
            "ceiling": None
            if ceiling is None
            else asdict(ceiling)
            | {
                "messages_per_s": ceiling.messages_per_s,
                "readings_per_s": ceiling.readings_per_s,
                "mb_per_s": ceiling.mb_per_s,
            },
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    if args.plot is not None:
        plot(curve, ceiling, args.plot)
        print(f"wrote {args.plot}")
    if args.plot_partitions is not None:
        plot_partitions(rows, args.plot_partitions)
        print(f"wrote {args.plot_partitions}")
    lost = [f"{r.devices:,} devices x {r.engines} engines" for r in runs if r.lost]
    if lost:
        print(f"messages were lost at {', '.join(lost)}", file=sys.stderr)
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
