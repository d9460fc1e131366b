"""One run's world: fleets as arrays, owners, agents, technicians and depots, speaking only contracts.

The world never touches a network. The harness advances it to each sync boundary, takes what it
published (``advance`` returns topic/payload pairs) and hands it the engine's messages in a
deterministic order (``deliver``); their effects start at the current time.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Generator, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import simpy

from contracts import codec
from contracts.messages import Command, ConsumableOrder, DeviceEvent, DeviceRecord, Message, Notification, WorkOrder
from contracts.topics import Topics
from sim.contact_centre import ContactCentre
from sim.contact_streams import ContactStreams
from sim.distributions import Fixed
from sim.field import Fault, FieldService
from sim.fleet import FleetState
from sim.link import Link, Rows
from sim.people import Owners
from sim.records import LEVELS, NO_POWER, POWER, Failure, Incident, Records
from sim.registry import CHUNK, device_records, firmware_code, write_jsonl
from sim.scenario import Outage, Scenario
from sim.streams import Stream

__all__ = ["POWER", "World"]

HOUR_S = 3600.0
DIAGNOSIS = "diagnosis"
REFILL_H = Fixed(value=0.25)  # a technician refilling a consumable on site
Process = Generator[simpy.Event, Any, None]


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
        self.seed = self_seed = scenario.seed if seed is None else seed
        self.topics = topics or Topics()
        # The runner may pass a simpy.rt.RealtimeEnvironment (live mode); the world never reads real time.
        self.env = simpy.Environment() if env is None else env
        self.records = Records()
        self.fleets: list[FleetState] = []
        self.links: list[Link] = []
        offset = 0
        for spec in scenario.fleets:
            self.fleets.append(FleetState(spec, self_seed, offset))
            self.links.append(Link(spec.connectivity, spec.name, spec.count, self_seed, self.records))
            offset += spec.count
        self.device_count = offset
        self._batch_topics = {f.spec.name: [self.topics.batch(g) for g, _ in f.gateways] for f in self.fleets}
        # A device's shard is its gateway's (contracts.topics.shard_of); per fleet, one per gateway.
        self._gateway_shards = {
            f.spec.name: np.array([self.topics.shard_of(g) for g, _ in f.gateways], dtype=np.int32) for f in self.fleets
        }
        self.published_by_shard = np.zeros(self.topics.shards, dtype=np.int64)  # of ``published``
        self._counts: dict[int, npt.NDArray[np.uint32]] = {}
        self._offsets = [f.offset for f in self.fleets]
        self.informed_case: dict[int, str] = {}  # device -> the case support told its owner of, until resolved
        self._open: dict[int, Incident] = {}
        self._open_failures: dict[tuple[int, int], Failure] = {}
        self._told_drifting: dict[tuple[int, int], tuple[int, float]] = {}  # (device, mode) -> (life, first told)
        self._unconfirmed: dict[int, Incident] = {}  # each device's last restored incident, until it is confirmed
        self._unpowered: dict[int, Failure] = {}
        self._incident_count = np.zeros(offset, dtype=np.int32)
        self._event_seq = np.zeros(offset, dtype=np.int32)
        self._orders: dict[int, int] = {}  # consumable orders per device (few devices get any)
        self._commands: dict[int, int] = {}  # commands per device
        self._held: dict[int, list[Command | tuple[str, Message]]] = {}  # for devices that are offline (by index)
        self._outbox: list[tuple[str, bytes]] = []
        self._remote = Stream(self_seed, "remote")
        self._delivery = Stream(self_seed, "delivery")
        self._restore = Stream(self_seed, "self_restore")
        self.published = 0  # unique messages (a duplicated batch counts once)
        self.duplicates_sent = 0
        self.readings = 0
        self.owners = Owners(self, self_seed)
        self.contact_centre = ContactCentre(self.env, scenario.contact_centre, self_seed)
        self.field = FieldService(self, self_seed)
        self.contact_streams = ContactStreams(self, self_seed)  # questions, not faults: demand of its own
        for fleet, link in zip(self.fleets, self.links, strict=True):
            self.env.process(self._run_fleet(fleet, link))
        for outage in scenario.outages:
            self.env.process(self._outage(outage))

    # -- lookup ---------------------------------------------------------------------------------
    def index_of(self, device_id: str) -> int:
        """The world index of ``device_id``; KeyError if no fleet has it."""
        device = self._find(device_id)
        if device is None:
            raise KeyError(device_id)
        return device

    def _find(self, device_id: str) -> int | None:
        for fleet in self.fleets:
            local = fleet.ids.find(device_id)
            if local is not None:
                return fleet.offset + local
        return None

    def registry(self, chunk: int = CHUNK) -> Iterator[DeviceRecord]:
        """Every device as a support organisation knows it (the engine's device registry), made
        ``chunk`` devices at a time as it is read (:func:`sim.registry.device_records`)."""
        return device_records(self.fleets, chunk)

    def write_registry(self, path: Path, chunk: int = CHUNK) -> int:
        """Write :meth:`registry` to ``path`` as JSON lines, ``chunk`` records at a time; return how many.

        The bytes are those of ``msgspec.json.encode(record) + b"\\n"`` for every record, in order."""
        return write_jsonl(self.registry(chunk), path, chunk)

    def fleet_of(self, device: int) -> FleetState:
        return self._local(device)[0]

    def _local(self, device: int) -> tuple[FleetState, Link, int]:
        k = bisect.bisect_right(self._offsets, device) - 1
        fleet = self.fleets[k]
        return fleet, self.links[k], device - fleet.offset

    def shard(self, device: int) -> int:
        """The shard of ``device``'s topics: its gateway's (0 without shards)."""
        if self.topics.shards == 1:
            return 0
        k = bisect.bisect_right(self._offsets, device) - 1
        local = device - self.fleets[k].offset
        spec = self.fleets[k].spec
        return int(self._gateway_shards[spec.name][local // spec.devices_per_gateway])

    def region_of(self, device: int) -> str | None:
        fleet, _, local = self._local(device)
        return fleet.region_of(local)

    def failed_modes(self, device: int) -> list[int]:
        fleet, _, local = self._local(device)
        return [int(m) for m in np.flatnonzero(fleet.failed[:, local])]

    def symptom_of(self, device: int) -> str:
        """What the owner describes: the symptom of the worst failed mode of the device."""
        if device in self._unpowered:
            return NO_POWER
        fleet, _, _local = self._local(device)
        failed = self.failed_modes(device)
        failed.sort(key=lambda m: (not fleet.down_mode[m], m))
        if not failed:
            return "other"
        m = failed[0]
        if fleet.is_consumable(m):
            return fleet.consumables[m - fleet.n_failure_modes].symptom
        return fleet.modes[m].symptom

    def remotely_fixable(self, device: int) -> bool:
        """Whether every failure of the device is one that a remote action can fix."""
        fleet, _, _local = self._local(device)
        failed = self.failed_modes(device)
        return (
            bool(failed)
            and device not in self._unpowered
            and all(not fleet.is_consumable(m) and fleet.modes[m].remote_fix is not None for m in failed)
        )

    def faults(self, device: int) -> list[Fault]:
        """What a technician finds on site now: failed modes, modes drifting towards failure, empty consumables."""
        fleet, _, local = self._local(device)
        now = self.now
        found = []
        for m in range(len(fleet.mode_names)):
            if fleet.is_consumable(m):
                if fleet.failed[m, local]:
                    found.append(Fault(m, "", fleet.mode_names[m], REFILL_H))  # any technician can refill
            elif fleet.failed[m, local] or fleet.in_precursor(m, local, now):
                repair = fleet.modes[m].repair
                found.append(Fault(m, repair.skill, repair.part, repair.duration_h))
        return found

    def services(self, device: int, names: Sequence[str]) -> list[Fault]:
        """What a preventive visit services on ``device``: the named modes it has that are neither
        failed nor drifting (those are :meth:`faults`, repaired), each as its ``service`` says (else
        as its repair), and the named consumables that are not empty (a refill)."""
        fleet, _, local = self._local(device)
        now = self.now
        found = []
        for m, name in enumerate(fleet.mode_names):
            if name not in names or fleet.failed[m, local]:
                continue
            if fleet.is_consumable(m):
                found.append(Fault(m, "", name, REFILL_H, service=True))
            elif not fleet.in_precursor(m, local, now):
                spec, service = fleet.modes[m], fleet.modes[m].service
                part, hours = (
                    (spec.repair.part, spec.repair.duration_h)
                    if service is None
                    else (service.part, service.duration_h)
                )
                found.append(Fault(m, spec.repair.skill, part, hours, service=True))
        return found

    def mode_names(self, device: int) -> list[str]:
        """The names of ``device``'s modes by index: its fleet's failure modes, then its consumables."""
        return self.fleet_of(device).mode_names

    def service(self, device: int, mode: int) -> None:
        """A technician serviced ``mode`` on ``device`` (see :meth:`FleetState.service`): not a repair,
        as nothing had failed, so no failure is recorded; the event log says ``serviced``."""
        fleet, _, local = self._local(device)
        if fleet.is_consumable(mode):
            fleet.renew(mode, local, self.now)
        else:
            fleet.service(mode, local, self.now)
        self.records.log(self.now, "technician", "serviced", fleet.ids[local], fleet.mode_names[mode])

    @property
    def unsent(self) -> int:
        """Messages emitted but not yet handed to the harness (the device's answers to the engine's
        last commands at the end of a run); never duplicates: those are sent with their batch."""
        return len(self._outbox)

    def summary(self) -> dict[str, Any]:
        """The world's own figures for the KPIs: queues, field, parts, readings lost at the source."""
        now = self.now
        return {
            "contact_centre": self.contact_centre.summary(now),
            "field": {k: v for k, v in self.field.summary(now).items() if k != "depots"},
            "depots": self.field.depots.summary(),
            "readings_dropped_at_source": sum(link.dropped for link in self.links),
        }

    # -- the harness's side ---------------------------------------------------------------------
    @property
    def now(self) -> float:
        return float(self.env.now)

    def advance(self, until: float) -> list[tuple[str, bytes]]:
        """Run to ``until`` and return every (topic, payload) published since the last call.

        Each call that moves time on ends a sync step: it samples one row of the level series."""
        if until > self.env.now:
            self.env.run(until=until)
        if not self.records.levels or self.now > self.records.levels[-1][0]:
            self.records.levels.append(self.levels())
        out, self._outbox = self._outbox, []
        return out

    def levels(self) -> tuple[float, ...]:
        """The world's state now as a row of :data:`sim.records.LEVELS` (counted over the fleet arrays)."""
        down = np.concatenate([(f.failed & f.down_mode[:, None]).any(axis=0) for f in self.fleets])
        failed = np.concatenate([f.failed.any(axis=0) for f in self.fleets])
        if self._unpowered:  # a power cut is a down failure outside the fleets' modes
            unpowered = np.fromiter(self._unpowered, dtype=np.int64, count=len(self._unpowered))
            down[unpowered] = failed[unpowered] = True
        row = (
            self.now,
            float(np.count_nonzero(down)),
            float(np.count_nonzero(failed & ~down)),
            float(len(self._open)),
            float(self.contact_centre.waiting),
            float(self.field.waiting),
            float(self.field.busy),
        )
        assert len(row) == len(LEVELS)
        return row

    def deliver(self, message: Message) -> None:
        """Act on one message from the engine, effective now (the barrier time)."""
        if isinstance(message, WorkOrder):
            self.records.log(self.now, "engine", "work_order", message.device_id, message.work_order_id, message.issue)
            if self._find(message.device_id) is not None:
                self.field.dispatch(message)
        elif isinstance(message, Notification):
            self.records.log(self.now, "engine", f"notify_{message.kind}", message.device_id, message.case_id or "")
            self._notified(message)
        elif isinstance(message, Command):
            self.records.log(self.now, "engine", f"command_{message.action}", message.device_id, message.command_id)
            device = self._find(message.device_id)
            if device is not None:
                _, link, local = self._local(device)
                if link.is_online(local, self.now):
                    self._command(device, message)
                else:
                    self._held.setdefault(device, []).append(message)
        elif isinstance(message, ConsumableOrder):
            self.records.log(self.now, "engine", "order", message.device_id, message.order_id, message.consumable)
            device = self._find(message.device_id)
            if device is not None:
                self.env.process(self._deliver_consumable(device, message))

    def emit(self, topic: str, message: Message, shard: int = 0) -> None:
        """Publish ``message`` (stamped now) on ``topic`` of ``shard`` through the harness at the next barrier."""
        self._outbox.append((topic, codec.encode(message)))
        self.published += 1
        self.published_by_shard[shard] += 1

    def _device_event(self, device: int, kind: str, code: str, command_id: str | None = None, detail: str = "") -> None:
        """A device reports on its own; an offline device keeps it until it is back."""
        fleet, link, local = self._local(device)
        self._event_seq[device] += 1
        device_id = fleet.ids[local]
        event = DeviceEvent(
            device_id=device_id,
            ts=self.now,
            boot_id=0,
            seq=int(self._event_seq[device]),
            kind=kind,  # type: ignore[arg-type]
            code=code,
            detail=detail,
            command_id=command_id,
        )
        shard = self.shard(device)
        topic = self.topics.event(device_id, shard)
        if link.is_online(local, self.now):
            self.emit(topic, event, shard)
        else:
            self._held.setdefault(device, []).append((topic, event))

    # -- devices --------------------------------------------------------------------------------
    def _run_fleet(self, fleet: FleetState, link: Link) -> Process:
        interval = fleet.spec.telemetry_interval_s
        tick = 0
        while True:
            t_tick = tick * interval
            t = min(t_tick, fleet.next_failure_time(t_tick))
            if t > self.env.now:
                yield self.env.timeout(t - self.env.now)
            for mode, local in fleet.pop_due(self.env.now):
                self._fail(fleet, mode, local)
            if self.env.now >= t_tick:
                tick += 1
                self._telemetry(fleet, link, tick)
                for c, local in fleet.newly_low(self.now):
                    self._device_event(fleet.offset + local, "consumable_low", fleet.consumables[c].name)

    def _telemetry(self, fleet: FleetState, link: Link, tick: int) -> None:
        now = self.now
        if not link.active:  # every device, in order: one slice of the readings per gateway
            values = fleet.readings(now)
            per = fleet.spec.devices_per_gateway
            ts, seq = np.full(per, now), np.full(per, tick, dtype=np.uint32)
            for g, (_, sl) in enumerate(fleet.gateways):
                size = sl.stop - sl.start
                self._batch(fleet, link, g, tick, self._counting(size), ts[:size], seq[:size], values[:, sl])
            return
        rows, back = link.step(now, tick, fleet.readings(now))
        for local in back.tolist():
            self._reconnected(fleet.offset + local)
        for g, lo, part in _by_gateway(rows, fleet):
            index = (part.device - lo).astype(np.uint32)
            self._batch(fleet, link, g, tick, index, part.ts, part.seq.astype(np.uint32), part.values)

    def _batch(
        self,
        fleet: FleetState,
        link: Link,
        g: int,
        tick: int,
        index: npt.NDArray[np.uint32],
        ts: npt.NDArray[np.float64],
        seq: npt.NDArray[np.uint32],
        values: npt.NDArray[np.float64],
    ) -> None:
        """Publish gateway ``g``'s batch of this tick: readings of its roster's devices ``index``."""
        now = self.now
        gateway_id = fleet.gateways[g][0]
        payload = codec.encode_batch(
            gateway_id=gateway_id,
            ts=now,
            boot_id=0,
            seq=tick,
            devices=fleet.rosters[g],
            index=index,
            reading_ts=ts,
            reading_seq=seq,
            values={name: values[s] for s, name in enumerate(fleet.sensor_names)},
        )
        topic = self._batch_topics[fleet.spec.name][g]
        self._outbox.append((topic, payload))
        self.published += 1
        self.published_by_shard[self._gateway_shards[fleet.spec.name][g]] += 1
        if link.duplicate(g, tick):  # sent twice; counted once, as the engine counts unique messages
            self._outbox.append((topic, payload))
            self.duplicates_sent += 1
            self.records.link.append((now, gateway_id, "duplicate", f"batch seq {tick}"))
        self.readings += len(index)

    def _counting(self, size: int) -> npt.NDArray[np.uint32]:
        """``0 .. size - 1`` as roster indices (one array per gateway size, reused)."""
        index = self._counts.get(size)
        if index is None:
            index = self._counts[size] = np.arange(size, dtype=np.uint32)
        return index

    def _reconnected(self, device: int) -> None:
        for item in self._held.pop(device, []):
            if isinstance(item, Command):
                self._command(device, item)
            else:
                self._outbox.append((item[0], codec.encode(item[1])))
                self.published += 1
                self.published_by_shard[self.shard(device)] += 1

    def _fail(self, fleet: FleetState, mode: int, local: int) -> None:
        device = fleet.offset + local
        consumable = fleet.is_consumable(mode)
        name = fleet.mode_names[mode]
        severity = "down" if fleet.down_mode[mode] else "degraded"
        onset = float(fleet.next_fail[mode, local])
        failure = Failure(fleet.ids[local], fleet.spec.name, name, severity, onset)
        failure.informed_s = self._told_while_drifting(device, mode, int(fleet.life_k[mode, local]))
        self.records.failures.append(failure)
        self._open_failures[(device, mode)] = failure
        self.records.log(onset, "device", "failure" if not consumable else "empty", failure.device_id, name, severity)
        self._open_incident(device, fleet, onset, severity)
        if not consumable:
            spec = fleet.modes[mode]
            if spec.fault_code is not None:
                self._device_event(device, "fault", spec.fault_code)
            if spec.self_restore_h is not None:
                draw = self._restore.one(device, int(fleet.life_k[mode, local]) * 64 + mode)
                self.env.process(self._self_restore(device, mode, float(spec.self_restore_h.ppf(draw)) * HOUR_S))

    def _open_incident(self, device: int, fleet: FleetState, onset: float, severity: str) -> None:
        incident = self._open.get(device)
        if incident is None:
            self._incident_count[device] += 1
            local = device - fleet.offset
            incident = Incident(fleet.ids[local], fleet.spec.name, int(self._incident_count[device]), onset, severity)
            if device in self.informed_case:
                incident.informed_s = onset
            self._open[device] = incident
            self.records.incidents.append(incident)
            self.owners.on_failure(incident, device)
        elif severity == "down" and incident.severity != "down":
            incident.severity = "down"

    def _self_restore(self, device: int, mode: int, after_s: float) -> Process:
        fleet, _, local = self._local(device)
        k = int(fleet.life_k[mode, local])
        yield self.env.timeout(after_s)
        if fleet.failed[mode, local] and fleet.life_k[mode, local] == k:
            self.repair(device, mode, by="self")

    def repair(self, device: int, mode: int, by: str = "technician") -> None:
        """``mode`` on ``device`` is fixed (failed, or still drifting towards failure) or a consumable refilled."""
        fleet, _, local = self._local(device)
        now = self.now
        failure = self._open_failures.pop((device, mode), None)
        if failure is None and not fleet.is_consumable(mode):  # caught while drifting: it never happened
            failure = self._prevented(
                device, mode, float(fleet.next_fail[mode, local]), int(fleet.life_k[mode, local]), by
            )
        if failure is not None:
            failure.restored_s = now
            failure.fixed_by = by
        fleet.renew(mode, local, now)
        self._maybe_restored(device, by)

    def _prevented(self, device: int, mode: int, would_fail: float, life: int, by: str) -> Failure:
        """Record a failure that will not happen: ``by`` cleared ``life`` of ``mode`` while it drifted."""
        fleet, _, local = self._local(device)
        severity = "down" if fleet.down_mode[mode] else "degraded"
        failure = Failure(fleet.ids[local], fleet.spec.name, fleet.mode_names[mode], severity, would_fail, True)
        failure.informed_s = self._told_while_drifting(device, mode, life)
        failure.restored_s, failure.fixed_by = self.now, by
        self.records.failures.append(failure)
        actor = "technician" if by == "technician" else "device"
        self.records.log(self.now, actor, "prevented", failure.device_id, fleet.mode_names[mode], by)
        return failure

    def _told_while_drifting(self, device: int, mode: int, life: int) -> float:
        """When the owner was first told of trouble while this life of ``mode`` drifted (NaN: never)."""
        told = self._told_drifting.pop((device, mode), None)
        return told[1] if told is not None and told[0] == life else math.nan

    def _maybe_restored(self, device: int, by: str) -> None:
        fleet, _, local = self._local(device)
        incident = self._open.get(device)
        if incident is not None and not fleet.is_failed(local) and device not in self._unpowered:
            incident.restored_s = self.now
            incident.fixed_by = by
            del self._open[device]
            self._unconfirmed[device] = incident
            self.owners.on_restored(incident, device)
            self.records.log(self.now, "device", "restored", incident.device_id, "", by)

    def remote_fix_all(self, device: int, by: str) -> None:
        """Fix every remotely fixable failure of ``device`` (an agent or self-service guided it)."""
        fleet, _, _ = self._local(device)
        for m in self.failed_modes(device):
            if not fleet.is_consumable(m) and fleet.modes[m].remote_fix is not None:
                self.repair(device, m, by=by)

    def on_visit(self, device: int) -> None:
        """Count a visit against the owner's effort when they have an open incident."""
        incident = self._open.get(device)
        if incident is not None:
            incident.visits += 1

    # -- the engine's messages ------------------------------------------------------------------
    def _notified(self, message: Notification) -> None:
        device = self._find(message.device_id)
        if device is None:
            return
        if message.kind in ("case_opened", "visit_scheduled", "outreach", "outage"):
            self.informed_case[device] = message.case_id or message.notification_id
            incident = self._open.get(device)
            if incident is not None and math.isnan(incident.informed_s):
                incident.informed_s = self.now
            self._told_of_trouble(device)
        elif message.kind == "resolved":
            self.informed_case.pop(device, None)
            still_on = self._open.get(device)
            if still_on is not None:  # premature: it confirms nothing, least of all an earlier incident
                still_on.premature_resolved += 1
                return
            restored = self._unconfirmed.pop(device, None)
            if restored is not None:
                restored.confirmed_s = self.now
            self.owners.told_fixed(device)

    def _told_of_trouble(self, device: int) -> None:
        """The owner hears of trouble now: the first notice for each failure that is on or drifting."""
        fleet, _, local = self._local(device)
        now = self.now
        on = [self._open_failures.get((device, m)) for m in np.flatnonzero(fleet.failed[:, local]).tolist()]
        for failure in [*on, self._unpowered.get(device)]:
            if failure is not None and math.isnan(failure.informed_s):
                failure.informed_s = now
        for m in range(fleet.n_failure_modes):
            if fleet.in_precursor(m, local, now):
                life = int(fleet.life_k[m, local])
                told = self._told_drifting.get((device, m))
                if told is None or told[0] != life:
                    self._told_drifting[(device, m)] = (life, now)

    def _command(self, device: int, command: Command) -> None:
        """Carry out a command on the device and report truthfully what it did (a ``command_result``).

        A reset or an update tries every mode its action fixes that has failed or drifts towards
        failure, each with the fix's success probability (a drifting one cleared is a prevented
        failure). The answer: ``not_fixed`` while a fault is left (a failed mode, or a drifting one a
        remote fix exists for), else ``fixed`` if the command fixed something, else ``no_fault``.
        """
        fleet, _, local = self._local(device)
        n = self._commands[device] = self._commands.get(device, 0) + 1
        if command.action == "diagnostic":
            failed = [fleet.mode_names[m] for m in self.failed_modes(device)]
            self._device_event(device, DIAGNOSIS, failed[0] if failed else "ok", command.command_id)
            return
        now = self.now
        fixed = 0
        by = "remote" if command.action == "reset" else "ota"
        if command.action == "ota" and command.version:
            drifting = [m for m in range(fleet.n_failure_modes) if fleet.in_precursor(m, local, now)]
            before = {m: (float(fleet.next_fail[m, local]), int(fleet.life_k[m, local])) for m in drifting}
            for m in fleet.set_firmware(local, command.version, now):
                self.repair(device, m, by="ota")
                fixed += 1
            for m in drifting:
                if not fleet.active[m, local]:  # the update removed a fault on its way: it never happens
                    self._prevented(device, m, *before[m], by="ota")
                    fixed += 1
            self._device_event(device, "firmware", firmware_code(command.version), command.command_id)
        for m in self._targets(fleet, local, command.action, now):
            fix = fleet.modes[m].remote_fix
            assert fix is not None
            if self._remote.one(device, n * 64 + m) < fix.success:
                self.repair(device, m, by=by)
                fixed += 1
        left = fleet.is_failed(local) or device in self._unpowered or bool(self._targets(fleet, local, None, now))
        code = "not_fixed" if left else "fixed" if fixed else "no_fault"
        self._device_event(device, "command_result", code, command.command_id)

    @staticmethod
    def _targets(fleet: FleetState, local: int, action: str | None, now: float) -> list[int]:
        """Modes of one device a remote fix (of ``action``; None: any) acts on that are failed or drifting."""
        return [
            m
            for m, spec in enumerate(fleet.modes)
            if spec.remote_fix is not None
            and (action is None or spec.remote_fix.action == action)
            and (fleet.failed[m, local] or fleet.in_precursor(m, local, now))
        ]

    def _deliver_consumable(self, device: int, order: ConsumableOrder) -> Process:
        fleet, _, _local = self._local(device)
        names = [c.name for c in fleet.consumables]
        if order.consumable not in names:
            self.records.log(self.now, "depot", "order_unknown_consumable", order.device_id, order.order_id)
            return
        c = names.index(order.consumable)
        n = self._orders[device] = self._orders.get(device, 0) + 1
        draw = self._delivery.one(device, n)
        yield self.env.timeout(float(fleet.consumables[c].delivery_h.ppf(draw)) * HOUR_S)
        self.records.log(self.now, "courier", "delivered", order.device_id, order.order_id, order.consumable)
        self.repair(device, fleet.n_failure_modes + c, by="delivery")
        self._device_event(device, "consumable_refilled", order.consumable)

    # -- outages --------------------------------------------------------------------------------
    def _outage(self, outage: Outage) -> Process:
        yield self.env.timeout(outage.start_day * 86400.0)
        until = self.now + outage.duration_h * HOUR_S
        hit: list[int] = []
        draw = Stream(self.seed, "outage", outage.name)
        for fleet, link in zip(self.fleets, self.links, strict=True):
            everyone = np.arange(fleet.n)
            if outage.region is None:
                inside = np.ones(fleet.n, dtype=bool)
            elif outage.region in fleet.regions:
                inside = fleet.region == fleet.regions.index(outage.region)
            else:
                inside = np.zeros(fleet.n, dtype=bool)
            chosen = np.flatnonzero(inside & (draw.uniform(everyone + fleet.offset, 0) < outage.share))
            link.force_offline(chosen, until)
            hit += (chosen + fleet.offset).tolist()
        where = outage.region or "everywhere"
        self.records.link.append(
            (self.now, where, "outage", f"{outage.name}: {len(hit)} devices for {outage.duration_h} h")
        )
        self.records.log(self.now, "world", "outage", "", outage.name, f"{len(hit)} devices, {where}")
        if outage.power:
            for device in hit:
                fleet, _, local = self._local(device)
                failure = Failure(fleet.ids[local], fleet.spec.name, POWER, "down", self.now)
                self.records.failures.append(failure)
                self._unpowered[device] = failure
                self._open_incident(device, fleet, self.now, "down")
        yield self.env.timeout(until - self.now)
        self.records.log(self.now, "world", "outage_over", "", outage.name)
        for device in hit:
            if device in self._unpowered:
                failure = self._unpowered.pop(device)
                failure.restored_s = self.now
                failure.fixed_by = "self"
                self._maybe_restored(device, "self")


def _by_gateway(rows: Rows, fleet: FleetState) -> list[tuple[int, int, Rows]]:
    """Split rows by the gateway of their device (columnar: one sort, one split)."""
    per = fleet.spec.devices_per_gateway
    gateway = rows.device // per
    order = np.argsort(gateway, kind="stable")
    sorted_rows = Rows(rows.device[order], rows.ts[order], rows.seq[order], rows.values[:, order])
    g_sorted = gateway[order]
    cuts = np.flatnonzero(np.diff(g_sorted)) + 1
    out = []
    for idx in np.split(np.arange(len(order)), cuts):
        if idx.size:
            g = int(g_sorted[idx[0]])
            part = Rows(sorted_rows.device[idx], sorted_rows.ts[idx], sorted_rows.seq[idx], sorted_rows.values[:, idx])
            out.append((g, g * per, part))
    return out
