"""One case in full: its owner, symptom, work orders, commands, notifications, and a timeline of it all.

What a case holds is spread over the tables the engine writes: the case row, its device's registry
row (owner, contract), alerts, SLA warnings and breaches, the outbox (commands, work orders, refill
orders, notifications, each as the message sent) and the ``state_changes`` log (every change of
the case and of its work orders; a database written before the log began has only the latest
state of each). The timeline merges them in time order; at one instant, in the order the engine
acts: opening, alert, SLA clock, case change, what it sent, work-order change, notification, clearing.

A command's outcome is what the owner was told next about the case (the engine tells them the
result of a remote fix or diagnosis), since the device's answer itself is not stored.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgspec
import sqlalchemy as sa

from contracts.engine_config import EngineConfig
from support_engine import database
from support_engine import schema as t
from support_engine.api.models import (
    CaseDetail,
    CommandRecord,
    NotificationRecord,
    SlaBreachRecord,
    TimelineEntry,
    stamped,
)
from support_engine.api.queries import OPEN_STATES, Reader, case_query

__all__ = ["case_detail", "symptom"]

Add = Callable[[float, str, int, str, str, str], None]  # (ts, rank, seq, kind, ref, text)
_AWAITING = "awaiting the device's answer"
_RANK = {
    "opened": 0,
    "alert_raised": 1,
    "sla": 2,
    "case": 3,  # changes of the case and of its work orders, in the order logged
    "work_order": 3,
    "sent": 4,
    "notification": 6,
    "alert_cleared": 7,
}


def symptom(row: Mapping[str, Any], alerts: Sequence[Mapping[str, Any]], config: EngineConfig | None) -> str | None:
    """What opened the case: the owner's symptom or the device's fault code as stored (the engine
    keeps them since its database has a ``symptom`` column), the rule of its first alert and the
    value, the device falling silent, or the recall; for an older database's case opened by a
    contact or a device, the symptoms or codes the configuration maps to its issue (None without it)."""
    origin, issue = row["origin"], row["issue"]
    if row.get("symptom"):  # what the owner said, or the code the device reported
        return str(row["symptom"])
    if origin == "telemetry" and alerts:
        first = alerts[0]
        value = first["value"]
        return first["rule"] if value is None else f"{first['rule']} = {value:.4g}"
    if origin == "offline":
        return "the device stopped reporting"
    if config is None:
        return None
    if origin == "device":
        named = sorted(code for code, found in config.fault_codes.items() if found == issue)
    elif origin == "contact":
        named = sorted(said for said, found in config.symptoms.items() if found == issue)
    elif origin == "campaign":
        named = [f"recall {r.name}" for r in config.campaigns if r.recall_issue == issue]
    else:
        named = []
    return " or ".join(named) or None


def _belongs(kind: str, message: Mapping[str, Any], case_id: str, opened_s: float, end_s: float) -> bool:
    """Whether an outbox message is about the case: it names it, or it is a refill ordered while the case was open."""
    if kind == "OrderConsumable":
        return opened_s <= float(message["ts"]) <= end_s
    return message.get("case_id") == case_id


def case_detail(reader: Reader, case_id: str) -> CaseDetail | None:
    """The case with everything about it, or None if there is no such case."""
    case_c, order_c, alert_c, out_c, log_c = t.cases.c, t.work_orders.c, t.alerts.c, t.outbox.c, t.state_changes.c
    with reader.connect() as db:
        found = db.dicts(case_query().where(case_c.case_id == case_id))
        if not found:
            return None
        row = found[0]
        # a database of an engine before the symptom column or the log (inspected: not upgraded) has none
        said_then = (
            db.scalar(sa.select(case_c.symptom).where(case_c.case_id == case_id))
            if _has(db, "cases", "symptom")
            else None
        )
        orders = db.dicts(sa.select(t.work_orders).where(order_c.case_id == case_id).order_by(order_c.work_order_id))
        alerts = db.dicts(
            sa.select(t.alerts).where(alert_c.case_id == case_id).order_by(alert_c.raised_s, alert_c.alert_id)
        )
        breaches = db.dicts(_clocks(t.sla_breaches, case_id))
        warnings = db.dicts(_clocks(t.sla_warnings, case_id))
        sent = db.rows(
            sa.select(out_c.id, out_c.kind, out_c.ref, out_c.payload)
            .where(out_c.device_id == row["device_id"])
            .order_by(out_c.id)
        )
        logged = sa.select(
            log_c.id, log_c.kind, log_c.ref, log_c.state, log_c.ts, log_c.priority, log_c.visit, log_c.technician_id
        )
        changes = (
            db.dicts(logged.where(log_c.case_id == case_id).order_by(log_c.id))
            if _has(db, "state_changes", "id")
            else []
        )
    time = reader.time
    opened = float(row["opened_s"])
    end = math.inf if row["state"] in OPEN_STATES else float(row["updated_s"])
    messages = []
    for seq, kind, ref, payload in sent:
        message = msgspec.json.decode(payload)
        if _belongs(str(kind), message, case_id, opened, end):
            messages.append((int(seq), str(kind), str(ref), message))
    said = symptom({**row, "symptom": said_then}, alerts, reader.config)
    timeline: list[tuple[float, int, int, TimelineEntry]] = []

    def add(ts: float, rank: str, seq: int, kind: str, ref: str, text: str) -> None:
        entry = TimelineEntry(**stamped({"ts": ts, "kind": kind, "ref": ref, "text": text}, time))
        timeline.append((ts, _RANK[rank], seq, entry))

    opening = f"Case opened from {row['origin']}" + (f": {said}" if said else "") + f" (issue {row['issue']})"
    add(opened, "opened", 0, "case", case_id, opening)
    _case_changes(add, row, [c for c in changes if c["kind"] == "case"])
    _order_changes(add, orders, [c for c in changes if c["kind"] == "work_order"])
    for a in alerts:
        flapping = " (flapping)" if a["flapping"] else ""
        value = "" if a["value"] is None else f" at {a['value']:.4g}"
        raised = f"Alert {a['rule']} raised{value}{flapping}"
        add(a["raised_s"], "alert_raised", 0, "alert_raised", a["alert_id"], raised)
        if a["cleared_s"] is not None:
            add(a["cleared_s"], "alert_cleared", 0, "alert_cleared", a["alert_id"], f"Alert {a['rule']} cleared")
    for w in warnings:
        add(w["ts"], "sla", 0, "sla_warning", case_id, f"SLA {w['clock'].replace('_', ' ')} clock warned (escalated)")
    for b in breaches:
        add(b["ts"], "sla", 1, "sla_breach", case_id, f"SLA {b['clock'].replace('_', ' ')} target breached")
    notes = [m for m in messages if m[1] == "Notify"]
    for seq, kind, ref, m in messages:
        ts = float(m["ts"])
        if kind == "Notify":
            add(ts, "notification", seq, "notification", ref, f"Owner told ({m['kind']}): {m.get('text', '')}")
        elif kind == "SendCommand":
            version = f" {m['version']}" if m.get("version") else ""
            add(ts, "sent", seq, "command", ref, f"Command {m['action']}{version} sent to the device")
        elif kind == "CreateWorkOrder":
            parts = ", ".join(m.get("parts") or []) or "no parts"
            who = m.get("technician_id") or "to be assigned by the field"
            created = f"Work order {ref} created: {m['skill']}, {parts}; technician {who}"
            add(ts, "sent", seq, "work_order", ref, created)
        elif kind == "OrderConsumable":
            add(ts, "sent", seq, "consumable_order", ref, f"Refill ordered: {m['quantity']:g} {m['consumable']}")
    open_now = row["state"] in OPEN_STATES
    commands = []
    for _, kind, ref, m in messages:
        if kind != "SendCommand":
            continue
        after = next((n for n in notes if float(n[3]["ts"]) > float(m["ts"])), None)
        outcome: str | None
        if after is not None:
            outcome = str(after[3].get("text") or after[3]["kind"])
        else:
            outcome = _AWAITING if open_now else None
        commands.append(
            CommandRecord(
                **stamped({"command_id": ref, "ts": m["ts"], "action": m["action"], "version": m.get("version")}, time),
                outcome=outcome,
            )
        )
    first, resolution = reader.dues(row)
    return CaseDetail(
        **stamped({**row, "first_response_due_s": first, "resolution_due_s": resolution}, time),
        symptom=said,
        work_orders=[reader.work_order(o) for o in orders],
        alerts=[reader.alert(a) for a in alerts],
        commands=commands,
        notifications=[
            NotificationRecord(
                **stamped({"notification_id": ref, "ts": m["ts"], "kind": m["kind"], "text": m.get("text", "")}, time)
            )
            for _, _, ref, m in notes
        ],
        sla_breaches=[SlaBreachRecord(**stamped(b, time)) for b in breaches],
        sla_warnings=[SlaBreachRecord(**stamped(w, time)) for w in warnings],
        timeline=[entry for *_, entry in sorted(timeline, key=lambda e: e[:3])],
    )


def _clocks(table: sa.Table, case_id: str) -> sa.Select[Any]:
    """The SLA clocks of a case warned or breached (``table``), in time order."""
    return sa.select(table.c.clock, table.c.ts).where(table.c.case_id == case_id).order_by(table.c.ts, table.c.clock)


def _has(db: database.Reader, table: str, column: str) -> bool:
    """Whether the database has ``table`` with ``column``."""
    return column in db.columns(table)


def _case_changes(add: Add, row: Mapping[str, Any], changes: Sequence[Mapping[str, Any]]) -> None:
    """Entries for the case's changes of state and priority (its latest state only, before the log began)."""
    if not changes:
        if row["state"] != "open":
            add(row["updated_s"], "case", 0, "case", row["case_id"], f"Case {row['state'].replace('_', ' ')}")
        return
    state, priority = None, None
    for c in changes:
        if c["state"] != state:
            text = f"Case {c['state'].replace('_', ' ')}" + (f", priority {c['priority']}" if state is None else "")
        elif c["priority"] != priority:
            text = f"Priority {priority} \u2192 {c['priority']}"
        else:
            continue
        add(c["ts"], "case", int(c["id"]), "case", row["case_id"], text)
        state, priority = c["state"], c["priority"]


def _order_changes(add: Add, orders: Sequence[Mapping[str, Any]], changes: Sequence[Mapping[str, Any]]) -> None:
    """Entries for the work orders' changes of state after creation (the latest state only, before the log began)."""
    logged = {c["ref"] for c in changes}
    for c in changes:
        if c["state"] == "created":
            continue  # the outbox's work order says it, with skill and parts
        visit = f", visit {c['visit']}" if c["visit"] and c["visit"] > 1 else ""
        who = f", technician {c['technician_id']}" if c["technician_id"] else ""
        text = f"Work order {c['ref']} {c['state'].replace('_', ' ')}{visit}{who}"
        add(c["ts"], "work_order", int(c["id"]), "work_order", c["ref"], text)
    for o in orders:
        if o["work_order_id"] not in logged and o["state"] != "created":
            text = f"Work order {o['work_order_id']} {o['state'].replace('_', ' ')}"
            add(o["updated_s"], "work_order", 0, "work_order", o["work_order_id"], text)
