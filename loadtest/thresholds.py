"""Pass/fail thresholds for CI: ``--fail-on "p99_ingest_ms>100,lost>0"``.

Each comma-separated condition is ``METRIC OP NUMBER`` (``>``, ``>=``, ``<``, ``<=``, ``==``, ``!=``)
and names what *fails* the run: ``lost>0`` fails when a message was lost, ``ingested_per_s<1800``
when the engine took in fewer than 1,800 messages a second. A metric the run could not measure
(no receipts came back, no engine metrics) fails its condition too: a gate that cannot see is shut.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["METRICS", "Threshold", "ThresholdError", "Verdict", "evaluate", "parse_fail_on", "records"]

_LATENCIES = {
    "ingest": "publish to the engine's receipt (sampled messages)",
    "publish": "publish to the broker's PUBACK",
    "connect": "connection set-up, CONNECT to CONNACK",
    "engine_lag": "the engine's own ingest lag histogram (commit time minus the message's timestamp)",
}
_QUANTILES = ("p50", "p90", "p95", "p99", "max")
METRICS: dict[str, str] = {
    **{f"{q}_{name}_ms": f"{q} of {what}, ms" for name, what in _LATENCIES.items() for q in _QUANTILES},
    "published": "messages the broker acknowledged (Locust's publish requests that succeeded)",
    "publish_failed": "messages refused by the client, dropped from a full outbox or never acknowledged",
    "resent": "copies the devices' outboxes sent again (after a reconnect, or a receipt overdue)",
    "outbox_overflow": "messages dropped from a full device outbox (the oldest first)",
    "ingested": "messages the engine took in during the run",
    "rejected": "messages the engine rejected (dead-lettered), any reason",
    "duplicates": "redelivered messages the engine recognised",
    "lost": "published - ingested - rejected (0 when everything arrived)",
    "lost_ratio": "lost / published",
    "receipts_missing": "sampled messages whose receipt never came back",
    "connect_failed": "connections refused or lost",
    "broker_dropped": "messages the broker dropped during the run ($SYS/broker/publish/messages/dropped)",
    "published_per_s": "published messages per second of load",
    "ingested_per_s": "ingested messages per second of load",
}
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
}
_CONDITION = re.compile(r"^\s*([a-z0-9_]+)\s*(>=|<=|==|!=|>|<)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?)\s*$", re.I)


class ThresholdError(ValueError):
    """A ``--fail-on`` condition that cannot be read; the message names it and says why."""


@dataclass(frozen=True)
class Threshold:
    """One condition that fails the run: ``metric op value``."""

    metric: str
    op: str
    value: float

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.value:g}"

    def crossed(self, measured: float) -> bool:
        return _OPS[self.op](measured, self.value)


@dataclass(frozen=True)
class Verdict:
    """A threshold, what was measured (None: not measured), and whether it fails the run."""

    threshold: Threshold
    measured: float | None
    failed: bool

    def message(self) -> str:
        if self.measured is None:
            return f"{self.threshold}: {self.threshold.metric} was not measured in this run"
        state = "true" if self.failed else "false"
        return f"{self.threshold} is {state}: measured {self.threshold.metric} = {self.measured:g}"


def parse_fail_on(text: str) -> list[Threshold]:
    """Parse ``"p99_ingest_ms>100,lost>0"``; raise :class:`ThresholdError` naming the bad part."""
    found = []
    for part in text.split(","):
        if not part.strip():
            continue
        match = _CONDITION.fullmatch(part)
        if match is None:
            raise ThresholdError(f"{part.strip()!r} is not METRIC OP NUMBER (e.g. p99_ingest_ms>100, lost>0)")
        metric, op, raw = match.group(1).lower(), match.group(2), match.group(3)
        if metric not in METRICS:
            raise ThresholdError(f"{part.strip()!r}: unknown metric {metric!r}; known metrics: {', '.join(METRICS)}")
        value = float(raw)
        if not math.isfinite(value):
            raise ThresholdError(f"{part.strip()!r}: the number must be finite")
        found.append(Threshold(metric, op, value))
    if not found:
        raise ThresholdError(f"{text!r} holds no condition (e.g. p99_ingest_ms>100,lost>0)")
    return found


def evaluate(thresholds: list[Threshold], measured: Mapping[str, float | None]) -> list[Verdict]:
    """Check every threshold against the run's figures; an unmeasured metric fails."""
    verdicts = []
    for t in thresholds:
        value = measured.get(t.metric)
        if value is None or not math.isfinite(value):
            verdicts.append(Verdict(t, None, True))
        else:
            verdicts.append(Verdict(t, float(value), t.crossed(float(value))))
    return verdicts


def records(verdicts: list[Verdict]) -> list[dict[str, Any]]:
    """The verdicts as ``loadtest.json``'s ``thresholds``: each condition, its parts, what was measured, whether it failed."""
    return [
        {
            "condition": str(v.threshold),
            "metric": v.threshold.metric,
            "op": v.threshold.op,
            "limit": v.threshold.value,
            "measured": v.measured,
            "failed": v.failed,
        }
        for v in verdicts
    ]
