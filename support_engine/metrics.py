"""What the engine tells about itself: Prometheus metrics and a live snapshot for the HTTP API.

The service calls :meth:`EngineMetrics.counted` after a commit that changed only counters (event
time: received messages held in the inbox) and :meth:`EngineMetrics.committed` after a commit that
handled messages. Both run on the service's thread, once per committed group, never per reading:
the Prometheus counters follow the engine's own counters by difference, and the live figures are
copied into a frozen :class:`LiveSnapshot` that other threads read without touching the engine core.
Before any of them, :meth:`EngineMetrics.start` takes up a restarted (or inspected) engine: the
counters restored from its database, and the commands sent by action, which only its outbox keeps;
so the Prometheus counters continue from the stored totals instead of starting again at 0.

``sot_ingest_lag_seconds`` means one thing per clock. Wall clock: for each handled message, the
time of its commit minus its ``ts``, in real seconds (engine seconds divided by ``speed``; a
negative lag, a device clock ahead of ours, counts as 0). Event clock: message stamps are simulated
time, so instead the histogram observes each barrier step's processing time (handling, timers,
commit, acknowledgements and publishing its outputs), in real seconds.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter as Tally
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Literal, get_args

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from contracts.counters import CASE_ORIGINS
from contracts.messages import CommandAction
from support_engine.core.actions import Outbound, SendCommand
from support_engine.core.engine import Engine

__all__ = ["Campaign", "EngineMetrics", "LiveSnapshot"]

ClockMode = Literal["event", "wall"]
LAG_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
CAMPAIGN_OUTCOMES = ("completed", "aborted")
_EMPTY: npt.NDArray[np.float64] = np.zeros(0)
_EMPTY.flags.writeable = False


@dataclass(frozen=True, slots=True)
class Campaign:
    """A fleet-wide update: the issue's OTA sent to every device reporting its sensors."""

    issue: str
    version: str | None
    devices_targeted: int | None  # None: started before this process (its commands are in the outbox)
    started_s: float | None  # engine time of its commands


@dataclass(frozen=True, slots=True)
class LiveSnapshot:
    """The engine's live figures after a commit; immutable, safe to read from any thread."""

    committed_wall_s: float | None = None  # Unix time of the last commit that handled messages
    engine_now_s: float | None = None  # the engine's ``now`` at that commit
    counters: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    devices: tuple[str, ...] = ()  # twins, by slot
    slot_of: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    last_seen: npt.NDArray[np.float64] = field(default_factory=lambda: _EMPTY)  # per slot; -inf: never read
    values: Mapping[str, npt.NDArray[np.float64]] = field(default_factory=lambda: MappingProxyType({}))
    open_case_of: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    campaigns: tuple[Campaign, ...] = ()

    def last_seen_s(self, device_id: str) -> float | None:
        """The time of the device's latest reading, or None if the engine has none."""
        slot = self.slot_of.get(device_id)
        if slot is None:
            return None
        t = float(self.last_seen[slot])
        return t if math.isfinite(t) else None

    def latest_values(self, device_id: str) -> dict[str, float]:
        """The device's latest value of every sensor it has reported."""
        slot = self.slot_of.get(device_id)
        if slot is None:
            return {}
        found = {name: float(column[slot]) for name, column in self.values.items()}
        return {name: v for name, v in sorted(found.items()) if math.isfinite(v)}


def _frozen(a: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    a.flags.writeable = False
    return a


class EngineMetrics:
    """The Prometheus metrics of one engine, in a registry of their own, and its latest :class:`LiveSnapshot`."""

    def __init__(self, *, clock: ClockMode = "wall", speed: float = 1.0) -> None:
        if not (math.isfinite(speed) and speed > 0):
            raise ValueError(f"speed must be a finite number > 0, not {speed!r}")
        self.clock, self.speed = clock, speed
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.ingested = Counter("sot_messages_ingested", "Unique messages taken in.", registry=r)
        self.rejected = Counter(
            "sot_messages_rejected", "Messages rejected and dead-lettered, by reason.", ["reason"], registry=r
        )
        self.duplicates = Counter(
            "sot_messages_duplicates", "Redelivered messages acknowledged without effect.", registry=r
        )
        self.lag = Histogram(
            "sot_ingest_lag_seconds",
            "Wall clock: commit time minus the message's ts, per message. Event clock: processing time of each "
            "barrier step.",
            buckets=LAG_BUCKETS_S,
            registry=r,
        )
        self.open_cases = Gauge("sot_open_cases", "Cases open now.", registry=r)
        self.sla_breaches = Counter("sot_sla_breaches", "SLA clocks breached (once per case and clock).", registry=r)
        self.cases_opened = Counter("sot_cases_opened", "Cases opened, by what opened them.", ["origin"], registry=r)
        self.work_orders = Counter("sot_work_orders", "Work orders dispatched.", registry=r)
        self.commands = Counter("sot_commands", "Commands sent to devices, by action.", ["action"], registry=r)
        self.readings = Counter("sot_readings", "Sensor readings taken in (one per device and timestamp).", registry=r)
        # What went missing on the way, as the engine sees it: gaps in devices' sequence numbers (a
        # broker that dropped queued messages shows here) and sessions the broker had lost.
        self.readings_missing = Counter(
            "sot_readings_missing", "Readings missing from devices' sequences (gaps in seq).", registry=r
        )
        self.readings_late = Counter("sot_readings_late", "Readings that came after a later one.", registry=r)
        self.sessions_lost = Counter(
            "sot_broker_sessions_lost", "Reconnects to a broker that had lost the engine's session.", registry=r
        )
        self.broker_dropped = Counter(
            "sot_broker_dropped",
            "Messages the broker says it dropped ($SYS/broker/publish/messages/dropped, every client's) since the "
            "engine first read its count.",
            registry=r,
        )
        # Campaigns: fleet-wide staged updates and recalls by cohort comparison, and the rollouts of
        # issues with `rollout_after`.
        self.campaigns_opened = Counter("sot_campaigns_opened", "Campaigns opened by cohort comparison.", registry=r)
        self.campaigns_ended = Counter(
            "sot_campaigns_ended", "Campaigns ended, by outcome (completed, aborted).", ["outcome"], registry=r
        )
        self.campaigns_running = Gauge("sot_campaigns_running", "Campaigns running now.", registry=r)
        self.campaign_commands = Counter(
            "sot_campaign_commands", "Commands sent by campaigns (their stages' OTA updates and recalls).", registry=r
        )
        self.campaign_failures = Counter(
            "sot_campaign_failures", "Campaign commands that failed on the device.", registry=r
        )
        self.rollouts = Counter("sot_rollouts", "Fleet-wide updates of an issue (rollout_after).", registry=r)
        for origin in CASE_ORIGINS:
            self.cases_opened.labels(origin=origin)
        for action in get_args(CommandAction):
            self.commands.labels(action=action)
        for outcome in CAMPAIGN_OUTCOMES:
            self.campaigns_ended.labels(outcome=outcome)
        # Engine counter -> the Prometheus counter that follows it; then counters by prefix, labelled by the rest.
        self._follows: dict[str, Counter] = {
            "msg_ingested": self.ingested,
            "msg_duplicates": self.duplicates,
            "sla_breaches": self.sla_breaches,
            "work_orders": self.work_orders,
            "readings": self.readings,
            "readings_missing": self.readings_missing,
            "readings_late": self.readings_late,
            "broker_session_lost": self.sessions_lost,
            "broker_dropped": self.broker_dropped,
            "campaigns_opened": self.campaigns_opened,
            "campaign_commands": self.campaign_commands,
            "campaign_failures": self.campaign_failures,
            "rollouts": self.rollouts,
            **{f"campaigns_{outcome}": self.campaigns_ended.labels(outcome=outcome) for outcome in CAMPAIGN_OUTCOMES},
        }
        self._labelled: tuple[tuple[str, Counter, str], ...] = (
            ("msg_rejected_", self.rejected, "reason"),
            ("cases_opened_", self.cases_opened, "origin"),
        )
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()  # the service's thread writes; a reader might call counted() too
        self._snapshot = LiveSnapshot()
        self._readings_at_copy = -1
        self._cases_at_copy: tuple[int, int] = (-1, -1)
        self._rolled_out: set[str] = set()
        self._campaigns: list[Campaign] = []

    @property
    def snapshot(self) -> LiveSnapshot:
        """The latest published snapshot (replaced whole, never changed in place)."""
        return self._snapshot

    def exposition(self) -> bytes:
        """The metrics in the Prometheus text format."""
        return generate_latest(self.registry)

    # -- hooks, called on the service's thread -----------------------------------------------------
    def start(self, core: Engine, counters: Mapping[str, int], commands: Mapping[str, int] | None = None) -> None:
        """Take up a (possibly restored) engine before it serves: its counters, open cases and campaigns,
        and ``commands``, the commands it has sent so far by action (:func:`~support_engine.inspection.commands_sent`)."""
        merged = {**core.stats, **counters}
        with self._lock:
            self._follow(merged)
            for action, n in (commands or {}).items():
                self.commands.labels(action=action).inc(n)
            self._levels(core)
            self._campaigns = [Campaign(i, self._version(core, i), None, None) for i in sorted(core.rolled_out)]
            self._rolled_out = set(core.rolled_out)
            self._snapshot = self._copy(core, merged, None)

    def counted(self, counters: Mapping[str, int]) -> None:
        """Follow the engine's counters (after a commit, or with the counters restored at start)."""
        with self._lock:
            self._follow(counters)
            self._snapshot = replace(self._snapshot, counters=MappingProxyType(dict(counters)))

    def committed(
        self,
        core: Engine,
        counters: Mapping[str, int],
        outbound: Sequence[Outbound],
        *,
        ts: Iterable[float],
        now: float,
        step_s: float,
    ) -> None:
        """Record a commit that handled messages stamped ``ts`` at engine time ``now`` in ``step_s`` real seconds.

        ``outbound`` are the group's published actions (commands by action, campaign sizes).
        """
        with self._lock:
            self._follow(counters)
            self._levels(core)
            actions = Tally(a.message.action for a in outbound if isinstance(a, SendCommand))
            for action, n in actions.items():
                self.commands.labels(action=action).inc(n)
            if self.clock == "wall":
                for t in ts:  # per message, never per reading
                    self.lag.observe(max(0.0, (now - t) / self.speed + step_s))
            else:
                self.lag.observe(step_s)
            if len(core.rolled_out) != len(self._rolled_out):
                self._note_campaigns(core, outbound)
            self._snapshot = self._copy(core, counters, now)

    # -- internals --------------------------------------------------------------------------------
    def _follow(self, counters: Mapping[str, int]) -> None:
        """Increase each Prometheus counter by what its engine counter grew since the last call."""
        for name, value in counters.items():
            grown = value - self._seen.get(name, 0)
            if grown <= 0:
                continue
            self._seen[name] = value
            found = self._follows.get(name)
            if found is None:
                for prefix, metric, label in self._labelled:
                    if name.startswith(prefix):
                        found = metric.labels(**{label: name.removeprefix(prefix)})
                        break
            if found is not None:
                found.inc(grown)

    def _levels(self, core: Engine) -> None:
        """Set the gauges: cases open and campaigns running now."""
        self.open_cases.set(len(core.open_case_of))
        self.campaigns_running.set(len(core.campaigns))  # an ended campaign leaves it

    def _note_campaigns(self, core: Engine, outbound: Sequence[Outbound]) -> None:
        """Record the rollouts this group started: a rollout's commands go out with the case that triggers it."""
        for issue in sorted(core.rolled_out - self._rolled_out):
            version = self._version(core, issue)
            sent = [
                a.message
                for a in outbound
                if isinstance(a, SendCommand)
                and a.message.case_id is None
                and a.message.action == "ota"
                and a.message.version == version
            ]
            started = min((m.ts for m in sent), default=None)
            self._campaigns.append(Campaign(issue, version, len(sent), started))
        self._rolled_out = set(core.rolled_out)

    @staticmethod
    def _version(core: Engine, issue: str) -> str | None:
        found = core.config.issues.get(issue)
        return None if found is None else found.ota_version

    def _copy(self, core: Engine, counters: Mapping[str, int], now: float | None) -> LiveSnapshot:
        """A snapshot of the live figures; twin columns are copied only when readings came in."""
        previous = self._snapshot
        twins = core.twins
        n = len(twins)
        devices, slot_of = previous.devices, previous.slot_of
        if n != len(devices):  # slots are only ever appended
            devices, slot_of = tuple(twins.ids), MappingProxyType(dict(twins.slot_of))
        last_seen, values = previous.last_seen, previous.values
        readings = core.stats["readings"]
        if readings != self._readings_at_copy or len(last_seen) != n:
            last_seen = _frozen(twins.last_seen[:n].copy())
            values = MappingProxyType({k: _frozen(v[:n].copy()) for k, v in twins.values.items()})
            self._readings_at_copy = readings
        open_case_of = previous.open_case_of
        cases = (core.stats["cases_opened"], core.stats["cases_resolved"])
        if cases != self._cases_at_copy:
            open_case_of = MappingProxyType(dict(core.open_case_of))
            self._cases_at_copy = cases
        return LiveSnapshot(
            committed_wall_s=None if now is None else time.time(),
            engine_now_s=now,
            counters=MappingProxyType(dict(counters)),
            devices=devices,
            slot_of=slot_of,
            last_seen=last_seen,
            values=values,
            open_case_of=open_case_of,
            campaigns=tuple(self._campaigns),
        )
