"""``sot engine --inspect DB``: a finished run's database served read-only, changing nothing.

A short run of the cars (hundreds of cases still open, with SLA clocks that a running engine would
escalate) leaves its database; an inspection of it in place, and one of a copy of the file alone
(the case that used to escalate the open cases), serve its cases, KPIs and metrics as stored, with
no broker at all, and leave every byte of the database as it was.
"""

from __future__ import annotations

import hashlib
import json
import queue
import re
import shutil
import signal
import sqlite3
import subprocess
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.cli import ROOT, SOT, processes_mentioning, sot

pytestmark = pytest.mark.integration

CARS = ROOT / "scenarios" / "cars.yaml"
WAIT_S = 60.0  # the longest the inspection may take to listen
OPEN = ("open", "in_progress")


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory of a finished two-day run of the cars."""
    out = tmp_path_factory.mktemp("cars")
    proc = sot("run", str(CARS), "--days", "2", "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert processes_mentioning(str(out)) == [], "broker or engine left running"
    return out


def database_files(directory: Path) -> dict[str, str]:
    """The database's files in ``directory`` and their sha256, but SQLite's shared-memory index (``-shm``)."""
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.glob("engine.sqlite*"))
        if not p.name.endswith("-shm")
    }


def stored(db: Path) -> dict[str, Any]:
    """What the database holds, read by SQLite itself (``immutable``: this read changes nothing either)."""
    with sqlite3.connect(f"file:{db}?mode=ro&immutable=1", uri=True) as conn:
        counters = dict(conn.execute("SELECT name, value FROM counters").fetchall())
        return {
            "cases": conn.execute("SELECT count(*) FROM cases").fetchone()[0],
            "open": conn.execute(f"SELECT count(*) FROM cases WHERE state IN {OPEN}").fetchone()[0],
            "commands": conn.execute("SELECT count(*) FROM outbox WHERE kind = 'SendCommand'").fetchone()[0],
            "breaches": conn.execute("SELECT count(*) FROM sla_breaches").fetchone()[0],  # an escalation adds some
            "counters": counters,
        }


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def tcp_sockets(pid: int) -> list[tuple[int, str]]:
    """The local port and state (``/proc/net/tcp`` hex code: 0A listening, 01 established) of each TCP socket of ``pid``."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink().name
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                found.append((int(fields[1].rsplit(":", 1)[1], 16), fields[3]))
    return found


def inspect(db: Path, *extra: str) -> dict[str, Any]:
    """Run ``sot engine --inspect db --http 0``, fetch what a user looks at, stop it with SIGTERM."""
    proc = subprocess.Popen(
        [*SOT, "engine", "--inspect", str(db), "--http", "0", *extra],
        cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stderr is not None
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True)  # type: ignore[union-attr]
    reader.start()
    said: list[str] = []
    try:
        while not any("read-only" in line and "HTTP API on" in line for line in said):
            try:
                said.append(lines.get(timeout=WAIT_S))
            except queue.Empty:
                pytest.fail(f"the inspection said nothing of its URL in {WAIT_S} s: {said}")
        url = next(re.findall(r"HTTP API on (http://\S+)", line)[0] for line in said if "read-only" in line)
        port = int(url.rsplit(":", 1)[1])
        seen: dict[str, Any] = {path: get(url + path) for path in ("/healthz", "/cases?limit=1", "/kpis", "/metrics")}
        seen["/cases?state=in_progress&limit=1"] = get(url + "/cases?state=in_progress&limit=1")
        seen["sockets"] = tcp_sockets(proc.pid)
        seen["port"] = port
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    reader.join(timeout=30)
    while not lines.empty():
        said.append(lines.get())
    seen["exit"], seen["stderr"] = proc.returncode, "".join(said)
    return seen


def check(seen: dict[str, Any], facts: dict[str, Any], shown: str) -> None:
    assert seen["exit"] == 0, seen["stderr"][-3000:]
    assert "read-only" in seen["stderr"] and "connect" not in seen["stderr"].lower()
    # Nothing but its own HTTP port: no connection to a broker, nor an attempt at one.
    assert seen["sockets"] and all(port == seen["port"] for port, _ in seen["sockets"]), seen["sockets"]

    status, body = seen["/healthz"]
    health = json.loads(body)
    assert status == 200 and (health["status"], health["inspecting"]) == ("inspect", shown)
    assert health["connected"] is False and health["degraded"] is None
    assert health["clock"] == "event"

    status, body = seen["/cases?limit=1"]
    assert status == 200 and json.loads(body)["total"] == facts["cases"] > 0
    status, body = seen["/cases?state=in_progress&limit=1"]
    assert status == 200 and json.loads(body)["total"] == facts["open"] > 0

    status, body = seen["/kpis"]
    kpis = json.loads(body)
    counters = facts["counters"]
    assert status == 200 and kpis["open_cases"] == facts["open"]
    assert kpis["messages"]["ingested"] == counters["msg_ingested"] > 0
    assert kpis["cases_opened"] == counters["cases_opened"] and kpis["counters"] == counters

    status, body = seen["/metrics"]
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }
    assert samples[("sot_open_cases", ())] == facts["open"]
    assert samples[("sot_messages_ingested_total", ())] == counters["msg_ingested"]
    assert samples[("sot_readings_total", ())] == counters["readings"]
    assert samples[("sot_work_orders_total", ())] == counters["work_orders"]
    commands = sum(v for (name, _), v in samples.items() if name == "sot_commands_total")
    assert commands == facts["commands"] > 0


def test_a_finished_run_is_inspected_in_place_and_left_as_it_was(finished: Path) -> None:
    db = finished / "engine.sqlite"
    before, facts = database_files(finished), stored(db)
    assert facts["open"] > 0
    seen = inspect(db, "--config", str(finished / "engine-config.json"))
    check(seen, facts, str(db))
    assert database_files(finished) == before
    assert stored(db) == facts


def test_a_copy_of_the_database_alone_gets_no_file_beside_it(finished: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(finished / "engine.sqlite", copy / "engine.sqlite")
    facts = stored(copy / "engine.sqlite")
    seen = inspect(copy / "engine.sqlite")
    check(seen, facts, str(copy / "engine.sqlite"))
    assert [p.name for p in copy.iterdir()] == ["engine.sqlite"]  # no -wal, -shm or lock made
    assert (
        hashlib.sha256((copy / "engine.sqlite").read_bytes()).digest()
        == hashlib.sha256((finished / "engine.sqlite").read_bytes()).digest()
    )


def test_an_inspection_takes_no_broker_options(finished: Path) -> None:
    proc = sot("engine", "--inspect", str(finished / "engine.sqlite"), "--broker", "mqtt://127.0.0.1:1883")
    assert proc.returncode == 2
    assert "connects to no broker: drop --broker" in " ".join(proc.stderr.replace("│", " ").split())  # out of its box


def test_a_sim_epoch_must_be_an_iso_time(finished: Path) -> None:
    proc = sot("engine", "--inspect", str(finished / "engine.sqlite"), "--sim-epoch", "new year")
    assert proc.returncode == 2 and "ISO 8601" in proc.stderr
