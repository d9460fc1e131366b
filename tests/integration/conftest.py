"""Fixtures of the integration tests: a PostgreSQL server for the session, a fresh database per test,
and a Mosquitto with the generated secure deployment per test module."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver

from harness.broker import RunningBroker
from harness.secure_broker import Deployment, start_secure_broker
from tests.browser import chromium, chromium_paths
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


@pytest.fixture(scope="module")
def deployed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningBroker, Deployment]]:
    """Mosquitto with a secure deployment of two devices (d-a, d-b) and a technician (tech-1), started on
    free ports, one per test module; its ACL is written for the module's ``PREFIX``."""
    prefix: str = request.module.PREFIX
    workdir = tmp_path_factory.mktemp("secure-broker")
    broker, deployment = start_secure_broker(workdir, prefix=prefix, devices=["d-a", "d-b"], technicians=["tech-1"])
    with broker:
        yield broker, deployment


@pytest.fixture
def clients() -> Iterator[list[Any]]:
    """The MQTT clients a test makes (anything with ``close()``), closed after it."""
    made: list[Any] = []
    yield made
    for c in made:
        c.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    """Headless Chromium for a module's browser tests; fails (never skips) when it is not installed."""
    try:
        chromium_paths()
        missing = ""
    except FileNotFoundError as exc:
        missing = str(exc)
    if missing:  # a browser test that did not run must not pass
        pytest.fail(missing, pytrace=False)
    with chromium() as driver:
        yield driver
