"""The engine-ingest benchmark's in-process part runs at a tiny size, and both paths handle the same readings.

No timing is asserted here: figures belong to ``bench/engine_ingest.py`` and ``docs/benchmarks.md``.
The broker part needs Mosquitto and subprocesses; only its workload and its broker variant are checked.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from types import ModuleType

import pytest

from contracts import Kind, Telemetry, Topics, decode, decode_batch
from harness import broker

ROOT = Path(__file__).resolve().parents[2]
DEVICES, TICKS, BATCH = 200, 5, 64  # 5 ticks: the one-hour persistence rule fires too; 64 leaves a short batch


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    return importlib.import_module("engine_ingest")


def test_columnar_and_per_message_paths_handle_the_same_readings(bench: ModuleType) -> None:
    readings = bench.make_readings(DEVICES, TICKS)
    measures = {m.name: m for m in bench.measure_in_process(readings, BATCH, 1, bench.bench_config())}

    assert set(measures) == {"decode", "twins", "columnar", "per-message"}
    assert {m.count for m in measures.values()} == {DEVICES * TICKS}
    columnar, single = measures["columnar"], measures["per-message"]
    assert columnar.counts == single.counts
    assert columnar.counts["readings"] == DEVICES * TICKS
    assert columnar.counts["alerts"] == 2 * DEVICES // 100  # one warm cabinet and one long duty cycle in 100
    assert measures["twins"].counts["raised"] == columnar.counts["alerts"]


def test_batches_and_single_messages_carry_the_same_readings(bench: ModuleType) -> None:
    readings = bench.make_readings(DEVICES, TICKS)
    views = [decode_batch(p, key=g) for g, p in bench.batch_payloads(readings, BATCH)]
    singles = [decode(Kind.TELEMETRY, p, key=d) for d, p in bench.telemetry_payloads(readings)]

    assert sum(len(v) for v in views) == len(singles) == DEVICES * TICKS
    first = singles[0]
    assert isinstance(first, Telemetry)
    assert first.values == {k: float(v[0]) for k, v in views[0].values.items()}


def test_the_broker_workload_names_each_reading_once(bench: ModuleType) -> None:
    topics = Topics("bench/smoke")
    messages = bench.broker_workload(95, 10)
    keys = set()
    for device, payload in messages:
        message = decode(topics.parse(topics.telemetry(device)).kind, payload, key=device)
        assert isinstance(message, Telemetry)
        keys.add((message.device_id, message.seq))
    assert len(messages) == len(keys) == 95


def test_the_default_autosave_variant_changes_only_the_autosave(bench: ModuleType, tmp_path: Path) -> None:
    project = broker._mosquitto_conf("127.0.0.1", 1883, tmp_path, 1000)
    with bench._mosquitto_default_autosave():
        variant = broker._mosquitto_conf("127.0.0.1", 1883, tmp_path, 1000)
    assert broker._mosquitto_conf("127.0.0.1", 1883, tmp_path, 1000) == project  # restored

    changed = set(project.splitlines()) ^ set(variant.splitlines())
    assert all(line.startswith("autosave_") for line in changed)  # whatever the project's autosave is
    assert {"autosave_interval 1800", "autosave_on_changes false"} <= set(variant.splitlines())


def test_the_script_writes_its_figures(bench: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "figures.json"
    argv = [
        "--skip-broker",
        "--devices",
        "100",
        "--ticks",
        "5",
        "--batch",
        "30",
        "--repeat",
        "1",
        "--storage-repeat",
        "1",
    ]
    argv += ["--json", str(out)]
    assert bench.main(argv) == 0
    figures = json.loads(out.read_text())
    assert [m["name"] for m in figures["measures"]] == [
        "decode",
        "twins",
        "columnar",
        "service",
        "service, sqlalchemy storage",
        "service, hand-written storage",
        "storage writes, sqlalchemy",
        "storage writes, hand-written",
        "per-message",
    ]
    assert set(figures["ratios"]) >= {
        "service sqlalchemy/hand-written storage",
        "storage writes sqlalchemy/hand-written",
    }
    service = next(m for m in figures["measures"] if m["name"] == "service")
    assert service["counts"]["readings"] == 100 * 5 and service["counts"]["acknowledged"] == 4 * 5 + 5
    assert figures["broker_messages"] == {}
    assert figures["machine"]["cpu_count"] is not None
    assert "ratio columnar/per-message" in capsys.readouterr().out
