"""Mosquitto configured for load tests: thousands of connections, no disk in the message path.

The harness broker (:func:`sim.harness.broker.start_broker`) snapshots its persistence file on every
change so that a killed broker loses nothing; that bounds QoS 1 traffic to a few thousand messages a
second by the disk's fsync (docs/benchmarks.md). A load test measures the ingestion path, not the
disk, so its broker keeps sessions in memory (``persistence false``), accepts as many connections as
its file-descriptor limit allows, sends small packets at once (``set_tcp_nodelay``), holds up to
``max_queued_messages`` per client instead of silently dropping past 1,000, and publishes ``$SYS``
counters every second for the reconciliation.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from sim.errors import BrokerError
from sim.harness.broker import BrokerUrl, mosquitto_available, probe

__all__ = ["LoadBroker", "mosquitto_conf", "start_load_broker"]

_DEBIAN_MOSQUITTO = "/usr/sbin/mosquitto"
_READY_TIMEOUT_S = 10.0
_STOP_GRACE_S = 5.0


def mosquitto_conf(port: int, workdir: Path, *, max_queued_messages: int = 1_000_000) -> str:
    """The Mosquitto 2.0 configuration of a load-test broker on 127.0.0.1:``port``."""
    user = pwd.getpwuid(os.geteuid()).pw_name
    return f"""\
# Written by loadtest.broker for one load test.
user {user}
listener {port} 127.0.0.1
allow_anonymous true
# Sessions live in memory: the disk stays out of the message path.
persistence false
# As many connections as the file-descriptor limit allows (each costs Mosquitto one descriptor).
max_connections -1
# The engine's persistent session may queue a backlog: hold it rather than drop past 1,000.
max_queued_messages {max_queued_messages}
max_queued_bytes 0
# The engine acknowledges in group commits of up to about 1,000 messages.
max_inflight_messages 1000
set_tcp_nodelay true
sys_interval 1
log_dest file {workdir}/mosquitto.log
log_type error
log_type warning
log_type notice
# Ten thousand devices connecting are not news.
connection_messages false
log_timestamp_format %Y-%m-%dT%H:%M:%S
"""


class LoadBroker:
    """A Mosquitto process started for one load test; a context manager that stops it."""

    def __init__(self, proc: subprocess.Popen[bytes], url: BrokerUrl, version: str, workdir: Path) -> None:
        self._proc, self.url, self.version, self.workdir = proc, url, version, workdir

    @property
    def pid(self) -> int:
        return self._proc.pid

    def alive(self) -> bool:
        return self._proc.poll() is None

    def log(self) -> str:
        try:
            return (self.workdir / "mosquitto.log").read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 15) -> str:
        return "\n".join(self.log().rstrip().splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM, SIGKILL after a grace period; always reaps."""
        if self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGTERM)
            try:
                self._proc.wait(_STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait()

    def __enter__(self) -> LoadBroker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_load_broker(workdir: Path, *, attempts: int = 3) -> LoadBroker:
    """Start Mosquitto on a free loopback port with :func:`mosquitto_conf`; return it once it answers MQTT."""
    executable = shutil.which("mosquitto") or (_DEBIAN_MOSQUITTO if mosquitto_available() else None)
    if executable is None:
        raise BrokerError(
            "a load test needs Mosquitto (apt-get install mosquitto), or an existing broker: --broker mqtt://host:port "
            "(the embedded amqtt broker is no load-test target: a few thousand messages a second at most)"
        )
    workdir.mkdir(parents=True, exist_ok=True)
    version = _version(executable)
    last = ""
    for _ in range(attempts):
        port = _free_port()
        conf = workdir / "mosquitto.conf"
        conf.write_text(mosquitto_conf(port, workdir))
        with open(workdir / "mosquitto.out", "ab") as output:
            proc = subprocess.Popen(
                [executable, "-c", str(conf)],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        broker = LoadBroker(proc, BrokerUrl("127.0.0.1", port), version, workdir)
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while broker.alive() and time.monotonic() < deadline:
            try:
                probe(broker.url, timeout_s=1.0)
            except BrokerError as exc:
                last = str(exc)
                time.sleep(0.05)
                continue
            if broker.alive() and _holds_port(broker.pid, port):
                return broker  # it answers, and it is ours that listens: not a stale broker's answer
            time.sleep(0.05)
        broker.stop()
        last = broker.log_tail() or last
    raise BrokerError(f"could not start Mosquitto for the load test in {attempts} attempts: {last}")


def _holds_port(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds a TCP socket listening on ``port`` (True where /proc cannot tell)."""
    try:
        rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return True
    listening = {f[9] for f in (r.split() for r in rows) if len(f) > 9 and f[3] == "0A" and int(f[1][-4:], 16) == port}
    mine = set()
    for fd in fds:
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                mine.add(target[8:-1])
    return bool(listening & mine)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _version(executable: str) -> str:
    try:
        done = subprocess.run([executable, "-h"], capture_output=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "mosquitto (unknown version)"
    match = re.search(rb"version\s+(\S+)", done.stdout or done.stderr)
    return f"mosquitto {match.group(1).decode()}" if match else "mosquitto (unknown version)"
