"""``sot run --http PORT``: the engine serves its console and API while the run lasts, and says where.

The run's process is frozen (SIGSTOP) as soon as it has printed the URL, so that the engine is
looked at in the middle of the run however fast the run goes; it is let go again (SIGCONT) and
must finish as any run does. The engine, a process of its own, serves meanwhile.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.integration.cli import FREEZERS, ROOT, SOT, processes_mentioning, sot

pytestmark = pytest.mark.integration

WAIT_S = 120.0  # the longest the run may take to start its broker and engine


def get(url: str) -> tuple[int, object]:
    try:
        with urllib.request.urlopen(url, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_a_run_serves_the_engine_console_and_api_while_it_lasts(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [*SOT, "run", str(FREEZERS), "--days", "30", "--seed", "7", "--http", "0", "--out", str(out), "--quiet"],
        cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    said: list[str] = []
    assert proc.stderr is not None
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True)  # type: ignore[union-attr]
    reader.start()
    frozen = False
    try:
        while not any("engine console and API" in line for line in said):
            try:
                said.append(lines.get(timeout=WAIT_S))
            except queue.Empty:
                pytest.fail(f"the run printed no URL in {WAIT_S} s: {said}")
        os.kill(proc.pid, signal.SIGSTOP)  # the world waits; the engine serves on
        frozen = True
        url = re.findall(r"(http://\S+?)/?,", said[-1])[0]
        status, health = get(f"{url}/healthz")
        assert status == 200, health
        assert isinstance(health, dict) and health["status"] == "ok" and health["clock"] == "event"
        status, cases = get(f"{url}/cases?limit=5")
        assert status == 200 and isinstance(cases, dict) and isinstance(cases["items"], list)
        os.kill(proc.pid, signal.SIGCONT)
        frozen = False
        stdout, _ = proc.communicate(timeout=600)
    finally:
        if frozen:
            os.kill(proc.pid, signal.SIGCONT)
        if proc.poll() is None:
            proc.terminate()  # the run stops its broker and engine on SIGTERM
            proc.wait(timeout=60)
    reader.join(timeout=30)
    while not lines.empty():
        said.append(lines.get())
    assert proc.returncode == 0, "".join(said)[-3000:]
    assert sum("engine console and API" in line for line in said) == 1  # printed once, though quiet
    assert stdout == ""  # quiet: no table
    assert processes_mentioning(str(out)) == [], "broker or engine left running"
    result = json.loads((out / "result.json").read_text())
    assert result["messages"]["lost"] == 0 and result["messages"]["ingested"] > 0
    assert not (out / "engine.url").exists()  # the URL went with the engine
    with pytest.raises(urllib.error.URLError):  # and so did its server
        urllib.request.urlopen(f"{url}/healthz", timeout=10)


def test_http_is_refused_with_engine_partitions(tmp_path: Path) -> None:
    proc = sot("run", str(FREEZERS), "--engines", "2", "--http", "0", "--out", str(tmp_path / "run"))
    assert proc.returncode == 2
    assert "--http" in proc.stderr and "--engines" in " ".join(proc.stderr.replace("│", " ").split())
