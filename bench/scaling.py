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
linear). The ceiling is what the same Mosquitto carries between its own C clients for the payloads
of one size (``--ceiling-size``, by default the largest), measured by ``bench/broker_ceiling.py``
in the same run; end-to-end readings/s is given as a share of the ceiling's.

    python bench/scaling.py                                     # 1e3, 1e4, 1e5, 1e6 devices, ~8 M readings each
    python bench/scaling.py --sizes 1e3,1e4,1e5 --json scaling.json --plot scaling.png
    python bench/scaling.py --sizes 1e3,1e4 --days 30,3         # horizons set by hand, one per size
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from broker_ceiling import Ceiling, load_average, measure_ceiling, terminate

from sim import scenario_file
from sim.scenario import Scenario

__all__ = [
    "Ceiling",
    "PeakSampler",
    "SizeRun",
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
ROLES = ("world", "engine", "broker")
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
def vmhwm_bytes(pid: int) -> int | None:
    """Peak resident set of process ``pid`` so far (``VmHWM``), or None once it has exited."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return None  # a zombie has no memory left to report


def _children(pid: int) -> list[int]:
    """Process ids of ``pid``'s children (``/proc/<pid>/task/*/children``, else a scan of ``/proc``)."""
    found: list[int] = []
    tasks = Path(f"/proc/{pid}/task")
    listed = False
    with contextlib.suppress(OSError):
        for task in tasks.iterdir():
            with contextlib.suppress(OSError):
                found += [int(x) for x in (task / "children").read_text().split()]
                listed = True
    if listed:
        return found
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
    return found


def _role_of(pid: int) -> str | None:
    """``engine`` for ``python -m support_engine``, ``broker`` for ``mosquitto -c``; None for anything else."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return None
    if "-m" in argv and "support_engine" in argv:
        return "engine"
    if Path(argv[0]).name == "mosquitto" and "-c" in argv:
        return "broker"
    return None


class PeakSampler(threading.Thread):
    """Sample the peak RSS of a world process, its engine and its broker until the world process exits."""

    def __init__(self, proc: subprocess.Popen[bytes], interval_s: float) -> None:
        super().__init__(daemon=True)
        self.proc, self.interval_s = proc, interval_s
        self.pids: dict[str, int] = {"world": proc.pid}
        self.peaks: dict[str, int] = {}

    def run(self) -> None:
        while self.proc.poll() is None:
            if len(self.pids) < len(ROLES):
                for child in _children(self.proc.pid):
                    role = _role_of(child)
                    if role is not None and role not in self.pids:
                        self.pids[role] = child
            for role, pid in self.pids.items():
                peak = vmhwm_bytes(pid)
                if peak is not None:
                    self.peaks[role] = max(peak, self.peaks.get(role, 0))
            time.sleep(self.interval_s)


# -- one size -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SizeRun:
    """One run's figures: what the runner reports and what the sampler saw."""

    devices: int
    days: float
    sync_steps: int
    readings: int
    published: int
    ingested: int
    lost: int
    wall_s: float  # the runner's run loop
    process_s: float  # the world process, start to exit: imports, registry, engine start-up and shutdown too
    peak_rss_bytes: dict[str, int]
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
) -> SizeRun:
    """Run one size in a child process (which starts the broker and the engine) and sample all three."""
    out = tmp / f"run-{devices}.json"
    command = [sys.executable, str(Path(__file__).resolve()), "--role", "run", "--scenario", str(scenario_path)]
    command += ["--devices", str(devices), "--days", repr(days), "--step-timeout", repr(step_timeout_s)]
    command += ["--out", str(out), "--workdir", str(tmp / f"work-{devices}")]
    if seed is not None:
        command += ["--seed", str(seed)]
    load = load_average()
    started = time.monotonic()
    proc = subprocess.Popen(command, stdin=subprocess.DEVNULL)
    sampler = PeakSampler(proc, sample_s)
    sampler.start()
    try:
        code = proc.wait()
    finally:
        terminate(proc)
        sampler.join()
        shutil.rmtree(tmp / f"work-{devices}", ignore_errors=True)
    process_s = time.monotonic() - started
    if code != 0:
        raise RuntimeError(f"the run of {devices:,} devices exited with code {code} (its output is above)")
    child = json.loads(out.read_text())
    peaks = dict(sampler.peaks)
    peaks["world"] = max(peaks.get("world", 0), child["world_vmhwm_bytes"])
    missing = [role for role in ROLES if role not in peaks]
    if missing:
        raise RuntimeError(f"no memory sample of the {', '.join(missing)} process (found {sampler.pids})")
    m = child["messages"]
    return SizeRun(
        devices=devices,
        days=days,
        sync_steps=child["sync_steps"],
        readings=m["readings"],
        published=m["published"],
        ingested=m["ingested"],
        lost=m["lost"],
        wall_s=child["timing"]["wall_s"],
        process_s=round(process_s, 3),
        peak_rss_bytes={role: peaks[role] for role in ROLES},
        load_average=load,
        broker=child["broker"],
    )


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _child_run(args: argparse.Namespace) -> int:
    """The world process: one ``run_scenario``; write the figures the parent needs to ``--out``."""
    from harness.runner import run_scenario

    signal.signal(signal.SIGTERM, _raise_interrupt)  # stop the broker and the engine on the way out
    scenario = resized(scenario_file.load(args.scenario), args.devices, args.days)
    outcome = run_scenario(
        scenario,
        seed=args.seed,
        broker_kind="mosquitto",
        workdir=Path(args.workdir),
        step_timeout_s=args.step_timeout,
    )
    result = outcome.result
    document = {
        "messages": result["messages"],
        "timing": result["timing"],
        "broker": result["manifest"]["broker"],
        "sync_steps": math.ceil(scenario.duration_s / scenario.sync_interval_s),
        "world_vmhwm_bytes": vmhwm_bytes(os.getpid()) or 0,
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


def figures(runs: Sequence[SizeRun], empty: SizeRun, ceiling: Ceiling | None) -> list[dict[str, Any]]:
    """Every size's absolute figures and ratios, as the JSON document and the plot take them."""
    base = runs[0].us_per_reading
    rows = []
    for r in runs:
        rows.append(
            asdict(r)
            | {
                "readings_per_s": r.readings_per_s,
                "us_per_reading": r.us_per_reading,
                "linearity": r.us_per_reading / base,
                "rss_bytes_per_device": bytes_per_device(r, empty),
                "ceiling_share": None if ceiling is None else r.readings_per_s / ceiling.readings_per_s,
            }
        )
    return rows


def _tables(rows: Sequence[dict[str, Any]], empty: SizeRun) -> str:
    head = (
        f"{'devices':>9} {'days':>7} {'steps':>5} {'readings':>12} {'wall s':>8} {'readings/s':>11} "
        f"{'us/rdg':>7} {'linear':>6} {'ceiling':>7} {'lost':>5} {'load':>5}"
    )
    lines = [head]
    for r in rows:
        share = "-" if r["ceiling_share"] is None else f"{r['ceiling_share']:.1%}"
        lines.append(
            f"{r['devices']:>9,} {r['days']:>7.3g} {r['sync_steps']:>5,} {r['readings']:>12,} {r['wall_s']:>8.2f} "
            f"{r['readings_per_s']:>11,.0f} {r['us_per_reading']:>7.2f} {r['linearity']:>5.2f}x {share:>7} "
            f"{r['lost']:>5,} {r['load_average'][0]:>5.2f}"
        )
    lines += ["", f"{'devices':>9} {'peak RSS MB world/engine/broker':>32} {'bytes/device world/engine/broker':>34}"]
    for r in [{"devices": empty.devices, "peak_rss_bytes": empty.peak_rss_bytes, "rss_bytes_per_device": None}, *rows]:
        mb = " / ".join(f"{r['peak_rss_bytes'][role] / 1e6:.1f}" for role in ROLES)
        per = "(empty run)" if r["rss_bytes_per_device"] is None else ""
        if r["rss_bytes_per_device"] is not None:
            per = " / ".join(f"{r['rss_bytes_per_device'][role]:,.0f}" for role in ROLES)
        lines.append(f"{r['devices']:>9,} {mb:>32} {per:>34}")
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
    parser.add_argument("--empty-devices", type=int, default=1, help="devices of the empty run (default 1)")
    parser.add_argument("--empty-days", type=float, default=1.0, help="days of the empty run (default 1)")
    parser.add_argument("--ceiling-size", type=int, default=None, help="whose payloads the ceiling carries (largest)")
    parser.add_argument("--ceiling-repeat", type=int, default=3, help="ceiling runs; the best counts (default 3)")
    parser.add_argument("--step-timeout", type=float, default=_TIMEOUT_S, help="seconds a sync step may take")
    parser.add_argument("--sample-s", type=float, default=0.05, help="seconds between memory samples (default 0.05)")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the figures here")
    parser.add_argument("--plot", type=Path, default=None, metavar="PATH", help="also draw them in this PNG")
    parser.add_argument("--role", choices=["run"], help=argparse.SUPPRESS)
    parser.add_argument("--devices", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "run":
        return _child_run(argparse.Namespace(**vars(args) | {"days": args.days[0]}))
    if args.days is not None and len(args.days) not in (1, len(args.sizes)):
        parser.error(f"--days: give one value or one per size ({len(args.sizes)})")
    if args.empty_devices < 1 or args.empty_devices >= args.sizes[0]:
        parser.error("--empty-devices must be >= 1 and below the smallest size")
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
    )
    print(
        f"machine: {info['cpu_count']} CPUs ({info['processor']}), {info['platform']}, {info['memory_gb']} GB; "
        f"python {info['python']}; commit {info['commit']}; load average {info['load_average']}",
        flush=True,
    )
    common = {"seed": args.seed, "step_timeout_s": args.step_timeout, "sample_s": args.sample_s}
    with tempfile.TemporaryDirectory(prefix="sot-scaling-") as tmp:
        empty = measure_size(args.scenario, args.empty_devices, args.empty_days, tmp=Path(tmp), **common)
        print(f"empty run ({empty.devices} device, {empty.days:g} days): {empty.process_s:.1f} s", flush=True)
        runs = []
        for n, d in zip(args.sizes, days, strict=True):
            run = measure_size(args.scenario, n, d, tmp=Path(tmp), **common)
            runs.append(run)
            print(
                f"{n:,} devices x {d:.4g} days: {run.readings:,} readings in {run.wall_s:.2f} s "
                f"({run.readings_per_s:,.0f}/s, lost {run.lost}); process {run.process_s:.1f} s",
                flush=True,
            )
        ceiling = None
        if args.ceiling_repeat:
            d = days[args.sizes.index(ceiling_size)]
            ceiling = measure_ceiling(
                args.scenario, ceiling_size, d, seed=args.seed, repeat=args.ceiling_repeat, tmp=Path(tmp)
            )
    rows = figures(runs, empty, ceiling)
    print(_tables(rows, empty))
    if ceiling is not None:
        print(
            f"broker ceiling ({ceiling.broker}, {ceiling.clients}): {ceiling.messages:,} messages, "
            f"{ceiling.payload_bytes / 1e6:,.1f} MB of {ceiling.devices:,} devices' payloads in {ceiling.seconds:.3f} s "
            f"(best of {len(ceiling.runs_s)}): {ceiling.messages_per_s:,.0f} msgs/s, {ceiling.mb_per_s:,.1f} MB/s, "
            f"{ceiling.readings_per_s:,.0f} readings/s"
        )
    last = rows[-1]
    print(
        f"linearity ({last['devices']:,} against {rows[0]['devices']:,} devices): {last['linearity']:.2f}x µs/reading"
    )
    if last["ceiling_share"] is not None:
        print(f"end to end / broker ceiling at {last['devices']:,} devices: {last['ceiling_share']:.1%}")

    if args.json is not None:
        document = {
            "benchmark": "scaling",
            "command": " ".join(["python", "bench/scaling.py", *(argv if argv is not None else sys.argv[1:])]),
            "scenario": scenario.name,
            "telemetry_interval_s": intervals,
            "sync_interval_s": scenario.sync_interval_s,
            "machine": info,
            "baseline": {"linearity": f"us_per_reading of {rows[0]['devices']} devices", "memory": "the empty run"},
            "empty": asdict(empty),
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
        plot(rows, ceiling, args.plot)
        print(f"wrote {args.plot}")
    lost = [r.devices for r in runs if r.lost]
    if lost:
        print(f"messages were lost at {', '.join(f'{n:,}' for n in lost)} devices", file=sys.stderr)
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
