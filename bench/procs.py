"""The processes of one bench run, read from ``/proc``: peak resident memory, CPU seconds, and which
of them is the world, an engine partition or the broker (:class:`PeakSampler` samples them all
until the run exits)."""

from __future__ import annotations

import bisect
import contextlib
import math
import os
import subprocess
import threading
import time
from pathlib import Path

__all__ = ["PeakSampler", "cpu_seconds", "vmhwm_bytes"]

ROLES = ("world", "engine", "broker")
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


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


def cpu_seconds(pid: int) -> float | None:
    """User and system CPU seconds of process ``pid`` so far, or None once it has exited."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime, stime: fields 14 and 15 of stat


def _role_of(pid: int) -> str | None:
    """``engine`` for ``python -m support_engine`` (``engine-pK`` for partition K of several),
    ``broker`` for ``mosquitto -c``; None for anything else."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return None
    if "-m" in argv and "support_engine" in argv:
        k, _, n = (argv[argv.index("--partition") + 1] if "--partition" in argv[:-1] else "0/1").partition("/")
        return "engine" if n in ("", "1") else f"engine-p{k}"  # the names the runner gives their logs
    if Path(argv[0]).name == "mosquitto" and "-c" in argv:
        return "broker"
    return None


class PeakSampler(threading.Thread):
    """Sample the peak RSS and CPU time of a world process, its engines and its broker until it exits."""

    def __init__(self, proc: subprocess.Popen[bytes], interval_s: float, *, engines: int = 1) -> None:
        super().__init__(daemon=True)
        self.proc, self.interval_s, self.expected = proc, interval_s, 2 + engines
        self.pids: dict[str, int] = {"world": proc.pid}
        self.peaks: dict[str, int] = {}
        self.cpu: dict[str, list[tuple[float, float]]] = {}  # (monotonic s, CPU s) samples by process

    def run(self) -> None:
        while self.proc.poll() is None:
            if len(self.pids) < self.expected:
                for child in _children(self.proc.pid):
                    role = _role_of(child)
                    if role is not None and role not in self.pids:
                        self.pids[role] = child
            for role, pid in self.pids.items():
                peak, cpu = vmhwm_bytes(pid), cpu_seconds(pid)
                if peak is not None:
                    self.peaks[role] = max(peak, self.peaks.get(role, 0))
                if cpu is not None:
                    self.cpu.setdefault(role, []).append((time.monotonic(), cpu))
            time.sleep(self.interval_s)

    def cpu_between(self, role: str, start: float, end: float) -> float:
        """CPU seconds ``role`` used between two ``time.monotonic()`` instants, interpolated between samples."""
        samples = self.cpu.get(role, [])
        if not samples:
            return math.nan

        def at(t: float) -> float:
            i = bisect.bisect_left(samples, (t, -math.inf))
            if i == 0 or i == len(samples):
                return samples[min(i, len(samples) - 1)][1]
            (t0, c0), (t1, c1) = samples[i - 1], samples[i]
            return c0 + (c1 - c0) * (t - t0) / (t1 - t0) if t1 > t0 else c1

        return round(at(end) - at(start), 3)


# -- one size -------------------------------------------------------------------------------------
