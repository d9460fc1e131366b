"""The names of the engine's counters: what the ``stats`` of a ``clock/ack`` may carry.

The engine core counts into a ``Counter`` (``support_engine.core``) and its service adds the message
accounting (``msg_*``) and a few connection figures; a counter that never moved is absent from the
ack. The harness writes every name here into ``result.json["engine"]``, 0 where the engine sent
none, so that a zero is written as 0 and not left out. A unit test checks this list against the
engine's sources both ways.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["CASE_ORIGINS", "ENGINE_COUNTERS", "MESSAGE_COUNTERS", "engine_counters"]

CASE_ORIGINS = ("telemetry", "device", "contact", "offline", "campaign")
"""What opens a case: ``cases_opened_<origin>``."""
_DEVICE_EVENTS = ("fault", "diagnosis", "firmware", "config", "consumable_low", "consumable_refilled", "command_result")
_SECOND_VISITS = ("part_missing", "incomplete")
_SLA_CLOCKS = ("first_response", "resolution")
_CAMPAIGN_ENDS = ("completed", "aborted")

MESSAGE_COUNTERS = ("msg_ingested", "msg_duplicates", "msg_rejected", "msg_emitted")
"""The service's message accounting (``result.json["messages"]``; ``msg_rejected_<reason>`` besides)."""

ENGINE_COUNTERS: tuple[str, ...] = tuple(
    sorted(
        [
            "advised",
            "alerts",
            "alerts_flapping",
            "broker_dropped",
            "broker_session_lost",
            "campaign_commands",
            "campaign_failures",
            "campaign_recalls",
            "campaigns_opened",
            *(f"campaigns_{state}" for state in _CAMPAIGN_ENDS),
            "cases_opened",
            *(f"cases_opened_{origin}" for origin in CASE_ORIGINS),
            "cases_resolved",
            "cases_resolved_within_sla",
            "config_drift",
            "consumable_orders",
            "consumable_orders_joined",
            "contacts",
            "contacts_after_resolution",
            "contacts_joined",
            "device_events",
            *(f"device_events_{kind}" for kind in _DEVICE_EVENTS),
            "devices_back_online",
            "devices_offline",
            "devices_provisioned",
            "diagnoses_kept",
            "diagnoses_refined",
            "diagnoses_timed_out",
            "diagnostics",
            "escalations",
            "field_status_out_of_order",
            "notifications",
            "quarantined_messages",
            "readings",
            "readings_late",
            "readings_missing",
            "readings_quarantined",
            "registry_received",
            "remote_commands",
            "remote_escalated",
            "remote_fix_failed",
            "remote_fixes",
            "remote_no_fault",
            "resolved_on_contact",
            "rollout_commands",
            "rollouts",
            "second_visits",
            *(f"second_visits_{status}" for status in _SECOND_VISITS),
            "sla_breaches",
            *(f"sla_breaches_{clock}" for clock in _SLA_CLOCKS),
            "sla_warnings",
            *(f"sla_warnings_{clock}" for clock in _SLA_CLOCKS),
            "unknown_work_order_status",
            "work_orders",
            "work_orders_assigned",
            "work_orders_billable",
            "work_orders_unassigned",
        ]
    )
)
"""Every counter of the engine besides the message accounting, sorted."""


def engine_counters(stats: Mapping[str, int]) -> dict[str, int]:
    """Every engine counter (0 where ``stats`` has none) plus any other non-``msg_*`` name it has, sorted."""
    merged = dict.fromkeys(ENGINE_COUNTERS, 0)
    merged.update({k: int(v) for k, v in stats.items() if not k.startswith("msg_")})
    return dict(sorted(merged.items()))
