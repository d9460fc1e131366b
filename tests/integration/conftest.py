"""Fixtures of the integration tests: a PostgreSQL server for the session, a fresh database per test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.postgres import ENV_URL, INSTALL, fresh_database, pg_bin, private_cluster


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL superuser URL: ``SOT_TEST_POSTGRES_URL``, or a private cluster started for the session.

    Fails (never skips) when PostgreSQL is not installed: the tests must not pass by not running.
    """
    given = os.environ.get(ENV_URL)
    if given:
        yield given
        return
    try:
        pg_bin("initdb")
        installed = True
    except FileNotFoundError:
        installed = False
    if not installed:
        pytest.fail(INSTALL, pytrace=False)
    with private_cluster() as url:
        yield url


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """The URL of a new, empty database of its own."""
    with fresh_database(postgres_server) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a test's engine database is: a SQLite file, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "engine.sqlite")
    url: str = request.getfixturevalue("postgres_url")
    return url
