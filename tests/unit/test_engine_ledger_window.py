"""The de-duplication ledger: exact inside its window, a stale duplicate beyond it, and the same size
after a million messages from the same sources as after ten thousand; stored one row a stream."""

from __future__ import annotations

import random
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from contracts import Topics, codec
from contracts.codec import encode_batch
from contracts.messages import IngestAck
from contracts.topics import Kind
from support_engine.core.ledger import WINDOW, Key, Ledger
from support_engine.service import EngineService
from support_engine.storage import Storage
from support_engine.transport import MemoryTransport
from tests.unit.test_engine_hold import CONFIG

STREAMS = [("telemetry", "d-1", 0), ("telemetry", "d-1", 1), ("batch", "gw-1", 0), ("event", "d-2", 7)]


def exact(keys: list[Key]) -> list[str]:
    """What an unbounded set of every key says, key by key."""
    seen: set[Key] = set()
    out = []
    for k in keys:
        out.append("duplicate" if k in seen else "new")
        seen.add(k)
    return out


# A stream's seqs move forward with jitter (late, repeated, skipped), never further back than the window.
moves = st.lists(st.tuples(st.sampled_from(range(len(STREAMS))), st.integers(-WINDOW + 1, 3)), max_size=300)


def walk(steps: list[tuple[int, int]], start: int = 0) -> list[Key]:
    top = dict.fromkeys(range(len(STREAMS)), start)
    keys = []
    for s, move in steps:
        seq = max(0, top[s] + move)
        top[s] = max(top[s], seq)
        keys.append((*STREAMS[s], seq))
    return keys


@given(moves, st.integers(0, 5000))
def test_inside_the_window_the_ledger_says_what_a_set_of_every_key_says(steps: list[tuple[int, int]], at: int) -> None:
    keys = walk(steps, at)
    ledger = Ledger()
    assert [ledger.take(k) for k in keys] == exact(keys)
    assert len(ledger) == len({k[:3] for k in keys})


@given(moves)
def test_a_ledger_stored_and_restored_or_folded_from_keys_says_the_same(steps: list[tuple[int, int]]) -> None:
    keys = walk(steps, 100)
    head, tail = keys[: len(keys) // 2], keys[len(keys) // 2 :]
    live = Ledger()
    for k in head:
        live.take(k)
    restored = Ledger()
    restored.restore(row[:5] for row in live.drain())
    folded = Ledger(head)  # an earlier version's keys, in any order
    assert [live.take(k) for k in tail] == [restored.take(k) for k in tail] == [folded.take(k) for k in tail]


def test_a_seq_older_than_the_window_is_a_stale_duplicate() -> None:
    ledger = Ledger()
    stream = ("telemetry", "d-1", 0)
    assert ledger.take((*stream, 5000)) == "new"
    assert ledger.take((*stream, 5000 - WINDOW + 1)) == "new"  # the oldest still told apart: never seen
    assert ledger.take((*stream, 5000 - WINDOW)) == "stale"
    assert (*stream, 10) in ledger and (*stream, 4999) not in ledger
    assert ledger.take((*stream, 5000 + 10 * WINDOW)) == "new"  # a jump: all below it may still come
    assert ledger.take((*stream, 5000 + 10 * WINDOW - 1)) == "new"


def test_the_ledger_does_not_grow_with_messages() -> None:
    rng = random.Random(7)
    sources = [("telemetry", f"d-{i}", 1) for i in range(50)] + [("batch", f"gw-{i}", 0) for i in range(50)]
    ledger, seq = Ledger(), dict.fromkeys(sources, 0)
    sizes = {}
    for n in range(1, 1_000_001):
        stream = sources[n % len(sources)]
        seq[stream] += 1 if rng.random() > 0.01 else 2  # one in a hundred is lost on the way
        key = (*stream, seq[stream])
        ledger.take(key)
        if rng.random() < 0.01:  # and one in a hundred comes twice, some of them late
            ledger.take((*stream, seq[stream] - rng.randrange(3)))
        if n in (10_000, 1_000_000):
            ledger.drain()
            sizes[n] = (len(ledger), ledger.footprint())
    (streams, small), (streams_after, large) = sizes[10_000], sizes[1_000_000]
    assert streams == streams_after == len(sources)
    per_stream_gaps = WINDOW // 8 + 64  # a window's gap mask, at most, as a Python int
    assert large <= small + len(sources) * per_stream_gaps, (small, large)


def test_storage_keeps_one_row_a_stream_and_the_engine_counts_stale_duplicates(tmp_path: Path) -> None:
    topics = Topics("ledger/v1")
    transport = MemoryTransport()
    engine = EngineService(CONFIG, transport, Storage(tmp_path / "e.sqlite"), topics=topics, clock="wall")
    engine.start()

    def send(seq: int) -> None:
        payload = encode_batch(
            gateway_id="gw-1", ts=float(seq), boot_id=0, seq=seq, devices=["d-1"], index=[0], reading_ts=[float(seq)],
            reading_seq=[seq], values={"temp": [4.0]},
        )  # fmt: skip
        transport.offer(topics.batch("gw-1"), payload)
        engine.poll(timeout_s=0)

    for seq in range(1, 3 * WINDOW):
        send(seq)
    send(3 * WINDOW - 1)  # again
    send(5)  # long ago: beyond the window
    assert engine.storage.count("ingest_ledger") == 1  # one row for the gateway's stream, however many batches
    assert engine.counters["msg_ingested"] == 3 * WINDOW - 1
    assert (engine.counters["msg_duplicates"], engine.counters["msg_duplicates_stale"]) == (2, 1)
    assert engine.storage.ledger() == [("batch", "gw-1", 0, 3 * WINDOW - 1, 0)]
    assert engine.core.stats["readings"] == 3 * WINDOW - 1  # neither copy reached the twins


def test_a_copy_of_a_committed_message_is_receipted_again_and_a_stale_one_is_not(tmp_path: Path) -> None:
    """A device that keeps a message until its receipt sends it again when the receipt was lost: the
    copy is taken for a duplicate, and its receipt comes (once it is committed) all the same."""
    topics = Topics("receipts/v1")
    transport = MemoryTransport()
    engine = EngineService(CONFIG, transport, Storage(tmp_path / "e.sqlite"), topics=topics, clock="wall", ack_every=1)
    engine.start()

    def send(seq: int) -> list[tuple[str, int]]:
        payload = encode_batch(
            gateway_id="gw-1", ts=float(seq), boot_id=0, seq=seq, devices=["d-1"], index=[0], reading_ts=[float(seq)],
            reading_seq=[seq], values={"temp": [4.0]},
        )  # fmt: skip
        before = len(transport.published)
        transport.offer(topics.batch("gw-1"), payload)
        engine.poll(timeout_s=0)
        return [
            (ack.source, ack.seq)
            for topic, body, _ in transport.published[before:]
            if topic == topics.ingest_ack
            for ack in [codec.decode(Kind.INGEST_ACK, body)]
            if isinstance(ack, IngestAck)
        ]

    assert send(1) == [("gw-1", 1)]
    assert send(1) == [("gw-1", 1)]  # the copy: a duplicate, receipted again
    for seq in range(2, WINDOW + 10):
        send(seq)
    assert send(2) == []  # beyond the window: no telling whether it came, so no receipt
    assert engine.counters["msg_duplicates"] == 2
