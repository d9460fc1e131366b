"""The broker's dropped count read as it comes, and what the engine says about loss: at once, then
at most every few seconds, and degraded for a while after a drop."""

from __future__ import annotations

import logging

import pytest

from contracts.broker_stats import DropCount
from support_engine.watch import LossWatch


def test_the_count_starts_from_what_the_broker_had_and_survives_a_broker_restart() -> None:
    drops = DropCount()
    assert not drops.known
    assert drops.observe(b"120") == 0  # dropped before we looked: not ours to report
    assert drops.known and drops.baseline == 120
    assert drops.observe(b"150") == 30
    assert drops.observe(b"150") == 0
    assert drops.observe(b"7") == 7  # the broker started again and counts from zero
    assert drops.total == 37


@pytest.mark.parametrize("payload", [b"", b"-5", b"1e9", b"12 apples", b"9" * 21, b"\xff"])
def test_an_unreadable_count_changes_nothing(payload: bytes) -> None:
    drops = DropCount()
    drops.observe(b"10")
    assert drops.observe(payload) == 0
    assert drops.total == 0 and drops.updates == 1


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_loss_is_said_at_once_then_at_most_every_ten_seconds_with_what_came_meanwhile(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    watch = LossWatch(warn_every_s=10.0, degraded_s=60.0, clock=clock)
    assert watch.held_up() is None
    with caplog.at_level(logging.WARNING, logger="support_engine.watch"):
        watch.dropped(500, 500)
        clock.now += 1
        watch.dropped(200, 700)  # within 10 s: kept for the next line
        clock.now += 10
        watch.dropped(1, 701)
        watch.gaps(40, ("fr-1", 40, 91))
        watch.gaps(0, None)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3 and watch.warnings == 3
    assert lines[0].startswith("the broker dropped 500 messages (500 since")
    assert lines[1].startswith("the broker dropped 201 messages (701 since")
    assert "40 readings missing" in lines[2] and "fr-1: 40 missing before seq 91" in lines[2]
    assert "dropped messages 0 s ago" in str(watch.held_up())
    clock.now += 59
    assert watch.held_up() is not None
    clock.now += 1
    assert watch.held_up() is None  # a minute without a drop: healthy again
