"""A real Mosquitto with the generated secure deployment: strangers, impostors and forgers are refused.

Needs Mosquitto (CI installs it) and fails, rather than skips, without it.
"""

from __future__ import annotations

import json
import queue
import ssl
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from harness.broker import BrokerUrl, RunningBroker, probe
from harness.errors import BrokerError
from harness.mqtt_transport import secure
from harness.secure_broker import Deployment, check_config
from tests.integration.cli import FREEZERS, sot

pytestmark = pytest.mark.integration

WAIT_S = 5.0
PREFIX = "sot/test-secure"  # the topic prefix of this module's `deployed` broker (conftest.py)


class Client:
    """A paho MQTT 5 client on its own network thread that records its CONNACK, PUBACKs and messages."""

    def __init__(self, url: BrokerUrl, client_id: str = "") -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        secure(self.client, url)
        self.connack: queue.Queue[ReasonCode] = queue.Queue()
        self.pubacks: queue.Queue[tuple[int, ReasonCode]] = queue.Queue()
        self.subacks: queue.Queue[list[ReasonCode]] = queue.Queue()
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.disconnects: queue.Queue[ReasonCode] = queue.Queue()
        self.client.on_connect = lambda c, u, flags, rc, props: self.connack.put(rc)
        self.client.on_publish = lambda c, u, mid, rc, props: self.pubacks.put((mid, rc))
        self.client.on_subscribe = lambda c, u, mid, rcs, props: self.subacks.put(rcs)
        self.client.on_message = lambda c, u, m: self.messages.put((m.topic, bytes(m.payload)))
        self.client.on_disconnect = lambda c, u, flags, rc, props: self.disconnects.put(rc)
        self.url = url

    def connect(self) -> ReasonCode:
        self.client.connect(self.url.host, self.url.port, keepalive=10)
        self.client.loop_start()
        return self.connack.get(timeout=WAIT_S)

    def subscribe(self, topic: str) -> list[ReasonCode]:
        self.client.subscribe(topic, qos=1)
        return self.subacks.get(timeout=WAIT_S)

    def publish(self, topic: str, payload: bytes = b"{}") -> ReasonCode:
        info = self.client.publish(topic, payload, qos=1)
        mid, rc = self.pubacks.get(timeout=WAIT_S)
        assert mid == info.mid
        return rc

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def connected(made: list[Client], url: BrokerUrl, client_id: str = "") -> Client:
    c = Client(url, client_id)
    made.append(c)
    rc = c.connect()
    assert not rc.is_failure, rc
    return c


def test_the_generated_configuration_passes_the_lint(deployed: tuple[RunningBroker, Deployment]) -> None:
    _, deployment = deployed
    assert check_config(deployment.conf) == []
    assert deployment.password_file("engine").stat().st_mode & 0o077 == 0


def test_an_anonymous_client_is_refused(deployed: tuple[RunningBroker, Deployment], clients: list[Client]) -> None:
    broker, _ = deployed
    anonymous = Client(BrokerUrl(broker.url.host, broker.url.port))
    clients.append(anonymous)
    assert anonymous.connect().getName() == "Not authorized"
    with pytest.raises(BrokerError, match="refused"):
        probe(BrokerUrl(broker.url.host, broker.url.port))


def test_the_engine_id_without_the_engine_password_is_refused(
    deployed: tuple[RunningBroker, Deployment], clients: list[Client]
) -> None:
    """An impostor with the engine's user name (and so its client id) but a wrong password, or none, is
    refused at CONNACK, and the engine's connection stays up."""
    _, deployment = deployed
    engine = connected(clients, deployment.url("engine"), client_id="engine")
    for password in ("guess", None):
        impostor = Client(BrokerUrl(deployment.host, deployment.port, username="engine", password=password), "engine")
        clients.append(impostor)
        assert impostor.connect().getName() in ("Not authorized", "Bad user name or password")
    time.sleep(0.3)
    assert engine.disconnects.empty() and engine.client.is_connected()


def test_a_device_publishes_only_its_own_topics(
    deployed: tuple[RunningBroker, Deployment], clients: list[Client]
) -> None:
    """Device A's publish to B's telemetry gets PUBACK 0x87 and reaches no one; its own gets through."""
    _, deployment = deployed
    engine = connected(clients, deployment.url("engine"))
    assert all(not rc.is_failure for rc in engine.subscribe(f"{PREFIX}/dev/+/telemetry"))
    a = connected(clients, deployment.url("d-a"))
    forged = a.publish(f"{PREFIX}/dev/d-b/telemetry", b"forged")
    assert (forged.value, forged.getName()) == (0x87, "Not authorized")
    assert not a.publish(f"{PREFIX}/dev/d-a/telemetry", b"own").is_failure
    assert not a.publish(f"{PREFIX}/s/3/dev/d-a/telemetry", b"own, sharded").is_failure
    assert a.publish(f"{PREFIX}/engine/workorder", b"forged order").value == 0x87
    assert a.publish(f"{PREFIX}/clock/ack", b"forged ack").value == 0x87
    assert a.publish(f"{PREFIX}/field/wo-1/status", b"forged status").value == 0x87
    assert engine.messages.get(timeout=WAIT_S) == (f"{PREFIX}/dev/d-a/telemetry", b"own")
    time.sleep(0.3)  # anything forged would have arrived before the own message's successor
    assert engine.messages.empty()


def test_a_device_reads_only_its_own_commands(
    deployed: tuple[RunningBroker, Deployment], clients: list[Client]
) -> None:
    _, deployment = deployed
    a = connected(clients, deployment.url("d-a"))
    a.subscribe(f"{PREFIX}/#")  # allowed to ask; the broker delivers only what the ACL lets it read
    engine = connected(clients, deployment.url("engine"))
    assert not engine.publish(f"{PREFIX}/dev/d-b/cmd", b"for b").is_failure
    assert not engine.publish(f"{PREFIX}/engine/notify", b"for the world").is_failure
    assert not engine.publish(f"{PREFIX}/dev/d-a/cmd", b"for a").is_failure
    assert a.messages.get(timeout=WAIT_S) == (f"{PREFIX}/dev/d-a/cmd", b"for a")
    assert a.messages.empty()


def test_a_technician_sends_field_statuses_only(
    deployed: tuple[RunningBroker, Deployment], clients: list[Client]
) -> None:
    _, deployment = deployed
    tech = connected(clients, deployment.url("tech-1"))
    assert not tech.publish(f"{PREFIX}/field/wo-1/status").is_failure
    assert tech.publish(f"{PREFIX}/dev/d-a/telemetry").value == 0x87


def test_only_the_harness_and_the_engine_drive_the_clock(
    deployed: tuple[RunningBroker, Deployment], clients: list[Client]
) -> None:
    _, deployment = deployed
    harness = connected(clients, deployment.url("harness"))
    assert not harness.publish(f"{PREFIX}/clock").is_failure
    assert harness.publish(f"{PREFIX}/clock/ack").value == 0x87
    assert harness.publish(f"{PREFIX}/engine/workorder").value == 0x87
    engine = connected(clients, deployment.url("engine"))
    assert not engine.publish(f"{PREFIX}/clock/ack").is_failure
    assert engine.publish(f"{PREFIX}/clock").value == 0x87


def test_another_identity_cannot_take_over_the_engine_session(
    deployed: tuple[RunningBroker, Deployment], clients: list[Client]
) -> None:
    """A device connecting with the engine's client id gets its own user name as client id instead."""
    broker, deployment = deployed
    engine = connected(clients, deployment.url("engine"), client_id="engine")
    connected(clients, deployment.url("d-b"), client_id="engine")
    time.sleep(0.3)
    assert engine.disconnects.empty() and engine.client.is_connected()
    log = broker.log_path.read_text()
    assert "as d-b (" in log  # Mosquitto names the client by its user name, not the client id it asked for


def test_tls_works_with_the_generated_ca_and_fails_without_it(
    deployed: tuple[RunningBroker, Deployment], clients: list[Client]
) -> None:
    _, deployment = deployed
    over_tls = deployment.url("harness", tls=True)
    probe(over_tls)
    connected(clients, over_tls)
    stranger = Client(BrokerUrl(over_tls.host, over_tls.port, username="harness", password=over_tls.password, tls=True))
    with pytest.raises(ssl.SSLCertVerificationError):
        stranger.client.connect(over_tls.host, over_tls.port)
    with pytest.raises(BrokerError, match="TLS"):
        probe(BrokerUrl(over_tls.host, over_tls.port, tls=True))


def test_sot_broker_check_fails_on_an_open_configuration(tmp_path: Path) -> None:
    conf = tmp_path / "open.conf"
    conf.write_text("listener 1883\nallow_anonymous true\nautosave_on_changes true\n")
    done = sot("broker", "--check", str(conf), timeout=60)
    assert done.returncode == 1
    problems = done.stdout.splitlines()
    assert any("allow_anonymous true" in p for p in problems)
    assert any("autosave_on_changes" in p for p in problems)
    assert any("plaintext listener on every interface" in p for p in problems)


@pytest.mark.slow
def test_sot_run_secure_finishes_with_nothing_lost(tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = sot("run", str(FREEZERS), "--days", "1", "--secure", "--quiet", "--out", str(out), timeout=300)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads((out / "result.json").read_text())
    assert result["messages"]["lost"] == 0 and result["messages"]["ingested"] > 0
    assert result["manifest"]["broker"].endswith("(secure)")
    log = (out / "broker" / "mosquitto.log").read_text()
    assert "u'engine'" in log and "u'harness'" in log
    assert check_config(out / "broker" / "mosquitto.conf") == []
