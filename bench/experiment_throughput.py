"""Experiment throughput: replications per hour of a policy comparison at --jobs 1 against --jobs 2.

Runs the same ``sot compare`` (reactive vs proactive, the same seeds) twice into fresh directories,
once with one replication at a time (the baseline) and once with two at once, and prints the
replications per hour of each and the speed-up. Every replication is a whole run through its own
Mosquitto and engine process, so this measures what a product owner waits for.

    python bench/experiment_throughput.py                       # freezers, 2 replications per arm, 90 days
    python bench/experiment_throughput.py --replications 3 --days 30
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _compare(scenario: str, replications: int, days: float | None, jobs: int, out: Path) -> dict[str, float]:
    cmd = [sys.executable, "-m", "harness.cli", "compare", scenario, "--policy", "reactive", "--policy", "proactive"]
    cmd += ["-r", str(replications), "--jobs", str(jobs), "--out", str(out)]
    if days is not None:
        cmd += ["--days", str(days)]
    started = time.monotonic()
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.monotonic() - started
    manifest = json.loads((out / "experiment.json").read_text())
    runs = manifest["ran"]
    return {"wall_s": wall, "replications": runs, "per_hour": 3600.0 * runs / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default="scenarios/freezers.yaml")
    parser.add_argument("--replications", type=int, default=2, help="replications per arm")
    parser.add_argument("--days", type=float, default=None)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="sot-bench-experiments-"))
    try:
        one = _compare(args.scenario, args.replications, args.days, 1, scratch / "jobs1")
        two = _compare(args.scenario, args.replications, args.days, 2, scratch / "jobs2")
        same = json.loads((scratch / "jobs1" / "comparison.json").read_text()) == json.loads(
            (scratch / "jobs2" / "comparison.json").read_text()
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    load = os.getloadavg()
    print(f"scenario {args.scenario}, {args.replications} replication(s) per arm x 2 arms, days {args.days or 'full'}")
    print(f"machine: {os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    for name, r in (("--jobs 1 (baseline)", one), ("--jobs 2", two)):
        print(
            f"{name:>20}: {r['replications']:.0f} runs in {r['wall_s']:.1f} s = {r['per_hour']:.1f} replications/hour"
        )
    print(f"speed-up --jobs 2 / --jobs 1: {two['per_hour'] / one['per_hour']:.2f}x; identical comparison.json: {same}")


if __name__ == "__main__":
    main()
