"""The people around the products: owners who notice and call, agents who answer, technicians who fix.

Each is a SimPy process over the shared world context. Every random choice is a keyed draw
(device, count) so that an owner or technician behaves the same under every policy until the
policy changes what happens to their device.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import numpy as np
import simpy

from contracts.messages import Contact, WorkOrder, WorkOrderStatus
from sim.records import Incident, Job
from sim.scenario import Severity
from sim.streams import Stream

if TYPE_CHECKING:
    from sim.world import World

__all__ = ["ContactCentre", "FieldService", "Owners"]

HOUR_S = 3600.0
MAX_CONTACTS = 5
DIAGNOSIS_H = 0.5

Process = Generator[simpy.Event, Any, None]


class Owners:
    """Owners notice a failure after a delay and reach support unless support already reached them."""

    def __init__(self, world: World, seed: int) -> None:
        self.world = world
        self._notice = Stream(seed, "owners", "notice")
        self._channel = Stream(seed, "owners", "channel")
        self._recontact = Stream(seed, "owners", "recontact")
        self._churn = Stream(seed, "owners", "churn")

    def on_failure(self, incident: Incident, device: int) -> None:
        """Start the owner's side of a new incident."""
        self.world.env.process(self._notice_and_contact(incident, device))

    def _notice_and_contact(self, incident: Incident, device: int) -> Process:
        w = self.world
        owners = w.fleet_of(device).spec.owners
        severity: Severity = "down" if incident.severity == "down" else "degraded"
        delay = float(owners.notice_delay_h[severity].ppf(self._notice.one(device, incident.number))) * HOUR_S
        yield w.env.timeout(max(0.0, incident.onset_s + delay - w.env.now))
        if not math.isnan(incident.restored_s):
            return
        incident.noticed_s = w.env.now
        w.records.log(w.env.now, "owner", "noticed", incident.device_id)
        channels = list(owners.channels)
        weights = np.cumsum([owners.channels[c] for c in channels])
        for attempt in range(MAX_CONTACTS):
            if w.informed_case[device] is not None or not math.isnan(incident.restored_s):
                return  # support already told the owner it is on it: they wait
            draw = self._channel.one(device, incident.number * MAX_CONTACTS + attempt) * weights[-1]
            channel = channels[int(np.searchsorted(weights, draw, side="right"))]
            yield from w.contact_centre.serve(incident, device, channel)
            yield w.env.timeout(float(owners.recontact_h.ppf(self._recontact.one(device, incident.contacts))) * HOUR_S)

    def on_restored(self, incident: Incident, device: int) -> None:
        """Decide, once an incident is over, whether its owner walks away."""
        owners = self.world.fleet_of(device).spec.owners
        down_days = (incident.restored_s - incident.onset_s) / 86400.0 if incident.severity == "down" else 0.0
        stay = (1.0 - owners.churn_per_downtime_day) ** down_days * (1.0 - owners.churn_per_effort_step) ** (
            incident.effort_steps
        )
        incident.churned = self._churn.one(device, incident.number) > stay


class ContactCentre:
    """Agents as one SimPy resource; each contact waits for an agent, who logs it with support."""

    def __init__(self, world: World, seed: int) -> None:
        self.world = world
        spec = world.scenario.contact_centre
        self.agents = simpy.Resource(world.env, capacity=spec.agents)
        self.handle_time_s = spec.handle_time_s
        self._handle = Stream(seed, "contact_centre", "handle")
        self._count = 0

    def serve(self, incident: Incident, device: int, channel: str) -> Process:
        """Queue for an agent, hold them for the handling time, log the contact with the engine."""
        w = self.world
        arrived = w.env.now
        with self.agents.request() as request:
            yield request
            w.records.contact_waits_s.append(w.env.now - arrived)
            self._count += 1
            contact_id = f"contact-{self._count:07d}"
            incident.contacts += 1
            mode_symptom = w.symptom_of(device)
            w.emit(
                w.topics.contact(channel),
                Contact(
                    contact_id=contact_id,
                    owner_id=f"owner-{incident.device_id}",
                    device_id=incident.device_id,
                    channel=channel,  # type: ignore[arg-type]
                    ts=w.env.now,
                    symptom=mode_symptom,
                ),
            )
            w.records.log(w.env.now, "owner", "contact", incident.device_id, contact_id, f"{channel}: {mode_symptom}")
            yield w.env.timeout(float(self.handle_time_s.ppf(self._handle.one(device, incident.contacts))))


class FieldService:
    """Technicians as one SimPy resource: travel, diagnose, repair with the parts the order brought."""

    def __init__(self, world: World, seed: int) -> None:
        self.world = world
        spec = world.scenario.technicians
        self.pool = simpy.Resource(world.env, capacity=spec.count)
        self._free = [f"tech-{i:03d}" for i in range(spec.count)]
        self.spec = spec
        self._travel = Stream(seed, "field", "travel")
        self._repair = Stream(seed, "field", "repair")
        self._lead = Stream(seed, "field", "part_lead")
        self._visits = np.zeros(world.device_count, dtype=np.int64)

    def dispatch(self, order: WorkOrder) -> None:
        """Take a work order from the engine and carry it out."""
        w = self.world
        job = Job(order.work_order_id, order.device_id, order.issue, w.env.now)
        w.records.jobs[order.work_order_id] = job
        w.env.process(self._carry_out(order, job))

    def _status(self, order: WorkOrder, job: Job, status: str, tech: str, seq: int, note: str = "") -> None:
        w = self.world
        w.emit(
            w.topics.field_status(order.work_order_id),
            WorkOrderStatus(
                work_order_id=order.work_order_id,
                device_id=order.device_id,
                ts=w.env.now,
                seq=seq,
                status=status,  # type: ignore[arg-type]
                technician_id=tech,
                visit=job.visits + 1 if status == "accepted" else max(job.visits, 1),
                note=note,
            ),
        )
        w.records.log(w.env.now, "technician", status, order.device_id, order.work_order_id, note)

    def _carry_out(self, order: WorkOrder, job: Job) -> Process:
        w = self.world
        device = w.index_of(order.device_id)
        fleet = w.fleet_of(device)
        local = device - fleet.offset
        parts = set(order.parts)
        seq = 0
        tech = ""
        while True:
            with self.pool.request() as request:
                yield request
                self._free.sort()
                tech = self._free.pop(0)
                try:
                    seq += 1
                    self._status(order, job, "accepted", tech, seq)
                    n = int(self._visits[device])
                    self._visits[device] += 1
                    travel_h = float(self.spec.travel_h.ppf(self._travel.one(device, n)))
                    yield w.env.timeout(travel_h * HOUR_S)
                    job.visits += 1
                    w.on_visit(device)
                    seq += 1
                    self._status(order, job, "arrived", tech, seq)
                    now = w.env.now
                    found = [
                        m
                        for m in range(len(fleet.modes))
                        if fleet.failed[m, local] or fleet.in_precursor(m, local, now)
                    ]
                    fixable = [m for m in found if fleet.modes[m].repair.part in (None, *parts)]
                    missing = sorted({p for m in found if (p := fleet.modes[m].repair.part) and p not in parts})
                    hours = [float(fleet.modes[m].repair.duration_h.ppf(self._repair.one(device, n))) for m in fixable]
                    work_h = max(hours, default=DIAGNOSIS_H)
                    yield w.env.timeout(work_h * HOUR_S)
                    job.labour_h += travel_h + work_h
                    for m in fixable:
                        part = fleet.modes[m].repair.part
                        if part:
                            job.parts_used.append(part)
                        w.repair(device, m)
                    outcome = "part_missing" if missing else ("fixed" if fixable else "no_fault_found")
                    seq += 1
                    self._status(order, job, outcome, tech, seq, ",".join(missing))
                finally:
                    self._free.append(tech)
            if not missing:
                break
            job.second_visit_causes.append("part")
            lead_h = float(self.spec.part_lead_time_h.ppf(self._lead.one(device, n)))
            yield w.env.timeout(lead_h * HOUR_S)
            parts.update(missing)
        job.outcome = outcome
        job.closed_s = w.env.now
        seq += 1
        self._status(order, job, "closed", tech, seq)
