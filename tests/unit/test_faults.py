"""Fault schedules as users write them, and the proxy that cuts a client off its broker: it passes
bytes both ways, resets every connection when cut, refuses new ones until healed, then passes again.
(A plain TCP echo server stands in for the broker.)"""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator

import pytest

from harness.errors import HarnessError
from harness.faults import Fault, FaultProxy, parse_duration


def test_faults_read_as_written() -> None:
    assert Fault.parse("broker-kill@2d") == Fault("broker-kill", 172_800.0)
    assert Fault.parse("broker-kill@2d+5s") == Fault("broker-kill", 172_800.0, 5.0)
    assert Fault.parse("broker-restart@12h") == Fault("broker-restart", 43_200.0)
    assert Fault.parse("engine-kill@36h") == Fault("engine-kill", 129_600.0)
    assert Fault.parse("engine-kill:1@90m") == Fault("engine-kill", 5_400.0, partition=1)
    assert Fault.parse("partition:engine@3d+15s") == Fault("partition", 259_200.0, 15.0)
    assert Fault.parse("engine-pause@1d+5s") == Fault("engine-pause", 86_400.0, 5.0)
    assert Fault.parse("engine-pause:1@2h+3s") == Fault("engine-pause", 7_200.0, 3.0, partition=1)
    assert str(Fault.parse("partition:engine@90s+15s")) == "partition:engine@90s+15s"
    assert parse_duration("1.5h") == 5400.0


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("broker-kill", "expected KIND@TIME"),
        ("meteor@2d", "expected KIND@TIME"),
        ("broker-kill@2 days", "is not a duration"),
        ("partition:engine@3d", "needs how long it lasts"),
        ("engine-pause@3d", "needs how long it lasts"),
        ("engine-kill@1d+5s", "takes no duration"),
    ],
)
def test_bad_faults_say_what_is_expected(text: str, says: str) -> None:
    with pytest.raises(HarnessError, match=says):
        Fault.parse(text)


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


@pytest.fixture
def echo() -> Iterator[int]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _talk(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(data)
        got = b""
        while len(got) < len(data):
            chunk = conn.recv(65536)
            if not chunk:
                break
            got += chunk
        return got


def test_the_proxy_passes_cuts_refuses_and_heals(echo: int) -> None:
    with FaultProxy("127.0.0.1", echo) as proxy:
        payload = bytes(range(256)) * 1000
        assert _talk(proxy.port, payload) == payload

        held = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        held.sendall(b"ping")
        assert held.recv(4) == b"ping"
        proxy.cut()
        with pytest.raises((ConnectionResetError, ConnectionAbortedError, BrokenPipeError, OSError)):
            for _ in range(50):  # the reset may show on the first read or on a later write
                held.sendall(b"x")
                if held.recv(1) == b"":
                    raise ConnectionResetError("closed")
        held.close()
        with pytest.raises((ConnectionResetError, OSError)):
            _talk_or_raise(proxy.port)
        assert proxy.refused >= 1

        proxy.heal()
        assert _talk(proxy.port, b"again") == b"again"
        assert proxy.connections >= 3


def _talk_or_raise(port: int) -> None:
    got = _talk(port, b"hello")
    if got != b"hello":
        raise ConnectionResetError("refused")
