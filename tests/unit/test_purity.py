"""The cores stay pure: no I/O library is loaded by them, and importing the packages connects nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).parents[2]
IO_LIBRARIES = ("paho", "locust", "gevent", "amqtt", "psycopg")


def python(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter (a clean ``sys.modules``) from the project root."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )


def test_the_cores_load_no_io_library() -> None:
    result = python(
        f"""
        import json, sys
        import contracts, sim.world, sim.scenario_file, sim.kpis, support_engine.core.engine
        loaded = sorted({{m.split(".")[0] for m in sys.modules}} & set({IO_LIBRARIES!r}))
        print(json.dumps({{"loaded": loaded, "world": "sim.world" in sys.modules}}))
        """
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"loaded": [], "world": True}


def test_the_io_check_would_see_an_io_library() -> None:
    result = python("import sys, paho.mqtt.client; print('paho' in {m.split('.')[0] for m in sys.modules})")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"


def test_importing_the_packages_connects_nothing() -> None:
    result = python(
        """
        import socket

        attempts = []

        def refuse(self, *args, **kwargs):
            attempts.append(args)
            raise OSError("a test forbids connecting on import")

        socket.socket.connect = refuse
        socket.socket.connect_ex = refuse
        socket.create_connection = lambda *a, **k: refuse(None, *a)

        import contracts, sim, support_engine
        import contracts.codec, sim.world, sim.scenario_file, sim.kpis, support_engine.core.engine

        print(len(attempts))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0"


def test_the_connect_trap_fires_when_something_connects() -> None:
    result = python(
        """
        import socket

        def refuse(self, *args, **kwargs):
            raise OSError("a test forbids connecting on import")

        socket.socket.connect = refuse
        socket.socket(socket.AF_INET, socket.SOCK_STREAM).connect(("127.0.0.1", 9))
        """
    )
    assert result.returncode != 0 and "forbids connecting" in result.stderr


def test_the_world_imports_neither_the_harness_nor_the_load_tests() -> None:
    result = python(
        """
        import importlib, json, pkgutil, sys
        import sim
        for info in pkgutil.walk_packages(sim.__path__, "sim."):
            importlib.import_module(info.name)
        print(json.dumps(sorted({m.split(".")[0] for m in sys.modules} & {"harness", "experiments", "loadtest"})))
        """
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
