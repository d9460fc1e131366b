"""Contact streams: owners getting in touch about something other than a fault, through the contact centre.

Connected products make support demand of their own: how-to questions, billing, set-up help. Each
``contact_streams`` entry of a fleet is a Poisson process over the whole fleet at ``per_device_day``
contacts per device and day, optionally shaped by an hour-of-day and a day-of-week profile
(:class:`Rate`); each arrival picks a device uniformly. The owner reaches the contact centre like an
owner with a fault does (channel, patience, queue of a skill), but the handling time and whether the
contact settles the matter are the stream's, and support hears of it as a :class:`Contact` with a
``reason``: the engine answers it on the contact, with no case and no visit. A matter not settled,
or a call given up in the queue, brings the owner back after ``owners.recontact_h``.

Every draw is keyed by (the stream's k-th arrival, attempt) on streams named after the fleet and
the reason, so that adding a stream shifts no other random number of the run, and the same
contacts arrive under every policy.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Generator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import simpy

from contracts.messages import Contact
from sim.distributions import Distribution
from sim.fleet import FleetState
from sim.people import MAX_CONTACTS
from sim.records import Enquiry
from sim.scenario import ContactStream
from sim.streams import Stream

if TYPE_CHECKING:
    from sim.world import World

__all__ = ["ContactStreams", "Rate"]

HOUR_S = 3600.0
DAY_S = 24 * HOUR_S
WEEK_S = 7 * DAY_S

Process = Generator[simpy.Event, Any, None]
Floats = npt.NDArray[np.float64]


def _relative(weights: Sequence[float] | None, n: int) -> Floats:
    """``weights`` scaled to average 1 (all ones when there are none)."""
    if weights is None:
        return np.ones(n)
    w = np.asarray(weights, dtype=np.float64)
    return np.asarray(w * (n / float(w.sum())), dtype=np.float64)


class Rate:
    """A Poisson rate per second, constant or piecewise constant by the hour of the week.

    The hourly rate is ``per_s`` times the daily profile's weight of the hour times the weekly
    profile's weight of the day, each profile scaled to average 1, so that ``per_s`` is the mean.
    """

    def __init__(self, per_s: float, daily: Sequence[float] | None = None, weekly: Sequence[float] | None = None):
        self.per_s = per_s
        self._hourly: Floats | None = None
        if daily is not None or weekly is not None:
            self._hourly = per_s * np.outer(_relative(weekly, 7), _relative(daily, 24)).ravel()
            # Arrivals expected from the start of the week to the start of each hour, and in a week.
            self._before = np.concatenate([[0.0], np.cumsum(self._hourly * HOUR_S)])
            self._week = float(self._before[-1])

    def at(self, t: float) -> float:
        """The rate at time ``t``."""
        if self._hourly is None:
            return self.per_s
        return float(self._hourly[int(t % WEEK_S // HOUR_S)])

    def expected(self, t: float) -> float:
        """Arrivals expected from 0 to ``t`` (the cumulative rate)."""
        if self._hourly is None:
            return self.per_s * t
        weeks, into = divmod(t, WEEK_S)
        hour = min(int(into // HOUR_S), 167)
        return weeks * self._week + float(self._before[hour]) + float(self._hourly[hour]) * (into - hour * HOUR_S)

    def next_arrival(self, t: float, mass: float) -> float:
        """The time after ``t`` by which ``mass`` more arrivals are expected: with ``mass`` an
        exponential(1) draw, the next arrival of the process (inversion of the cumulative rate)."""
        if self._hourly is None:
            return t + mass / self.per_s
        target = self.expected(t) + mass
        weeks = math.floor(target / self._week)
        into = target - weeks * self._week
        hour = min(int(np.searchsorted(self._before, into, side="right")) - 1, 167)
        while self._hourly[hour] <= 0.0:  # the target sits on an hour with no arrivals: the next one with any
            hour += 1
            if hour == 168:
                weeks, hour, into = weeks + 1, 0, 0.0
        offset = max(0.0, into - float(self._before[hour])) / float(self._hourly[hour])
        return max(t, weeks * WEEK_S + hour * HOUR_S + offset)


class _Stream:
    """One fleet's contacts for one reason: its rate, its choices and its keyed draws."""

    def __init__(self, fleet: FleetState, reason: str, spec: ContactStream, seed: int, world: World) -> None:
        self.fleet = fleet
        self.reason = reason
        self.spec = spec
        self.rate = Rate(fleet.n * spec.per_device_day / DAY_S, spec.daily_profile, spec.weekly_profile)
        centre = world.scenario.contact_centre
        self.skill = spec.skill or centre.routing.get(fleet.spec.product, "general")
        channels = spec.channels or fleet.spec.owners.channels
        self.channels = list(channels)
        self.weights = np.cumsum([channels[c] for c in self.channels])
        self.handle: dict[str, Distribution] = {
            c: spec.handle_time_s or centre.handle_time_by_channel.get(c, centre.handle_time_s) for c in self.channels
        }
        self.draws = {
            purpose: Stream(seed, fleet.spec.name, "contacts", reason, purpose)
            for purpose in ("gap", "who", "channel", "patience", "handle", "settled", "again")
        }

    def draw(self, purpose: str, k: int, attempt: int = 0) -> float:
        return self.draws[purpose].one(k, attempt)


class ContactStreams:
    """Every fleet's contact streams, placed through the world's contact centre and reported to support."""

    def __init__(self, world: World, seed: int) -> None:
        self.world = world
        self._contacts = 0
        self.streams = [
            _Stream(fleet, reason, spec, seed, world)
            for fleet in world.fleets
            for reason, spec in fleet.spec.contact_streams.items()
            if spec.per_device_day > 0
        ]
        for stream in self.streams:
            world.env.process(self._arrivals(stream))

    def _arrivals(self, s: _Stream) -> Process:
        env = self.world.env
        k = 0
        while True:
            mass = -math.log1p(-s.draw("gap", k))
            at = s.rate.next_arrival(float(env.now), mass)
            yield env.timeout(at - float(env.now))
            local = min(int(s.draw("who", k) * s.fleet.n), s.fleet.n - 1)
            env.process(self._get_in_touch(s, k, s.fleet.offset + local))
            k += 1

    def _get_in_touch(self, s: _Stream, k: int, device: int) -> Process:
        """The owner's contacts about the k-th matter of stream ``s``, until one settles it (at most
        :data:`sim.people.MAX_CONTACTS`)."""
        w = self.world
        owners = s.fleet.spec.owners
        device_id = s.fleet.ids[device - s.fleet.offset]
        for attempt in range(MAX_CONTACTS):
            pick = s.draw("channel", k, attempt) * s.weights[-1]
            channel = s.channels[int(np.searchsorted(s.weights, pick, side="right"))]
            patience = (
                math.inf if owners.patience_s is None else float(owners.patience_s.ppf(s.draw("patience", k, attempt)))
            )
            handle = float(s.handle[channel].ppf(s.draw("handle", k, attempt)))
            enquiry = Enquiry(device_id, s.fleet.spec.name, s.reason, channel, float(w.env.now), attempt)
            w.records.enquiries.append(enquiry)
            outcome = yield from w.contact_centre.call(
                device,
                k,
                channel=channel,
                skill=s.skill,
                patience_s=patience,
                handle_s=handle,
                on_answer=functools.partial(self._answered, enquiry),
            )
            if not outcome.answered:
                enquiry.abandoned, enquiry.wait_s = True, outcome.wait_s
                detail = f"{channel}: {s.reason} after {outcome.wait_s:.3f} s"
                w.records.log(w.env.now, "owner", "enquiry_abandoned", device_id, "", detail)
            else:
                settled = s.draw("settled", k, attempt) < s.spec.first_contact_resolution
                enquiry.resolved = settled
                self._report(s, device, device_id, channel, outcome.agent, enquiry.wait_s, settled)
                if settled:
                    return
            yield w.env.timeout(float(owners.recontact_h.ppf(s.draw("again", k, attempt))) * HOUR_S)

    def _answered(self, enquiry: Enquiry, agent: str) -> None:
        """An agent (or self-service) takes the contact: its wait ends now, before the handling time."""
        enquiry.answered, enquiry.wait_s = True, float(self.world.env.now) - enquiry.arrived_s

    def _report(
        self, s: _Stream, device: int, device_id: str, channel: str, agent: str, wait_s: float, settled: bool
    ) -> None:
        """Support hears of the contact at its end, with its reason and whether it settled the matter."""
        w = self.world
        self._contacts += 1
        contact_id = f"enquiry-{self._contacts:07d}"
        shard = w.shard(device)
        w.emit(
            w.topics.contact(channel, shard),
            Contact(
                contact_id=contact_id,
                owner_id=f"owner-{device_id}",
                device_id=device_id,
                channel=channel,  # type: ignore[arg-type]
                ts=float(w.env.now),
                symptom=s.reason,
                reason=s.reason,
                resolved=settled,
            ),
            shard,
        )
        detail = f"{channel}: {s.reason}, waited {wait_s:.3f} s, {'settled' if settled else 'not settled'}"
        w.records.log(w.env.now, "owner", "enquiry", device_id, contact_id, detail)
        w.records.log(w.env.now, "agent", "answered", device_id, contact_id, agent)
