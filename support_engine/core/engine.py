"""The engine core: messages and time in, actions out. No I/O, no clock, no threads.

``handle(message, now)`` takes one decoded message; ``advance(now)`` runs the timers (SLA clocks).
Both return the actions the shell must carry out. The same core runs under the harness (event
time) and in production (wall time): the caller decides what ``now`` is.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import msgspec
import numpy as np

from contracts.codec import BatchView
from contracts.engine_config import EngineConfig, IssueType
from contracts.messages import (
    Command,
    ConsumableOrder,
    Contact,
    DeviceEvent,
    Message,
    Notification,
    Telemetry,
    WorkOrder,
    WorkOrderStatus,
)
from support_engine.core.actions import (
    Action,
    CaseChanged,
    ClearAlert,
    CreateWorkOrder,
    Notify,
    OrderConsumable,
    RaiseAlert,
    SendCommand,
    SlaBreached,
    WorkOrderChanged,
)
from support_engine.core.lifecycle import CASE, WORK_ORDER
from support_engine.core.twins import Twins

__all__ = ["Case", "Engine", "Snapshot", "WorkOrderState"]

_FALLBACK_ISSUE = IssueType(skill="general", parts=[], duration_s=3600.0, priority=3)


@dataclass
class Case:
    case_id: str
    device_id: str
    issue: str
    priority: int
    opened_s: float
    origin: str
    state: str = CASE.initial
    first_response_s: float | None = None
    resolved_s: float | None = None
    work_orders: list[str] = field(default_factory=list)
    alerts: list[str] = field(default_factory=list)
    contacts: int = 0
    breached: set[str] = field(default_factory=set)


@dataclass
class WorkOrderState:
    work_order_id: str
    case_id: str
    device_id: str
    state: str = WORK_ORDER.initial
    visit: int = 1


class Snapshot(msgspec.Struct, frozen=True, kw_only=True):
    """What the engine must remember across a restart: open cases and their work orders, active
    alerts, commands awaiting an answer, campaigns done, and the id counters. Twins are not in it:
    they fill again from the next readings, and an active alert keeps its rule from firing twice."""

    cases: list[Case]
    work_orders: list[WorkOrderState]
    alerts: list[tuple[str, str, str]]  # (device, rule, alert id)
    pending_commands: dict[str, str]
    rolled_out: list[str]
    cases_of_issue: dict[str, int]
    ids: dict[str, int]


class Engine:
    """Twins, threshold rules, alerts, cases, work orders and SLA clocks for one deployment."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.proactive = config.policy == "proactive"
        self.twins = Twins(config.all_rules if self.proactive else [])
        self.cases: dict[str, Case] = {}
        self.open_case_of: dict[str, str] = {}  # device -> open case
        self.work_orders: dict[str, WorkOrderState] = {}
        self.alert_of: dict[tuple[str, str], str] = {}  # (device, rule) -> active alert id
        self.pending_commands: dict[str, str] = {}  # command id -> case id, until the device answers
        self.rolled_out: set[str] = set()  # issues whose update went fleet-wide
        self._rearmed: set[str] = set()  # devices whose rules reset once the current message is handled
        self.cases_of_issue: Counter[str] = Counter()
        self.stats: Counter[str] = Counter()
        self._ids: Counter[str] = Counter()

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
        if stats is not None:
            self.stats = Counter(stats)

    def _next_id(self, prefix: str) -> str:
        self._ids[prefix] += 1
        return f"{prefix}-{self._ids[prefix]:07d}"

    # -- input ----------------------------------------------------------------------------------
    def handle(self, message: Message | BatchView, now: float) -> list[Action]:
        """Act on one decoded message at time ``now``."""
        if isinstance(message, BatchView):
            actions = self._batch(message, now)
        elif isinstance(message, Telemetry):
            actions = self._telemetry(message, now)
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
        """Run the timers up to ``now``: SLA clocks of open cases (replenishment cases have none)."""
        actions: list[Action] = []
        sla = self.config.sla
        for case_id in sorted(self.open_case_of.values()):
            case = self.cases[case_id]
            if self._issue(case.issue).consumable is not None:
                continue  # a refill on its way is a delivery, not a service case against the SLA
            if case.first_response_s is None and now - case.opened_s > sla.first_response_s:
                actions += self._breach(case, "first_response", case.opened_s + sla.first_response_s)
            if now - case.opened_s > sla.resolution_s:
                actions += self._breach(case, "resolution", case.opened_s + sla.resolution_s)
        return actions

    def _breach(self, case: Case, clock: str, at: float) -> list[Action]:
        if clock in case.breached:
            return []
        case.breached.add(clock)
        self.stats["sla_breaches"] += 1
        self.stats[f"sla_breaches_{clock}"] += 1
        return [SlaBreached(case.case_id, case.device_id, clock, at)]

    # -- telemetry ------------------------------------------------------------------------------
    def _batch(self, batch: BatchView, now: float) -> list[Action]:
        slots = self.twins.slots(batch.gateway_id, batch.devices)[batch.index]
        self.stats["readings"] += len(batch)
        fired = self.twins.ingest(slots, batch.reading_ts, batch.reading_seq, batch.values)
        return self._alerts(fired.raised, fired.cleared)

    def _telemetry(self, message: Telemetry, now: float) -> list[Action]:
        return self.handle_readings([message])

    def handle_readings(self, messages: Sequence[Telemetry]) -> list[Action]:
        """Act on many single-reading messages at once, as one columnar batch (same effect as one by one:
        readings apply in time order and a device's last reading at one time wins)."""
        if not messages:
            return []
        slots = np.array([self.twins.slot(m.device_id) for m in messages], dtype=np.int64)
        ts = np.array([m.ts for m in messages])
        seq = np.array([m.seq for m in messages], dtype=np.int64)
        names = sorted({k for m in messages for k in m.values})
        values = {k: np.array([m.values.get(k, np.nan) for m in messages]) for k in names}
        self.stats["readings"] += len(messages)
        fired = self.twins.ingest(slots, ts, seq, values)
        actions = self._alerts(fired.raised, fired.cleared)
        self._forget_rearmed()
        return actions

    def _alerts(
        self, raised: list[tuple[int, int, float, float]], cleared: list[tuple[int, int, float]]
    ) -> list[Action]:
        actions: list[Action] = []
        # In time order: a batch spanning several timestamps may raise an alert and clear it again.
        changes = [(t, 0, self.twins.ids[slot], r, 0.0) for slot, r, t in cleared]
        changes += [(t, 1, self.twins.ids[slot], r, value) for slot, r, t, value in raised]
        for t, up, device, r, value in sorted(changes):
            rule = self.twins.rules[r]
            if not up:
                alert_id = self.alert_of.pop((device, rule.name), None)
                if alert_id is not None:
                    actions.append(ClearAlert(alert_id, device, rule.name, t))
                continue
            if (device, rule.name) in self.alert_of:
                continue  # one active alert per device and rule
            self.stats["alerts"] += 1
            alert_id = self._next_id("alert")
            self.alert_of[(device, rule.name)] = alert_id
            case, opened = self._case_for(device, rule.issue, t, "telemetry")
            case.alerts.append(alert_id)
            actions.append(RaiseAlert(alert_id, device, rule.name, t, value, case.case_id))
            if opened:
                actions += self._open(case, t, f"We detected {rule.name.replace('_', ' ')} on your device.")
        return actions

    # -- cases ----------------------------------------------------------------------------------
    def _issue(self, name: str) -> IssueType:
        return self.config.issues.get(name, _FALLBACK_ISSUE)

    def _case_for(self, device: str, issue: str, t: float, origin: str) -> tuple[Case, bool]:
        """The open case of ``device`` (alerts and contacts correlate into it), or a new one."""
        case_id = self.open_case_of.get(device)
        if case_id is not None:
            return self.cases[case_id], False
        case = Case(self._next_id("case"), device, issue, self._issue(issue).priority, t, origin)
        self.cases[case.case_id] = case
        self.open_case_of[device] = case.case_id
        self.stats["cases_opened"] += 1
        self.stats[f"cases_opened_{origin}"] += 1
        return case, True

    def _open(self, case: Case, t: float, why: str) -> list[Action]:
        """A new case: answer it remote-first (command or replenishment) or with a work order; tell the owner."""
        issue = self._issue(case.issue)
        case.state = CASE.check(case.state, "in_progress", case.case_id)
        case.first_response_s = t
        changed = CaseChanged(
            case.case_id, case.device_id, case.issue, case.state, case.priority, case.opened_s, t, case.origin
        )
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
                self._note(case, t, "case_opened", f"{why} A refill is on its way."),
            ]
        if issue.remote is not None:
            self.stats["remote_commands"] += 1
            command = Command(
                command_id=self._next_id("cmd"),
                device_id=case.device_id,
                ts=t,
                action=issue.remote,
                version=issue.ota_version if issue.remote == "ota" else None,
                case_id=case.case_id,
            )
            self.pending_commands[command.command_id] = case.case_id
            note = self._note(case, t, "case_opened", f"{why} We are fixing it remotely.")
            return [changed, SendCommand(command), note, *self._maybe_roll_out(case.issue, t)]
        return [
            changed,
            *self._dispatch(case, t),
            self._note(case, t, "case_opened", f"{why} A technician is on the way."),
        ]

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
        return [
            SendCommand(
                Command(
                    command_id=self._next_id("cmd"),
                    device_id=device,
                    ts=t,
                    action="ota",
                    version=issue.ota_version,
                )
            )
            for device in sorted(targets)
        ]

    def _dispatch(self, case: Case, t: float) -> list[Action]:
        """Send a technician: a work order with the issue's skill and predicted parts."""
        issue = self._issue(case.issue)
        wo_id = self._next_id("wo")
        self.work_orders[wo_id] = WorkOrderState(wo_id, case.case_id, case.device_id)
        case.work_orders.append(wo_id)
        self.stats["work_orders"] += 1
        order = WorkOrder(
            work_order_id=wo_id,
            case_id=case.case_id,
            device_id=case.device_id,
            ts=t,
            issue=case.issue,
            skill=issue.skill,
            parts=list(issue.parts),
            duration_s=issue.duration_s,
            priority=issue.priority,
        )
        return [CreateWorkOrder(order), WorkOrderChanged(wo_id, case.case_id, case.device_id, "created", t, 1)]

    def _note(self, case: Case, t: float, kind: str, text: str) -> Notify:
        self.stats["notifications"] += 1
        return Notify(
            Notification(
                notification_id=self._next_id("note"),
                device_id=case.device_id,
                ts=t,
                kind=kind,  # type: ignore[arg-type]
                case_id=case.case_id,
                text=text,
            )
        )

    # -- devices' own reports -------------------------------------------------------------------
    def _device_event(self, event: DeviceEvent) -> list[Action]:
        self.stats["device_events"] += 1
        self.stats[f"device_events_{event.kind}"] += 1
        if event.kind == "command_result" and event.command_id is not None:
            case_id = self.pending_commands.pop(event.command_id, None)
            case = self.cases.get(case_id) if case_id is not None else None
            if case is None or case.state != "in_progress":
                return []
            if event.code == "fixed":
                self.stats["remote_fixes"] += 1
                return self._resolve(case, event.ts, "We fixed your device remotely.")
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
            case, opened = self._case_for(event.device_id, issue, event.ts, "device")
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
        issue = self.config.symptoms.get(contact.symptom) or self.config.default_issue or "unknown"
        case, opened = self._case_for(contact.device_id, issue, contact.ts, "contact")
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
        elif self._issue(case.issue).consumable is not None:
            text = "We already know about this problem; a refill is on its way."
        else:
            text = "We already know about this problem and are working on it."
        return [self._note(case, contact.ts, "visit_scheduled", text)]

    # -- field ----------------------------------------------------------------------------------
    _WO_STATE: ClassVar[dict[str, str]] = {
        "accepted": "accepted",
        "arrived": "on_site",
        "fixed": "done",
        "no_fault_found": "done",
        "part_missing": "awaiting_part",
        "incomplete": "awaiting_part",
        "closed": "closed",
    }

    def _field_status(self, status: WorkOrderStatus, now: float) -> list[Action]:
        wo = self.work_orders.get(status.work_order_id)
        if wo is None:
            self.stats["unknown_work_order_status"] += 1
            return []
        wanted = self._WO_STATE[status.status]
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
        actions: list[Action] = [
            WorkOrderChanged(wo.work_order_id, wo.case_id, wo.device_id, wo.state, status.ts, wo.visit)
        ]
        if wo.state == "closed":
            actions += self._maybe_resolve(self.cases[wo.case_id], status.ts)
        return actions

    def _rearm(self, device: str) -> None:
        """Forget a resolved device's alerts so that a problem still present raises a new one.

        The rules' own state is reset once the message is fully handled: a batch may still raise an
        alert of the same device at a later reading, and that alert must keep its rule's state.
        """
        for rule in self.twins.rules:
            self.alert_of.pop((device, rule.name), None)
        self._rearmed.add(device)

    def _forget_rearmed(self) -> None:
        for device in sorted(self._rearmed):
            slot = self.twins.slot_of.get(device)
            if slot is None:
                continue
            for r, rule in enumerate(self.twins.rules):
                if (device, rule.name) not in self.alert_of:
                    self.twins.forget(slot, r)
        self._rearmed.clear()

    def _maybe_resolve(self, case: Case, t: float) -> list[Action]:
        if any(self.work_orders[w].state not in ("closed", "cancelled") for w in case.work_orders):
            return []
        return self._resolve(case, t, "Your device has been repaired. Thank you for your patience.")

    def _resolve(self, case: Case, t: float, text: str | None) -> list[Action]:
        """Resolve ``case``; tell the owner with ``text`` (None: they have just been told)."""
        t = max(t, case.opened_s)  # a late message (another topic, no order between them) cannot go back
        case.state = CASE.check(case.state, "resolved", case.case_id)
        case.resolved_s = t
        del self.open_case_of[case.device_id]
        self._rearm(case.device_id)
        self.stats["cases_resolved"] += 1
        if t - case.opened_s <= self.config.sla.resolution_s:
            self.stats["cases_resolved_within_sla"] += 1
        changed = CaseChanged(
            case.case_id, case.device_id, case.issue, case.state, case.priority, case.opened_s, t, case.origin
        )
        return [changed] if text is None else [changed, self._note(case, t, "resolved", text)]
