"""``sot engine db upgrade|current|history``: the engine database's schema revision, by hand.

The engine upgrades its database itself when it starts; these commands let an operator do it
ahead of a rollout (with a user allowed to change the schema while the engine's may not), see
where a database stands, and list the revisions this version knows. ``upgrade`` takes the SQLite
writer lock, so it waits for no running engine: it is refused while one writes the file.
"""

from __future__ import annotations

from typing import Annotated

import typer

from support_engine import migrations
from support_engine.database import Database, DatabaseInUse, guard
from support_engine.errors import DatabaseTooNew, EngineError

__all__ = ["app"]

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="The engine database's schema: upgrade it, say where it stands, list the revisions (Alembic).",
)
Db = Annotated[
    str,
    typer.Option(
        help="Database: a SQLite file, sqlite:///PATH, or postgresql+psycopg://user@host:port/database "
        "(or postgresql://)."
    ),
]


def _fail(exc: EngineError) -> typer.Exit:
    typer.echo(f"sot engine db: {exc}", err=True)
    return typer.Exit(2 if isinstance(exc, (DatabaseInUse, DatabaseTooNew)) else 1)


@app.command()
def upgrade(
    db: Db = "sot-engine.sqlite",
    revision: Annotated[str, typer.Option(help="The revision to upgrade to.")] = "head",
) -> None:
    """Bring the database's schema to a revision (default: this engine's head), creating its tables if it has none."""
    database = Database.at(db)
    try:
        writer = database.writer()
        try:
            with guard(database.location, lambda: "upgrading the schema"):
                done = migrations.upgrade(writer, revision)
            writer.commit()
        except BaseException:
            writer.rollback()
            raise
        finally:
            writer.close()
    except EngineError as exc:
        raise _fail(exc) from exc
    finally:
        database.dispose()
    shown = database.location.shown
    if not done:
        typer.echo(f"{shown}: already at {migrations.HEAD if revision == 'head' else revision}; nothing to do")
    for step in done:
        typer.echo(f"{shown}: {step}")


@app.command()
def current(db: Db = "sot-engine.sqlite") -> None:
    """Say which revision the database's schema is at (read only)."""
    database = Database.at(db)
    try:
        with database.reader() as reader, guard(database.location, lambda: "reading the schema revision"):
            version = migrations.current(reader.connection)
    except EngineError as exc:
        raise _fail(exc) from exc
    finally:
        database.dispose()
    typer.echo(f"{database.location.shown}: {version.describe()}")


@app.command()
def history() -> None:
    """List the revisions this engine knows, newest first."""
    for r in migrations.history():
        head = " (head)" if r.revision == migrations.HEAD else ""
        typer.echo(f"{r.down_revision or '<base>'} -> {r.revision}{head}: {r.doc.splitlines()[0] if r.doc else ''}")
