"""Databases of the engine before migrations: brought to revision 0001 and stamped with it.

Such a database has the engine's tables and no ``alembic_version``. Before migrations the engine
created missing tables and indexes whenever it opened a database, added the columns of
:data:`~support_engine.migrations.baseline.LATE_COLUMNS` to older tables, and folded the oldest
ledger (table ``ingest``, one row per message) into ``ingest_ledger``. :func:`adopt` does the same,
once, through Alembic's operations; a table that lacks any other column of revision 0001 is not
the engine's, and the database is refused rather than changed.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from sqlalchemy.dialects import postgresql, sqlite

from support_engine.core.ledger import Ledger
from support_engine.errors import StorageError
from support_engine.migrations import baseline

__all__ = ["LEDGER_OF_KEYS", "adopt", "is_legacy"]

LEDGER_OF_KEYS = "ingest"
"""The oldest versions' ledger: one row per message key."""


def is_legacy(tables: set[str]) -> bool:
    """Whether a database with ``tables`` and no ``alembic_version`` holds the engine's data."""
    return bool(tables & (set(baseline.metadata().tables) | {LEDGER_OF_KEYS}))


def adopt(conn: sa.Connection, shown: str) -> list[str]:
    """Bring the database of ``conn`` (named ``shown``) to revision 0001, in the open transaction;
    what was done, a line a change. :class:`StorageError` if it is not a database of the engine."""
    md = baseline.metadata()
    inspector = sa.inspect(conn)
    tables = set(inspector.get_table_names())
    ops = Operations(MigrationContext.configure(conn))
    done: list[str] = []
    foreign = []
    for table in md.sorted_tables:
        if table.name not in tables:
            continue
        have = {c["name"] for c in inspector.get_columns(table.name)}
        missing = [
            c.name for c in table.columns if c.name not in have and (table.name, c.name) not in baseline.LATE_COLUMNS
        ]
        if missing:
            foreign.append(f"{table.name} has no {', '.join(missing)}")
    if foreign:
        raise StorageError(
            f"database {shown!r} has tables named like the engine's that are not the engine's ({'; '.join(foreign)}): "
            "point the engine at its own database"
        )
    for table in md.sorted_tables:
        if table.name not in tables:
            table.create(conn)
            done.append(f"created table {table.name}")
            continue
        have = {c["name"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name not in have:
                default: Any = (
                    column.server_default.arg if isinstance(column.server_default, sa.DefaultClause) else None
                )
                ops.add_column(
                    table.name, sa.Column(column.name, column.type, nullable=column.nullable, server_default=default)
                )
                done.append(f"added column {table.name}.{column.name}")
        indexes = {ix["name"] for ix in inspector.get_indexes(table.name)}
        for index in table.indexes:
            if index.name not in indexes:
                index.create(conn)
                done.append(f"created index {index.name}")
    if LEDGER_OF_KEYS in tables:
        streams = _fold(conn, md.tables["ingest_ledger"])
        ops.drop_table(LEDGER_OF_KEYS)
        done.append(f"folded table {LEDGER_OF_KEYS} into ingest_ledger ({streams} streams) and dropped it")
    return done


def _fold(conn: sa.Connection, ledger: sa.Table) -> int:
    """Fold the ledger of keys into one ``ingest_ledger`` row per stream (the latest ts kept); how many streams."""
    keys = sa.table(LEDGER_OF_KEYS, *(sa.column(n) for n in ("kind", "source", "boot_id", "seq", "ts")))
    folded = Ledger()
    query = sa.select(keys.c.kind, keys.c.source, keys.c.boot_id, keys.c.seq, keys.c.ts).order_by(
        keys.c.kind, keys.c.source, keys.c.boot_id, keys.c.seq
    )
    for kind, source, boot_id, seq, ts in conn.execute(query):
        folded.take((str(kind), str(source), int(boot_id), int(seq)), float(ts))
    rows = [
        {
            "kind": kind,
            "source": source,
            "boot_id": boot_id,
            "high": high,
            "missing": missing.to_bytes((missing.bit_length() + 7) // 8, "little"),
            "ts": ts,
        }
        for kind, source, boot_id, high, missing, ts in folded.drain()
    ]
    if rows:
        insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(ledger)
        newer = sa.case((insert.excluded.ts > ledger.c.ts, insert.excluded.ts), else_=ledger.c.ts)
        upsert = insert.on_conflict_do_update(
            index_elements=[ledger.c.kind, ledger.c.source, ledger.c.boot_id],
            set_={"high": insert.excluded.high, "missing": insert.excluded.missing, "ts": newer},
        )
        conn.execute(upsert, rows)
    return len(rows)
