"""What a run records: ground truth, incidents as owners live them, field jobs, and an event log.

The world fills these; :mod:`sim.kpis` reduces them; only the CLI writes them to files.
Tallies (one value per finished thing: a wait, a job) are kept apart from the event log.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["LEVELS", "NO_POWER", "POWER", "Enquiry", "Failure", "Incident", "Job", "Records"]

POWER = "power_outage"
"""The mode of a power cut of an outage: a failure outside the fleets' own modes."""
NO_POWER = "no_power"
"""The symptom an owner reports while an outage cuts the device's power."""

LEVELS = (
    "t_s",
    "devices_down",
    "devices_degraded",
    "open_incidents",
    "owners_waiting",
    "work_orders_waiting",
    "technicians_busy",
)
"""Columns of a level-series row: the state of the world sampled at the end of each sync step."""


@dataclass
class Failure:
    """One true failure (or one caught while its precursor drifted: ``prevented``)."""

    device_id: str
    fleet: str
    mode: str
    severity: str
    onset_s: float  # true failure time; for a prevented one, when it would have failed
    prevented: bool = False
    restored_s: float = math.nan
    fixed_by: str = ""  # technician, remote, agent, ota, delivery, self (it came back on its own)
    informed_s: float = math.nan  # when the engine first told the owner of trouble while this failure drifted or was on


@dataclass
class Incident:
    """A device's trouble as its owner lives it: from the first failure until all is repaired."""

    device_id: str
    fleet: str
    number: int  # the device's incident count, for keyed draws
    onset_s: float
    severity: str
    noticed_s: float = math.nan
    symptom: str = ""  # what the owner noticed (the symptom of the worst fault then)
    informed_s: float = math.nan  # when the engine first told the owner it knows
    restored_s: float = math.nan
    contacts: int = 0
    abandoned: int = 0  # calls the owner gave up on in the queue
    visits: int = 0
    churned: bool = False
    fixed_by: str = ""  # what ended it (see Failure.fixed_by)
    confirmed_s: float = math.nan  # when the owner was told it is resolved (the engine's "resolved" notice)
    premature_resolved: int = 0  # "resolved" notices the owner got while this incident was still on

    @property
    def effort_steps(self) -> int:
        """Steps the owner took: each contact, each call given up in the queue, each visit they had to be home for."""
        return self.contacts + self.abandoned + self.visits


@dataclass
class Job:
    """One work order as the field lived it.

    ``kind`` is ``corrective`` (it answers a case) or ``preventive`` (a maintenance plan's visit),
    whose outcomes are ``serviced``, ``inspected`` (nothing to service or fix) or
    ``service_incomplete``, never those of a corrective job, so that first-time fix and false
    dispatches count corrective work alone."""

    work_order_id: str
    device_id: str
    issue: str
    created_s: float
    visits: int = 0
    labour_h: float = 0.0
    parts_used: list[str] = field(default_factory=list)
    second_visit_causes: list[str] = field(default_factory=list)
    outcome: str = "open"
    closed_s: float = math.nan
    kind: str = "corrective"
    serviced: list[str] = field(default_factory=list)  # preventive: the failure modes serviced


@dataclass
class Enquiry:
    """One contact of a contact stream (a question, not a fault) as the owner lived it."""

    device_id: str
    fleet: str
    reason: str
    channel: str
    arrived_s: float  # when the owner got in touch
    attempt: int  # 0: the first contact about the matter; 1, 2, ...: again (not settled, or gave up)
    answered: bool = (
        False  # an agent (or self-service) took it; neither this nor ``abandoned``: still queued at the end
    )
    abandoned: bool = False  # the owner gave up waiting in the queue
    wait_s: float = 0.0  # in the queue until answered or given up (0 for self-service)
    resolved: bool | None = None  # the contact settled the matter; None until it ends


@dataclass
class Records:
    """Everything a run keeps for scoring and for the output files."""

    failures: list[Failure] = field(default_factory=list)
    incidents: list[Incident] = field(default_factory=list)
    jobs: dict[str, Job] = field(default_factory=dict)
    contact_waits_s: list[float] = field(default_factory=list)
    enquiries: list[Enquiry] = field(default_factory=list)  # contacts of the contact streams
    link: list[tuple[float, str, str, str]] = field(default_factory=list)  # connectivity ground truth
    events: list[tuple[float, str, str, str, str, str]] = field(default_factory=list)
    levels: list[tuple[float, ...]] = field(default_factory=list)  # one row of LEVELS per sync step

    def log(self, t: float, actor: str, kind: str, device_id: str = "", ref: str = "", detail: str = "") -> None:
        """Append one row to the event log (time, actor, kind, device, reference, detail)."""
        self.events.append((t, actor, kind, device_id, ref, detail))
