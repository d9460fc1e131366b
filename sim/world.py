"""One run's world: fleets as arrays, owners, agents and technicians, speaking only contracts.

The world never touches a network. The harness advances it to each sync boundary, takes what it
published (``advance`` returns topic/payload pairs) and hands it the engine's messages in a
deterministic order (``deliver``); their effects start at the current time.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Generator
from typing import Any

import numpy as np
import simpy

from contracts import codec
from contracts.messages import Command, ConsumableOrder, DeviceEvent, Message, Notification, WorkOrder
from contracts.topics import Topics
from sim.fleet import FleetState
from sim.people import ContactCentre, FieldService, Owners
from sim.records import Failure, Incident, Records
from sim.scenario import Scenario

__all__ = ["World"]


class World:
    """The simulated world of one (scenario, seed)."""

    def __init__(
        self,
        scenario: Scenario,
        *,
        seed: int | None = None,
        topics: Topics | None = None,
        env: simpy.Environment | None = None,
    ) -> None:
        self.scenario = scenario
        self.seed = scenario.seed if seed is None else seed
        self.topics = topics or Topics()
        # The runner may pass a simpy.rt.RealtimeEnvironment (live mode); the world never reads real time.
        self.env = simpy.Environment() if env is None else env
        self.records = Records()
        self.fleets: list[FleetState] = []
        offset = 0
        for spec in scenario.fleets:
            self.fleets.append(FleetState(spec, self.seed, offset))
            offset += spec.count
        self.device_count = offset
        self._offsets = [f.offset for f in self.fleets]
        self._index = {device_id: f.offset + i for f in self.fleets for i, device_id in enumerate(f.ids)}
        self.informed_case: list[str | None] = [None] * offset
        self._open: dict[int, Incident] = {}
        self._open_failures: dict[tuple[int, int], Failure] = {}
        self._incident_count = np.zeros(offset, dtype=np.int64)
        self._event_seq = np.zeros(offset, dtype=np.int64)
        self._outbox: list[tuple[str, bytes]] = []
        self.published = 0
        self.readings = 0
        self.owners = Owners(self, self.seed)
        self.contact_centre = ContactCentre(self, self.seed)
        self.field = FieldService(self, self.seed)
        for fleet in self.fleets:
            self.env.process(self._run_fleet(fleet))

    # -- lookup ---------------------------------------------------------------------------------
    def index_of(self, device_id: str) -> int:
        return self._index[device_id]

    def fleet_of(self, device: int) -> FleetState:
        return self.fleets[bisect.bisect_right(self._offsets, device) - 1]

    def symptom_of(self, device: int) -> str:
        """What the owner describes: the symptom of the worst failed mode of the device."""
        fleet = self.fleet_of(device)
        local = device - fleet.offset
        failed = [m for m in range(len(fleet.modes)) if fleet.failed[m, local]]
        failed.sort(key=lambda m: (not fleet.down_mode[m], m))
        return fleet.modes[failed[0]].symptom if failed else "other"

    # -- the harness's side ---------------------------------------------------------------------
    @property
    def now(self) -> float:
        return float(self.env.now)

    def advance(self, until: float) -> list[tuple[str, bytes]]:
        """Run to ``until`` and return every (topic, payload) published since the last call."""
        if until > self.env.now:
            self.env.run(until=until)
        out, self._outbox = self._outbox, []
        return out

    def deliver(self, message: Message) -> None:
        """Act on one message from the engine, effective now (the barrier time)."""
        if isinstance(message, WorkOrder):
            self.records.log(self.now, "engine", "work_order", message.device_id, message.work_order_id, message.issue)
            self.field.dispatch(message)
        elif isinstance(message, Notification):
            self.records.log(self.now, "engine", f"notify_{message.kind}", message.device_id, message.case_id or "")
            self._notified(message)
        elif isinstance(message, Command):
            self.records.log(self.now, "engine", f"command_{message.action}", message.device_id, message.command_id)
            self._command(message)
        elif isinstance(message, ConsumableOrder):
            self.records.log(self.now, "engine", "order", message.device_id, message.order_id, message.consumable)

    def emit(self, topic: str, message: Message) -> None:
        """Publish ``message`` (stamped now) through the harness at the next barrier."""
        self._outbox.append((topic, codec.encode(message)))
        self.published += 1

    # -- devices --------------------------------------------------------------------------------
    def _run_fleet(self, fleet: FleetState) -> Generator[simpy.Event, Any, None]:
        interval = fleet.spec.telemetry_interval_s
        tick = 0
        while True:
            t_tick = tick * interval
            t = min(t_tick, fleet.next_failure_time())
            if t > self.env.now:
                yield self.env.timeout(t - self.env.now)
            for mode, local in fleet.pop_due(self.env.now):
                self._fail(fleet, mode, local)
            if self.env.now >= t_tick:
                tick += 1
                self._telemetry(fleet, tick)

    def _telemetry(self, fleet: FleetState, tick: int) -> None:
        now = self.now
        values = fleet.readings(now)
        for (gateway_id, sl), roster in zip(fleet.gateways, fleet.rosters, strict=True):
            n = sl.stop - sl.start
            payload = codec.encode_batch(
                gateway_id=gateway_id,
                ts=now,
                boot_id=0,
                seq=tick,
                devices=roster,
                index=np.arange(n, dtype=np.uint32),
                reading_ts=np.full(n, now),
                reading_seq=np.full(n, tick, dtype=np.uint32),
                values={name: values[s, sl] for s, name in enumerate(fleet.sensor_names)},
            )
            self._outbox.append((self.topics.batch(gateway_id), payload))
            self.published += 1
            self.readings += n

    def _fail(self, fleet: FleetState, mode: int, local: int) -> None:
        device = fleet.offset + local
        spec = fleet.modes[mode]
        onset = float(fleet.next_fail[mode, local])
        failure = Failure(fleet.ids[local], fleet.spec.name, spec.name, spec.severity, onset)
        self.records.failures.append(failure)
        self._open_failures[(device, mode)] = failure
        self.records.log(onset, "device", "failure", failure.device_id, spec.name, spec.severity)
        incident = self._open.get(device)
        if incident is None:
            self._incident_count[device] += 1
            incident = Incident(
                failure.device_id, fleet.spec.name, int(self._incident_count[device]), onset, spec.severity
            )
            if self.informed_case[device] is not None:
                incident.informed_s = onset
            self._open[device] = incident
            self.records.incidents.append(incident)
            self.owners.on_failure(incident, device)
        elif spec.severity == "down" and incident.severity != "down":
            incident.severity = "down"

    def repair(self, device: int, mode: int) -> None:
        """A technician fixed ``mode`` on ``device`` (failed or still drifting towards failure)."""
        fleet = self.fleet_of(device)
        local = device - fleet.offset
        now = self.now
        failure = self._open_failures.pop((device, mode), None)
        if failure is None:  # caught while the precursor drifted: a failure that never happened
            spec = fleet.modes[mode]
            would_fail = float(fleet.next_fail[mode, local])
            failure = Failure(fleet.ids[local], fleet.spec.name, spec.name, spec.severity, would_fail, prevented=True)
            self.records.failures.append(failure)
            self.records.log(now, "technician", "prevented", failure.device_id, spec.name)
        failure.restored_s = now
        fleet.renew(mode, local, now)
        incident = self._open.get(device)
        if incident is not None and not fleet.is_failed(local):
            incident.restored_s = now
            del self._open[device]
            self.owners.on_restored(incident, device)
            self.records.log(now, "device", "restored", incident.device_id)

    def on_visit(self, device: int) -> None:
        """Count a visit against the owner's effort when they have an open incident."""
        incident = self._open.get(device)
        if incident is not None:
            incident.visits += 1

    def _notified(self, message: Notification) -> None:
        device = self._index.get(message.device_id)
        if device is None:
            return
        if message.kind in ("case_opened", "visit_scheduled", "outreach"):
            self.informed_case[device] = message.case_id or message.notification_id
            incident = self._open.get(device)
            if incident is not None and math.isnan(incident.informed_s):
                incident.informed_s = self.now
        elif message.kind == "resolved":
            self.informed_case[device] = None

    def _command(self, command: Command) -> None:
        device = self._index.get(command.device_id)
        if device is None:
            return
        fleet = self.fleet_of(device)
        local = device - fleet.offset
        if command.action == "diagnostic":
            failed = [fleet.modes[m].name for m in range(len(fleet.modes)) if fleet.failed[m, local]]
            kind, code = "diagnosis", (failed[0] if failed else "ok")
        else:
            kind, code = "command_result", "no_effect"  # remote fixes arrive with the product catalogue
        self._event_seq[device] += 1
        self.emit(
            self.topics.event(command.device_id),
            DeviceEvent(
                device_id=command.device_id,
                ts=self.now,
                boot_id=0,
                seq=int(self._event_seq[device]),
                kind=kind,  # type: ignore[arg-type]
                code=code,
                command_id=command.command_id,
            ),
        )
