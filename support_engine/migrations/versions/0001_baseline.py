"""The schema when migrations began: the tables of migrations/baseline.py, created.

A database of the engine before migrations (no ``alembic_version`` table) is brought to this
revision by :mod:`support_engine.migrations.legacy` and stamped with it, not created again.

Revision ID: 0001
Revises:
Create Date: 2026-12-08
"""

from __future__ import annotations

from alembic import op

from support_engine.migrations import baseline

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    baseline.metadata().create_all(op.get_bind())


def downgrade() -> None:
    baseline.metadata().drop_all(op.get_bind())
