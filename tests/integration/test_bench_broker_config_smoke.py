"""The broker-configuration benchmark runs end to end at tiny sizes and shows what each configuration loses.

No timing is asserted here: figures belong to ``bench/broker_config.py`` and ``docs/benchmarks.md``.
What is asserted is what each configuration delivers, which does not depend on the machine: the
defaults drop a backlog past 1,000 silently (every PUBACK a success, the broker's ``$SYS`` count
saying so) and keep nothing over a restart; the harness's configuration keeps everything over a
clean stop. It needs Mosquitto (``apt-get install mosquitto``).
"""

from __future__ import annotations

import importlib
import json
import math
from pathlib import Path
from types import ModuleType

import pytest

from harness.broker import mosquitto_available

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
LIVE, BACKLOG, RESTART = 300, 1_500, 300
DEFAULT_QUEUE, DEFAULT_INFLIGHT = 1_000, 20  # Mosquitto's max_queued_messages and max_inflight_messages
CONFIGS = ("defaults", "no-loss (harness)", "snapshot every change")


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    if not mosquitto_available():
        pytest.fail("Mosquitto is not installed: apt-get install mosquitto", pytrace=False)
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    return importlib.import_module("broker_config")


def test_the_snapshot_configuration_is_the_harness_one_with_a_save_per_change(
    bench: ModuleType, tmp_path: Path
) -> None:
    harness = bench.CONFIGS["no-loss (harness)"]("127.0.0.1", 1883, tmp_path, 100_000).splitlines()
    snapshot = bench.snapshot_conf("127.0.0.1", 1883, tmp_path, 100_000).splitlines()
    changed = {(a, b) for a, b in zip(harness, snapshot, strict=True) if a != b}
    assert {b for _, b in changed} == {"autosave_interval 1", "autosave_on_changes true"}
    defaults = bench.defaults_conf("127.0.0.1", 1883, tmp_path, 100_000)
    options = {line.split()[0] for line in defaults.splitlines() if line and not line.startswith("#")}
    assert options == {"user", "listener", "allow_anonymous"}


def test_the_script_measures_each_configuration_and_what_it_loses(bench: ModuleType, tmp_path: Path) -> None:
    out = tmp_path / "broker_config.json"
    sizes = ["--messages", str(LIVE), "--backlog", str(BACKLOG), "--restart-backlog", str(RESTART)]
    assert bench.main([*sizes, "--snapshot-messages", str(LIVE), "--repeat", "1", "--json", str(out)]) == 0

    figures = json.loads(out.read_text())
    assert figures["baseline"] == "defaults"
    assert tuple(figures["configs"]) == CONFIGS
    assert len(figures["machine"]["load_average"]) == 3
    assert figures["machine"]["broker"].startswith("mosquitto")
    rounds = {name: config["rounds"] for name, config in figures["configs"].items()}
    assert all(len(r) == 1 for r in rounds.values())
    got = {name: r[0] for name, r in rounds.items()}
    for name, row in got.items():
        assert row["live"]["delivered"] == row["live"]["messages"] == LIVE, name
        assert row["backlog"]["messages"] == BACKLOG and row["backlog"]["session_present"], name
        assert row["backlog"]["duplicates"] == 0, name
        assert sum(row["backlog"]["puback_reason_codes"].values()) == BACKLOG, name
        assert row["backlog"]["puback_reason_codes"] == {"0": BACKLOG}, name  # a drop is no failed publish
        assert 0 <= row["sigkill"]["delivered"] <= RESTART, name

    defaults = got["defaults"]
    assert DEFAULT_QUEUE <= defaults["backlog"]["delivered"] <= DEFAULT_QUEUE + DEFAULT_INFLIGHT
    assert defaults["backlog"]["lost"] == BACKLOG - defaults["backlog"]["delivered"] > 0
    assert defaults["backlog"]["sys_dropped"] == defaults["backlog"]["lost"]  # the broker counts what it threw away
    for how in ("sigterm", "sigkill"):
        assert defaults[how]["delivered"] == 0 and not defaults[how]["session_present"], how

    for name in ("no-loss (harness)", "snapshot every change"):
        row = got[name]
        assert row["backlog"]["delivered"] == BACKLOG and row["backlog"]["lost"] == 0, name
        assert row["backlog"]["sys_dropped"] == 0, name
        assert row["sigterm"]["session_present"] and row["sigterm"]["delivered"] == RESTART, name

    assert set(figures["ratios"]) == set(CONFIGS[1:])
    for name, ratio in figures["ratios"].items():
        for key in ("live_throughput", "backlog_publish_time"):
            assert math.isfinite(ratio[key]) and ratio[key] > 0, (name, key)
        assert len(ratio["rounds"]) == 1
    summary = figures["configs"]["defaults"]["summary"]
    assert summary["backlog_lost"]["median"] == defaults["backlog"]["lost"]
    assert summary["live_messages_per_s"]["min"] > 0
