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
from contracts.engine_config import CampaignRule, EngineConfig, IssueType, Sla
from contracts.messages import (
    Command,
    ConsumableOrder,
    Contact,
    DeviceEvent,
    DeviceRecord,
    Message,
    Notification,
    Telemetry,
    WorkOrder,
    WorkOrderStatus,
)
from support_engine.core.actions import (
    Action,
    AlertFlapping,
    CampaignChanged,
    CaseChanged,
    ClearAlert,
    CreateWorkOrder,
    DeviceChanged,
    Notify,
    OrderConsumable,
    Provisioned,
    Quarantined,
    RaiseAlert,
    SendCommand,
    SlaBreached,
    SlaWarned,
    WorkOrderChanged,
)
from support_engine.core.campaigns import Campaign, cohort_excess, open_campaign
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
    warned: set[str] = field(default_factory=set)
    escalation: int = 0


@dataclass
class WorkOrderState:
    work_order_id: str
    case_id: str
    device_id: str
    state: str = WORK_ORDER.initial
    visit: int = 1
    technician_id: str | None = None


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
    flapping: list[tuple[str, str, float]] = []  # (device, rule, last change)
    twin_commands: dict[str, str] = {}  # configure command id -> device
    pending_diagnoses: dict[str, tuple[str, float]] = {}  # diagnostic command id -> (case, sent at)
    campaigns: list[Campaign] = []  # running ones; ended ones are in storage
    campaigned: list[tuple[str, str]] = []  # (rule, cohort) of every campaign opened
    campaign_commands: dict[str, tuple[str, str]] = {}  # command id -> (campaign, device)
    cohorts_checked: dict[str, float] = {}  # campaign rule -> last comparison


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
        self._rule_index = {rule.name: r for r, rule in enumerate(self.twins.rules)}
        # The registry and the twins' reported/desired state (firmware, settings).
        self.devices: dict[str, DeviceRecord] = {}
        self.reported: dict[str, dict[str, str]] = {}
        self.desired: dict[str, dict[str, str]] = {}
        self.twin_commands: dict[str, str] = {}  # configure command id -> device, until it answers
        self.pending_diagnoses: dict[str, tuple[str, float]] = {}  # diagnostic command id -> (case, waiting since)
        self._asked: set[str] = set()  # diagnostics whose wait has started
        # Alert flapping: recent state changes per (device, rule), and the alerts held while flapping.
        self._changes: dict[tuple[str, str], list[float]] = {}
        self.flapping: dict[tuple[str, str], float] = {}  # -> time of the last change
        self.tech_load: Counter[str] = Counter()  # open work orders per technician
        # Fleet patterns: campaigns (running), the cohorts already campaigned, updates awaiting an answer.
        self.campaigns: dict[str, Campaign] = {}
        self.campaigned: set[tuple[str, str]] = set()
        self.campaign_commands: dict[str, tuple[str, str]] = {}
        self.cohorts_checked: dict[str, float] = {}
        self._campaign_rules = {rule.name: rule for rule in config.campaigns}

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
        self.tech_load = Counter(
            w.technician_id
            for w in self.work_orders.values()
            if w.technician_id is not None and w.state not in ("closed", "cancelled")
        )
        if stats is not None:
            self.stats = Counter(stats)

    # -- registry and twins' desired state -----------------------------------------------------------
    def provision(self, records: Sequence[DeviceRecord], ts: float = 0.0) -> list[Action]:
        """Register devices (or update their entries): product, owner, region, firmware, cohorts,
        contract, warranty, reporting interval. Their twins take the product's desired settings."""
        actions: list[Action] = []
        for record in records:
            self.devices[record.device_id] = record
            slot = self.twins.slot(record.device_id)
            self.twins.set_product(slot, record.product)
            self.twins.expected_interval[slot] = np.nan if record.interval_s is None else record.interval_s
            reported = self.reported.setdefault(record.device_id, {})
            if record.firmware is not None:
                reported.setdefault("firmware", record.firmware)
            desired = self.desired.setdefault(record.device_id, {})
            desired.update(self.config.settings.get(record.product or "", {}))
            self.stats["devices_provisioned"] += 1
            actions += [Provisioned(record), self._twin_changed(record.device_id, ts)]
        return actions

    def restore_twins(self, device: str, reported: dict[str, str], desired: dict[str, str], offline: bool) -> None:
        """Take up a twin's reported/desired state and connectivity as stored before a restart."""
        self.reported[device] = dict(reported)
        self.desired[device] = dict(desired)
        self.twins.offline[self.twins.slot(device)] = offline

    def _twin_changed(self, device: str, ts: float) -> DeviceChanged:
        slot = self.twins.slot_of.get(device)
        offline = bool(self.twins.offline[slot]) if slot is not None else False
        return DeviceChanged(
            device, ts, dict(self.reported.get(device, {})), dict(self.desired.get(device, {})), offline
        )

    def _unknown(self, device: str) -> bool:
        """Whether a device's messages go to quarantine (registered-only provisioning)."""
        return self.config.provisioning == "registered" and device not in self.devices

    def _quarantine(self, device: str, ts: float) -> list[Action]:
        self.stats["quarantined_messages"] += 1
        return [Quarantined(device, ts)]

    def _sla_of(self, device: str) -> Sla:
        """The SLA a device is serviced under: its contract's, else the default."""
        record = self.devices.get(device)
        contract = record.contract if record is not None else None
        return self.config.contracts.get(contract, self.config.sla) if contract is not None else self.config.sla

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
        devices gone silent, alerts that stopped flapping."""
        actions: list[Action] = []
        for case_id in sorted(self.open_case_of.values()):
            case = self.cases[case_id]
            if self._issue(case.issue).consumable is not None:
                continue  # a refill on its way is a delivery, not a service case against the SLA
            sla = self._sla_of(case.device_id)
            for clock, target, running in (
                ("first_response", sla.first_response_s, case.first_response_s is None),
                ("resolution", sla.resolution_s, True),
            ):
                elapsed = now - case.opened_s
                if running and elapsed > sla.warn_at * target and clock not in case.warned:
                    actions += self._sla_event(case, clock, case.opened_s + sla.warn_at * target, warning=True)
                if running and elapsed > target and clock not in case.breached:
                    actions += self._sla_event(case, clock, case.opened_s + target, warning=False)
        actions += self._diagnoses_due(now)
        actions += self._silent(now)
        actions += self._unflap(now)
        actions += self._fleet_patterns(now)
        return actions

    def _sla_event(self, case: Case, clock: str, at: float, *, warning: bool) -> list[Action]:
        """A clock reached its warning level or its target: record it and escalate the case (its
        priority goes up by one, 1 being the most urgent)."""
        (case.warned if warning else case.breached).add(clock)
        kind = "sla_warnings" if warning else "sla_breaches"
        self.stats[kind] += 1
        self.stats[f"{kind}_{clock}"] += 1
        case.escalation += 1
        case.priority = max(1, case.priority - 1)
        self.stats["escalations"] += 1
        event: Action = (SlaWarned if warning else SlaBreached)(case.case_id, case.device_id, clock, at)
        return [event, self._case_changed(case, at)]

    def _stop_clock(self, case: Case, clock: str, t: float) -> list[Action]:
        """A clock stops at ``t``: its warning and breach, if it passed them since the timers last ran."""
        if self._issue(case.issue).consumable is not None:
            return []
        sla = self._sla_of(case.device_id)
        target = sla.first_response_s if clock == "first_response" else sla.resolution_s
        actions: list[Action] = []
        if t - case.opened_s > sla.warn_at * target and clock not in case.warned:
            actions += self._sla_event(case, clock, case.opened_s + sla.warn_at * target, warning=True)
        if t - case.opened_s > target and clock not in case.breached:
            actions += self._sla_event(case, clock, case.opened_s + target, warning=False)
        return actions

    def _case_changed(self, case: Case, t: float) -> CaseChanged:
        return CaseChanged(
            case.case_id,
            case.device_id,
            case.issue,
            case.state,
            case.priority,
            case.opened_s,
            t,
            case.origin,
            case.escalation,
            case.first_response_s,
        )

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

    # -- connectivity ---------------------------------------------------------------------------
    def _silent(self, now: float) -> list[Action]:
        """Devices silent for longer than their reporting allows go offline (and may open a case)."""
        spec = self.config.offline
        if spec is None:
            return []
        actions: list[Action] = []
        twins = self.twins
        for slot in twins.silent(now, spec.after_intervals, spec.min_s).tolist():
            device = twins.ids[slot]
            interval = twins.expected_interval[slot]
            interval = twins.interval[slot] if np.isnan(interval) else interval
            t = min(now, float(twins.last_seen[slot] + max(spec.after_intervals * interval, spec.min_s)))
            twins.offline[slot] = True
            self.stats["devices_offline"] += 1
            actions.append(self._twin_changed(device, t))
            if spec.issue is not None and self.proactive and not self._unknown(device):
                case, opened = self._case_for(device, spec.issue, t, "offline")
                if opened:
                    actions += self._open(case, t, "Your device stopped reporting.")
        return actions

    def _back_online(self, online: list[tuple[int, float]]) -> list[Action]:
        actions: list[Action] = []
        spec = self.config.offline
        for slot, t in online:
            device = self.twins.ids[slot]
            self.stats["devices_back_online"] += 1
            actions.append(self._twin_changed(device, t))
            case_id = self.open_case_of.get(device)
            case = self.cases.get(case_id) if case_id is not None else None
            if (
                case is not None
                and spec is not None
                and case.issue == spec.issue
                and case.origin == "offline"
                and not case.work_orders
                and case.case_id not in self.pending_commands.values()
            ):
                actions += self._resolve(case, t, "Your device is reporting again.")
        return actions

    # -- fleet patterns and campaigns -----------------------------------------------------------
    def _fleet_patterns(self, now: float) -> list[Action]:
        """Compare cohorts every ``check_every_s`` and open campaigns; review running campaigns' stages."""
        actions: list[Action] = []
        if not self.proactive:
            return actions  # campaigns are proactive service
        for rule in self.config.campaigns:
            last = self.cohorts_checked.get(rule.name)
            if last is not None and now - last < rule.check_every_s:
                continue
            self.cohorts_checked[rule.name] = now
            actions += self._compare_cohorts(rule, now)
        for campaign_id in sorted(self.campaigns):
            campaign = self.campaigns[campaign_id]
            found = self._campaign_rules.get(campaign.rule)
            if found is None:
                continue  # its rule left the configuration: it stays as it was
            verdict = campaign.review(now, stage_wait_s=found.stage_wait_s, abort_failure_rate=found.abort_failure_rate)
            if verdict == "advance":
                actions += self._campaign_stage(campaign, found, now)
            elif verdict in ("complete", "abort"):
                self.stats[f"campaigns_{campaign.state}"] += 1
                actions.append(self._campaign_changed(campaign, now))
                del self.campaigns[campaign_id]
        return actions

    def _cohort(self, device: str, by: str) -> str | None:
        if by == "firmware":
            return self.reported.get(device, {}).get("firmware")
        record = self.devices.get(device)
        return record.cohorts.get(by) if record is not None else None

    def _compare_cohorts(self, rule: CampaignRule, now: float) -> list[Action]:
        """Count each device's cases of the rule's issues within its window; open a campaign for every
        cohort whose excess is significant and that has not had one."""
        devices = self.twins.ids
        cohort_of = [self._cohort(d, rule.by) for d in devices]
        cases = np.zeros(len(devices), dtype=np.int64)
        for case in self.cases.values():
            counted = not rule.issues or case.issue in rule.issues
            slot = self.twins.slot_of.get(case.device_id)  # a device only heard of by phone is in no cohort
            if counted and slot is not None and case.origin != "campaign" and now - case.opened_s <= rule.window_s:
                cases[slot] += 1
        actions: list[Action] = []
        for excess in cohort_excess(cohort_of, cases, min_cases=rule.min_cases, alpha=rule.alpha):
            label = f"{rule.by}={excess.cohort}"
            if (rule.name, label) in self.campaigned:
                continue
            members = [d for d, c in zip(devices, cohort_of, strict=True) if c == excess.cohort]
            campaign = open_campaign(self._next_id("campaign"), rule, excess.cohort, members, now)
            campaign.reason = (
                f"{excess.cases} cases on {excess.devices} devices against {excess.rest_cases} on "
                f"{excess.rest_devices} for the rest of the fleet (p = {excess.p_value:.2g})"
            )
            self.campaigns[campaign.campaign_id] = campaign
            self.campaigned.add((rule.name, label))
            self.stats["campaigns_opened"] += 1
            actions += [self._campaign_changed(campaign, now), *self._campaign_stage(campaign, rule, now)]
        return actions

    def _campaign_stage(self, campaign: Campaign, rule: CampaignRule, now: float) -> list[Action]:
        """Reach the devices of the campaign's current stage: an update each, or a recall visit each."""
        actions: list[Action] = []
        due = campaign.due()
        for device in due:
            if campaign.action == "ota":
                command = Command(
                    command_id=self._next_id("cmd"), device_id=device, ts=now, action="ota", version=campaign.version
                )
                self.campaign_commands[command.command_id] = (campaign.campaign_id, device)
                self.stats["campaign_commands"] += 1
                actions += [SendCommand(command), self._want_firmware(device, campaign.version, now)]
            elif rule.recall_issue is not None:
                case, opened = self._case_for(device, rule.recall_issue, now, "campaign")
                self.stats["campaign_recalls"] += 1
                if opened:
                    actions += self._open(case, now, "Your device is part of a recall.")
        campaign.mark_sent(due, now)
        if due:
            actions.append(self._campaign_changed(campaign, now))
        return actions

    def _campaign_changed(self, campaign: Campaign, t: float) -> CampaignChanged:
        return CampaignChanged(
            campaign.campaign_id,
            campaign.rule,
            campaign.action,
            campaign.cohort,
            campaign.state,
            campaign.stage,
            len(campaign.targets),
            len(campaign.sent),
            len(campaign.failed),
            campaign.opened_s,
            t,
            campaign.reason,
        )

    def _campaign_failure(self, device: str) -> None:
        """A device a running campaign reached failed (a new case after it, or an update that did not install)."""
        for campaign in self.campaigns.values():
            if campaign.record_failure(device):
                self.stats["campaign_failures"] += 1

    # -- alert flapping -------------------------------------------------------------------------
    def _flapped(self, key: tuple[str, str], t: float) -> bool:
        """Record a rule's state change; True when its active alert has changed too often and now flaps."""
        window = self.config.alerting.flap_window_s
        changes = [c for c in self._changes.get(key, []) if c > t - window]
        changes.append(t)
        self._changes[key] = changes
        alert_id = self.alert_of.get(key)
        if len(changes) < self.config.alerting.flap_changes or alert_id is None:
            return False
        self.flapping[key] = t
        self.stats["alerts_flapping"] += 1
        return True

    def _unflap(self, now: float) -> list[Action]:
        """Alerts quiet for a flap window stop flapping; one whose rule no longer fires clears."""
        actions: list[Action] = []
        window = self.config.alerting.flap_window_s
        for key, last in sorted(self.flapping.items()):
            if now - last < window:
                continue
            del self.flapping[key]
            self._changes.pop(key, None)
            alert_id = self.alert_of.get(key)
            if alert_id is None:
                continue
            device, rule = key
            t = last + window
            actions.append(AlertFlapping(alert_id, device, rule, t, False))
            slot = self.twins.slot_of.get(device)
            if slot is None or not self.twins.alerting[self._rule_index[rule], slot]:
                del self.alert_of[key]
                actions.append(ClearAlert(alert_id, device, rule, t))
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
                for d in np.flatnonzero(~known).tolist():
                    if (batch.index == d).any():
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

    def _gap_stats(self, missing: int, late: int) -> None:
        """Count readings missing by sequence gaps (some of them may still come, late) and late ones."""
        if self.twins.missing_total > missing:
            self.stats["readings_missing"] += self.twins.missing_total - missing
        if self.twins.late_total > late:
            self.stats["readings_late"] += self.twins.late_total - late

    def _alerts(
        self, raised: list[tuple[int, int, float, float]], cleared: list[tuple[int, int, float]]
    ) -> list[Action]:
        actions: list[Action] = []
        # In time order: a batch spanning several timestamps may raise an alert and clear it again.
        changes = [(t, 0, self.twins.ids[slot], r, 0.0) for slot, r, t in cleared]
        changes += [(t, 1, self.twins.ids[slot], r, value) for slot, r, t, value in raised]
        for t, up, device, r, value in sorted(changes):
            rule = self.twins.rules[r]
            key = (device, rule.name)
            if key in self.flapping:
                self.flapping[key] = t  # a flapping alert stays raised: its changes are noted, not acted on
                continue
            flapping = self._flapped(key, t)
            if not up:
                alert_id = self.alert_of.get(key)
                if alert_id is None:
                    continue
                if flapping:
                    actions.append(AlertFlapping(alert_id, device, rule.name, t, True))
                    continue
                del self.alert_of[key]
                actions.append(ClearAlert(alert_id, device, rule.name, t))
                continue
            if key in self.alert_of:
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
        if origin != "campaign" and self.campaigns:
            self._campaign_failure(device)
        self.stats["cases_opened"] += 1
        self.stats[f"cases_opened_{origin}"] += 1
        return case, True

    def _open(self, case: Case, t: float, why: str) -> list[Action]:
        """A new case: answer it remote-first (command or replenishment) or with a work order; tell the owner."""
        case.state = CASE.check(case.state, "in_progress", case.case_id)
        return self._answer(case, t, why, opening=True)

    def _answer(self, case: Case, t: float, why: str, *, opening: bool) -> list[Action]:
        """Answer a case by its issue: advice, a refill, a remote fix, a diagnosis first, or a visit.
        ``opening``: the case is new (its notice is ``case_opened``); else a diagnosis named the issue."""
        issue = self._issue(case.issue)
        if issue.advice is not None or issue.consumable is not None or issue.remote is not None:
            case.first_response_s = t  # the remedy is under way at once; a visit's starts when a technician accepts
        changed = self._case_changed(case, t)
        kind = "case_opened" if opening else "visit_scheduled"
        if issue.diagnose and opening and issue.remote is None and issue.consumable is None and issue.advice is None:
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
            note = self._note(case, t, kind, f"{why} We are fixing it remotely.".strip())
            desired = [self._want_firmware(case.device_id, command.version, t)] if issue.remote == "ota" else []
            return [changed, SendCommand(command), *desired, note, *self._maybe_roll_out(case.issue, t)]
        return [
            changed,
            *self._dispatch(case, t),
            self._note(case, t, kind, f"{why} A technician is on the way.".strip()),
        ]

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
        technician = self._assign(issue, case.device_id)
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

    def _assign(self, issue: IssueType, device: str) -> str | None:
        """The technician for a visit: able (skill), available, with room (open work orders below
        ``max_open``); from the device's region if possible, then the least loaded, then by id.
        None when no technician is configured or none can take it (the field assigns it then)."""
        if not self.config.technicians:
            return None
        record = self.devices.get(device)
        region = record.region if record is not None else None
        able = [
            tech
            for tech in self.config.technicians
            if tech.available
            and (not tech.skills or issue.skill in tech.skills)
            and self.tech_load[tech.id] < tech.max_open
        ]
        if not able:
            self.stats["work_orders_unassigned"] += 1
            return None
        best = min(able, key=lambda x: (region is not None and x.region != region, self.tech_load[x.id], x.id))
        self.tech_load[best.id] += 1
        self.stats["work_orders_assigned"] += 1
        return best.id

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

    def _reported(self, event: DeviceEvent) -> list[Action]:
        """A device reports its firmware or a setting: update the twin; a setting that differs from
        the desired one gets a ``configure`` command (one at a time per device)."""
        device = event.device_id
        name, value = ("firmware", event.code) if event.kind == "firmware" else (event.code, event.detail)
        self.reported.setdefault(device, {})[name] = value
        actions: list[Action] = [self._twin_changed(device, event.ts)]
        want = self.desired.get(device, {}).get(name)
        if event.kind == "config" and want is not None and want != value and device not in self.twin_commands.values():
            self.stats["config_drift"] += 1
            command = Command(
                command_id=self._next_id("cmd"),
                device_id=device,
                ts=event.ts,
                action="configure",
                settings={name: want},
            )
            self.twin_commands[command.command_id] = device
            actions.append(SendCommand(command))
        return actions

    def _want_firmware(self, device: str, version: str | None, t: float) -> DeviceChanged:
        """An update is on its way: the twin's desired firmware is its version."""
        if version is not None:
            self.desired.setdefault(device, {})["firmware"] = version
        return self._twin_changed(device, t)

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
        elif any(c == case.case_id for c, _ in self.pending_diagnoses.values()):
            text = "We already know about this problem and are checking your device remotely."
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
            actions += self._stop_clock(case, "first_response", accepted)
            case.first_response_s = accepted  # a technician has taken it on
            actions.append(self._case_changed(case, accepted))
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
            self.flapping.pop((device, rule.name), None)
            self._changes.pop((device, rule.name), None)
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
        late = self._stop_clock(case, "resolution", t)
        if case.first_response_s is None:
            late += self._stop_clock(case, "first_response", t)
        case.state = CASE.check(case.state, "resolved", case.case_id)
        case.resolved_s = t
        del self.open_case_of[case.device_id]
        self._rearm(case.device_id)
        self.stats["cases_resolved"] += 1
        if t - case.opened_s <= self._sla_of(case.device_id).resolution_s:
            self.stats["cases_resolved_within_sla"] += 1
        changed = self._case_changed(case, t)
        return [*late, changed] if text is None else [*late, changed, self._note(case, t, "resolved", text)]
