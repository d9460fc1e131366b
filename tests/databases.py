"""Databases as earlier versions of the engine left them, and how a database's schema differs from the engine's.

:func:`write_old` writes one of the frozen schemas of ``tests/fixtures`` (``v0``: the last before
migrations; ``oldest``: the first that ran on PostgreSQL too) and rows into it, through the
driver itself, as those versions did. :func:`schema_diffs` is Alembic's comparison of a database
with :data:`support_engine.schema.metadata`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import psycopg
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from support_engine import schema
from support_engine.database import Database, locate

FIXTURES = Path(__file__).parent / "fixtures"
Rows = Mapping[str, tuple[Sequence[str], Sequence[tuple[Any, ...]]]]  # table -> (columns, rows)


def write_old(where: str | Path, version: str, rows: Rows) -> None:
    """Create the tables of an earlier ``version`` at ``where`` and insert ``rows``, as that version would."""
    location = locate(where)
    ddl = (FIXTURES / f"schema_{version}_{location.backend}.sql").read_text(encoding="utf-8")
    if location.backend == "sqlite":
        db = sqlite3.connect(location.target)
        try:
            db.executescript(ddl)
            for table, (columns, values) in rows.items():
                marks = ", ".join("?" for _ in columns)
                db.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", values)
            db.commit()
        finally:
            db.close()
        return
    with psycopg.connect(location.target) as pg:
        pg.execute(ddl)  # type: ignore[arg-type]
        with pg.cursor() as cursor:
            for table, (columns, values) in rows.items():
                marks = ", ".join("%s" for _ in columns)
                cursor.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", values)  # type: ignore[arg-type]


def schema_diffs(where: str | Path) -> list[Any]:
    """What Alembic would change to make the database at ``where`` the engine's schema (none: it is).

    SQLite's ``TEXT PRIMARY KEY`` takes NULL (an old quirk of SQLite's) where the engine's tables,
    and PostgreSQL, say ``NOT NULL``: a database that SQLite made from such DDL before migrations
    shows that difference on its text keys, which the engine never writes NULL into. Those are
    left out here, and only those."""
    database = Database.at(where)
    try:
        with database.reader() as reader:
            keys = {(t.name, c.name) for t in schema.metadata.tables.values() for c in t.primary_key.columns}
            context = MigrationContext.configure(
                reader.connection,
                opts={"compare_type": True, "include_object": lambda o, n, kind, r, c: n != "writer_fence"},
            )
            found = compare_metadata(context, schema.metadata)
    finally:
        database.dispose()
    quirk = database.location.backend == "sqlite"

    def sqlite_text_key(diff: Any) -> bool:
        return (
            quirk and isinstance(diff, list) and len(diff) == 1 and diff[0][0] == "modify_nullable"
            and (diff[0][2], diff[0][3]) in keys and diff[0][5:] == (True, False)
        )  # fmt: skip

    return [d for d in found if not sqlite_text_key(d)]
