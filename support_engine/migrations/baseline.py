"""The schema of revision 0001, frozen: the engine's tables as they were when migrations began
(those of the last engine that created and patched its tables itself).

Revision 0001 creates these tables, and :mod:`support_engine.migrations.legacy` brings a database
of the engine before migrations to them. Never edit this file: a change to the tables is a new
revision (whose operations say what changes), and :mod:`support_engine.schema` the tables after it.
"""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import (
    REAL,
    BigInteger,
    CheckConstraint,
    Column,
    Double,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    text,
)
from sqlalchemy.types import TypeEngine

from support_engine.schema import Bytes

Integer64: TypeEngine[int] = BigInteger().with_variant(Integer(), "sqlite")
Float64: TypeEngine[float] = Double[float]().with_variant(REAL(), "sqlite")

__all__ = ["LATE_COLUMNS", "metadata"]

LATE_COLUMNS = frozenset(
    {
        ("cases", "escalation"),
        ("cases", "first_response_s"),
        ("cases", "symptom"),
        ("work_orders", "technician_id"),
        ("alerts", "flapping"),
    }
)
"""Columns added to tables of earlier versions before migrations (by ``ALTER TABLE ... ADD COLUMN``
when the engine opened an older database): a database may lack them and still be the engine's."""


@functools.cache
def metadata() -> MetaData:
    """The tables of revision 0001, in a metadata of their own (made once; not to be changed)."""
    md = MetaData()
    Table(
        "ingest_ledger",
        md,
        Column("kind", Text, primary_key=True),
        Column("source", Text, primary_key=True),
        Column("boot_id", Integer64, primary_key=True, autoincrement=False),
        Column("high", Integer64, nullable=False),
        Column("missing", Bytes, nullable=False),  # the seqs below ``high`` not seen yet, a bit each (little-endian)
        Column("ts", Float64, nullable=False),
        sqlite_with_rowid=False,
    )
    Table(
        "cases",
        md,
        Column("case_id", Text, primary_key=True),
        Column("device_id", Text, nullable=False),
        Column("issue", Text, nullable=False),
        Column("state", Text, nullable=False),
        Column("priority", Integer64, nullable=False),
        Column("origin", Text, nullable=False),
        Column("opened_s", Float64, nullable=False),
        Column("updated_s", Float64, nullable=False),
        Column("escalation", Integer64, nullable=False, server_default=text("0")),
        Column("first_response_s", Float64),
        Column("symptom", Text),  # what the owner reported, or the device's fault code
        Index("cases_by_device", "device_id"),
    )
    Table(
        "work_orders",
        md,
        Column("work_order_id", Text, primary_key=True),
        Column("case_id", Text, ForeignKey("cases.case_id"), nullable=False),
        Column("device_id", Text, nullable=False),
        Column("state", Text, nullable=False),
        Column("visit", Integer64, nullable=False),
        Column("updated_s", Float64, nullable=False),
        Column("technician_id", Text),
        Index("work_orders_by_case", "case_id"),
    )
    Table(
        "alerts",
        md,
        Column("alert_id", Text, primary_key=True),
        Column("device_id", Text, nullable=False),
        Column("rule", Text, nullable=False),
        Column("case_id", Text),
        Column("value", Float64),
        Column("raised_s", Float64, nullable=False),
        Column("cleared_s", Float64),
        Column("flapping", Integer64, nullable=False, server_default=text("0")),
        Index("alerts_by_device", "device_id"),
        Index("alerts_by_case", "case_id"),
    )
    Table(
        "sla_breaches",
        md,
        Column("case_id", Text, primary_key=True),
        Column("clock", Text, primary_key=True),
        Column("ts", Float64, nullable=False),
    )
    Table(
        "sla_warnings",
        md,
        Column("case_id", Text, primary_key=True),
        Column("clock", Text, primary_key=True),
        Column("ts", Float64, nullable=False),
    )
    Table(
        "devices",
        md,
        Column("device_id", Text, primary_key=True),
        Column("product", Text),
        Column("owner_id", Text),
        Column("region", Text),
        Column("contract", Text),
        Column("warranty_until_s", Float64),
        Column("record", Text),  # the registry's record (JSON); NULL: heard of, never registered
        Column("reported", Text, nullable=False, server_default="{}"),
        Column("desired", Text, nullable=False, server_default="{}"),
        Column("offline", Integer64, nullable=False, server_default=text("0")),
        Column("updated_s", Float64, nullable=False, server_default=text("0")),
    )
    Table(
        "quarantine",
        md,
        Column("device_id", Text, primary_key=True),
        Column("first_s", Float64, nullable=False),
        Column("last_s", Float64, nullable=False),
        Column("messages", Integer64, nullable=False),
    )
    Table(
        "campaigns",
        md,
        Column("campaign_id", Text, primary_key=True),
        Column("rule", Text, nullable=False),
        Column("action", Text, nullable=False),
        Column("cohort", Text, nullable=False),
        Column("state", Text, nullable=False),
        Column("stage", Integer64, nullable=False),
        Column("targets", Integer64, nullable=False),
        Column("sent", Integer64, nullable=False),
        Column("failed", Integer64, nullable=False),
        Column("opened_s", Float64, nullable=False),
        Column("updated_s", Float64, nullable=False),
        Column("reason", Text, nullable=False),
    )
    Table(
        "outbox",
        md,
        _row_number("id"),  # the order things were published in
        Column("ts", Float64, nullable=False),
        Column("kind", Text, nullable=False),
        Column("device_id", Text, nullable=False),
        Column("ref", Text, nullable=False),
        Column("payload", Text, nullable=False),
        Index("outbox_by_device", "device_id"),
    )
    Table(
        "state_changes",
        md,
        _row_number("id"),
        Column("case_id", Text, nullable=False),
        Column("kind", Text, nullable=False),
        Column("ref", Text, nullable=False),
        Column("state", Text, nullable=False),
        Column("ts", Float64, nullable=False),
        Column("priority", Integer64),
        Column("visit", Integer64),
        Column("technician_id", Text),
        Index("state_changes_by_case", "case_id"),
    )
    Table(
        "dead_letters",
        md,
        _row_number("id"),
        Column("topic", Text, nullable=False),
        Column("reason", Text, nullable=False),
        Column("detail", Text, nullable=False),
        Column("payload", Bytes, nullable=False),
    )
    Table(
        "counters",
        md,
        Column("name", Text, primary_key=True),
        Column("value", Integer64, nullable=False),
    )
    Table(
        "inbox",
        md,
        _row_number("arrival"),
        Column("topic", Text, nullable=False),
        Column("payload", Bytes, nullable=False),
    )
    Table(
        "engine_state",
        md,
        _row_number("id", CheckConstraint("id = 1")),  # one row: the core's latest snapshot
        Column("state", Bytes, nullable=False),
    )
    Table(
        "ingest_audit",
        md,
        Column("kind", Text, nullable=False),
        Column("source", Text, nullable=False),
        Column("boot_id", Integer64, nullable=False),
        Column("seq", Integer64, nullable=False),
    )
    return md


def _row_number(name: str, *extra: Any) -> Column[int]:
    return Column(name, Integer64, Identity(), *extra, primary_key=True)
