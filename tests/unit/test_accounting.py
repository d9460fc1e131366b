"""The message-by-message accounting of a faulted run: every key the world sent, classified against
the engine's record of effects (once, never, more than once), and effects nobody sent."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from contracts import codec
from contracts.keys import key_of
from contracts.messages import Telemetry
from contracts.topics import Topics
from harness.accounting import Accounting, read_effects
from harness.chaos_command import verdict_of

TOPICS = Topics("acc/v1")


def reading(device: str, seq: int, boot: int = 1) -> tuple[str, bytes]:
    message = Telemetry(device_id=device, ts=float(seq), boot_id=boot, seq=seq, values={"t": 1.0})
    return TOPICS.telemetry(device), codec.encode(message)


def test_each_sent_key_is_once_never_or_twice_and_strangers_are_unexpected() -> None:
    books = Accounting(TOPICS)
    books.add([reading("a", 1), reading("a", 2), reading("b", 1)])
    books.add([reading("a", 2)])  # sent again after a reconnect: still one message
    books.add([(TOPICS.telemetry("c"), b"not json")])  # no key to count it by
    effects = [("telemetry", "a", 1, 1), ("telemetry", "b", 1, 1), ("telemetry", "b", 1, 1), ("telemetry", "z", 1, 9)]
    tally = books.check(effects)
    assert (tally.sent, tally.ingested_once, tally.lost, tally.duplicated, tally.unexpected) == (3, 1, 1, 1, 1)
    assert books.unkeyed == 1
    assert not tally.ok
    assert tally.examples["lost"] == ["telemetry a boot 1 seq 2"]
    assert tally.examples["duplicated"] == ["telemetry b boot 1 seq 1 (2 times)"]
    assert tally.examples["unexpected"] == ["telemetry z boot 1 seq 9"]


def test_a_clean_record_passes_and_a_lost_message_hidden_behind_a_duplicate_does_not() -> None:
    books = Accounting(TOPICS)
    books.add([reading("a", 1), reading("a", 2)])
    assert books.check([("telemetry", "a", 1, 1), ("telemetry", "a", 1, 2)]).ok
    hidden = books.check([("telemetry", "a", 1, 1), ("telemetry", "a", 1, 1)])  # the same total, 2
    assert (hidden.lost, hidden.duplicated) == (1, 1)
    calm = {"kpis": {"x": 1.0}}
    hit = {"kpis": {"x": 1.0}, "messages": {"lost": 0}, "chaos": {"not_reached": []}}
    assert (
        verdict_of(calm, {**hit, "accounting": books.check([("telemetry", "a", 1, 1)] * 2).as_dict()})["verdict"]
        == "fail"
    )
    assert (
        verdict_of(
            calm, {**hit, "accounting": books.check([("telemetry", "a", 1, 1), ("telemetry", "a", 1, 2)]).as_dict()}
        )["verdict"]
        == "pass"
    )


def test_the_effects_are_read_from_every_partition_s_database(tmp_path: Path) -> None:
    for name, rows in (("p0", [("telemetry", "a", 1, 1)]), ("p1", [("batch", "gw", 2, 5), ("batch", "gw", 2, 5)])):
        conn = sqlite3.connect(tmp_path / f"{name}.sqlite")
        conn.execute("CREATE TABLE ingest_audit (kind TEXT, source TEXT, boot_id INTEGER, seq INTEGER)")
        conn.executemany("INSERT INTO ingest_audit VALUES (?, ?, ?, ?)", rows)
        conn.commit()
        conn.close()
    effects = list(read_effects([tmp_path / "p0.sqlite", tmp_path / "p1.sqlite"]))
    assert sorted(effects) == [("batch", "gw", 2, 5), ("batch", "gw", 2, 5), ("telemetry", "a", 1, 1)]
    assert key_of(codec.decode(TOPICS.parse(reading("a", 3)[0]).kind, reading("a", 3)[1])) == ("telemetry", "a", 1, 3)
