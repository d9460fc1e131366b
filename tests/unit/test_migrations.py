"""The migrations as shipped: one head, the one the engine knows; every revision file packaged; and a
new SQLite database migrated to the head is exactly :mod:`support_engine.schema`."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import sqlalchemy as sa

from support_engine import migrations
from support_engine.database import Database
from support_engine.errors import DatabaseTooNew, StorageError
from support_engine.migrations import baseline
from support_engine.schema import metadata
from support_engine.storage import Storage
from tests.databases import schema_diffs

ROOT = Path(__file__).resolve().parents[2]
VERSIONS = ROOT / "support_engine" / "migrations" / "versions"


def test_the_head_the_engine_knows_is_the_only_head_of_the_revisions() -> None:
    script = migrations._script()
    assert script.get_heads() == [migrations.HEAD]
    assert migrations.history()[0].revision == migrations.HEAD
    assert migrations.history()[-1].down_revision is None


def test_every_revision_file_and_the_template_are_package_data() -> None:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    shipped = data["support_engine.migrations"]
    assert {"script.py.mako", "versions/*.py"} <= set(shipped)
    files = {p.name.partition("_")[0] for p in VERSIONS.glob("*.py")}
    assert files == {r.revision for r in migrations.history()}  # each file a revision, named by it


def test_revision_0001_is_the_schema_as_migrations_began(tmp_path: Path) -> None:
    """The head is 0001: the live tables are still the baseline's, column for column."""
    live = {
        t.name: [(c.name, str(c.type), c.nullable, c.primary_key) for c in t.columns] for t in metadata.sorted_tables
    }
    frozen = {t.name: [(c.name, str(c.type), c.nullable, c.primary_key) for c in t.columns]
              for t in baseline.metadata().sorted_tables}  # fmt: skip
    assert live == frozen


def test_a_new_database_migrated_to_the_head_is_the_engines_schema(tmp_path: Path) -> None:
    where = tmp_path / "e.sqlite"
    Storage(where).close()
    assert schema_diffs(where) == []


def test_a_newer_revision_is_refused_and_named(tmp_path: Path) -> None:
    where = tmp_path / "e.sqlite"
    Storage(where).close()
    database = Database.at(where)
    writer = database.writer()
    writer.connection.execute(sa.text("UPDATE alembic_version SET version_num = 'abc123'"))
    writer.commit()
    writer.close()
    database.dispose()
    with pytest.raises(DatabaseTooNew) as refused:
        Storage(where)
    assert isinstance(refused.value, StorageError)
    assert (refused.value.found, refused.value.head, refused.value.database) == (("abc123",), "0001", str(where))
