"""The engine's tables, as SQLAlchemy Core metadata: the one description both backends are built from.

Every statement of :mod:`support_engine.storage` and :mod:`support_engine.http_api` is built on
these :class:`~sqlalchemy.Table` objects; the migrations under :mod:`support_engine.migrations`
bring a database to them (a test checks that a database migrated to the head revision has exactly
these tables, columns, keys and indexes, on SQLite and on PostgreSQL). Changing a table here
therefore needs a new revision there.

Types are the same width on both backends: integers are 64-bit (SQLite ``INTEGER``, PostgreSQL
``BIGINT``), times and values float64 (``REAL``, ``DOUBLE PRECISION``), payloads bytes (``BLOB``,
``BYTEA``). An integer key that numbers rows is SQLite's rowid (``INTEGER PRIMARY KEY``) and a
PostgreSQL identity column.
"""

from __future__ import annotations

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
    LargeBinary,
    MetaData,
    Table,
    Text,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeEngine

__all__ = [
    "Bytes",
    "Float64",
    "Integer64",
    "TABLES",
    "alerts",
    "campaigns",
    "cases",
    "counters",
    "dead_letters",
    "devices",
    "engine_state",
    "inbox",
    "ingest_audit",
    "ingest_ledger",
    "metadata",
    "outbox",
    "quarantine",
    "sla_breaches",
    "sla_warnings",
    "state_changes",
    "work_orders",
]


class Bytes(LargeBinary):
    """``BLOB`` / ``BYTEA`` taking ``bytes`` as they are: both drivers accept them, so no conversion
    runs per value on the ingest path (``LargeBinary`` wraps each one in the driver's ``Binary``)."""

    cache_ok = True

    def bind_processor(self, dialect: Dialect) -> None:
        return None


class Real(REAL[float]):
    """SQLite's ``REAL`` taking Python floats as they are: SQLAlchemy's would call ``float()`` on
    each value on the ingest path (for ``Decimal``, which the engine never writes)."""

    cache_ok = True

    def bind_processor(self, dialect: Dialect) -> None:
        return None


Integer64: TypeEngine[int] = BigInteger().with_variant(Integer(), "sqlite")
"""A 64-bit integer: ``BIGINT``, and SQLite's ``INTEGER`` (64-bit already; a rowid key needs that name)."""
Float64: TypeEngine[float] = Double[float]().with_variant(Real(), "sqlite")
"""A float64: ``DOUBLE PRECISION`` (PostgreSQL's ``REAL`` is 32-bit), and SQLite's ``REAL``."""

metadata = MetaData()


def _row_number(name: str, *extra: Any) -> Column[int]:
    """An integer key that numbers the rows: SQLite's rowid, a PostgreSQL identity column."""
    return Column(name, Integer64, Identity(), *extra, primary_key=True)


ingest_ledger = Table(
    "ingest_ledger",
    metadata,
    Column("kind", Text, primary_key=True),
    Column("source", Text, primary_key=True),
    Column("boot_id", Integer64, primary_key=True, autoincrement=False),
    Column("high", Integer64, nullable=False),
    Column("missing", Bytes, nullable=False),  # the seqs below ``high`` not seen yet, a bit each (little-endian)
    Column("ts", Float64, nullable=False),
    sqlite_with_rowid=False,
)
cases = Table(
    "cases",
    metadata,
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
work_orders = Table(
    "work_orders",
    metadata,
    Column("work_order_id", Text, primary_key=True),
    Column("case_id", Text, ForeignKey("cases.case_id"), nullable=False),
    Column("device_id", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("visit", Integer64, nullable=False),
    Column("updated_s", Float64, nullable=False),
    Column("technician_id", Text),
    Index("work_orders_by_case", "case_id"),
)
alerts = Table(
    "alerts",
    metadata,
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
sla_breaches = Table(
    "sla_breaches",
    metadata,
    Column("case_id", Text, primary_key=True),
    Column("clock", Text, primary_key=True),
    Column("ts", Float64, nullable=False),
)
sla_warnings = Table(
    "sla_warnings",
    metadata,
    Column("case_id", Text, primary_key=True),
    Column("clock", Text, primary_key=True),
    Column("ts", Float64, nullable=False),
)
devices = Table(
    "devices",
    metadata,
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
quarantine = Table(
    "quarantine",
    metadata,
    Column("device_id", Text, primary_key=True),
    Column("first_s", Float64, nullable=False),
    Column("last_s", Float64, nullable=False),
    Column("messages", Integer64, nullable=False),
)
campaigns = Table(
    "campaigns",
    metadata,
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
outbox = Table(
    "outbox",
    metadata,
    _row_number("id"),  # the order things were published in
    Column("ts", Float64, nullable=False),
    Column("kind", Text, nullable=False),
    Column("device_id", Text, nullable=False),
    Column("ref", Text, nullable=False),
    Column("payload", Text, nullable=False),
    Index("outbox_by_device", "device_id"),
)
state_changes = Table(
    "state_changes",
    metadata,
    _row_number("id"),  # the order the changes were made in
    Column("case_id", Text, nullable=False),
    Column("kind", Text, nullable=False),  # "case" or "work_order"
    Column("ref", Text, nullable=False),  # the case's or work order's id
    Column("state", Text, nullable=False),
    Column("ts", Float64, nullable=False),
    Column("priority", Integer64),  # a case's
    Column("visit", Integer64),  # a work order's
    Column("technician_id", Text),  # a work order's
    Index("state_changes_by_case", "case_id"),
)
dead_letters = Table(
    "dead_letters",
    metadata,
    _row_number("id"),
    Column("topic", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("detail", Text, nullable=False),
    Column("payload", Bytes, nullable=False),
)
counters = Table(
    "counters",
    metadata,
    Column("name", Text, primary_key=True),
    Column("value", Integer64, nullable=False),
)
inbox = Table(
    "inbox",
    metadata,
    _row_number("arrival"),
    Column("topic", Text, nullable=False),
    Column("payload", Bytes, nullable=False),
)
engine_state = Table(
    "engine_state",
    metadata,
    _row_number("id", CheckConstraint("id = 1")),  # one row: the core's latest snapshot
    Column("state", Bytes, nullable=False),
)
ingest_audit = Table(
    "ingest_audit",
    metadata,
    Column("kind", Text, nullable=False),
    Column("source", Text, nullable=False),
    Column("boot_id", Integer64, nullable=False),
    Column("seq", Integer64, nullable=False),
)

TABLES: dict[str, Table] = dict(metadata.tables)
"""The engine's tables by name."""
