"""Running ``sot`` as a user does, and checking that it left no broker or engine behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

__all__ = ["FREEZERS", "ROOT", "SOT", "processes_mentioning", "sot"]

ROOT = Path(__file__).resolve().parents[2]
FREEZERS = ROOT / "scenarios" / "freezers.yaml"
SOT = [sys.executable, "-m", "harness.cli"]


def sot(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SOT, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT, stdin=subprocess.DEVNULL
    )


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that mention ``text`` (leftover brokers or engines)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(cmdline)
    return found
