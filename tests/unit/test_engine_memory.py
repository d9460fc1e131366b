"""A long-running engine's memory stays put: after a million ingested messages it holds what it held
after ten thousand, within a stated bound.

The engine ingests one-reading telemetry messages from 100 devices in event time (a clock every
10,000 messages, handled, committed, acknowledged), through its whole service path: topic parse,
decode, de-duplication ledger, twins and rules, storage. The transport is a lean stand-in for the
broker that keeps no history (a recording double would itself grow by one entry a message). The
bound is 8 MB of resident memory from 10^4 to 10^6 messages, 8 bytes a message: an engine that
kept anything per message (as the de-duplication ledger once did, about 210 bytes a message)
would grow by hundreds of megabytes.
"""

from __future__ import annotations

import gc
import queue
from pathlib import Path

from contracts import Topics, codec
from contracts.messages import Clock
from support_engine.service import EngineService
from support_engine.storage import Storage
from support_engine.transport import Delivery
from tests.unit.test_engine_hold import CONFIG

TOPICS = Topics("mem/v1")
DEVICES, READINGS_A_STEP = 100, 100  # 10,000 messages a step
BOUND = 8 * 2**20


class LeanTransport:
    """Deliveries in, counts out: no list of what was published or acknowledged."""

    version = "5"
    session_present = False
    receive_window: int | None = None

    def __init__(self) -> None:
        self.inbox: queue.SimpleQueue[Delivery] = queue.SimpleQueue()
        self.acks = self.published = 0

    def connect(self) -> None:
        pass

    def subscribe(self, filters: list[str]) -> None:
        pass

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        self.published += 1

    def ack(self, mid: int, qos: int) -> None:
        self.acks += 1


def resident_bytes() -> int:
    gc.collect()
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def test_memory_after_a_million_messages_is_within_8_mb_of_memory_after_ten_thousand(tmp_path: Path) -> None:
    transport = LeanTransport()
    engine = EngineService(CONFIG, transport, Storage(tmp_path / "e.sqlite"), topics=TOPICS, clock="event")
    engine.start()
    topics = [TOPICS.telemetry(f"d-{d}") for d in range(DEVICES)]
    sent = 0

    def step(k: int) -> None:
        nonlocal sent
        put = transport.inbox.put
        for r in range(READINGS_A_STEP):
            seq = k * READINGS_A_STEP + r + 1
            for d in range(DEVICES):
                payload = b'{"device_id":"d-%d","ts":%r,"boot_id":0,"seq":%d,"values":{"temp":4.0}}' % (
                    d,
                    seq * 60.0,
                    seq,
                )
                put(Delivery(topics[d], payload, sent + 1, 1, False))
                sent += 1
        t = (k + 1) * READINGS_A_STEP * 60.0
        put(Delivery(TOPICS.clock, codec.encode(Clock(t=t, published=sent)), sent + 1, 1, False))
        while not transport.inbox.empty() or engine._clock is not None:
            engine.poll(timeout_s=0)

    step(0)
    after_1e4 = resident_bytes()
    for k in range(1, 100):
        step(k)
    after_1e6 = resident_bytes()
    assert engine.counters["msg_ingested"] == sent == 1_000_000
    assert transport.acks == sent + 100  # every message and clock acknowledged once committed
    assert len(engine.ledger) == DEVICES  # one entry a stream
    assert after_1e6 - after_1e4 <= BOUND, f"grew {(after_1e6 - after_1e4) / 2**20:.1f} MB over 990,000 messages"
