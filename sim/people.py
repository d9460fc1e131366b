"""Owners: they notice a failure, reach support through their channel, wait, give up, and leave.

Each incident runs one SimPy process. Every random choice is a keyed draw (device, count) so
that an owner behaves the same under every policy until the policy changes what happens to their
device. Agents live in :mod:`sim.contact_centre`, technicians in :mod:`sim.field`.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import numpy as np
import simpy

from contracts.messages import Contact
from sim.records import Incident
from sim.scenario import Severity
from sim.streams import Stream

if TYPE_CHECKING:
    from sim.world import World

__all__ = ["MAX_CONTACTS", "Owners"]

HOUR_S = 3600.0
MAX_CONTACTS = 5

Process = Generator[simpy.Event, Any, None]


class Owners:
    """Owners notice a failure after a delay and reach support unless support already reached them."""

    def __init__(self, world: World, seed: int) -> None:
        self.world = world
        self._notice = Stream(seed, "owners", "notice")
        self._channel = Stream(seed, "owners", "channel")
        self._patience = Stream(seed, "owners", "patience")
        self._recontact = Stream(seed, "owners", "recontact")
        self._churn = Stream(seed, "owners", "churn")
        self._contacts = 0
        self._on_hold: dict[int, simpy.Event] = {}  # device -> fires when its owner, in a queue, hears it is fixed

    def on_failure(self, incident: Incident, device: int) -> None:
        """Start the owner's side of a new incident."""
        self.world.env.process(self._notice_and_contact(incident, device))

    def _notice_and_contact(self, incident: Incident, device: int) -> Process:
        w = self.world
        fleet = w.fleet_of(device)
        owners = fleet.spec.owners
        severity: Severity = "down" if incident.severity == "down" else "degraded"
        delay = float(owners.notice_delay_h[severity].ppf(self._notice.one(device, incident.number))) * HOUR_S
        yield w.env.timeout(max(0.0, incident.onset_s + delay - w.env.now))
        if not math.isnan(incident.restored_s):
            return
        incident.noticed_s = w.env.now
        incident.symptom = w.symptom_of(device)
        w.records.log(w.env.now, "owner", "noticed", incident.device_id)
        channels = list(owners.channels)
        weights = np.cumsum([owners.channels[c] for c in channels])
        skill = w.scenario.contact_centre.routing.get(fleet.spec.product, "general")
        for attempt in range(MAX_CONTACTS):
            if device in w.informed_case or not math.isnan(incident.restored_s):
                return  # support already told the owner it is on it: they wait
            k = incident.number * MAX_CONTACTS + attempt
            channel = channels[int(np.searchsorted(weights, self._channel.one(device, k) * weights[-1], side="right"))]
            patience = (
                math.inf if owners.patience_s is None else float(owners.patience_s.ppf(self._patience.one(device, k)))
            )
            told_fixed = self._on_hold[device] = w.env.event()
            try:
                outcome = yield from w.contact_centre.call(
                    device,
                    k,
                    channel=channel,
                    skill=skill,
                    patience_s=patience,
                    fixable=w.remotely_fixable(device),
                    withdraw=told_fixed,
                )
            finally:
                del self._on_hold[device]
            if outcome.withdrawn:
                w.records.log(w.env.now, "owner", "withdrew", incident.device_id, "", f"{channel}: told it is fixed")
                return
            if not outcome.answered:
                incident.abandoned += 1
                w.records.log(
                    w.env.now, "owner", "abandoned", incident.device_id, "", f"{channel} after {outcome.wait_s:.0f} s"
                )
            else:
                w.records.contact_waits_s.append(outcome.wait_s)
                # A fault gone during the call is not fixed on it: the owner says what they saw.
                resolved = outcome.resolved and math.isnan(incident.restored_s)
                self._report(incident, device, channel, outcome.agent, resolved)
                if resolved or not math.isnan(incident.restored_s):
                    return
            wait_h = float(owners.recontact_h.ppf(self._recontact.one(device, k)))
            yield w.env.timeout(wait_h * HOUR_S)

    def _report(self, incident: Incident, device: int, channel: str, agent: str, resolved: bool) -> None:
        """The contact is logged with support at the end of the call (fixed on the call, or not)."""
        w = self.world
        self._contacts += 1
        contact_id = f"contact-{self._contacts:07d}"
        incident.contacts += 1
        # What the owner describes: the fault now, or what they noticed if it has gone meanwhile.
        symptom = w.symptom_of(device) if math.isnan(incident.restored_s) else incident.symptom
        if resolved:
            w.remote_fix_all(device, by="agent")
        shard = w.shard(device)
        w.emit(
            w.topics.contact(channel, shard),
            Contact(
                contact_id=contact_id,
                owner_id=f"owner-{incident.device_id}",
                device_id=incident.device_id,
                channel=channel,  # type: ignore[arg-type]
                ts=w.env.now,
                symptom=symptom,
                resolved=resolved,
            ),
            shard,
        )
        detail = f"{channel}: {symptom}" + (" (fixed on the call)" if resolved else "")
        w.records.log(w.env.now, "owner", "contact", incident.device_id, contact_id, detail)
        w.records.log(w.env.now, "agent", "answered", incident.device_id, contact_id, agent)

    def told_fixed(self, device: int) -> None:
        """The owner hears the trouble is resolved: if they are in a queue about it, they leave it."""
        event = self._on_hold.get(device)
        if event is not None and not event.triggered:
            event.succeed()

    def on_restored(self, incident: Incident, device: int) -> None:
        """Decide, once an incident is over, whether its owner walks away."""
        owners = self.world.fleet_of(device).spec.owners
        down_days = (incident.restored_s - incident.onset_s) / 86400.0 if incident.severity == "down" else 0.0
        stay = (1.0 - owners.churn_per_downtime_day) ** down_days * (1.0 - owners.churn_per_effort_step) ** (
            incident.effort_steps
        )
        incident.churned = self._churn.one(device, incident.number) > stay
