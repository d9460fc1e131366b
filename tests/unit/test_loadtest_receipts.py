"""The book of sampled messages waiting for the engine's receipt."""

from __future__ import annotations

from loadtest.receipts import Missing, Receipts, Received


def test_a_receipt_times_its_message_once() -> None:
    book = Receipts()
    book.expect("telemetry", "dev-1", 7, 10, sent_s=100.0)
    assert book.receive("dev-1", 7, 10, now_s=100.025) == Received("telemetry", 0.025000000000005684)
    assert book.receive("dev-1", 7, 10, now_s=100.03) is None  # twice: once only
    assert (book.expected, book.received, len(book)) == (1, 1, 0)


def test_receipts_for_messages_of_others_are_ignored() -> None:
    book = Receipts()
    book.expect("telemetry", "dev-1", 7, 10, sent_s=100.0)
    assert book.receive("dev-1", 8, 10, now_s=101.0) is None  # another boot
    assert book.receive("dev-2", 7, 10, now_s=101.0) is None  # another worker's device
    assert len(book) == 1


def test_a_message_never_sent_is_forgotten_and_late_ones_go_missing() -> None:
    book = Receipts()
    book.expect("event", "dev-1", 1, 1, sent_s=100.0)
    book.expect("telemetry", "dev-1", 1, 2, sent_s=103.0)
    book.expect("batch", "gw-1", 1, 3, sent_s=104.0)
    book.forget("gw-1", 1, 3)
    assert book.expected == 2
    assert book.expire(now_s=105.5, timeout_s=5.0) == [Missing("event", "dev-1", 1, 5.5)]
    assert book.expire(now_s=105.5, timeout_s=5.0) == []
    assert (book.missing, len(book)) == (1, 1)
