"""Device outboxes: the bound and the order (unit), and a broker SIGKILLed mid-load-test losing nothing.

The unit tests drive :class:`loadtest.outbox.Outbox` with made-up times, and check the books that
count its copies (the report, the broker watch over a restart). The load test runs a few
hundred devices in ``receipt`` mode against a load broker (sessions in memory: a crash loses every
message it held) and an engine with a receipt for every message, kills the broker with SIGKILL once
the engine has taken some in, starts it again on the same port, and checks the books: nothing lost,
each message taken in once, the copies sent again counted. No timing is asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest

from contracts.engine_config import EngineConfig
from contracts.topics import Topics
from harness.broker import BrokerUrl, mosquitto_available
from loadtest.broker import start_load_broker
from loadtest.options import LoadTestOptions
from loadtest.outbox import MAX_BACKOFF, Entry, Outbox
from loadtest.report import EngineCounts, Stat, build_report, flat_metrics
from loadtest.witnesses import BrokerWatch, scrape, start_engine

ROOT = Path(__file__).resolve().parents[2]


def message(seq: int, created_s: float = 0.0) -> Entry:
    return Entry(seq=seq, kind="telemetry", topic="sot/dev/d1/telemetry", payload=b"{}", created_s=created_s)


def fill(box: Outbox, seqs: range, connection: int = 1, now_s: float = 0.0) -> list[Entry]:
    dropped = []
    for seq in seqs:
        dropped += box.put(message(seq))
        box.sent(seq, now_s, connection)
    return dropped


# -- the outbox itself -----------------------------------------------------------------------------
def test_past_its_bound_the_outbox_drops_the_oldest_and_counts_them() -> None:
    box = Outbox("puback", capacity=3)

    dropped = fill(box, range(1, 8))

    assert [e.seq for e in dropped] == [1, 2, 3, 4]
    assert [e.seq for e in box] == [5, 6, 7] and len(box) == 3
    assert box.overflow == 4


def test_after_a_reconnect_the_backlog_goes_out_oldest_first_and_copies_count_as_resent() -> None:
    box = Outbox("puback", capacity=10)
    fill(box, range(1, 6), connection=1)
    box.acknowledge(2)  # PUBACKed on the first connection: gone
    box.acknowledge(4)
    box.put(message(6))  # made while the connection was down: never sent

    backlog = box.backlog(connection=2)

    assert [e.seq for e in backlog] == [1, 3, 5, 6]
    assert [box.sent(e.seq, 1.0, 2) for e in backlog] == [True, True, True, False]  # 6 is a first copy
    assert box.resent == 3
    assert box.backlog(connection=2) == []  # each once per connection


def test_puback_mode_forgets_at_the_puback_and_ignores_receipts() -> None:
    box = Outbox("puback")
    fill(box, range(1, 3))

    assert box.confirm(1) is None and 1 in box
    first = box.acknowledge(1)
    assert first is not None and first.acked and 1 not in box
    assert box.acknowledge(1) is None  # a PUBACK of another copy counts nothing


def test_receipt_mode_keeps_a_message_past_its_puback_until_the_engine_receipts_it() -> None:
    box = Outbox("receipt")
    fill(box, range(1, 4))

    assert box.acknowledge(2) is not None and box.acknowledge(2) is None  # the first PUBACK only
    assert [e.seq for e in box.backlog(connection=2)] == [1, 2, 3]  # the broker's PUBACK is no receipt
    confirmed = box.confirm(2)
    assert confirmed is not None and confirmed.acked
    assert [e.seq for e in box] == [1, 3] and box.confirm(2) is None


def test_an_unreceipted_message_is_sent_again_on_a_backoff() -> None:
    box = Outbox("receipt", resend_after_s=2.0)
    fill(box, range(1, 3), now_s=0.0)
    box.put(message(3))  # never sent: nothing to wait for yet

    assert box.overdue(1.9) == []
    due = box.overdue(2.0)
    assert [e.seq for e in due] == [1, 2]
    for e in due:
        box.sent(e.seq, 2.0, 1)
    assert box.overdue(5.9) == []  # the next wait is twice as long
    assert [e.seq for e in box.overdue(6.0)] == [1, 2]
    for _ in range(10):  # the wait stops growing
        for e in box.overdue(1e9):
            box.sent(e.seq, 0.0, 1)
    assert [e.seq for e in box.overdue(2.0 * MAX_BACKOFF)] == [1, 2]
    assert Outbox("puback").overdue(1e9) == []


def test_misuse_raises() -> None:
    box = Outbox("receipt")
    box.put(message(5))
    with pytest.raises(ValueError, match="seq order"):
        box.put(message(5))
    with pytest.raises(ValueError, match="mode"):
        Outbox("broker")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="capacity"):
        Outbox("puback", capacity=0)


def test_receipt_mode_needs_a_receipt_for_every_message() -> None:
    with pytest.raises(ValueError, match="--ack-every 1"):
        LoadTestOptions(users=1, spawn_rate=1, duration_s=5, outbox="receipt").check()
    LoadTestOptions(users=1, spawn_rate=1, duration_s=5, outbox="receipt", ack_every=1).check()
    with pytest.raises(ValueError, match="--outbox-size"):
        LoadTestOptions(users=1, spawn_rate=1, duration_s=5, outbox_size=0).check()


def test_the_report_counts_a_message_once_and_its_copies_apart() -> None:
    def row(method: str, name: str, requests: int, failures: int = 0) -> Stat:
        return Stat(method, name, requests, failures, 0, 1.0, {1.0: requests - failures}, {100: requests})

    stats = [
        row("publish", "telemetry", 100, failures=2),
        row("resend", "telemetry", 7),
        row("outbox", "overflow", 2, failures=2),
        row("outbox", "unconfirmed", 1, failures=1),
    ]
    report = build_report(
        run={}, stats=stats, engine=EngineCounts(ingested=98, duplicates=5), broker=None, engine_publishes=0.0
    )

    m = report["messages"]
    assert (m["generated"], m["published"], m["publish_failed"], m["lost"]) == (100, 98, 2, 0)
    assert (m["resent"], m["outbox_overflow"], m["unconfirmed"], m["duplicates"]) == (7, 2, 1, 5)
    assert flat_metrics(report)["resent"] == 7 and flat_metrics(report)["outbox_overflow"] == 2


def test_the_broker_watch_carries_its_counts_over_a_broker_restart() -> None:
    watch = BrokerWatch(BrokerUrl("127.0.0.1", 1), Topics("t/v1"))  # never connected: fed by hand

    def sys_value(name: str, value: float) -> None:
        message = paho.MQTTMessage(topic=f"$SYS/broker/{name}".encode())
        message.payload = str(value).encode()
        watch._on_message(None, None, message)  # type: ignore[arg-type]

    for received in (100, 150, 5, 20):  # the broker restarts after 150
        sys_value("publish/messages/received", received)
    sys_value("clients/connected", 200)
    sys_value("clients/connected", 3)  # a level, not a count

    assert watch.counts().received == 170 and watch.connected() == 3


# -- a broker crash in the middle of a load test -----------------------------------------------------
DEVICES = 200
LOAD = [
    "--users", str(DEVICES), "--spawn-rate", "100", "--rate", "400", "--duration", "16s",
    "--drain", "9s", "--receipt-timeout", "2s", "--workers", "0",
    "--ack-every", "1", "--outbox", "receipt", "--fail-on", "lost>0",
]  # fmt: skip
KILL_AFTER = 1500  # messages the engine has taken in before the broker is killed
DOWN_S = 1.0  # the broker stays down this long


def wait_for_ingested(metrics_url: str, count: int, timeout_s: float, run: subprocess.Popen[str]) -> float:
    """Poll the engine's counters until it has taken in ``count`` messages; the count reached."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        counts = scrape(metrics_url, timeout_s=1.0)
        if counts is not None and counts.ingested >= count:
            return counts.ingested
        if run.poll() is not None:
            raise AssertionError(f"the load test ended before the broker was killed:\n{run.communicate()[1]}")
        time.sleep(0.1)
    raise AssertionError(f"the engine had not taken in {count} messages after {timeout_s:g} s")


@pytest.mark.integration
@pytest.mark.skipif(not mosquitto_available(), reason="load tests need Mosquitto (apt-get install mosquitto)")
def test_a_broker_killed_mid_run_loses_nothing_when_devices_keep_messages_until_the_receipt(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with start_load_broker(tmp_path / "broker") as broker:
        engine = start_engine(broker.url, tmp_path / "engine", EngineConfig(), ack_every=1)
        try:
            args = ["--broker", str(broker.url), "--engine-metrics", engine.metrics_url, "--out", str(out), "-q"]
            run = subprocess.Popen(
                [sys.executable, "-m", "harness.cli", "loadtest", "scenarios/city.yaml", *args, *LOAD],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                text=True,
                cwd=ROOT,
            )
            try:
                wait_for_ingested(engine.metrics_url, KILL_AFTER, 90.0, run)
                broker.kill()
                time.sleep(DOWN_S)
                broker.restart()
                _, stderr = run.communicate(timeout=240)
            finally:
                if run.poll() is None:
                    run.kill()
                    run.communicate()
        finally:
            engine.stop()

    assert run.returncode == 0, stderr
    r: dict[str, Any] = json.loads((out / "loadtest.json").read_text())
    m = r["messages"]
    assert r["connections"]["lost"] > 0  # the crash did cut the devices off
    assert m["publish_failed"] == 0 and m["outbox_overflow"] == 0
    assert m["generated"] == m["published"] > KILL_AFTER
    # Every message the devices made was taken in, once: the copies sent again were recognised.
    assert m["lost"] == 0 and m["surplus"] == 0 and m["rejected"] == 0
    assert m["ingested"] == m["published"]
    assert m["resent"] > 0
    assert 0 <= m["duplicates"] <= m["resent"]  # a duplicate is a copy sent again, not every copy is one
    assert r["outbox"] == {"mode": "receipt", "size": 100}
