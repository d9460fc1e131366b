"""How to run a load test: users, shape, rates, where the broker and the engine are, what to sample."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from contracts.topics import DEFAULT_PREFIX
from harness.broker import BrokerUrl
from loadtest.fleet import FleetMix, UserKind
from loadtest.outbox import ACK_MODES, DEFAULT_CAPACITY, AckMode
from loadtest.shapes import Plan, parse_shape

__all__ = ["LOCUSTFILE", "LOCUST_REPORT_S", "TIMELINE_POINTS", "LoadTestOptions"]

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
LOCUST_REPORT_S = 3.0  # a Locust worker reports its statistics to the master this often
TIMELINE_POINTS = 600  # the time series of a report have at most about this many intervals


@dataclass(frozen=True)
class LoadTestOptions:
    """How to run a load test. ``speed`` divides the fleet's telemetry intervals; ``rate`` (messages
    per second at the peak) sets it instead. ``workers`` None: one Locust worker per core; 0: Locust
    in a single process. ``outbox``: what a QoS 1 device waits for before it forgets a message (see
    :mod:`loadtest.outbox`), ``outbox_size`` the messages it holds at most."""

    users: int
    spawn_rate: float
    duration_s: float
    shape: str = "soak"
    kind: UserKind = "device"
    workers: int | None = None
    broker_url: BrokerUrl | None = None
    engine_metrics_url: str | None = None
    prefix: str = DEFAULT_PREFIX
    speed: float | None = None
    rate: float | None = None
    ack_every: int = 10
    qos: int = 1
    jitter: float = 0.1
    event_share: float = 0.01
    drain_s: float = 10.0
    receipt_timeout_s: float = 5.0
    warmup_s: float = 0.0
    outbox: AckMode = "puback"
    outbox_size: int = DEFAULT_CAPACITY
    ui: bool = False
    ui_port: int = 8089
    locustfile: Path = LOCUSTFILE

    def check(self) -> None:
        """Raise :class:`ValueError` naming the option that cannot work."""
        if self.users < 1 or not (math.isfinite(self.spawn_rate) and self.spawn_rate > 0):
            raise ValueError("--users must be >= 1 and --spawn-rate > 0")
        if not (math.isfinite(self.duration_s) and self.duration_s >= 1):
            raise ValueError("--duration must be at least 1 s")
        if self.speed is not None and self.rate is not None:
            raise ValueError("give --speed or --rate, not both")
        for name, value in (("--speed", self.speed), ("--rate", self.rate)):
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a number > 0")
        if self.workers is not None and self.workers < 0:
            raise ValueError("--workers must be >= 0 (0: Locust in one process)")
        if self.ack_every < 0 or self.qos not in (0, 1):
            raise ValueError("--ack-every must be >= 0 and --qos 0 or 1")
        if not (0 <= self.jitter <= 1 and 0 <= self.event_share <= 1):
            raise ValueError("--jitter and --event-share must be between 0 and 1")
        if self.receipt_timeout_s <= 0 or self.drain_s < self.receipt_timeout_s + LOCUST_REPORT_S + 1:
            raise ValueError(
                f"--drain ({self.drain_s:g} s) must exceed the receipt timeout ({self.receipt_timeout_s:g} s) by "
                f"{LOCUST_REPORT_S + 1:g} s: a worker reports its last statistics every {LOCUST_REPORT_S:g} s"
            )
        if self.outbox not in ACK_MODES or self.outbox_size < 1:
            raise ValueError(f"--outbox must be one of {', '.join(ACK_MODES)} and --outbox-size >= 1")
        if self.outbox == "receipt" and (self.ack_every != 1 or self.qos != 1):
            raise ValueError(
                "--outbox receipt keeps each message until its receipt: it needs --ack-every 1 and --qos 1"
            )
        if not 0 <= self.warmup_s < self.duration_s:
            raise ValueError("--warmup must be shorter than --duration")
        if self.engine_metrics_url is not None and self.broker_url is None:
            raise ValueError("--engine-metrics is for an engine you run yourself: give its --broker too")

    @property
    def run_time_s(self) -> int:
        return math.ceil(self.duration_s)

    def plan(self) -> Plan:
        shape = parse_shape(self.shape, users=self.users, spawn_rate=self.spawn_rate, duration_s=self.run_time_s)
        return Plan(shape, drain_s=self.drain_s)

    def timeline_step_s(self) -> float:
        """The interval of the report's time series: a second, longer when the run would have more than
        :data:`TIMELINE_POINTS` of them."""
        return float(max(1, math.ceil(self.plan().total_s / TIMELINE_POINTS)))

    def worker_count(self) -> int:
        return (os.cpu_count() or 1) if self.workers is None else self.workers

    def speed_for(self, mix: FleetMix) -> float:
        if self.rate is not None:
            return mix.speed_for_rate(self.rate, self.plan().shape.peak(), self.kind, self._events)
        return 1.0 if self.speed is None else self.speed

    @property
    def _events(self) -> float:
        return self.event_share if self.kind == "device" else 0.0
