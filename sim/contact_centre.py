"""Agents answering owners: one FIFO queue per skill, agent groups with skills and shifts, abandonment.

A call joins the queue of its skill. An idle, on-shift agent whose group serves the skill takes it at
once; otherwise the call waits until such an agent frees up or comes on shift, or until the caller's
patience runs out. An agent that frees up takes the oldest call among every queue it serves; among
several idle agents, the one idle longest answers (ties by agent id). Handling time and first-contact
resolution are keyed draws ``(caller, k)``, so a caller's call lasts the same under every policy.

Shifts are a weekly calendar (time 0 is Monday 00:00); an agent busy at the end of a shift finishes
the call, then goes off. :class:`QueueStats` keeps the tallies (waits, abandonments) and the level
series (queue length) that queueing theory predicts, so tests can hold the model to Erlang C and
Little's law.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import simpy

from sim.distributions import Distribution
from sim.scenario import AgentGroup, Shift
from sim.scenario import ContactCentre as ContactCentreSpec
from sim.streams import Stream

__all__ = ["SELF_SERVICE", "CallOutcome", "ContactCentre", "QueueStats", "shift_state"]

SELF_SERVICE = "self_service"
HOUR_S = 3600.0
DAY_S = 24 * HOUR_S
WEEK_S = 7 * DAY_S


class CallOutcome(NamedTuple):
    """How a call ended."""

    answered: bool  # False: the caller abandoned before an agent took the call
    wait_s: float
    handle_s: float  # 0 when abandoned
    agent: str  # "" when abandoned; "self_service" for self-service
    resolved: bool  # fixed on the call (first-contact resolution); only when the call was ``fixable``
    withdrawn: bool = False  # the caller left the queue because they no longer needed the call


@dataclass
class QueueStats:
    """Tallies and the queue-length level series of one skill queue.

    Ratios are 0.0 when there is nothing to divide by (as in the KPI table).
    """

    start_s: float = 0.0
    arrivals: int = 0
    answered: int = 0
    abandoned: int = 0
    withdrawn: int = 0  # callers who left the queue because the call was no longer needed (not abandoned)
    total_wait_s: float = 0.0  # of answered calls
    answered_within_service_level: int = 0
    waited: int = 0  # answered calls that waited > 0
    waiting: int = 0  # calls in the queue now
    queue_integral: float = 0.0  # time-integral of ``waiting`` up to ``last_change_s``
    last_change_s: float = 0.0
    busy_s: float = 0.0  # agent-seconds spent handling this queue's calls (counted when a call ends)

    def change(self, now: float, delta: int) -> None:
        """Add ``delta`` calls to the queue at ``now``, closing the previous level's segment."""
        self.queue_integral += self.waiting * (now - self.last_change_s)
        self.last_change_s = now
        self.waiting += delta

    def queue_area(self, now: float) -> float:
        """Time-integral of the queue length from ``start_s`` to ``now``."""
        return self.queue_integral + self.waiting * (now - self.last_change_s)

    def mean_queue_length(self, now: float) -> float:
        """Time-average number of calls waiting from ``start_s`` to ``now``."""
        elapsed = now - self.start_s
        return self.queue_area(now) / elapsed if elapsed > 0 else 0.0

    @property
    def mean_wait_s(self) -> float:
        """Mean wait of answered calls (the average speed of answer)."""
        return self.total_wait_s / self.answered if self.answered else 0.0

    @property
    def p_wait(self) -> float:
        """Share of answered calls that waited at all (Erlang C's probability of waiting)."""
        return self.waited / self.answered if self.answered else 0.0

    @property
    def abandon_rate(self) -> float:
        """Share of ended calls (answered or abandoned) whose caller gave up."""
        ended = self.answered + self.abandoned
        return self.abandoned / ended if ended else 0.0

    @property
    def service_level(self) -> float:
        """Share of ended calls answered within the service-level time; abandoned calls count as missed."""
        ended = self.answered + self.abandoned
        return self.answered_within_service_level / ended if ended else 0.0


def shift_state(shifts: Sequence[Shift], t: float) -> tuple[bool, float]:
    """Whether any of ``shifts`` is on at ``t`` and when that next changes (``inf``: never).

    A shift runs from ``start_h`` to ``end_h`` on each of its days, into the next day when
    ``end_h <= start_h``; a shift that starts on day d belongs to d. Touching shifts merge.
    """
    week = math.floor(t / WEEK_S)
    spans = sorted(
        (
            w * WEEK_S + d * DAY_S + s.start_h * HOUR_S,
            w * WEEK_S + d * DAY_S + (s.end_h + (24.0 if s.end_h <= s.start_h else 0.0)) * HOUR_S,
        )
        for w in (week - 1, week, week + 1)
        for s in shifts
        for d in set(s.days)
    )
    merged: list[list[float]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    for start, end in merged:
        if t < start:
            return False, start
        if t < end:
            return True, end
    return False, math.inf  # no shift on any day (next week's spans always lie ahead otherwise)


class _Agent:
    __slots__ = ("busy", "group", "id", "index", "on_shift")

    def __init__(self, agent_id: str, group: _Group, index: int) -> None:
        self.id = agent_id
        self.group = group
        self.index = index
        self.on_shift = False
        self.busy = False


class _Group:
    def __init__(self, spec: AgentGroup) -> None:
        self.spec = spec
        self.skills = frozenset(spec.skills) or None  # None: every skill
        self.agents = [_Agent(f"{spec.name}-{i:03d}", self, i) for i in range(spec.agents)]
        self.idle: list[tuple[float, str, int]] = []  # heap of (idle since, agent id, index)
        self.on = False

    def serves(self, skill: str) -> bool:
        return self.skills is None or skill in self.skills


class _Waiting:
    __slots__ = ("agent", "arrived_s", "seq", "skill", "taken")

    def __init__(self, seq: int, skill: str, arrived_s: float, taken: simpy.Event) -> None:
        self.seq = seq
        self.skill = skill
        self.arrived_s = arrived_s
        self.taken = taken
        self.agent: _Agent | None = None


class ContactCentre:
    """Skill queues served by agent groups on shifts; ``call`` is a SimPy sub-process per contact."""

    def __init__(self, env: simpy.Environment, spec: ContactCentreSpec, seed: int) -> None:
        self.env = env
        self.spec = spec
        self.stats: dict[str, QueueStats] = {}
        self.self_served = 0
        self._handle = Stream(seed, "contact_centre", "handle")
        self._fcr = Stream(seed, "contact_centre", "fcr")
        self._handle_time_s: dict[str, Distribution] = {str(c): d for c, d in spec.handle_time_by_channel.items()}
        specs = list(spec.groups) + ([AgentGroup(name="agents", agents=spec.agents)] if spec.agents else [])
        self._groups = [_Group(g) for g in specs]
        self._by_skill: dict[str, list[_Group]] = {}
        self._queues: dict[str, dict[int, _Waiting]] = {}
        self._seq = 0
        self._start_s = env.now
        self._last_s = env.now
        self._busy = 0  # agents handling a call
        self._staffed = 0  # agents on shift or finishing a call after their shift
        self._busy_area = 0.0
        self._staffed_area = 0.0
        for group in self._groups:  # set the opening state now, so that a call at this instant sees it
            on, change = shift_state(group.spec.shifts, env.now) if group.spec.shifts else (True, math.inf)
            self._set_on(group, on)
            if math.isfinite(change):
                env.process(self._roster(group, change))

    def can_serve(self, skill: str) -> bool:
        """Whether some group (on shift or not) serves ``skill``."""
        return bool(self._groups_for(skill))

    def call(
        self,
        caller: int,
        k: int,
        *,
        channel: str,
        skill: str,
        patience_s: float = math.inf,
        fixable: bool = False,
        on_answer: Callable[[str], object] | None = None,
        handle_s: float | None = None,
        withdraw: simpy.Event | None = None,
    ) -> Generator[simpy.Event, Any, CallOutcome]:
        """Queue for an agent of ``skill``, hold them for the handling time; ``yield from`` it.

        ``on_answer(agent_id)`` runs when the call is answered, before the handling time. A
        ``self_service`` call needs no agent: answered at once, resolved when ``fixable`` and the
        first-contact draw succeeds. ``handle_s`` is a handling time the caller drew (a contact
        stream's own); by default it is the centre's, drawn for ``(caller, k)``. Raises ValueError
        when no group serves ``skill``. A caller still in the queue when ``withdraw`` fires leaves it
        (``withdrawn``: the call is no longer needed; not counted as abandoned).
        """
        env = self.env
        if channel == SELF_SERVICE:
            self.self_served += 1
            if on_answer is not None:
                on_answer(SELF_SERVICE)
            return CallOutcome(True, 0.0, 0.0, SELF_SERVICE, self._resolved(caller, k, fixable))
        groups = self._groups_for(skill)
        if not groups:
            raise ValueError(f"no agent group serves skill {skill!r}")
        stats = self._stats_of(skill)
        stats.arrivals += 1
        arrived = env.now
        agent = self._idle_agent(groups)
        if agent is None:
            self._seq += 1
            waiting = _Waiting(self._seq, skill, arrived, env.event())
            self._queues[skill][waiting.seq] = waiting
            stats.change(arrived, +1)
            until = waiting.taken | env.timeout(patience_s) if math.isfinite(patience_s) else waiting.taken
            if withdraw is not None:
                until = until | withdraw
            try:
                yield until
            finally:
                if waiting.agent is None:  # patience ran out (or the caller's process was interrupted)
                    del self._queues[skill][waiting.seq]
                    stats.change(env.now, -1)
            if waiting.agent is None:
                if withdraw is not None and withdraw.triggered:
                    stats.withdrawn += 1
                    return CallOutcome(False, env.now - arrived, 0.0, "", False, withdrawn=True)
                stats.abandoned += 1
                return CallOutcome(False, env.now - arrived, 0.0, "", False)
            agent = waiting.agent
        else:
            self._take(agent)
        answered = env.now
        wait = answered - arrived
        stats.answered += 1
        stats.total_wait_s += wait
        stats.waited += wait > 0
        stats.answered_within_service_level += wait <= self.spec.service_level_s
        if handle_s is None:
            dist = self._handle_time_s.get(channel, self.spec.handle_time_s)
            handle = float(dist.ppf(self._handle.one(caller, k)))
        else:
            handle = handle_s
        try:
            if on_answer is not None:
                on_answer(agent.id)
            yield env.timeout(handle)
        finally:
            stats.busy_s += env.now - answered
            self._release(agent)
        return CallOutcome(True, wait, handle, agent.id, self._resolved(caller, k, fixable))

    @property
    def waiting(self) -> int:
        """Calls in the queues now (callers waiting for an agent)."""
        return sum(s.waiting for s in self.stats.values())

    def summary(self, now: float) -> dict[str, float]:
        """The whole centre's figures at ``now`` for the KPI table (ratios 0.0 when undefined).

        Occupancy is busy agent-seconds over staffed agent-seconds: time on shift, plus the time an
        agent spends finishing a call after their shift ended.
        """
        q = QueueStats(
            start_s=self._start_s,
            arrivals=sum(s.arrivals for s in self.stats.values()),
            answered=sum(s.answered for s in self.stats.values()),
            abandoned=sum(s.abandoned for s in self.stats.values()),
            withdrawn=sum(s.withdrawn for s in self.stats.values()),
            total_wait_s=sum(s.total_wait_s for s in self.stats.values()),
            answered_within_service_level=sum(s.answered_within_service_level for s in self.stats.values()),
            waited=sum(s.waited for s in self.stats.values()),
            queue_integral=sum(s.queue_area(now) for s in self.stats.values()),
            last_change_s=now,
        )
        staffed = self._staffed_area + self._staffed * (now - self._last_s)
        busy = self._busy_area + self._busy * (now - self._last_s)
        return {
            "arrivals": float(q.arrivals),
            "answered": float(q.answered),
            "abandoned": float(q.abandoned),
            "withdrawn": float(q.withdrawn),
            "self_service": float(self.self_served),
            "p_wait": q.p_wait,
            "asa_s": q.mean_wait_s,
            "service_level": q.service_level,
            "abandonment": q.abandon_rate,
            "occupancy": busy / staffed if staffed > 0 else 0.0,
            "mean_queue_length": q.mean_queue_length(now),
        }

    # -- internals ------------------------------------------------------------------------------

    def _resolved(self, caller: int, k: int, fixable: bool) -> bool:
        return fixable and self._fcr.one(caller, k) < self.spec.first_contact_resolution

    def _groups_for(self, skill: str) -> list[_Group]:
        groups = self._by_skill.get(skill)
        if groups is None:
            groups = self._by_skill[skill] = [g for g in self._groups if g.serves(skill)]
        return groups

    def _stats_of(self, skill: str) -> QueueStats:
        stats = self.stats.get(skill)
        if stats is None:
            stats = self.stats[skill] = QueueStats(start_s=self._start_s, last_change_s=self._start_s)
            self._queues[skill] = {}
        return stats

    def _advance(self) -> None:
        """Close the current segment of the busy and staffed levels (before either changes)."""
        now = self.env.now
        self._busy_area += self._busy * (now - self._last_s)
        self._staffed_area += self._staffed * (now - self._last_s)
        self._last_s = now

    def _idle_agent(self, groups: list[_Group]) -> _Agent | None:
        """Pop the agent idle longest (ties by id) among the on-shift ``groups``, if any is idle."""
        best: _Group | None = None
        for g in groups:
            if g.on and g.idle and (best is None or g.idle[0] < best.idle[0]):
                best = g
        if best is None:
            return None
        return best.agents[heapq.heappop(best.idle)[2]]

    def _oldest_for(self, group: _Group) -> _Waiting | None:
        """The oldest waiting call among every queue ``group`` serves."""
        oldest: _Waiting | None = None
        for skill, queue in self._queues.items():
            if queue and group.serves(skill):
                head = next(iter(queue.values()))
                if oldest is None or head.seq < oldest.seq:
                    oldest = head
        return oldest

    def _take(self, agent: _Agent) -> None:
        self._advance()
        self._busy += 1
        agent.busy = True

    def _available(self, agent: _Agent) -> None:
        """An on-shift agent is free: take the oldest call it can serve, or wait idle."""
        waiting = self._oldest_for(agent.group)
        if waiting is None:
            heapq.heappush(agent.group.idle, (self.env.now, agent.id, agent.index))
            return
        del self._queues[waiting.skill][waiting.seq]
        self.stats[waiting.skill].change(self.env.now, -1)
        self._take(agent)
        waiting.agent = agent
        waiting.taken.succeed()

    def _release(self, agent: _Agent) -> None:
        self._advance()
        self._busy -= 1
        agent.busy = False
        if agent.on_shift:
            self._available(agent)
        else:
            self._staffed -= 1

    def _set_on(self, group: _Group, on: bool) -> None:
        if on == group.on:
            return
        self._advance()
        group.on = on
        if not on:
            group.idle.clear()
        for agent in group.agents:
            was_staffed = agent.on_shift or agent.busy
            agent.on_shift = on
            self._staffed += (agent.on_shift or agent.busy) - was_staffed
        if on:
            for agent in group.agents:
                if not agent.busy:
                    self._available(agent)

    def _roster(self, group: _Group, change: float) -> Generator[simpy.Event, Any, None]:
        """Put ``group`` on and off shift by its calendar, from its first ``change``."""
        while math.isfinite(change):
            yield self.env.timeout(change - self.env.now)
            # evaluate at ``change``, not env.now: the sum may round below the boundary
            on, change = shift_state(group.spec.shifts, change)
            self._set_on(group, on)
