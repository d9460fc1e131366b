"""A private, throwaway PostgreSQL cluster for the tests, and a fresh database per test.

``SOT_TEST_POSTGRES_URL`` (a superuser's URL, e.g. ``postgresql://postgres@127.0.0.1:5432/postgres``)
points the tests at a server of your own. Without it, :func:`private_cluster` runs ``initdb`` into a
temporary directory and ``pg_ctl`` starts it on a free loopback port with its socket in that
directory (fsync off); as root, both run as the ``postgres`` system user, as ``initdb`` refuses root.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

ENV_URL = "SOT_TEST_POSTGRES_URL"
INSTALL = (
    "PostgreSQL is needed for these tests and is not installed: apt-get install postgresql "
    f"(the tests start their own cluster), or set {ENV_URL} to a server of yours"
)


def pg_bin(name: str) -> str:
    """The newest installed PostgreSQL's ``name`` program (Debian keeps them off the PATH)."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return found[-1]
    on_path = shutil.which(name)
    if on_path is None:
        raise FileNotFoundError(INSTALL)
    return on_path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def private_cluster() -> Iterator[str]:
    """Start a cluster of our own; yield its superuser URL; stop it and delete it."""
    initdb, pg_ctl = pg_bin("initdb"), pg_bin("pg_ctl")
    as_owner: list[str] = []
    base = Path(tempfile.mkdtemp(prefix="sot-pg-"))
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            raise RuntimeError("running as root needs runuser (util-linux) to run initdb as the postgres user")
        as_owner = ["runuser", "-u", "postgres", "--"]
        shutil.chown(base, "postgres", "postgres")
    data, log = base / "data", base / "server.log"
    port = _free_port()
    env = {**os.environ, "LC_ALL": "C", "LANG": "C"}

    def run(*args: str) -> None:
        done = subprocess.run([*as_owner, *args], capture_output=True, text=True, env=env, cwd=base, check=False)
        if done.returncode != 0:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(args[:2])} failed ({done.returncode}): {done.stderr or done.stdout}{tail}")

    try:
        run(initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-locale", "--no-sync")
        options = f"-F -p {port} -k {base} -c listen_addresses=127.0.0.1 -c max_connections=200"
        run(pg_ctl, "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60", "start")
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        finally:
            run(pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(base, ignore_errors=True)


def with_database(url: str, name: str) -> str:
    """``url`` naming database ``name`` instead."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def with_password(url: str, password: str) -> tuple[str, str]:
    """``url`` with a password (``password`` unless it has one), and that password.

    The private cluster trusts loopback connections, so any password is accepted there.
    """
    parts = urlsplit(url)
    if parts.password is not None:
        return url, parts.password
    userinfo, _, hosts = parts.netloc.rpartition("@")
    netloc = f"{userinfo}:{password}@{hosts}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment)), password


@contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """A new, empty database on the server (dropped afterwards); yield its URL."""
    name = f"sot_test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield with_database(server_url, name)
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
