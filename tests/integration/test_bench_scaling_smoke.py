"""The scaling benchmark runs end to end at tiny sizes, with one engine and with two, and writes every figure.

No timing is asserted here: figures belong to ``bench/scaling.py`` and ``docs/benchmarks.md``.
It needs Mosquitto and its C clients (``apt-get install mosquitto mosquitto-clients``).
"""

from __future__ import annotations

import importlib
import json
import math
import shutil
from pathlib import Path
from types import ModuleType

import pytest

from sim import scenario_file

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
FREEZERS = ROOT / "scenarios" / "freezers.yaml"
SIZES, DAYS = (100, 300), 1
READINGS_A_DAY = 96  # a freezer reads every 900 s
ROLES = ("world", "engine", "broker")


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    return importlib.import_module("scaling")


def test_horizons_shrink_with_the_fleet_in_whole_sync_steps(bench: ModuleType) -> None:
    freezers = scenario_file.load(FREEZERS)
    days = [bench.horizon_days(freezers, n, 8_000_000) for n in (1_000, 10_000, 100_000, 1_000_000)]
    assert [round(d * 24) for d in days] == [2000, 200, 20, 2]
    assert bench.horizon_days(freezers, 10**7, 8_000_000) == 1 / 24  # never less than one step
    small = bench.resized(freezers, 300, 0.5)
    assert (small.device_count, small.duration_days) == (300, 0.5)
    assert small.fleets[0].failure_modes == freezers.fleets[0].failure_modes


def test_the_script_writes_every_figure_and_a_png(bench: ModuleType, tmp_path: Path) -> None:
    for client in ("mosquitto_pub", "mosquitto_sub"):
        if shutil.which(client) is None:
            pytest.fail(f"{client} is not installed: apt-get install mosquitto-clients", pytrace=False)
    out, png = tmp_path / "scaling.json", tmp_path / "scaling.png"
    argv = ["--sizes", ",".join(map(str, SIZES)), "--days", str(DAYS), "--ceiling-repeat", "1"]
    assert bench.main([*argv, "--json", str(out), "--plot", str(png)]) == 0

    figures = json.loads(out.read_text())
    assert len(figures["machine"]["load_average"]) == 3
    assert [r["devices"] for r in figures["sizes"]] == list(SIZES)
    for r in figures["sizes"]:
        assert r["lost"] == 0
        assert r["readings"] == r["devices"] * DAYS * READINGS_A_DAY
        assert r["ingested"] == r["published"] > 0
        assert r["sync_steps"] == DAYS * 24
        for key in ("wall_s", "readings_per_s", "us_per_reading", "linearity", "ceiling_share", "process_s"):
            assert math.isfinite(r[key]) and r[key] > 0, key
        assert set(r["peak_rss_bytes"]) == set(ROLES) and min(r["peak_rss_bytes"].values()) > 0
        assert set(r["rss_bytes_per_device"]) == {*ROLES, "all"}
        assert all(math.isfinite(v) for v in r["rss_bytes_per_device"].values())
        assert len(r["load_average"]) == 3
        assert r["broker"].startswith("mosquitto")
    assert figures["sizes"][0]["linearity"] == 1.0
    assert figures["empty"]["devices"] == 1 and min(figures["empty"]["peak_rss_bytes"].values()) > 0

    ceiling = figures["ceiling"]
    assert ceiling["devices"] == SIZES[-1]
    assert ceiling["readings"] == figures["sizes"][-1]["readings"]
    assert 0 < ceiling["messages"] <= figures["sizes"][-1]["published"]  # less the answers to engine commands
    for key in ("seconds", "messages_per_s", "readings_per_s", "mb_per_s"):
        assert math.isfinite(ceiling[key]) and ceiling[key] > 0, key
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_engine_counts_run_interleaved_with_partitions_and_the_ratio_to_one(bench: ModuleType, tmp_path: Path) -> None:
    out, png = tmp_path / "partitions.json", tmp_path / "partitions.png"
    argv = ["--sizes", "300", "--days", str(DAYS), "--engines", "1,2", "--repeat", "2", "--ceiling-repeat", "0"]
    assert bench.main([*argv, "--json", str(out), "--plot-partitions", str(png)]) == 0

    figures = json.loads(out.read_text())
    assert figures["engines"] == [1, 2] and figures["repeat"] == 2
    assert [e["engines"] for e in figures["empties"]] == [1, 2]
    assert [(r["engines"], r["repeat"]) for r in figures["sizes"]] == [(1, 0), (2, 0), (1, 1), (2, 1)]
    for r in figures["sizes"]:
        assert r["lost"] == 0 and r["readings"] == 300 * DAYS * READINGS_A_DAY
        assert len(r["engine_peak_rss_bytes"]) == r["engines"] and min(r["engine_peak_rss_bytes"]) > 0
        assert r["peak_rss_bytes"]["engine"] == sum(r["engine_peak_rss_bytes"])
        engines = ["engine"] if r["engines"] == 1 else ["engine-p0", "engine-p1"]
        assert list(r["cpu_s"]) == ["world", *engines, "broker"]
        assert all(math.isfinite(s) and s >= 0 for s in r["cpu_s"].values())
        assert math.isfinite(r["vs_one_engine"]) and r["vs_one_engine"] > 0
        if r["engines"] == 1:
            assert r["vs_one_engine"] == 1.0 and r["partitions"] == []
        else:
            assert [p["partition"] for p in r["partitions"]] == [0, 1]
            assert sum(p["readings"] for p in r["partitions"]) == r["readings"]
            assert sum(p["msg_ingested"] for p in r["partitions"]) == r["ingested"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
