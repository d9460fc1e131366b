"""The engine core's state and the helpers every part of it uses.

The core is one class, :class:`support_engine.core.engine.Engine`, put together from parts by
concept: devices (registry, twins' reported/desired state, connectivity), alerting (alerts and
flapping), service levels (SLA clocks), fleet patterns (cohort campaigns), maintenance (preventive
visits by plan) and the engine itself (input, cases, remedies, the field). They share the state set
up here; where one part answers through another (a device gone silent opens a case), the hook is
declared here.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from contracts.engine_config import EngineConfig, IssueType, Sla
from contracts.messages import DeviceRecord, Notification
from support_engine.core.actions import Action, CaseChanged, DeviceChanged, Notify
from support_engine.core.campaigns import Campaign
from support_engine.core.lifecycle import CASE, WORK_ORDER
from support_engine.core.schedule import PlanClock, PlanScope, PreventiveOrder
from support_engine.core.twins import Twins

__all__ = ["Case", "EngineBase", "WorkOrderState"]

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
    skip_remote: bool = False  # a remote fix claimed this trouble gone (or found none) lately: no second try
    symptom: str | None = None  # what its opener said: the owner's symptom, or the device's fault code


@dataclass
class WorkOrderState:
    work_order_id: str
    case_id: str
    device_id: str
    state: str = WORK_ORDER.initial
    visit: int = 1
    technician_id: str | None = None


class EngineBase:
    """The state of one deployment's engine, and the case helpers its parts share."""

    def __init__(self, config: EngineConfig, *, id_scope: str = "") -> None:
        self.config = config
        self.id_scope = id_scope  # in every id this engine makes (a partition's, so that ids never collide)
        self.proactive = config.policy == "proactive"
        self.twins = Twins(config.all_rules if self.proactive else [])
        self.cases: dict[str, Case] = {}
        self.open_case_of: dict[str, str] = {}  # device -> open case
        self.work_orders: dict[str, WorkOrderState] = {}
        self.alert_of: dict[tuple[str, str], str] = {}  # (device, rule) -> active alert id
        self.pending_commands: dict[str, str] = {}  # command id -> case id, until the device answers
        # (device, issue) -> when a remote attempt last claimed a fix or found no fault (see repeat_window_s)
        self.remote_claims: dict[tuple[str, str], float] = {}
        # device -> (its last resolved case, when, whether a contact was answered from it since)
        self.resolved_lately: dict[str, tuple[str, float, bool]] = {}
        self.rolled_out: set[str] = set()  # issues whose update went fleet-wide
        self._rearmed: set[str] = set()  # devices whose rules reset once the current message is handled
        self.cases_of_issue: Counter[str] = Counter()
        self.stats: Counter[str] = Counter()
        self._ids: Counter[str] = Counter()
        self._rule_index = {rule.name: r for r, rule in enumerate(self.twins.rules)}
        # The registry and the twins' reported/desired state (firmware, settings). A device's state
        # dict is never changed in place but replaced, so devices in the same state share one.
        self.devices: dict[str, DeviceRecord] = {}
        self.reported: dict[str, dict[str, str]] = {}
        self.desired: dict[str, dict[str, str]] = {}
        self._states: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}
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
        # Preventive maintenance: each plan's schedule, the preventive work orders out (by id, and by
        # (plan, device)), each usage plan's counters as restored (until its scope is made), scopes.
        self.registry_version = 0  # moves whenever a registry entry is added or changed
        self.plan_clocks: dict[str, PlanClock] = {}
        self.preventive: dict[str, PreventiveOrder] = {}
        self.preventive_of: dict[tuple[str, str], str] = {}
        self.usage_seen: dict[str, dict[str, float]] = {}
        self._scopes: dict[str, PlanScope] = {}  # plan -> its devices, kept until the registry changes

    def _next_id(self, prefix: str) -> str:
        self._ids[prefix] += 1
        return f"{prefix}-{self.id_scope}{self._ids[prefix]:07d}"

    def _issue(self, name: str) -> IssueType:
        return self.config.issues.get(name, _FALLBACK_ISSUE)

    def _sla_of(self, device: str) -> Sla:
        """The SLA a device is serviced under: its contract's, else the default."""
        record = self.devices.get(device)
        contract = record.contract if record is not None else None
        return self.config.contracts.get(contract, self.config.sla) if contract is not None else self.config.sla

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
            case.symptom,
        )

    def _note(self, case: Case, t: float, kind: str, text: str) -> Notify:
        return self._note_on(case.device_id, case.case_id, t, kind, text)

    def _note_on(self, device: str, case_id: str, t: float, kind: str, text: str) -> Notify:
        self.stats["notifications"] += 1
        return Notify(
            Notification(
                notification_id=self._next_id("note"),
                device_id=device,
                ts=t,
                kind=kind,  # type: ignore[arg-type]
                case_id=case_id,
                text=text,
            )
        )

    def _unknown(self, device: str) -> bool:
        """Whether a device's messages go to quarantine (registered-only provisioning)."""
        return self.config.provisioning == "registered" and device not in self.devices

    def _case_for(
        self, device: str, issue: str, t: float, origin: str, symptom: str | None = None
    ) -> tuple[Case, bool]:
        """The open case of ``device`` (alerts and contacts correlate into it), or a new one (``symptom``:
        what its opener said, an owner's symptom or a device's fault code)."""
        case_id = self.open_case_of.get(device)
        if case_id is not None:
            return self.cases[case_id], False
        case = Case(self._next_id("case"), device, issue, self._issue(issue).priority, t, origin, symptom=symptom)
        self.cases[case.case_id] = case
        self.open_case_of[device] = case.case_id
        self.resolved_lately.pop(device, None)
        if origin != "campaign" and self.campaigns:
            self._campaign_failure(device)
        self.stats["cases_opened"] += 1
        self.stats[f"cases_opened_{origin}"] += 1
        return case, True

    # -- hooks the other parts define -----------------------------------------------------------
    def _open(self, case: Case, t: float, why: str) -> list[Action]:
        raise NotImplementedError  # Engine: answer a new case

    def _resolve(self, case: Case, t: float, text: str | None) -> list[Action]:
        raise NotImplementedError  # Engine: resolve a case and tell the owner

    def _want_firmware(self, device: str, version: str | None, t: float) -> DeviceChanged:
        raise NotImplementedError  # Devices: an update is on its way

    def _campaign_failure(self, device: str) -> None:
        raise NotImplementedError  # FleetPatterns: a device a campaign reached failed

    def _assign(self, skill: str, device: str) -> str | None:
        raise NotImplementedError  # Engine: the technician for a visit needing ``skill``
