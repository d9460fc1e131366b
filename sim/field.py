"""Field service: technicians in crews with skills, regions, shifts and vans, fed by parts depots.

Work orders wait in one queue ranked by (priority, created, device, id); a technician who is on shift, idle
and has a skill the visit needs takes the best order it can, preferring the device's region. The
technician picks the predicted parts the van lacks from a depot *only if they are on hand*, drives,
diagnoses what :meth:`FieldWorld.faults` reports, fixes what its skills and parts allow and reports
``part_missing`` or ``incomplete`` otherwise; the order then returns to the queue once the missing
parts have reached the site, or for a technician with the missing skill. A preventive work order
(``maintenance`` set) is carried out the same way, and on site the technician also services the
modes it names that are neither failed nor drifting (:meth:`FieldWorld.services`); its job is of
kind ``preventive`` and ends ``serviced``, ``inspected`` or ``service_incomplete``.

Depots run (S-1, S) base stock per part, so Palm's theorem holds: with Poisson demand at rate λ
and i.i.d. replenishment times of mean L, the number of units in resupply is Poisson(λL) whatever
the replenishment distribution, and the fill rate is P(Poisson(λL) ≤ S-1).

Every random choice is a keyed draw (device, count), as in :mod:`sim.people`.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import simpy

from contracts.messages import Message, PreventiveVisit, WorkOrder, WorkOrderStatus
from contracts.topics import Topics
from sim.depots import Depots
from sim.distributions import Distribution
from sim.records import Job, Records
from sim.scenario import Crew, Depot, Shift, Technicians
from sim.streams import Stream

__all__ = [
    "Fault",
    "FieldScenario",
    "FieldService",
    "FieldWorld",
    "Technician",
    "on_shift_intervals",
]

HOUR_S = 3600.0
DAY_S = 86400.0
DIAGNOSIS_H = 0.5
MAX_VISITS = 8  # a guard against a device that keeps breaking while its order is open
_MODE_SLOTS = 1 << 16  # repair draws are keyed (device, visit * _MODE_SLOTS + mode)

Process = Generator[simpy.Event, Any, None]


# -- ports ---------------------------------------------------------------------------------------


class Fault(NamedTuple):
    """A problem a technician finds on site: which mode, the skill and part it needs, how long it
    takes; or (``service``) a mode a preventive visit services, though nothing is wrong with it."""

    mode: int
    skill: str
    part: str | None
    duration_h: Distribution
    service: bool = False


class FieldScenario(Protocol):
    """The part of a :class:`sim.scenario.Scenario` the field reads."""

    @property
    def technicians(self) -> Technicians: ...
    @property
    def depots(self) -> Sequence[Depot]: ...


class FieldWorld(Protocol):
    """What the field needs from the world: a clock, the staffing spec, books, a wire and the devices."""

    @property
    def env(self) -> simpy.Environment: ...
    @property
    def scenario(self) -> FieldScenario: ...
    @property
    def records(self) -> Records: ...
    @property
    def topics(self) -> Topics: ...

    def emit(self, topic: str, message: Message, shard: int = 0) -> None:
        """Publish ``message`` (stamped now)."""

    def index_of(self, device_id: str) -> int: ...
    def shard(self, device: int) -> int: ...
    def region_of(self, device: int) -> str | None: ...

    def faults(self, device: int) -> list[Fault]:
        """What a technician on site finds now (failed modes and those drifting towards failure)."""

    def services(self, device: int, names: Sequence[str]) -> list[Fault]:
        """What a preventive visit services of the modes ``names`` (those not found as faults)."""

    def mode_names(self, device: int) -> Sequence[str]:
        """The names of the device's modes (failure modes, then consumables), by index."""

    def repair(self, device: int, mode: int) -> None: ...
    def service(self, device: int, mode: int) -> None: ...
    def on_visit(self, device: int) -> None: ...


# -- shifts --------------------------------------------------------------------------------------


def on_shift_intervals(shifts: Iterable[Shift], t0: float, t1: float) -> list[tuple[float, float]]:
    """The on-shift time within [t0, t1) as sorted, disjoint intervals (time 0 is Monday 00:00).

    A shift whose ``end_h`` is not after its ``start_h`` runs past midnight into the next day.
    """
    raw: list[tuple[float, float]] = []
    for day in range(math.floor(t0 / DAY_S) - 1, math.floor(t1 / DAY_S) + 1):
        for s in shifts:
            if day % 7 in s.days:
                end_h = s.end_h if s.end_h > s.start_h else s.end_h + 24.0
                a, b = max(t0, day * DAY_S + s.start_h * HOUR_S), min(t1, day * DAY_S + end_h * HOUR_S)
                if b - a > 1e-6:
                    raw.append((a, b))
    merged: list[tuple[float, float]] = []
    for a, b in sorted(raw):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


# -- technicians ---------------------------------------------------------------------------------


@dataclass
class Technician:
    """One technician: skills (empty: every skill), home region, shifts (empty: always on), van."""

    id: str
    skills: frozenset[str]
    region: str | None
    shifts: tuple[Shift, ...]
    van: Counter[str]
    on_duty: bool
    busy: bool = False
    idle_since_s: float = 0.0
    busy_since_s: float = 0.0
    busy_s: float = 0.0
    busy_on_shift_s: float = 0.0

    def has(self, skill: str) -> bool:
        return not skill or not self.skills or skill in self.skills  # "" : a job anyone can do

    def can_take(self, skills: frozenset[str]) -> bool:
        """A visit needing ``skills`` fits a technician with any one of them (empty: anyone)."""
        skills = skills - {""}
        return not skills or not self.skills or bool(skills & self.skills)

    def on_shift_s(self, t0: float, t1: float) -> float:
        if not self.shifts:
            return t1 - t0
        return sum(b - a for a, b in on_shift_intervals(self.shifts, t0, t1))


def _crews(spec: Technicians) -> list[Crew]:
    return list(spec.crews) or [Crew(name="tech", count=spec.count)]


@dataclass
class _Request:
    rank: tuple[int, float, str, str]  # ties go by device, not by how an engine numbers its orders
    skills: frozenset[str]
    region: str | None
    since_s: float
    granted: simpy.Event


@dataclass
class _Order:
    order: WorkOrder
    job: Job
    device: int
    region: str | None
    seq: int = 0
    tech: str = ""
    services: list[str] = field(default_factory=list)  # a preventive order's modes not serviced yet
    worked: bool = False  # a visit of this order serviced or repaired something


class _Visit(NamedTuple):
    status: str
    note: str
    missing_parts: list[str]
    next_skills: frozenset[str]  # skills of the faults left unfixed
    next_parts: list[str]  # parts the next technician should bring (faults this one lacked the skill for)


# -- the field -----------------------------------------------------------------------------------


class FieldService:
    """Technicians in crews taking work orders from one ranked queue, with van stock and depots."""

    def __init__(self, world: FieldWorld, seed: int) -> None:
        self.world = world
        self.env = world.env
        self.spec = world.scenario.technicians
        self.depots = Depots(world.env, world.scenario.depots, seed)
        self.start_s = float(self.env.now)
        self.technicians: list[Technician] = []
        for crew in _crews(self.spec):
            for i in range(1, crew.count + 1):
                tech = Technician(
                    id=f"{crew.name}-{i:02d}",
                    skills=frozenset(crew.skills),
                    region=crew.region,
                    shifts=tuple(crew.shifts),
                    van=Counter(crew.van_stock),
                    on_duty=not crew.shifts,
                    idle_since_s=self.start_s,
                )
                self.technicians.append(tech)
                if crew.shifts:
                    self.env.process(self._shift_clock(tech))
        self._everyone = any(not t.skills for t in self.technicians)
        self._skills = frozenset().union(*(t.skills for t in self.technicians))
        self._travel = Stream(seed, "field", "travel")
        self._repair = Stream(seed, "field", "repair")
        self._lead = Stream(seed, "field", "part_lead")
        self._draws: Counter[tuple[str, int]] = Counter()
        self._queue: list[_Request] = []
        self._queue_since_s = self.start_s
        self.queue_area = 0.0  # ∫ waiting orders dt, order-seconds
        self.queue_arrivals = 0
        self.queue_waits_s: list[float] = []
        self.response_s: list[float] = []
        self.second_visits: Counter[str] = Counter()

    # -- the engine's side ------------------------------------------------------------------------
    def dispatch(self, order: WorkOrder) -> None:
        """Take a work order from the engine and carry it out."""
        w = self.world
        visit = order.maintenance
        kind = "preventive" if isinstance(visit, PreventiveVisit) else "corrective"
        job = Job(order.work_order_id, order.device_id, order.issue, float(self.env.now), kind=kind)
        w.records.jobs[order.work_order_id] = job
        device = w.index_of(order.device_id)
        services = list(visit.services) if isinstance(visit, PreventiveVisit) else []
        self.env.process(self._carry_out(_Order(order, job, device, w.region_of(device), services=services)))

    @property
    def waiting(self) -> int:
        """Work orders (or their next visits) waiting for a technician now."""
        return len(self._queue)

    @property
    def busy(self) -> int:
        """Technicians on a job now (taken, driving, on site)."""
        return sum(t.busy for t in self.technicians)

    def summary(self, now: float) -> dict[str, Any]:
        """Utilisation, response time, second visits and queue figures (for Little's law) up to ``now``."""
        busy = on_shift = overtime = 0.0
        for t in self.technicians:
            partial = now - t.busy_since_s if t.busy else 0.0
            partial_on = t.on_shift_s(t.busy_since_s, now) if t.busy else 0.0
            busy += t.busy_on_shift_s + partial_on
            overtime += t.busy_s + partial - t.busy_on_shift_s - partial_on
            on_shift += t.on_shift_s(self.start_s, now)
        span_h = (now - self.start_s) / HOUR_S
        waiting_area = self.queue_area + len(self._queue) * (now - self._queue_since_s)
        return {
            "technicians": len(self.technicians),
            "utilisation": busy / on_shift if on_shift > 0 else math.nan,
            "overtime_h": overtime / HOUR_S,
            "mean_response_h": _mean(self.response_s) / HOUR_S,
            "second_visits": dict(sorted(self.second_visits.items())),
            "queue_arrivals": self.queue_arrivals,
            "queue_arrival_rate_per_h": self.queue_arrivals / span_h if span_h > 0 else math.nan,
            "queue_mean_waiting": waiting_area / HOUR_S / span_h if span_h > 0 else math.nan,
            "queue_mean_wait_h": _mean(self.queue_waits_s) / HOUR_S,
            "waiting_now": len(self._queue),
            "depots": self.depots.summary(),
        }

    # -- the queue --------------------------------------------------------------------------------
    def _level(self) -> None:
        now = float(self.env.now)
        self.queue_area += len(self._queue) * (now - self._queue_since_s)
        self._queue_since_s = now

    def _wait_for_technician(self, o: _Order, skills: frozenset[str]) -> Generator[simpy.Event, Any, Technician]:
        created = o.job.created_s
        request = _Request(
            (o.order.priority, created, o.order.device_id, o.order.work_order_id),
            skills,
            o.region,
            float(self.env.now),
            self.env.event(),
        )
        self._level()
        bisect.insort(self._queue, request, key=lambda r: r.rank)
        self.queue_arrivals += 1
        self._match()
        tech: Technician = yield request.granted
        return tech

    def _match(self) -> None:
        """Give waiting orders, best first, to idle on-shift technicians; prefer the device's region,
        then the technician idle longest, then the lowest id."""
        idle = [t for t in self.technicians if t.on_duty and not t.busy]
        i = 0
        while idle and i < len(self._queue):
            request = self._queue[i]
            able = [t for t in idle if t.can_take(request.skills)]
            if not able:
                i += 1
                continue
            tech = min(
                able,
                key=lambda t: (request.region is None or t.region != request.region, t.idle_since_s, t.id),
            )
            idle.remove(tech)
            self._level()
            del self._queue[i]
            now = float(self.env.now)
            self.queue_waits_s.append(now - request.since_s)
            tech.busy, tech.busy_since_s = True, now
            request.granted.succeed(tech)

    def _release(self, tech: Technician) -> None:
        now = float(self.env.now)
        tech.busy, tech.idle_since_s = False, now
        tech.busy_s += now - tech.busy_since_s
        tech.busy_on_shift_s += tech.on_shift_s(tech.busy_since_s, now)
        self._match()

    def _shift_clock(self, tech: Technician) -> Process:
        """Put ``tech`` on duty at each shift start (and give it work), off duty at each end."""
        while True:
            now = float(self.env.now)
            upcoming = on_shift_intervals(tech.shifts, now, now + 8 * DAY_S)
            if not upcoming:
                tech.on_duty = False
                return
            start, end = upcoming[0]
            if start > now:
                tech.on_duty = False
                yield self.env.timeout(start - now)
            tech.on_duty = True
            self._match()
            yield self.env.timeout(max(0.0, end - float(self.env.now)))

    def _coverable(self, skills: frozenset[str]) -> frozenset[str] | None:
        """The needed skills someone has; None when nobody has any of them."""
        skills = skills - {""}
        if not skills or self._everyone:
            return skills
        return (skills & self._skills) or None

    # -- an order's life --------------------------------------------------------------------------
    def _carry_out(self, o: _Order) -> Process:
        skills = frozenset({o.order.skill})
        wanted, shipped = list(o.order.parts), Counter[str]()
        visit: _Visit | None = None
        while True:
            needed = self._coverable(skills)
            if needed is None and visit is not None:
                break  # nobody can do what is left: the order closes incomplete
            tech = yield from self._wait_for_technician(o, needed or frozenset())
            visit = yield from self._visit(o, tech, wanted, shipped)
            self._release(tech)
            if visit.status not in ("part_missing", "incomplete") or o.job.visits >= MAX_VISITS:
                break
            cause = "part" if visit.missing_parts else "skill"
            o.job.second_visit_causes.append(cause)
            self.second_visits[cause] += 1
            if visit.missing_parts:
                yield self.env.all_of([self.env.process(self._ship(o, part)) for part in visit.missing_parts])
            skills, wanted, shipped = visit.next_skills, visit.next_parts, Counter(visit.missing_parts)
        job = o.job
        job.outcome = visit.status if visit is not None else "open"
        if job.kind == "preventive":  # outcomes of their own: no corrective figure counts them
            done = job.outcome in ("fixed", "no_fault_found")
            job.outcome = ("serviced" if o.worked else "inspected") if done else "service_incomplete"
        job.closed_s = float(self.env.now)
        self._status(o, "closed", job.visits, visit.note if visit is not None else "")

    def _visit(
        self, o: _Order, tech: Technician, wanted: list[str], shipped: Counter[str]
    ) -> Generator[simpy.Event, Any, _Visit]:
        w, env, job = self.world, self.env, o.job
        o.tech = tech.id
        self._status(o, "accepted", job.visits + 1)
        kit = Counter(shipped)
        for part, n in sorted((Counter(wanted) - tech.van).items()):
            for _ in range(n):
                if not self.depots.stocks(part) or self.depots.try_take(part, o.region, self._key("pick", o.device)):
                    kit[part] += 1
        n_visit = self._draws["visit", o.device]
        self._draws["visit", o.device] += 1
        local = tech.region is None or o.region is None or tech.region == o.region
        travel = self.spec.travel_h if local else self.spec.travel_h_other_region
        travel_h = float(travel.ppf(self._travel.one(o.device, n_visit)))
        yield env.timeout(travel_h * HOUR_S)
        job.visits += 1
        if job.visits == 1:
            self.response_s.append(float(env.now) - job.created_s)
        w.on_visit(o.device)
        self._status(o, "arrived", job.visits)

        fixable: list[tuple[Fault, str]] = []  # (fault, where its part comes from: "", "kit" or "van")
        missing: list[str] = []
        unfixed: list[Fault] = []
        found = w.faults(o.device)
        if o.services:  # a preventive visit: what is wrong first, then the service of the rest
            found += [f for f in w.services(o.device, o.services) if f.mode not in {g.mode for g in found}]
        for fault in found:
            if not tech.has(fault.skill):
                unfixed.append(fault)
            elif fault.part is None:
                fixable.append((fault, ""))
            elif kit[fault.part] > 0:
                kit[fault.part] -= 1
                fixable.append((fault, "kit"))
            elif tech.van[fault.part] > 0:
                tech.van[fault.part] -= 1
                fixable.append((fault, "van"))
            else:
                missing.append(fault.part)
                unfixed.append(fault)
        hours = [
            float(f.duration_h.ppf(self._repair.one(o.device, n_visit * _MODE_SLOTS + f.mode))) for f, _ in fixable
        ]
        work_h = max(hours, default=DIAGNOSIS_H)
        yield env.timeout(work_h * HOUR_S)
        job.labour_h += travel_h + work_h
        done = set()
        for fault, source in fixable:
            if fault.part is not None:
                job.parts_used.append(fault.part)
                if source == "van":
                    env.process(self._restock(tech, fault.part, o.device))
            if fault.service:
                w.service(o.device, fault.mode)
            else:
                w.repair(o.device, fault.mode)
            done.add(fault.mode)
            o.worked = True
        if o.services:  # a mode repaired or serviced on this visit needs no service on the next
            mode_names = w.mode_names(o.device)
            names = {mode_names[m] for m in done}
            job.serviced += [n for n in o.services if n in names]
            o.services = [n for n in o.services if n not in names]
        tech.van.update(+kit)

        skill_gaps = sorted({f.skill for f in unfixed if not tech.has(f.skill)})
        if missing:
            status, note = "part_missing", ",".join(sorted(set(missing)))
        elif skill_gaps:
            status, note = "incomplete", ",".join(f"skill:{s}" for s in skill_gaps)
        else:
            status, note = ("fixed" if fixable else "no_fault_found"), ""
        self._status(o, status, job.visits, note)
        next_parts = sorted(f.part for f in unfixed if f.part is not None and not tech.has(f.skill))
        return _Visit(status, note, sorted(missing), frozenset(f.skill for f in unfixed), next_parts)

    def _ship(self, o: _Order, part: str) -> Process:
        """Get ``part`` to the site: from a depot (waiting for a backorder) and then the carrier."""
        event = self.depots.take(part, o.region, self._key("pick", o.device))
        if event is not None:
            yield event
        yield self.env.timeout(self._lead_s(o.device))

    def _restock(self, tech: Technician, part: str, device: int) -> Process:
        """Refill the van with a part used from it."""
        event = self.depots.take(part, tech.region, self._key("pick", device))
        if event is not None:
            yield event
        yield self.env.timeout(self._lead_s(device))
        tech.van[part] += 1

    def _key(self, purpose: str, device: int) -> tuple[int, int]:
        k = self._draws[purpose, device]
        self._draws[purpose, device] += 1
        return device, k

    def _lead_s(self, device: int) -> float:
        return float(self.spec.part_lead_time_h.ppf(self._lead.one(*self._key("lead", device)))) * HOUR_S

    def _status(self, o: _Order, status: str, visit: int, note: str = "") -> None:
        w = self.world
        o.seq += 1
        shard = w.shard(o.device)
        w.emit(
            w.topics.field_status(o.order.work_order_id, shard),
            WorkOrderStatus(
                work_order_id=o.order.work_order_id,
                device_id=o.order.device_id,
                ts=float(self.env.now),
                seq=o.seq,
                status=status,  # type: ignore[arg-type]
                technician_id=o.tech,
                visit=max(visit, 1),
                note=note,
            ),
            shard,
        )
        w.records.log(float(self.env.now), "technician", status, o.order.device_id, o.order.work_order_id, note)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan
