"""The world-throughput benchmark runs at a tiny size, and both designs publish every reading.

No timing is asserted here: figures belong to ``bench/world_throughput.py`` and ``docs/benchmarks.md``.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from types import ModuleType

import pytest

from contracts import Kind, Telemetry, Topics, decode, decode_batch
from sim import scenario_file
from sim.scenario import Scenario
from sim.world import World

ROOT = Path(__file__).resolve().parents[2]
FREEZERS = ROOT / "scenarios" / "freezers.yaml"
DEVICES, DAYS = 50, 1


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    return importlib.import_module("world_throughput")


@pytest.fixture
def tiny(bench: ModuleType) -> Scenario:
    scenario = scenario_file.with_overrides(scenario_file.load(FREEZERS), duration_days=DAYS)
    return bench.with_devices(scenario, DEVICES)


def test_both_designs_publish_one_reading_per_device_per_tick(bench: ModuleType, tiny: Scenario) -> None:
    ticks = int(tiny.duration_s // tiny.fleets[0].telemetry_interval_s)
    naive_world = importlib.import_module("naive_world")

    _, array_readings, array_messages, _ = bench.drive(World, tiny)
    _, naive_readings, naive_messages, _ = bench.drive(naive_world.NaiveWorld, tiny)

    assert array_readings == naive_readings == DEVICES * ticks
    assert naive_messages == DEVICES * ticks  # one message per reading
    assert array_messages == ticks  # 50 devices fit one gateway: one batch per tick


def test_what_each_design_publishes_decodes(bench: ModuleType, tiny: Scenario) -> None:
    naive_world = importlib.import_module("naive_world")
    topics = Topics()

    array = World(tiny)
    batches = array.advance(tiny.sync_interval_s)
    views = [decode_batch(payload) for topic, payload in batches if topics.parse(topic).kind is Kind.BATCH]
    assert sum(len(v) for v in views) == array.readings

    naive = naive_world.NaiveWorld(tiny)
    published = naive.advance(tiny.sync_interval_s)
    assert len(published) == naive.readings == array.readings
    for topic, payload in published[:DEVICES]:
        parsed = topics.parse(topic)
        message = decode(parsed.kind, payload, key=parsed.key)
        assert isinstance(message, Telemetry)
        assert set(message.values) == {s.name for s in tiny.fleets[0].sensors}


def test_resizing_keeps_the_rest_of_the_fleet(bench: ModuleType, tiny: Scenario) -> None:
    assert tiny.device_count == DEVICES
    assert tiny.fleets[0].failure_modes == scenario_file.load(FREEZERS).fleets[0].failure_modes
    with pytest.raises(ValueError, match="devices must be > 0"):
        bench.with_devices(tiny, 0)


def test_the_script_writes_its_figures(bench: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "figures.json"
    assert bench.main(["--devices", str(DEVICES), "--days", str(DAYS), "--repeat", "1", "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert [r["design"] for r in figures["runs"]] == ["array", "naive"]
    assert figures["runs"][0]["readings"] == figures["runs"][1]["readings"]
    assert figures["machine"]["cpu_count"] is not None
    assert "ratio array/naive" in capsys.readouterr().out
