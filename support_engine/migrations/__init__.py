"""The engine's schema migrations (Alembic), and bringing a database to the revision this engine runs on.

Layout, as Alembic expects it (``script_location`` ``support_engine:migrations``):

- ``env.py`` — runs the migrations on the connection it is given (the engine's writer's);
- ``script.py.mako`` — the template of a new revision;
- ``versions/`` — the revisions, ``0001`` (:mod:`~support_engine.migrations.baseline`: the tables
  when migrations began) first;
- :mod:`~support_engine.migrations.legacy` — a database of the engine before migrations (no
  ``alembic_version``) brought to 0001 and stamped with it.

:func:`prepare` is what the engine does on opening its database: nothing more than one query when
the database is at :data:`HEAD`; an upgrade otherwise, in the writer's open transaction; and
:class:`~support_engine.errors.DatabaseTooNew` when a newer engine has upgraded it past what this
one knows. ``sot engine db upgrade|current|history`` (:mod:`support_engine.dbcli`) does the same
by hand. Alembic is imported only when there is something to migrate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa

from support_engine.errors import DatabaseTooNew, StorageError

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from support_engine.database import Writer

__all__ = ["HEAD", "Revision", "Version", "current", "history", "prepare", "upgrade"]

HEAD = "0001"
"""The newest revision of this engine's schema (a test checks it against ``versions/``)."""
_LOCK_KEY = 0x50_7E_4E_61  # PostgreSQL: one engine migrates a database at a time
_VERSIONS = sa.Table("alembic_version", sa.MetaData(), sa.Column("version_num", sa.String(32), primary_key=True))


@dataclass(frozen=True, slots=True)
class Version:
    """Where a database stands: its revisions (none: empty, or of the engine before migrations)."""

    revisions: tuple[str, ...]
    legacy: bool  # no alembic_version, and the engine's tables: a database of the engine before migrations
    known: bool  # every revision is one this engine has

    def describe(self) -> str:
        """One line for ``sot engine db current``."""
        if self.legacy:
            return "none: a database of the engine before migrations (`sot engine db upgrade` adopts it)"
        if not self.revisions:
            return "none: an empty database (`sot engine db upgrade` creates the tables)"
        text = ", ".join(self.revisions)
        if not self.known:
            return f"{text}: newer than this engine, which knows up to {HEAD}"
        return f"{text} (head)" if self.revisions == (HEAD,) else f"{text} (behind head {HEAD})"


@dataclass(frozen=True, slots=True)
class Revision:
    """One revision of the schema, for ``sot engine db history``."""

    revision: str
    down_revision: str | None
    doc: str


def current(conn: sa.Connection) -> Version:
    """Where the database of ``conn`` stands (read only)."""
    inspector = sa.inspect(conn)
    if not inspector.has_table(_VERSIONS.name):
        from support_engine.migrations import legacy

        return Version((), legacy.is_legacy(set(inspector.get_table_names())), True)
    revisions = tuple(sorted(str(r) for r in conn.execute(sa.select(_VERSIONS.c.version_num)).scalars()))
    if revisions == (HEAD,):
        return Version(revisions, False, True)
    known = _script().revision_map
    return Version(revisions, False, all(_has(known, r) for r in revisions))


def prepare(writer: Writer) -> list[str]:
    """Bring the writer's database to :data:`HEAD`, in its open transaction (the caller commits);
    what was done, a line a step (nothing when it was there). :class:`DatabaseTooNew` when a
    newer engine's revision is there."""
    return upgrade(writer, HEAD)


def upgrade(writer: Writer, revision: str = "head") -> list[str]:
    """Bring the writer's database to ``revision`` (``head``: :data:`HEAD`), in its open
    transaction (the caller commits); what was done, a line a step."""
    conn = writer.connection
    if writer.dialect == "postgresql":
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_LOCK_KEY)))
    found = current(conn)
    target = HEAD if revision == "head" else revision
    if found.revisions == (target,):
        return []
    if not found.known:
        foreign = not sa.inspect(conn).has_table("cases")
        known = [r.revision for r in history()]
        raise DatabaseTooNew(writer.location.shown, found.revisions, known, HEAD, foreign=foreign)
    from alembic import command
    from alembic.runtime.migration import MigrationContext
    from alembic.util import CommandError

    from support_engine.migrations import legacy

    writer.wrote_directly()
    done: list[str] = []
    if found.legacy:
        done += legacy.adopt(conn, writer.location.shown)
        MigrationContext.configure(conn).stamp(_script(), "0001")
        done.append("stamped revision 0001 (the schema when migrations began)")
    before = current(conn).revisions
    try:
        command.upgrade(_config(conn), revision)
    except CommandError as exc:  # a revision it does not know, one that is not ahead of the database's
        raise StorageError(
            f"cannot upgrade {writer.location.shown!r} to {revision!r}: {exc} (sot engine db history lists them)"
        ) from exc
    after = current(conn).revisions
    if after != before:
        done.append(f"upgraded from {', '.join(before) or 'an empty database'} to {', '.join(after)}")
    return done


def history() -> list[Revision]:
    """This engine's revisions, newest first."""
    return [
        Revision(str(s.revision), _down(s.down_revision), (s.doc or "").strip()) for s in _script().walk_revisions()
    ]


def _down(down: str | Sequence[str] | None) -> str | None:
    return down if down is None or isinstance(down, str) else ", ".join(down)


def _has(revision_map: object, revision: str) -> bool:
    from alembic.script.revision import RevisionError

    try:
        return revision_map.get_revision(revision) is not None  # type: ignore[attr-defined]
    except RevisionError:
        return False


def _config(conn: sa.Connection | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", "support_engine:migrations")
    config.attributes["connection"] = conn
    return config


_scripts: list[ScriptDirectory] = []


def _script() -> ScriptDirectory:
    """The revisions of this engine (read once a process)."""
    if not _scripts:
        from alembic.script import ScriptDirectory

        _scripts.append(ScriptDirectory.from_config(_config()))
    return _scripts[0]
