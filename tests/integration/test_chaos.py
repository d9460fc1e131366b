"""Faults injected into a real run (world, Mosquitto, engine processes) cost time, never data: each
faulted run loses nothing and gives every KPI and engine decision of the same run undisturbed.

The faults strike once a step's messages are on their way and before its clock: the broker killed
with SIGKILL (it saves its state every 300 s, so it comes back without the sessions), the engine
killed and started again on its database and session, the engine cut off the broker by a proxy,
one engine partition of two killed. Message by message, every key the world sent is taken in by
the engine exactly once. `sot chaos` runs the pair and gives the verdict.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from harness.faults import Fault
from harness.runner import run_scenario
from sim.scenario import Scenario
from sim.scenario_file import load, with_overrides
from tests.integration.cli import FREEZERS, sot

pytestmark = pytest.mark.integration

# A restarted engine learns its twins' rule state (persistence, trend fits) again from the next
# readings, so it may raise an alert once more on a case it has open: alerts may differ, cases not.
DECISIONS = ("cases_opened", "work_orders", "notifications", "cases_resolved", "remote_commands", "msg_emitted")


@pytest.fixture(scope="module")
def freezers() -> Scenario:
    return with_overrides(load(FREEZERS), duration_days=3.0)


@pytest.fixture(scope="module")
def calm(freezers: Scenario, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return run_scenario(freezers, workdir=tmp_path_factory.mktemp("calm")).result


def _hit(s: Scenario, tmp: Path, *faults: str, engines: int = 1) -> dict[str, Any]:
    result = run_scenario(s, workdir=tmp, faults=[Fault.parse(f) for f in faults], engines=engines).result
    assert result["chaos"]["not_reached"] == [] and len(result["chaos"]["injected"]) == len(faults)
    return result


def _same_run(calm: dict[str, Any], hit: dict[str, Any]) -> None:
    assert hit["messages"]["lost"] == 0
    books = hit["accounting"]  # message by message: every key the world sent taken in exactly once
    assert (books["lost"], books["duplicated"], books["unexpected"]) == (0, 0, 0), books
    assert books["ingested_once"] == books["sent"] > 0
    assert hit["messages"]["published"] == hit["messages"]["ingested"] + hit["messages"]["rejected"]
    assert hit["kpis"] == calm["kpis"]
    for name in DECISIONS:  # no case, order or notice twice, none missing
        assert hit["engine"].get(name) == calm["engine"].get(name), name


def test_the_engine_killed_mid_run_and_restarted_loses_nothing_and_decides_nothing_twice(
    freezers: Scenario, calm: dict[str, Any], tmp_path: Path
) -> None:
    hit = _hit(freezers, tmp_path, "engine-kill@1d", "engine-kill@2d")
    _same_run(calm, hit)


def test_the_broker_killed_mid_run_loses_nothing_though_it_forgets_every_session(
    freezers: Scenario, calm: dict[str, Any], tmp_path: Path
) -> None:
    hit = _hit(freezers, tmp_path, "broker-kill@1d+1s")
    _same_run(calm, hit)
    assert hit["timing"]["broker_reconnects"] >= 1
    assert hit["timing"]["messages_resent"] > 0  # the open step came again
    # The engine takes what it had of the open step for copies: how much of the step reached it
    # before the kill is a matter of timing (all, some or none), never more than was sent again.
    assert 0 <= hit["messages"]["duplicates"] <= hit["timing"]["messages_resent"]


def test_the_engine_cut_off_its_broker_for_a_while_loses_nothing(
    freezers: Scenario, calm: dict[str, Any], tmp_path: Path
) -> None:
    _same_run(calm, _hit(freezers, tmp_path, "partition:engine@1d+3s"))


def test_one_partition_of_two_killed_mid_run_loses_nothing(tmp_path: Path) -> None:
    import msgspec

    s = load(FREEZERS)
    fleets = [{**msgspec.to_builtins(f), "devices_per_gateway": 40} for f in s.fleets]
    s = with_overrides(s, fleets=fleets, duration_days=2.0)
    calm = run_scenario(s, engines=2, workdir=tmp_path / "calm").result
    hit = _hit(s, tmp_path / "hit", "engine-kill:1@1d", engines=2)
    _same_run(calm, hit)
    assert all(p["readings"] > 0 for p in hit["engine_partitions"])


def test_sot_chaos_gives_the_verdict_and_refuses_a_fault_it_cannot_read(tmp_path: Path) -> None:
    out = tmp_path / "chaos"
    done = sot("chaos", str(FREEZERS), "--days", "2", "--fault", "engine-kill@1d", "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    said = done.stdout + done.stderr
    assert "PASS" in said and "identical to the undisturbed run" in said
    verdict = json.loads((out / "result.json").read_text())["chaos"]
    assert verdict["verdict"] == "pass" and verdict["lost"] == 0 and verdict["kpis_differing"] == []
    assert "taken in" in said and "never (lost)" in said  # the accounting table
    bad = sot("chaos", str(FREEZERS), "--fault", "meteor@1d", "--out", str(tmp_path / "bad"))
    words = " ".join(re.sub(r"[│╭╮╰╯─]", " ", bad.stdout + bad.stderr).split())
    assert bad.returncode == 2 and "expected KIND@TIME" in words
