"""The engine core: messages and time in, actions out. No I/O, no clock, no threads.

``handle(message, now)`` takes one decoded message; ``advance(now)`` runs the timers (SLA clocks).
Both return the actions the shell must carry out. The same core runs under the harness (event
time) and in production (wall time): the caller decides what ``now`` is.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import msgspec
import numpy as np

from contracts.codec import BatchView
from contracts.engine_config import IssueType
from contracts.messages import (
    Command,
    ConsumableOrder,
    Contact,
    DeviceEvent,
    Message,
    Telemetry,
    WorkOrder,
    WorkOrderStatus,
)
from support_engine.core.actions import Action, CreateWorkOrder, OrderConsumable, SendCommand, WorkOrderChanged
from support_engine.core.alerting import Alerting
from support_engine.core.base import Case, EngineBase, WorkOrderState
from support_engine.core.campaigns import Campaign
from support_engine.core.devices import Devices
from support_engine.core.fleet_patterns import FleetPatterns
from support_engine.core.lifecycle import CASE, FIELD_STATES, WORK_ORDER
from support_engine.core.maintenance import Maintenance
from support_engine.core.schedule import PlanClock, PreventiveOrder
from support_engine.core.service_levels import ServiceLevels

__all__ = ["Case", "Engine", "Snapshot", "WorkOrderState"]


class Snapshot(msgspec.Struct, frozen=True, kw_only=True):
    """What the engine must remember across a restart: open cases and their work orders, active
    alerts, commands awaiting an answer, campaigns done, the remote attempts that claimed a fix
    lately, and the id counters. Twins are not in it: they fill again from the next readings, and an
    active alert keeps its rule from firing twice."""

    cases: list[Case]
    work_orders: list[WorkOrderState]
    alerts: list[tuple[str, str, str]]  # (device, rule, alert id)
    pending_commands: dict[str, str]
    rolled_out: list[str]
    cases_of_issue: dict[str, int]
    ids: dict[str, int]
    flapping: list[tuple[str, str, float]] = []  # (device, rule, last change)
    twin_commands: dict[str, str] = {}  # configure command id -> device
    pending_diagnoses: dict[str, tuple[str, float]] = {}  # diagnostic command id -> (case, sent at)
    campaigns: list[Campaign] = []  # running ones; ended ones are in storage
    campaigned: list[tuple[str, str]] = []  # (rule, cohort) of every campaign opened
    campaign_commands: dict[str, tuple[str, str]] = {}  # command id -> (campaign, device)
    cohorts_checked: dict[str, float] = {}  # campaign rule -> last comparison
    remote_claims: list[tuple[str, str, float]] = []  # (device, issue, when a remote fix claimed it gone)
    plan_clocks: list[PlanClock] = []  # maintenance plans' schedules
    preventive_orders: list[PreventiveOrder] = []  # preventive work orders not closed yet
    usage_seen: dict[str, dict[str, float]] = {}  # usage plan -> device -> its counter at the last check
    resolved_lately: list[tuple[str, str, float, bool]] = []  # (device, case, resolved at, a contact answered)


class Engine(Alerting, Devices, FleetPatterns, ServiceLevels, Maintenance, EngineBase):
    """Twins, rules, alerts, cases, remedies, work orders, SLA clocks, campaigns and preventive
    maintenance for one deployment."""

    # -- restart ----------------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        """The state a restarted engine needs (see :class:`Snapshot`), in a stable order."""
        open_cases = [self.cases[c] for c in sorted(self.open_case_of.values())]
        orders = [self.work_orders[w] for case in open_cases for w in case.work_orders]
        return Snapshot(
            cases=open_cases,
            work_orders=orders,
            alerts=sorted((device, rule, alert) for (device, rule), alert in self.alert_of.items()),
            pending_commands=dict(sorted(self.pending_commands.items())),
            rolled_out=sorted(self.rolled_out),
            cases_of_issue=dict(sorted(self.cases_of_issue.items())),
            ids=dict(sorted(self._ids.items())),
            flapping=sorted((device, rule, t) for (device, rule), t in self.flapping.items()),
            twin_commands=dict(sorted(self.twin_commands.items())),
            pending_diagnoses=dict(sorted(self.pending_diagnoses.items())),
            campaigns=[c for _, c in sorted(self.campaigns.items()) if c.state == "running"],
            campaigned=sorted(self.campaigned),
            campaign_commands=dict(sorted(self.campaign_commands.items())),
            cohorts_checked=dict(sorted(self.cohorts_checked.items())),
            remote_claims=sorted((device, issue, t) for (device, issue), t in self.remote_claims.items()),
            plan_clocks=[c for _, c in sorted(self.plan_clocks.items())],
            preventive_orders=[o for _, o in sorted(self.preventive.items())],
            usage_seen=self._usage_state(),
            resolved_lately=self._resolved_lately(),
        )

    def restore(self, snapshot: Snapshot, stats: dict[str, int] | None = None) -> None:
        """Take up where a previous process left off (its snapshot and its counters)."""
        self.cases = {c.case_id: c for c in snapshot.cases}
        self.open_case_of = {c.device_id: c.case_id for c in snapshot.cases}
        self.work_orders = {w.work_order_id: w for w in snapshot.work_orders}
        self.alert_of = {(device, rule): alert for device, rule, alert in snapshot.alerts}
        self.pending_commands = dict(snapshot.pending_commands)
        self.rolled_out = set(snapshot.rolled_out)
        self.cases_of_issue = Counter(snapshot.cases_of_issue)
        self._ids = Counter(snapshot.ids)
        self.flapping = {(device, rule): t for device, rule, t in snapshot.flapping}
        self.twin_commands = dict(snapshot.twin_commands)
        self.pending_diagnoses = {k: (case, t) for k, (case, t) in snapshot.pending_diagnoses.items()}
        self._asked = set(self.pending_diagnoses)  # their waits started before the restart
        self.campaigns = {c.campaign_id: c for c in snapshot.campaigns}
        self.campaigned = {(rule, cohort) for rule, cohort in snapshot.campaigned}
        self.campaign_commands = dict(snapshot.campaign_commands)
        self.cohorts_checked = dict(snapshot.cohorts_checked)
        self.remote_claims = {(device, issue): t for device, issue, t in snapshot.remote_claims}
        self.plan_clocks = {c.plan: c for c in snapshot.plan_clocks}
        self.preventive = {o.work_order_id: o for o in snapshot.preventive_orders}
        self.preventive_of = {(o.plan, o.device_id): o.work_order_id for o in snapshot.preventive_orders}
        self.usage_seen = {plan: dict(counters) for plan, counters in snapshot.usage_seen.items()}
        self.resolved_lately = {device: (case, t, answered) for device, case, t, answered in snapshot.resolved_lately}
        self._scopes = {}
        out = [(w.technician_id, w.state) for w in self.work_orders.values()]
        out += [(o.technician_id, o.state) for o in self.preventive.values()]
        self.tech_load = Counter(t for t, state in out if t is not None and state not in ("closed", "cancelled"))
        if stats is not None:
            self.stats = Counter(stats)

    # -- input ----------------------------------------------------------------------------------
    def handle(self, message: Message | BatchView, now: float) -> list[Action]:
        """Act on one decoded message at time ``now``."""
        if isinstance(message, BatchView):
            actions = self._batch(message, now)
        elif isinstance(message, Telemetry):
            actions = self._telemetry(message, now)
        elif (
            isinstance(message, DeviceEvent)
            and self._unknown(message.device_id)
            and message.device_id not in self.open_case_of  # an owner's call made it ours: it answers us
        ):
            actions = self._quarantine(message.device_id, message.ts)
        elif isinstance(message, Contact):
            actions = self._contact(message, now)
        elif isinstance(message, WorkOrderStatus):
            actions = self._field_status(message, now)
        elif isinstance(message, DeviceEvent):
            actions = self._device_event(message)
        else:
            raise TypeError(f"the engine does not handle {type(message).__name__}")
        self._forget_rearmed()
        return actions

    def advance(self, now: float) -> list[Action]:
        """Run the timers up to ``now``: SLA clocks of open cases (replenishment cases have none),
        devices gone silent, alerts that stopped flapping, campaigns, preventive visits due."""
        actions = self._sla_clocks(now)
        actions += self._diagnoses_due(now)
        actions += self._silent(now)
        actions += self._unflap(now)
        actions += self._fleet_patterns(now)
        actions += self._maintenance(now)
        return actions

    def _diagnoses_due(self, now: float) -> list[Action]:
        """A diagnosis that has not come within ``diagnosis_wait_s`` (an offline device): send the visit anyway.

        The wait starts at the first timer run after the question (when it has been published: in
        event time a step's commands go out at its end, whatever their time stamps)."""
        actions: list[Action] = []
        wait = self.config.diagnosis_wait_s
        for command_id, (case_id, stamped) in sorted(self.pending_diagnoses.items()):
            sent = stamped
            if command_id not in self._asked:
                self._asked.add(command_id)
                sent = max(stamped, now)
                self.pending_diagnoses[command_id] = (case_id, sent)
            if now - sent <= wait:
                continue
            del self.pending_diagnoses[command_id]
            self._asked.discard(command_id)
            case = self.cases.get(case_id)
            if case is not None and case.state == "in_progress":
                self.stats["diagnoses_timed_out"] += 1
                actions += self._answer(case, sent + wait, "", opening=False)
        return actions

    # -- telemetry ------------------------------------------------------------------------------
    def _batch(self, batch: BatchView, now: float) -> list[Action]:
        actions: list[Action] = []
        slots = self.twins.slots(batch.gateway_id, batch.devices)[batch.index]
        ts, seq, values = batch.reading_ts, batch.reading_seq, batch.values
        if self.config.provisioning == "registered":
            known = np.fromiter((d in self.devices for d in batch.devices), dtype=bool, count=len(batch.devices))
            if not known.all():
                keep = known[batch.index]
                for d in np.unique(batch.index[~keep]).tolist():  # the unknown devices with readings here
                    actions += self._quarantine(batch.devices[d], batch.ts)
                self.stats["readings_quarantined"] += int((~keep).sum())
                slots, ts, seq = slots[keep], ts[keep], seq[keep]
                values = {k: v[keep] for k, v in values.items()}
        self.stats["readings"] += len(slots)
        before = (self.twins.missing_total, self.twins.late_total)
        fired = self.twins.ingest(slots, ts, seq, values)
        self._gap_stats(*before)
        return actions + self._back_online(fired.online) + self._alerts(fired.raised, fired.cleared)

    def _telemetry(self, message: Telemetry, now: float) -> list[Action]:
        return self.handle_readings([message])

    def handle_readings(self, messages: Sequence[Telemetry]) -> list[Action]:
        """Act on many single-reading messages at once, as one columnar batch (same effect as one by one:
        readings apply in time order and a device's last reading at one time wins)."""
        actions: list[Action] = []
        if self.config.provisioning == "registered":
            for m in messages:
                if m.device_id not in self.devices:
                    actions += self._quarantine(m.device_id, m.ts)
            messages = [m for m in messages if m.device_id in self.devices]
        if not messages:
            return actions
        slots = np.array([self.twins.slot(m.device_id) for m in messages], dtype=np.int64)
        ts = np.array([m.ts for m in messages])
        seq = np.array([m.seq for m in messages], dtype=np.int64)
        names = sorted({k for m in messages for k in m.values})
        values = {k: np.array([m.values.get(k, np.nan) for m in messages]) for k in names}
        self.stats["readings"] += len(messages)
        before = (self.twins.missing_total, self.twins.late_total)
        fired = self.twins.ingest(slots, ts, seq, values)
        self._gap_stats(*before)
        actions += self._back_online(fired.online) + self._alerts(fired.raised, fired.cleared)
        self._forget_rearmed()
        return actions

    # -- cases ----------------------------------------------------------------------------------
    def _open(self, case: Case, t: float, why: str) -> list[Action]:
        """A new case: answer it remote-first (command or replenishment) or with a work order; tell the owner."""
        case.state = CASE.check(case.state, "in_progress", case.case_id)
        return self._answer(case, t, why, opening=True)

    def _answer(self, case: Case, t: float, why: str, *, opening: bool) -> list[Action]:
        """Answer a case by its issue: advice, a refill, a remote fix, a diagnosis first, or a visit.
        ``opening``: the case is new (its notice is ``case_opened``); else a diagnosis named the issue.
        A remote fix that claimed this trouble gone lately is not tried again (:meth:`_remote_ruled_out`)."""
        issue = self._issue(case.issue)
        remote = None if self._remote_ruled_out(case, issue, t) else issue.remote
        if issue.advice is not None or issue.consumable is not None or remote is not None:
            case.first_response_s = t  # the remedy is under way at once; a visit's starts when a technician accepts
        changed = self._case_changed(case, t)
        kind = "case_opened" if opening else "visit_scheduled"
        if issue.diagnose and opening and remote is None and issue.consumable is None and issue.advice is None:
            # Ask the device what failed before choosing who goes and with which parts.
            self.stats["diagnostics"] += 1
            command = Command(
                command_id=self._next_id("cmd"),
                device_id=case.device_id,
                ts=t,
                action="diagnostic",
                case_id=case.case_id,
            )
            self.pending_diagnoses[command.command_id] = (case.case_id, t)
            note = self._note(case, t, kind, f"{why} We are checking your device remotely.")
            return [changed, SendCommand(command), note]
        if issue.advice is not None:
            self.stats["advised"] += 1
            return [changed, self._note(case, t, "outage", issue.advice), *self._resolve(case, t, None)]
        if issue.consumable is not None:
            self.stats["consumable_orders"] += 1
            order = ConsumableOrder(
                order_id=self._next_id("order"),
                device_id=case.device_id,
                ts=t,
                consumable=issue.consumable,
                quantity=issue.quantity,
            )
            return [
                changed,
                OrderConsumable(order),
                self._note(case, t, kind, f"{why} A refill is on its way.".strip()),
            ]
        if remote is not None:
            self.stats["remote_commands"] += 1
            command = Command(
                command_id=self._next_id("cmd"),
                device_id=case.device_id,
                ts=t,
                action=remote,
                version=issue.ota_version if remote == "ota" else None,
                case_id=case.case_id,
            )
            self.pending_commands[command.command_id] = case.case_id
            note = self._note(case, t, kind, f"{why} We are fixing it remotely.".strip())
            desired = [self._want_firmware(case.device_id, command.version, t)] if remote == "ota" else []
            return [changed, SendCommand(command), *desired, note, *self._maybe_roll_out(case.issue, t)]
        return [
            changed,
            *self._dispatch(case, t),
            self._note(case, t, kind, f"{why} A technician is on the way.".strip()),
        ]

    def _remote_ruled_out(self, case: Case, issue: IssueType, t: float) -> bool:
        """Whether ``case`` skips its issue's remote fix: within ``repeat_window_s`` of a remote
        attempt on the same device and issue that claimed a fix or found no fault, the trouble is
        back, so trying again would only repeat the claim. Once ruled out, it stays so for the case."""
        if case.skip_remote or issue.remote is None:
            return case.skip_remote
        key = (case.device_id, case.issue)
        claimed = self.remote_claims.get(key)
        if claimed is None:
            return False
        if t - claimed > issue.repeat_window_s:
            del self.remote_claims[key]  # long ago: a new trouble, remote first again
            return False
        case.skip_remote = True
        self.stats["remote_escalated"] += 1
        return True

    def _diagnosed(self, case: Case, code: str, t: float) -> list[Action]:
        """The device's diagnosis names its fault: the case takes the issue ``diagnoses`` maps it to
        (its skill and predicted parts), then is answered; ``ok`` or an unknown code keeps the issue."""
        refined = self.config.diagnoses.get(code)
        if refined is not None and refined != case.issue:
            self.stats["diagnoses_refined"] += 1
            case.issue = refined
            case.priority = min(case.priority, self._issue(refined).priority)
        else:
            self.stats["diagnoses_kept"] += 1
        return self._answer(case, t, "", opening=False)

    def _maybe_roll_out(self, issue_name: str, t: float) -> list[Action]:
        """Send an issue's OTA to the whole fleet once enough cases of it are open together."""
        issue = self._issue(issue_name)
        if not self.proactive or issue.rollout_after is None or issue_name in self.rolled_out:
            return []  # a fleet-wide campaign is proactive service; reactive answers only who calls
        self.cases_of_issue[issue_name] += 1
        if self.cases_of_issue[issue_name] < issue.rollout_after:
            return []
        self.rolled_out.add(issue_name)
        with_case = {c.device_id for c in self.cases.values() if c.issue == issue_name}
        sensors = {r.sensor for r in self.config.all_rules if r.issue == issue_name}
        reporting = np.zeros(len(self.twins), dtype=bool)
        for sensor in sensors:
            column = self.twins.values.get(sensor)
            if column is not None:
                reporting |= ~np.isnan(column[: len(self.twins)])
        targets = [d for d, yes in zip(self.twins.ids, reporting.tolist(), strict=True) if yes and d not in with_case]
        self.stats["rollouts"] += 1
        self.stats["rollout_commands"] += len(targets)
        actions: list[Action] = []
        for device in sorted(targets):
            command = Command(
                command_id=self._next_id("cmd"), device_id=device, ts=t, action="ota", version=issue.ota_version
            )
            actions += [SendCommand(command), self._want_firmware(device, issue.ota_version, t)]
        return actions

    def _dispatch(self, case: Case, t: float) -> list[Action]:
        """Send a technician: a work order with the issue's skill and predicted parts."""
        issue = self._issue(case.issue)
        wo_id = self._next_id("wo")
        technician = self._assign(issue.skill, case.device_id)
        self.work_orders[wo_id] = WorkOrderState(wo_id, case.case_id, case.device_id, technician_id=technician)
        case.work_orders.append(wo_id)
        self.stats["work_orders"] += 1
        record = self.devices.get(case.device_id)
        billable = record is not None and record.warranty_until_s is not None and t > record.warranty_until_s
        self.stats["work_orders_billable"] += billable
        order = WorkOrder(
            work_order_id=wo_id,
            case_id=case.case_id,
            device_id=case.device_id,
            ts=t,
            issue=case.issue,
            skill=issue.skill,
            parts=list(issue.parts),
            duration_s=issue.duration_s,
            priority=case.priority,
            technician_id=technician,
            billable=billable,
        )
        return [
            CreateWorkOrder(order),
            WorkOrderChanged(wo_id, case.case_id, case.device_id, "created", t, 1, technician),
        ]

    def _assign(self, skill: str, device: str) -> str | None:
        """The technician for a visit: able (``skill``), available, with room (open work orders below
        ``max_open``); from the device's region if possible, then the least loaded, then by id.
        None when no technician is configured or none can take it (the field assigns it then)."""
        if not self.config.technicians:
            return None
        record = self.devices.get(device)
        region = record.region if record is not None else None
        able = [
            tech
            for tech in self.config.technicians
            if tech.available and (not tech.skills or skill in tech.skills) and self.tech_load[tech.id] < tech.max_open
        ]
        if not able:
            self.stats["work_orders_unassigned"] += 1
            return None
        best = min(able, key=lambda x: (region is not None and x.region != region, self.tech_load[x.id], x.id))
        self.tech_load[best.id] += 1
        self.stats["work_orders_assigned"] += 1
        return best.id

    # -- devices' own reports -------------------------------------------------------------------
    def _device_event(self, event: DeviceEvent) -> list[Action]:
        self.stats["device_events"] += 1
        self.stats[f"device_events_{event.kind}"] += 1
        if event.kind in ("firmware", "config"):
            return self._reported(event)
        if event.kind == "diagnosis" and event.command_id in self.pending_diagnoses:
            asked, _ = self.pending_diagnoses.pop(event.command_id)
            self._asked.discard(event.command_id)
            waiting = self.cases.get(asked)
            if waiting is None or waiting.state != "in_progress":
                return []  # resolved meanwhile (fixed on the phone, say)
            return self._diagnosed(waiting, event.code, max(event.ts, waiting.opened_s))
        if event.kind == "command_result" and event.command_id in self.campaign_commands:
            _, device = self.campaign_commands.pop(event.command_id)
            if event.code == "failed":
                self._campaign_failure(device)
            return []
        if event.kind == "command_result" and event.command_id in self.twin_commands:
            del self.twin_commands[event.command_id]  # the device reports its settings again once applied
            return []
        if event.kind == "command_result" and event.command_id is not None:
            case_id = self.pending_commands.pop(event.command_id, None)
            case = self.cases.get(case_id) if case_id is not None else None
            if case is None or case.state != "in_progress":
                return []
            if event.code in ("fixed", "no_fault"):  # either way the case ends; a repeat within the window escalates
                self.remote_claims[(case.device_id, case.issue)] = max(event.ts, case.opened_s)
            if event.code == "fixed":
                self.stats["remote_fixes"] += 1
                return self._resolve(case, event.ts, "We fixed your device remotely.")
            if event.code == "no_fault":  # nothing was wrong that it could fix: no fix to claim
                self.stats["remote_no_fault"] += 1
                return self._resolve(case, event.ts, "We checked your device remotely and found no fault.")
            self.stats["remote_fix_failed"] += 1
            return [
                *self._dispatch(case, event.ts),
                self._note(case, event.ts, "visit_scheduled", "A technician is on the way."),
            ]
        if event.kind == "consumable_refilled":
            case_id = self.open_case_of.get(event.device_id)
            case = self.cases.get(case_id) if case_id is not None else None
            if case is not None and self._issue(case.issue).consumable == event.code and not case.work_orders:
                return self._resolve(case, event.ts, "Your refill has arrived.")
            return []
        if event.kind in ("fault", "consumable_low") and self.proactive:
            issue = self.config.fault_codes.get(event.code)
            if issue is None:
                return []
            case, opened = self._case_for(event.device_id, issue, event.ts, "device", event.code)
            if opened:
                return self._open(case, event.ts, f"Your device reported {event.code.replace('_', ' ')}.")
            consumable = self._issue(issue).consumable
            if consumable is not None and self._issue(case.issue).consumable != consumable:
                # Another problem is open on the device: the refill still goes out, under that case.
                self.stats["consumable_orders"] += 1
                self.stats["consumable_orders_joined"] += 1
                order = ConsumableOrder(
                    order_id=self._next_id("order"),
                    device_id=event.device_id,
                    ts=event.ts,
                    consumable=consumable,
                    quantity=self._issue(issue).quantity,
                )
                return [OrderConsumable(order)]
        return []

    def _contact(self, contact: Contact, now: float) -> list[Action]:
        self.stats["contacts"] += 1
        if not contact.about_a_fault:  # a question (how-to, billing, set-up), answered on the contact:
            return []  # no fault case to open or join, nobody to send, and the device's open case stays as it is
        if not contact.resolved and contact.device_id not in self.open_case_of:
            answer = self._answer_from_resolved(contact)
            if answer is not None:
                return answer
        issue = self.config.symptoms.get(contact.symptom) or self.config.default_issue or "unknown"
        case, opened = self._case_for(contact.device_id, issue, contact.ts, "contact", contact.symptom)
        case.contacts += 1
        if contact.resolved:  # fixed during the contact: the case records it and closes
            if any(self.work_orders[w].state not in ("closed", "cancelled") for w in case.work_orders):
                return []
            self.stats["resolved_on_contact"] += 1
            case.first_response_s = case.first_response_s if case.first_response_s is not None else contact.ts
            if case.state == "open":
                case.state = CASE.check(case.state, "in_progress", case.case_id)
            return self._resolve(case, contact.ts, "Glad we could fix it together.")
        if opened:
            return self._open(case, contact.ts, "Thank you for reporting the problem.")
        self.stats["contacts_joined"] += 1
        if case.work_orders:
            text = "We already know about this problem; a technician is scheduled."
        elif case.case_id in self.pending_commands.values():
            text = "We already know about this problem and are fixing it remotely."
        elif any(c == case.case_id for c, _ in self.pending_diagnoses.values()):
            text = "We already know about this problem and are checking your device remotely."
        elif self._issue(case.issue).consumable is not None:
            text = "We already know about this problem; a refill is on its way."
        else:
            text = "We already know about this problem and are working on it."
        return [self._note(case, contact.ts, "visit_scheduled", text)]

    def _answer_from_resolved(self, contact: Contact) -> list[Action] | None:
        """Answer a fault contact from the case just resolved on the device, or None (a new case).

        The owner of a device fixed remotely may call before (or without) hearing of it. Within
        ``recontact_window_s`` of the resolution, with no alert active on the device, the first such
        contact is told the case is resolved; a second one, or one while an alert is active, is a
        fault again and opens a case as usual."""
        device = contact.device_id
        last = self.resolved_lately.get(device)
        if last is None:
            return None
        case_id, resolved_s, answered = last
        if answered or contact.ts - resolved_s > self.config.recontact_window_s or self._alert_active(device):
            return None
        self.resolved_lately[device] = (case_id, resolved_s, True)
        self.stats["contacts_after_resolution"] += 1
        case = self.cases.get(case_id)
        if case is not None:
            case.contacts += 1
        hours = max(0.0, contact.ts - resolved_s) / 3600.0
        text = (
            f"We resolved this {hours:.1f} h ago and your device reports working again. "
            "If the problem comes back, contact us again."
        )
        return [self._note_on(device, case_id, contact.ts, "resolved", text)]

    def _alert_active(self, device: str) -> bool:
        return any((device, rule.name) in self.alert_of for rule in self.twins.rules)

    def _resolved_now(self, case: Case, t: float) -> None:
        """Remember ``case``'s resolution (a fix, not advice) for a contact about it; forget those past the window.

        The dict is in resolution order (a device's entry moves to the end), so the ones past the
        window are at its front: pruning costs the entries it drops, and the dict holds only the
        resolutions of the last ``recontact_window_s``."""
        lately = self.resolved_lately
        lately.pop(case.device_id, None)
        if self._issue(case.issue).advice is not None:
            return  # advice fixes nothing: a contact about it again gets the advice again
        lately[case.device_id] = (case.case_id, t, False)
        horizon = t - self.config.recontact_window_s
        while True:
            device = next(iter(lately))
            if lately[device][1] >= horizon:
                break
            del lately[device]

    def _resolved_lately(self) -> list[tuple[str, str, float, bool]]:
        """The resolutions a contact may still be answered from, in resolution order."""
        return [(device, case, t, answered) for device, (case, t, answered) in self.resolved_lately.items()]

    # -- field ----------------------------------------------------------------------------------
    def _field_status(self, status: WorkOrderStatus, now: float) -> list[Action]:
        wo = self.work_orders.get(status.work_order_id)
        if wo is None:
            preventive = self.preventive.get(status.work_order_id)
            if preventive is not None:
                return self._preventive_status(preventive, status)
            self.stats["unknown_work_order_status"] += 1
            return []
        wanted = FIELD_STATES[status.status]
        if wanted == wo.state:
            return []
        if wanted not in WORK_ORDER.table[wo.state]:
            # A field report that does not fit the order's state (late, reordered or wrong) is
            # remote input, not our misuse: count it and keep the order as it is.
            self.stats["field_status_out_of_order"] += 1
            return []
        wo.state = WORK_ORDER.check(wo.state, wanted, wo.work_order_id)
        wo.visit = status.visit
        if status.status in ("part_missing", "incomplete"):
            self.stats["second_visits"] += 1
            self.stats[f"second_visits_{status.status}"] += 1
        if wo.state in ("closed", "cancelled") and wo.technician_id is not None:
            self.tech_load[wo.technician_id] -= 1
        actions: list[Action] = [
            WorkOrderChanged(
                wo.work_order_id, wo.case_id, wo.device_id, wo.state, status.ts, wo.visit, wo.technician_id
            )
        ]
        case = self.cases[wo.case_id]
        if wo.state == "accepted" and case.first_response_s is None and case.state != "resolved":
            accepted = max(status.ts, case.opened_s)
            actions += self._clock_passed(case, "first_response", accepted)
            case.first_response_s = accepted  # a technician has taken it on
            actions.append(self._case_changed(case, accepted))
        if wo.state == "closed":
            actions += self._maybe_resolve(self.cases[wo.case_id], status.ts)
        return actions

    def _maybe_resolve(self, case: Case, t: float) -> list[Action]:
        if any(self.work_orders[w].state not in ("closed", "cancelled") for w in case.work_orders):
            return []
        return self._resolve(case, t, "Your device has been repaired. Thank you for your patience.")

    def _resolve(self, case: Case, t: float, text: str | None) -> list[Action]:
        """Resolve ``case``; tell the owner with ``text`` (None: they have just been told)."""
        t = max(t, case.opened_s)  # a late message (another topic, no order between them) cannot go back
        late = self._clock_passed(case, "resolution", t)
        if case.first_response_s is None:
            late += self._clock_passed(case, "first_response", t)
        case.state = CASE.check(case.state, "resolved", case.case_id)
        case.resolved_s = t
        del self.open_case_of[case.device_id]
        self._resolved_now(case, t)
        self._rearm(case.device_id)
        self.stats["cases_resolved"] += 1
        if t - case.opened_s <= self._sla_of(case.device_id).resolution_s:
            self.stats["cases_resolved_within_sla"] += 1
        changed = self._case_changed(case, t)
        return [*late, changed] if text is None else [*late, changed, self._note(case, t, "resolved", text)]
