"""Load-test options are checked before anything starts, and Locust stays out of the runner's process."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.broker import BrokerUrl
from loadtest.fleet import from_scenario_file
from loadtest.options import LoadTestOptions

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"users": 0}, "--users must be >= 1"),
        ({"duration_s": 0.5}, "at least 1 s"),
        ({"speed": 2.0, "rate": 100.0}, "not both"),
        ({"rate": -1.0}, "--rate must be"),
        ({"workers": -1}, "--workers"),
        ({"qos": 2}, "--qos"),
        ({"jitter": 1.5}, "--jitter"),
        ({"drain_s": 5.0, "receipt_timeout_s": 5.0}, "must exceed the receipt timeout"),
        ({"engine_metrics_url": "http://127.0.0.1:9/metrics"}, "give its --broker too"),
    ],
)
def test_options_that_cannot_work_are_named(changes: dict[str, object], message: str) -> None:
    options = LoadTestOptions(**{"users": 10, "spawn_rate": 5.0, "duration_s": 30.0, **changes})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=message):
        options.check()


def test_a_rate_becomes_a_speed_at_the_shapes_peak() -> None:
    mix = from_scenario_file(ROOT / "scenarios" / "freezers.yaml")
    options = LoadTestOptions(users=1000, spawn_rate=50, duration_s=60, rate=2000.0, event_share=0.0)
    assert options.speed_for(mix) == pytest.approx(1800.0)  # 1,000 freezers every 900 s, 2,000 msgs/s
    assert LoadTestOptions(users=10, spawn_rate=5, duration_s=60).speed_for(mix) == 1.0
    assert LoadTestOptions(users=10, spawn_rate=5, duration_s=60, workers=0).worker_count() == 0
    external = LoadTestOptions(users=1, spawn_rate=1, duration_s=5, broker_url=BrokerUrl("127.0.0.1", 1883))
    external.check()


def python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )


def test_the_command_and_the_runner_load_no_locust_and_connect_nothing() -> None:
    result = python(
        """
        import json, socket, sys

        def refuse(self, *args, **kwargs):
            raise OSError("a test forbids connecting on import")

        socket.socket.connect = refuse
        import harness.cli, loadtest, loadtest.runner, loadtest.command, loadtest.report, loadtest.fleet
        print(json.dumps(sorted({m.split(".")[0] for m in sys.modules} & {"locust", "gevent"})))
        """
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_locust_finds_the_users_and_the_shape_in_the_locustfile() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "locust", "-f", "loadtest/locustfile.py", "--list"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    listed = result.stdout.split()
    assert "DeviceUser" in listed and "GatewayUser" in listed
