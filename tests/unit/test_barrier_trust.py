"""The harness trusts only its own engine: on a broker others can publish to, messages on the
engine's topics that the engine did not send make the run fail with what to do, rather than
change what the world is told; undecodable ones are dropped and counted; an output delivered
twice is taken once. A step the broker says it dropped is sent again, and a broker that keeps
dropping fails the run naming itself and its limit.

The barrier runs against an in-memory stand-in for the world's connection (what the engine
"publishes" is put on its inbox) and an engine process that is always alive.
"""

from __future__ import annotations

import queue

import pytest

from contracts import Topics, codec
from contracts.broker_stats import DropCount
from contracts.messages import ClockAck, Notification
from harness import runner
from harness.errors import HarnessError
from harness.runner import _Barrier

TOPICS = Topics("trust/v1")


class Connection:
    def __init__(self) -> None:
        self.inbox: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.sent: list[tuple[str, bytes]] = []
        self.connects = 1
        self.host, self.port = "127.0.0.1", 1883
        self.broker_drops = DropCount()
        self.dropped_at = 0.0

    def publish(self, topic: str, payload: bytes) -> None:
        self.sent.append((topic, payload))


class Engine:
    def alive(self) -> bool:
        return True

    def log_tail(self, lines: int = 20) -> str:
        return ""


def note(n: int, t: float = 10.0) -> bytes:
    return codec.encode(
        Notification(notification_id=f"note-{n:07d}", device_id="d-1", ts=t, kind="case_opened", text="hello")
    )


def ack(t: float, emitted: int, partition: int = 0) -> bytes:
    return codec.encode(ClockAck(t=t, received=0, emitted=emitted, partition=partition))


def barrier(engines: int = 1) -> tuple[_Barrier, Connection]:
    link = Connection()
    return _Barrier(link, TOPICS, [Engine() for _ in range(engines)], timeout_s=2.0), link  # type: ignore[arg-type]


def test_the_engines_own_outputs_pass_and_a_repeated_one_is_taken_once() -> None:
    b, link = barrier()
    for topic, payload in [(TOPICS.notify, note(1)), (TOPICS.notify, note(1)), (TOPICS.clock_ack, ack(3600.0, 1))]:
        link.inbox.put((topic, payload))
    out = b.sync(3600.0, published=0)
    assert [m.notification_id for m in out] == ["note-0000001"]  # type: ignore[attr-defined]
    assert b.repeated == 1 and not b.foreign


def test_an_output_the_engine_did_not_count_fails_the_run_and_says_what_to_do() -> None:
    b, link = barrier()
    for topic, payload in [(TOPICS.notify, note(1)), (TOPICS.notify, note(2)), (TOPICS.clock_ack, ack(3600.0, 1))]:
        link.inbox.put((topic, payload))
    with pytest.raises(HarnessError, match=r"1 outputs on the engine's topics .* another client publishes .*--prefix"):
        b.sync(3600.0, published=0)


def test_an_ack_for_a_clock_never_sent_or_contradicting_the_engines_fails_the_run() -> None:
    b, link = barrier()
    link.inbox.put((TOPICS.clock_ack, ack(7200.0, 0)))  # the run has sent no clock for 7200
    with pytest.raises(HarnessError, match="clock acks"):
        b.sync(3600.0, published=0)
    b, link = barrier()
    link.inbox.put((TOPICS.clock_ack, ack(3600.0, 0)))
    b.sync(3600.0, published=0)
    link.inbox.put((TOPICS.clock_ack, ack(3600.0, 5)))  # the same clock answered otherwise, late
    link.inbox.put((TOPICS.clock_ack, ack(7200.0, 0)))
    with pytest.raises(HarnessError, match="clock acks"):
        b.sync(7200.0, published=0)
    b, link = barrier()
    link.inbox.put((TOPICS.clock_ack, ack(3600.0, 0, partition=3)))  # no such partition in this run
    with pytest.raises(HarnessError, match="clock acks"):
        b.sync(3600.0, published=0)


def test_undecodable_bytes_on_the_engines_topics_are_dropped_and_counted_not_a_crash() -> None:
    b, link = barrier()
    link.inbox.put((TOPICS.notify, b"\x00\x01garbage"))
    link.inbox.put((TOPICS.work_order, b"{}"))
    link.inbox.put((TOPICS.clock_ack, ack(3600.0, 0)))
    assert b.sync(3600.0, published=0) == []
    assert b.foreign == {"undecodable": 2}


def test_every_partition_must_answer_and_a_copy_of_an_answer_is_no_contradiction() -> None:
    b, link = barrier(engines=2)
    link.inbox.put((TOPICS.clock_ack, ack(3600.0, 0, partition=0)))
    link.inbox.put((TOPICS.clock_ack, ack(3600.0, 0, partition=0)))  # answered again (a clock sent again)
    with pytest.raises(HarnessError, match=r"no complete ack for t=3600.0 from partitions \[1\]"):
        b.sync(3600.0, published=0)


def test_a_step_the_broker_dropped_is_sent_again_once_its_count_holds_still() -> None:
    b, link = barrier()
    step = [(TOPICS.telemetry("d-1"), b"r1"), (TOPICS.telemetry("d-2"), b"r2")]
    b.send(step)
    link.broker_drops.observe(b"0")
    link.broker_drops.observe(b"2")  # the broker dropped two messages, long enough ago
    b.timeout_s = 1.5
    with pytest.raises(HarnessError, match=r"no complete ack .* the broker dropped 2 messages meanwhile"):
        b.sync(3600.0, published=2)
    assert (
        link.sent[3:5] == step and len(link.sent) == 6 and b.resent == 2
    )  # sent again, once: the count did not grow again


def test_a_broker_that_drops_every_time_fails_the_run_naming_its_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "_MAX_DROP_RESENDS", 2)
    b, link = barrier()
    b.send([(TOPICS.telemetry("d-1"), b"r1")])
    link.broker_drops.observe(b"0")

    def publish(topic: str, payload: bytes) -> None:  # every copy is dropped too
        link.sent.append((topic, payload))
        if topic != TOPICS.clock:
            link.broker_drops.observe(str(link.broker_drops.total + 1).encode())

    link.publish = publish  # type: ignore[method-assign]
    link.broker_drops.observe(b"1")
    b.timeout_s = 60.0
    with pytest.raises(HarnessError, match=r"broker at 127.0.0.1:1883 keeps dropping .*max_queued_messages"):
        b.sync(3600.0, published=1)
    assert b.resent == 2
