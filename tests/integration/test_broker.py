"""The harness broker: start, round-trip, stop, ownership of the port, restart with persistence.

These tests need Mosquitto (CI installs it with apt) and fail, rather than skip, without it.
"""

from __future__ import annotations

import queue
import secrets
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from harness.broker import (
    BrokerUrl,
    RunningBroker,
    mosquitto_available,
    probe,
    start_broker,
)
from harness.errors import BrokerError, HarnessError

pytestmark = pytest.mark.integration

WAIT_S = 5.0
KINDS = ["mosquitto", "amqtt"]


class Client:
    """A paho MQTT 3.1.1 client on its own network thread, with bounded waits."""

    def __init__(self, url: BrokerUrl, client_id: str | None = None, *, clean: bool = True) -> None:
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.session_present: bool | None = None
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self.paho = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"sot-test-{secrets.token_hex(4)}",
            clean_session=clean,
            protocol=mqtt.MQTTv311,
        )
        self.paho.on_connect = self._on_connect
        self.paho.on_subscribe = lambda *_: self._subscribed.set()
        self.paho.on_message = lambda _c, _u, message: self.messages.put(message)
        self.paho.connect(url.host, url.port, keepalive=10)
        self.paho.loop_start()
        assert self._connected.wait(WAIT_S), f"no CONNACK from {url}"

    def _on_connect(self, _client: Any, _userdata: Any, flags: Any, reason_code: Any, _props: Any) -> None:
        assert not reason_code.is_failure, reason_code
        self.session_present = flags.session_present
        self._connected.set()

    def subscribe(self, topic: str) -> None:
        self._subscribed.clear()
        rc, _mid = self.paho.subscribe(topic, qos=1)
        assert rc == mqtt.MQTT_ERR_SUCCESS
        assert self._subscribed.wait(WAIT_S), f"no SUBACK for {topic}"

    def publish(self, topic: str, payload: bytes) -> None:
        info = self.paho.publish(topic, payload, qos=1)
        info.wait_for_publish(WAIT_S)
        assert info.is_published(), f"no PUBACK for {topic}"

    def receive(self) -> mqtt.MQTTMessage:
        return self.messages.get(timeout=WAIT_S)

    def close(self) -> None:
        self.paho.disconnect()
        self.paho.loop_stop()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


@pytest.fixture(params=KINDS)
def broker(request: pytest.FixtureRequest) -> Iterator[RunningBroker]:
    with start_broker(request.param) as running:
        yield running


@pytest.fixture
def topic() -> str:
    return f"sot-test/{secrets.token_hex(6)}/reading"


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            sock.listen(1)
        except OSError:
            return False
    return True


def processes_mentioning(*needles: str) -> list[int]:
    """Return the pids whose command line contains every needle."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if all(needle in cmdline for needle in needles):
            found.append(int(proc.name))
    return found


def unused_port(family: socket.AddressFamily = socket.AF_INET, host: str = "127.0.0.1") -> int:
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
    return port


# --- round trip and stop ------------------------------------------------------------------------


def test_mosquitto_is_installed_where_these_tests_run() -> None:
    assert mosquitto_available(), "install Mosquitto (apt-get install mosquitto): these tests need it"


def test_a_started_broker_carries_a_qos1_message_and_stop_leaves_nothing_behind(
    broker: RunningBroker, topic: str
) -> None:
    assert broker.alive()
    assert broker.version.startswith(f"{broker.kind} ")
    assert broker.protocol == (5 if broker.kind == "mosquitto" else 4)
    assert str(broker.url) == f"mqtt://127.0.0.1:{broker.url.port}"
    probe(broker.url)

    with Client(broker.url) as subscriber, Client(broker.url) as publisher:
        subscriber.subscribe(topic)
        publisher.publish(topic, b'{"seq": 1}')
        message = subscriber.receive()
    assert (message.topic, message.payload, message.qos) == (topic, b'{"seq": 1}', 1)

    pid, port, workdir = broker.pid, broker.url.port, broker.workdir
    broker.stop()
    assert not broker.alive()
    assert not Path(f"/proc/{pid}").exists()
    assert port_is_free("127.0.0.1", port)
    assert not workdir.exists()  # start_broker created it, so stop() removes it
    broker.stop()  # idempotent


def test_auto_picks_mosquitto_when_installed() -> None:
    with start_broker() as running:
        assert running.kind == "mosquitto"


def test_a_caller_owned_workdir_is_kept_and_holds_the_config_and_log(tmp_path: Path) -> None:
    with start_broker("mosquitto", workdir=tmp_path, max_queued_messages=1234) as running:
        conf = (tmp_path / "mosquitto.conf").read_text()
        assert f"listener {running.url.port} 127.0.0.1" in conf
        assert "max_queued_messages 1234" in conf
        assert running.log_path == tmp_path / "mosquitto.log"
    assert "mosquitto version 2" in running.log_path.read_text()


# --- URLs and probing -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("mqtt://127.0.0.1:1883", "127.0.0.1", 1883),
        ("mqtt://localhost", "localhost", 1883),
        ("mqtt://broker.example:8883/", "broker.example", 8883),
        ("mqtt://[::1]:1884", "::1", 1884),
    ],
)
def test_broker_url_parses_host_and_port(text: str, host: str, port: int) -> None:
    url = BrokerUrl.parse(text)
    assert (url.host, url.port) == (host, port)
    assert BrokerUrl.parse(str(url)) == url


@pytest.mark.parametrize(
    "text",
    [
        "127.0.0.1:1883",
        "tcp://127.0.0.1:1883",
        "mqtt://",
        "mqtt://host:notaport",
        "mqtt://host:0",
        "mqtt://host:70000",
        "mqtt://host:1883/topic",
        "",
    ],
)
def test_broker_url_rejects_bad_urls_with_a_broker_error(text: str) -> None:
    with pytest.raises(BrokerError, match="mqtt://host"):
        BrokerUrl.parse(text)


def test_broker_error_is_a_runtime_error() -> None:
    assert issubclass(BrokerError, HarnessError)
    assert issubclass(BrokerError, RuntimeError)


def closed_port() -> int:
    """A port nothing listens on, below the ephemeral range: connecting to a free ephemeral port can
    meet itself (a TCP self-connect when the kernel picks that very port as the source), which
    answers instead of refusing."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for port in range(low - 1, 1024, -7):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port below the ephemeral range")


def test_probe_of_a_closed_port_names_the_url_and_the_fix() -> None:
    url = BrokerUrl("127.0.0.1", closed_port())
    with pytest.raises(BrokerError) as caught:
        probe(url, timeout_s=2.0)
    assert str(url) in str(caught.value)
    assert "`sot broker`" in str(caught.value)
    assert "refused" in str(caught.value)


def test_probe_of_a_listener_that_never_answers_mqtt_fails_within_its_timeout() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        url = BrokerUrl("127.0.0.1", silent.getsockname()[1])
        with pytest.raises(BrokerError, match="no CONNACK"):
            probe(url, timeout_s=0.5)


# --- ownership of the port ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_a_port_held_by_another_process_is_refused_and_nothing_is_left_running(kind: str, tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen(1)
        port = squatter.getsockname()[1]
        with pytest.raises(BrokerError, match=str(port)):
            start_broker(kind, port=port, workdir=tmp_path)  # type: ignore[arg-type]
    needles = (str(tmp_path),) if kind == "mosquitto" else ("harness.amqtt_broker", f"--port {port} ")
    assert processes_mentioning(*needles) == []


def test_a_stale_listener_on_the_ipv6_loopback_is_caught_by_the_ownership_check(tmp_path: Path) -> None:
    # A client connecting to "localhost" may reach ::1 first: a listener there takes its traffic.
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as squatter:
        squatter.bind(("::1", 0))
        squatter.listen(1)
        port = squatter.getsockname()[1]
        with pytest.raises(BrokerError, match="held by another process"):
            start_broker("mosquitto", port=port, workdir=tmp_path)
    assert processes_mentioning(str(tmp_path)) == []


def test_a_missing_broker_kind_or_a_public_address_is_refused() -> None:
    with pytest.raises(ValueError, match="loopback"):
        start_broker("amqtt", host="0.0.0.0")
    with pytest.raises(ValueError, match="kind"):
        start_broker("hivemq")  # type: ignore[arg-type]


# --- restart and persistence ----------------------------------------------------------------------


def queue_one_message_for_an_offline_subscriber(running: RunningBroker, topic: str, client_id: str) -> None:
    with Client(running.url, client_id, clean=False) as subscriber:
        subscriber.subscribe(topic)
    with Client(running.url) as publisher:
        publisher.publish(topic, b"queued while offline")


def assert_the_subscriber_gets_it_back(running: RunningBroker, topic: str, client_id: str) -> None:
    with Client(running.url, client_id, clean=False) as subscriber:
        assert subscriber.session_present is True
        message = subscriber.receive()
    assert (message.topic, message.payload, message.qos) == (topic, b"queued while offline", 1)


def test_stop_then_restart_keeps_a_persistent_sessions_queued_message(tmp_path: Path, topic: str) -> None:
    client_id = f"sot-test-engine-{secrets.token_hex(4)}"
    with start_broker("mosquitto", workdir=tmp_path) as running:
        port, old_pid = running.url.port, running.pid
        queue_one_message_for_an_offline_subscriber(running, topic, client_id)

        running.stop()  # SIGTERM: Mosquitto writes its persistence file on the way out
        assert (tmp_path / "mosquitto.db").exists()
        running.restart()

        assert running.alive()
        assert (running.url.port, running.pid != old_pid) == (port, True)
        assert_the_subscriber_gets_it_back(running, topic, client_id)


def test_restart_of_a_running_broker_keeps_the_queue_in_its_own_workdir(topic: str) -> None:
    client_id = f"sot-test-engine-{secrets.token_hex(4)}"
    with start_broker("mosquitto") as running:
        queue_one_message_for_an_offline_subscriber(running, topic, client_id)
        running.restart()
        assert_the_subscriber_gets_it_back(running, topic, client_id)


def test_kill_then_restart_brings_the_broker_back_on_its_port() -> None:
    with start_broker("mosquitto") as running:
        port, old_pid = running.url.port, running.pid
        running.kill()
        assert not running.alive()
        assert not Path(f"/proc/{old_pid}").exists()
        running.restart()
        assert running.alive()
        assert running.url.port == port
        probe(running.url)


def test_restart_after_stop_refuses_when_the_workdir_was_removed() -> None:
    running = start_broker("amqtt")
    running.stop()
    with pytest.raises(BrokerError, match="workdir"):
        running.restart()


# --- picking a port, and the broker nobody stopped ------------------------------------------------


def test_a_picked_port_lost_to_a_race_is_retried_up_to_three_times(monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.broker as broker_module

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen(1)
        taken = squatter.getsockname()[1]
        free = unused_port()
        picks = iter([taken, taken, free])
        monkeypatch.setattr(broker_module, "_free_port", lambda _host: next(picks))
        with start_broker("mosquitto") as running:
            assert running.url.port == free

        monkeypatch.setattr(broker_module, "_free_port", lambda _host: taken)
        with pytest.raises(BrokerError, match="held by another process"):
            start_broker("mosquitto")


def test_a_broker_nobody_stopped_is_stopped_at_interpreter_exit() -> None:
    import subprocess
    import sys

    script = "from harness.broker import start_broker; b = start_broker(); print(b.pid, b.workdir)"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=True)
    pid, workdir = done.stdout.split()
    assert not Path(f"/proc/{pid}").exists()
    assert not Path(workdir).exists()
