"""What each figure is called, its unit, and which way is better: for tables, sentences and plots."""

from __future__ import annotations

from typing import Any

__all__ = ["HEADLINE", "describe"]

HEADLINE = (
    "kpis.downtime_hours_per_device_year",
    "kpis.contacts_per_1000_devices",
    "kpis.truck_rolls_per_1000_devices",
    "kpis.resolved_within_day_rate",
    "ledger.per_device_year.net",
)
"""The differences a decision turns on: shown first, and the ones ``--precision`` is about."""

_KNOWN: dict[str, tuple[str, str, str | None]] = {
    "kpis.downtime_hours_per_device_year": ("downtime", "h per device-year", "lower"),
    "kpis.degraded_hours_per_device_year": ("degraded running", "h per device-year", "lower"),
    "kpis.failures": ("failures", "failures", "lower"),
    "kpis.prevented_failures": ("failures prevented", "failures", "higher"),
    "kpis.incidents": ("incidents", "incidents", "lower"),
    "kpis.mttr_hours": ("time to restore (MTTR)", "h", "lower"),
    "kpis.first_time_fix_rate": ("first-time fix", "share", "higher"),
    "kpis.resolved_within_day_rate": ("restored within a day", "share", "higher"),
    "kpis.truck_rolls_per_1000_devices": ("truck rolls", "per 1,000 devices", "lower"),
    "kpis.remote_resolution_rate": ("resolved remotely", "share", "higher"),
    "kpis.detected_before_owner_rate": ("detected before the owner", "share", "higher"),
    "kpis.detection_lead_hours_mean": ("detection lead", "h", "higher"),
    "kpis.contacts_per_1000_devices": ("owner contacts", "per 1,000 devices", "lower"),
    "kpis.contact_wait_s_mean": ("contact wait", "s", "lower"),
    "kpis.owner_effort_steps_mean": ("owner effort", "steps", "lower"),
    "kpis.sla_breaches": ("SLA breaches", "breaches", "lower"),
    "kpis.churned_owners": ("owners churned", "owners", "lower"),
    "kpis.work_orders": ("work orders", "orders", "lower"),
    "kpis.availability": ("availability", "share", "higher"),
    "kpis.time_to_respond_hours_mean": ("time to respond", "h", "lower"),
    "kpis.abandoned_calls": ("calls abandoned", "calls", "lower"),
    "kpis.cost.total": ("cost (KPI total)", "currency", "lower"),
    "ledger.per_device_year.net": ("net cost", "currency per device-year", "lower"),
    "ledger.per_device_year.total": ("cost", "currency per device-year", "lower"),
    "scorecard.overall.precision": ("alert precision", "share", "higher"),
    "scorecard.overall.recall": ("recall before the owner", "share", "higher"),
    "scorecard.overall.false_alarms_per_1000_device_days": ("false alarms", "per 1,000 device-days", "lower"),
    "scorecard.overall.lead_hours_mean": ("lead time before failure", "h", "higher"),
    "scorecard.overall.right_issue_rate": ("right issue", "share", "higher"),
    "scorecard.overall.missed_failures": ("missed failures", "failures", "lower"),
    "scorecard.overall.lead_hours_median": ("median lead time before failure", "h", "higher"),
    "scorecard.overall.no_fault_found_visits": ("no-fault-found visits", "visits", "lower"),
    "scorecard.overall.false_alarms": ("false alarms", "alerts", "lower"),
}


def describe(key: str) -> dict[str, Any]:
    """Label, unit, better direction and group of a dotted metric key."""
    group = key.split(".", 1)[0]
    if key.startswith("kpis.cost."):
        group = "cost"
    if key in _KNOWN:
        label, unit, better = _KNOWN[key]
    else:
        label = key.split(".", 1)[1].replace(".", " · ").replace("_", " ") if "." in key else key
        unit, better = "", None
        if key.startswith("ledger.per_device_year."):
            unit, better = "currency per device-year", "lower"
        elif key.endswith("_rate") or key.endswith(".share") or key.endswith("precision") or key.endswith("recall"):
            unit = "share"
    return {"label": label, "unit": unit, "better": better, "group": group}
