"""An external broker's MQTT version: `sot run --broker` speaks MQTT 5 where the broker does and
3.1.1 where it does not (amqtt, started apart as `sot broker --kind amqtt` would), or what
``--protocol`` says; a broker refusing the version asked for is a one-line error saying what to try."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.broker import speaks, start_broker
from harness.errors import BrokerError
from harness.runner import run_scenario
from sim.scenario_file import load, with_overrides
from tests.integration.cli import FREEZERS

pytestmark = pytest.mark.integration


def test_a_run_on_an_external_amqtt_broker_finds_it_speaks_3_1_1_and_loses_nothing(tmp_path: Path) -> None:
    freezers = with_overrides(load(FREEZERS), duration_days=0.5)
    with start_broker("amqtt", workdir=tmp_path / "broker") as broker:
        assert speaks(broker.url, "auto") == 4
        with pytest.raises(BrokerError, match=r"refused an MQTT 5 connection .* try --protocol 3\.1\.1"):
            speaks(broker.url, "5")
        result = run_scenario(freezers, workdir=tmp_path / "run", broker_url=broker.url).result
    assert result["manifest"]["mqtt_protocol"] == "3.1.1"
    assert result["messages"]["lost"] == 0 and result["messages"]["ingested"] == result["messages"]["published"]


def test_mosquitto_is_spoken_to_in_mqtt_5_unless_told_otherwise(tmp_path: Path) -> None:
    with start_broker("mosquitto", workdir=tmp_path / "broker") as broker:
        assert speaks(broker.url, "auto") == 5
        assert speaks(broker.url, "5") == 5
        assert speaks(broker.url, "3.1.1") == 4
