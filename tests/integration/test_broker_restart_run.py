"""A broker restarted in the middle of an event-time run costs time, not data.

The harness's Mosquitto no longer snapshots its database on every change: what it holds for the
open sync step is covered by the world, which keeps the step's messages until the engine's ack
and sends them again after a reconnect (the engine drops the copies it already has). A restart
saves the sessions, so the engine's subscription and the world's queue come back with the broker.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from harness.broker import start_broker
from harness.runner import run_scenario
from sim.scenario_file import load, with_overrides

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DAYS = 4.0


def _run(tmp_path: Path, name: str, restart_after_day: float | None) -> dict[str, object]:
    scenario = with_overrides(load(ROOT / "scenarios" / "freezers.yaml"), duration_days=DAYS)
    with start_broker("mosquitto", workdir=tmp_path / f"broker-{name}") as broker:
        restarts: list[threading.Thread] = []

        def progress(t: float, end: float) -> None:
            if restart_after_day is not None and t >= restart_after_day * 86400.0 and not restarts:
                # From another thread, so that the broker goes down while the world publishes a step.
                restarts.append(threading.Thread(target=broker.restart))
                restarts[0].start()

        outcome = run_scenario(
            scenario, broker_url=broker.url, workdir=tmp_path / f"run-{name}", progress=progress, step_timeout_s=60.0
        )
        for thread in restarts:
            thread.join()
    return outcome.result


def test_a_broker_restart_mid_run_loses_nothing_and_changes_no_figure(tmp_path: Path) -> None:
    calm = _run(tmp_path, "calm", None)
    restarted = _run(tmp_path, "restarted", 1.5)

    timing = restarted["timing"]
    assert isinstance(timing, dict)
    assert timing["broker_reconnects"] >= 1
    assert calm["timing"]["broker_reconnects"] == 0  # type: ignore[index]
    messages = restarted["messages"]
    assert isinstance(messages, dict)
    assert messages["lost"] == 0
    assert messages["published"] == messages["ingested"] + messages["rejected"]
    assert messages["engine_emitted"] == messages["engine_outputs_received"]
    assert restarted["kpis"] == calm["kpis"]
    assert restarted["engine"] == calm["engine"]
