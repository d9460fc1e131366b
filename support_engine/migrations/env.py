"""Alembic's environment for the engine's database: migrations run on the connection they are given.

:mod:`support_engine.migrations` passes the engine's writer connection, in its open transaction
(``config.attributes["connection"]``), so that a schema change and the engine's first commit
are one transaction, and a SQLite file is migrated under the engine's writer lock. Autogenerate
compares against :data:`support_engine.schema.metadata`, leaving the PostgreSQL writer's
``writer_fence`` alone; SQLite gets batch operations (it alters little in place).
"""

from __future__ import annotations

from typing import Any

from alembic import context

from support_engine.schema import metadata

_NOT_OURS = frozenset({"writer_fence"})


def _ours(thing: Any, name: str | None, kind: str, reflected: bool, compare_to: Any) -> bool:
    return not (kind == "table" and name in _NOT_OURS)


def run() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError(
            "the engine's migrations run through `sot engine db upgrade` (or the engine), on a connection"
        )
    context.configure(
        connection=connection,
        target_metadata=metadata,
        include_object=_ours,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run()
