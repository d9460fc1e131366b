"""Start, check and stop an MQTT broker process for the harness and the tests.

Mosquitto is the broker of record (MQTT 5, persistence, ``$SYS`` counters); amqtt is the
fallback when Mosquitto is not installed (MQTT 3.1.1 only, no persistence) and always runs in
its own process (:mod:`harness.amqtt_broker`). A started broker is ready only once the
process we started owns the listening socket *and* answers an MQTT CONNECT: a stale broker on
the same port would otherwise take the traffic silently.

This module manages processes only; no message passes through it. paho is imported lazily, by
:func:`probe`, so importing this module loads no MQTT library.
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from types import TracebackType
from typing import IO, Literal
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from harness.errors import BrokerError

__all__ = [
    "DEFAULT_PORT",
    "PASSWORD_ENV",
    "TLS_PORT",
    "BrokerKind",
    "BrokerUrl",
    "MosquittoConf",
    "RunningBroker",
    "mosquitto_available",
    "probe",
    "start_broker",
]

BrokerKind = Literal["mosquitto", "amqtt"]
MosquittoConf = Callable[[str, int, Path, int], str]
"""Renders a Mosquitto configuration from (host, port, workdir, max_queued_messages)."""

DEFAULT_PORT = 1883
TLS_PORT = 8883
PASSWORD_ENV = "SOT_MQTT_PASSWORD"
_DEBIAN_MOSQUITTO = Path("/usr/sbin/mosquitto")
_READY_TIMEOUT_S = 10.0
_POLL_S = 0.05
_STOP_GRACE_S = 5.0
_REAP_TIMEOUT_S = 10.0
_PORT_ATTEMPTS = 3
_LOG_TAIL_LINES = 15
_TCP_LISTEN = "0A"


@dataclass(frozen=True)
class BrokerUrl:
    """Where a broker listens and how to log in: ``mqtt[s]://[user[:password]@]host[:port][?ca=&cert=&key=]``.

    ``mqtts`` is MQTT over TLS (port 8883 by default), verified against ``ca`` (the system's CAs
    without it), with ``cert``/``key`` as the client certificate when the broker asks for one. The
    password is never printed: ``str()`` leaves it out.
    """

    host: str
    port: int = DEFAULT_PORT
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None

    @classmethod
    def parse(cls, text: str, environ: Mapping[str, str] | None = None) -> BrokerUrl:
        """Parse a broker URL, or raise :class:`BrokerError`.

        A user without a password in the URL takes it from ``SOT_MQTT_PASSWORD`` (``environ``,
        the process environment by default), so that it need not be on a command line."""
        hint = (
            "expected mqtt://host[:port], mqtt://user[:password]@host[:port] or "
            "mqtts://host[:port][?ca=FILE&cert=FILE&key=FILE], e.g. mqtt://127.0.0.1:1883"
        )
        parts = urlsplit(text.strip())
        if parts.scheme not in ("mqtt", "mqtts"):
            raise BrokerError(f"bad broker URL {text!r}: {hint} (the schemes are mqtt:// and mqtts://)")
        if parts.path not in ("", "/") or parts.fragment:
            raise BrokerError(f"bad broker URL {text!r}: unexpected path or fragment; {hint}")
        try:
            host, port = parts.hostname, parts.port
        except ValueError as exc:
            raise BrokerError(f"bad broker URL {text!r}: the port must be a number from 1 to 65535; {hint}") from exc
        if not host:
            raise BrokerError(f"bad broker URL {text!r}: no host; {hint}")
        if port == 0:
            raise BrokerError(f"bad broker URL {text!r}: the port must be a number from 1 to 65535; {hint}")
        tls = parts.scheme == "mqtts"
        files = _tls_files(text, parts.query, tls, hint)
        username = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password is not None else None
        if password is not None and username is None:
            raise BrokerError(f"bad broker URL {text!r}: a password without a user name; {hint}")
        if username is not None and password is None:
            password = (os.environ if environ is None else environ).get(PASSWORD_ENV)
        return cls(
            host=host,
            port=(TLS_PORT if tls else DEFAULT_PORT) if port is None else port,
            username=username,
            password=password,
            tls=tls,
            **files,
        )

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = "" if self.username is None else f"{quote(self.username, safe='')}@"
        query = urlencode(
            {k: str(v) for k, v in (("ca", self.ca), ("cert", self.cert), ("key", self.key)) if v}, safe="/"
        )
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{host}:{self.port}" + (f"?{query}" if query else "")


def _tls_files(text: str, query: str, tls: bool, hint: str) -> dict[str, Path]:
    """The ``ca``, ``cert`` and ``key`` files of a URL's query, each given once and readable."""
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError as exc:
        raise BrokerError(f"bad broker URL {text!r}: unreadable query; {hint}") from exc
    files: dict[str, Path] = {}
    for name, value in pairs:
        if name not in ("ca", "cert", "key") or name in files or not value:
            raise BrokerError(
                f"bad broker URL {text!r}: query {name}={value!r}: the options are ca, cert, key, once each"
            )
        files[name] = Path(value)
    if files and not tls:
        raise BrokerError(f"bad broker URL {text!r}: ca, cert and key are for TLS: use mqtts://")
    if ("cert" in files) != ("key" in files):
        raise BrokerError(f"bad broker URL {text!r}: a client certificate needs both cert= and key=")
    for name, path in files.items():
        if not path.is_file():
            raise BrokerError(f"bad broker URL {text!r}: {name} file {str(path)!r} does not exist")
    return files


def probe(url: BrokerUrl, timeout_s: float = 3.0) -> None:
    """Check that an MQTT broker answers at ``url`` (TCP connect + CONNECT/CONNACK within ``timeout_s``)."""
    reason = _handshake(url, timeout_s)
    if reason is not None:
        raise BrokerError(
            f"cannot reach the MQTT broker at {url}: {reason}. "
            "Start one with `sot broker`, or leave out --broker to let `sot run` start one."
        )


def _handshake(url: BrokerUrl, timeout_s: float, protocol: int = 4) -> str | None:
    """Do one MQTT CONNECT through the world's adapter; None on success, else the reason."""
    from harness.mqtt_transport import handshake

    return handshake(url, timeout_s, protocol)


def speaks(url: BrokerUrl, protocol: str, timeout_s: float = 3.0) -> int:
    """The MQTT version to use with the broker at ``url``: 5 or 4 (3.1.1) as ``protocol`` says, or for
    ``auto`` MQTT 5 when the broker accepts it, else 3.1.1 (amqtt speaks only 3.1.1)."""
    if protocol not in ("auto", "5", "3.1.1"):
        raise BrokerError(f"--protocol {protocol!r}: expected auto, 5 or 3.1.1")
    if protocol == "3.1.1":
        return 4
    reason = _handshake(url, timeout_s, 5)
    if reason is None:
        return 5
    if protocol == "5":
        raise BrokerError(f"the broker at {url} refused an MQTT 5 connection ({reason}): try --protocol 3.1.1")
    return 4


def mosquitto_available() -> bool:
    """Tell whether a Mosquitto executable is installed (on PATH or at /usr/sbin/mosquitto)."""
    return _mosquitto_path() is not None


def _mosquitto_path() -> str | None:
    found = shutil.which("mosquitto")
    if found is None and os.access(_DEBIAN_MOSQUITTO, os.X_OK):
        found = str(_DEBIAN_MOSQUITTO)
    return found


class _PortTakenError(BrokerError):
    """The port was taken by another process (a bind race when the port was picked for us)."""


class RunningBroker:
    """A broker process that this harness started and owns; a context manager that stops it.

    ``stop()`` also runs at interpreter exit for a broker that was never stopped.
    """

    kind: BrokerKind
    url: BrokerUrl
    version: str
    workdir: Path
    log_path: Path
    protocol: Literal[5, 4]

    def __init__(
        self,
        kind: BrokerKind,
        *,
        executable: str,
        version: str,
        host: str,
        workdir: Path,
        owns_workdir: bool,
        max_queued_messages: int,
        mosquitto_conf: MosquittoConf | None = None,
        probe_login: tuple[str, str] | None = None,
    ) -> None:
        """Prepare a broker; :func:`start_broker` is the way to get a started one."""
        self.kind = kind
        self.url = BrokerUrl(host, DEFAULT_PORT)
        self.version = version
        self.workdir = workdir
        self.log_path = workdir / f"{kind}.log"
        self.protocol = 5 if kind == "mosquitto" else 4
        self._executable = executable
        self._owns_workdir = owns_workdir
        self._max_queued_messages = max_queued_messages
        self._conf = mosquitto_conf or _mosquitto_conf
        self._probe_login = probe_login  # (user, password) for the readiness CONNECT on a broker without anonymous
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._stopped = False
        self._at_exit = False

    @property
    def pid(self) -> int:
        """Process id of the current (or last) broker process."""
        if self._proc is None:
            raise BrokerError(f"the {self.kind} broker was never started")
        return self._proc.pid

    def alive(self) -> bool:
        """Tell whether the broker process is running."""
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        """Stop the broker (SIGTERM, SIGKILL after 5 s) and remove the workdir if we created it."""
        self._terminate(signal.SIGTERM)
        self._stopped = True
        if self._at_exit:
            atexit.unregister(self.stop)
            self._at_exit = False
        if self._owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def kill(self) -> None:
        """Kill the broker with SIGKILL, as a crash would; the workdir stays for :meth:`restart`."""
        self._terminate(signal.SIGKILL)

    def restart(self) -> None:
        """Stop the broker if it runs, then start it again on the same port with the same persistence."""
        if self._stopped and self._owns_workdir:
            raise BrokerError(
                f"the {self.kind} broker at {self.url} was stopped and its workdir removed; "
                "to restart after stop(), pass workdir= to start_broker, or call restart() instead of stop()"
            )
        self._terminate(signal.SIGTERM)
        self._stopped = False
        try:
            self._launch(self.url.port)
        except BrokerError:
            self._terminate(signal.SIGKILL)
            raise

    def __enter__(self) -> RunningBroker:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "alive" if self.alive() else "not running"
        pid = self._proc.pid if self._proc is not None else None
        return f"<RunningBroker {self.version} at {self.url} pid={pid} {state}>"

    def _launch(self, port: int) -> None:
        """Start the process on ``port`` and wait until it owns the port and answers MQTT."""
        self.url = replace(self.url, port=port)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self._log.write(f"--- sot: starting {self.version} on {self.url}\n".encode())
        self._log.flush()
        self._proc = subprocess.Popen(
            self._command(port),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if not self._at_exit:
            atexit.register(self.stop)
            self._at_exit = True
        self._await_ready()

    def _command(self, port: int) -> list[str]:
        if self.kind == "amqtt":
            return [sys.executable, "-m", "harness.amqtt_broker", "--port", str(port), "--host", self.url.host]
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(self._conf(self.url.host, port, self.workdir, self._max_queued_messages))
        return [self._executable, "-c", str(conf)]

    def _await_ready(self) -> None:
        """Wait until our process owns the listening socket and gives a CONNACK, or raise."""
        assert self._proc is not None
        deadline = time.monotonic() + _READY_TIMEOUT_S
        foreign: list[int] = []
        last_reason = "not listening yet"
        while True:
            if self._proc.poll() is not None:
                raise self._not_ready(f"exited with code {self._proc.returncode}", foreign)
            listeners = _listening_inodes(self.url.port)
            if listeners is None:  # no /proc (not Linux): ownership cannot be checked
                ours, foreign = True, []
            else:
                mine = _socket_inodes(self._proc.pid)
                foreign = sorted(listeners - mine)
                ours = bool(listeners & mine)
                if ours and foreign:
                    raise self._not_ready("listens, but so does another process", foreign)
            if ours and not foreign:
                remaining = deadline - time.monotonic()
                reason = _handshake(self._probe_url(), max(min(remaining, 1.0), _POLL_S))
                if reason is None:
                    return
                last_reason = reason
            if time.monotonic() >= deadline:
                raise self._not_ready(f"was not ready after {_READY_TIMEOUT_S:g} s ({last_reason})", foreign)
            time.sleep(_POLL_S)

    def _probe_url(self) -> BrokerUrl:
        if self._probe_login is None:
            return self.url
        return replace(self.url, username=self._probe_login[0], password=self._probe_login[1])

    def _not_ready(self, what: str, foreign: list[int]) -> BrokerError:
        """Build the error for a broker that did not come up, with its log tail and the port's owner."""
        tail = _tail(self.log_path, _LOG_TAIL_LINES)
        in_use = "address already in use" in tail.lower()
        lines = [f"the {self.kind} broker we started (pid {self.pid}) for {self.url} {what}"]
        if foreign:
            owners = ", ".join(_describe_owner(inode) for inode in foreign)
            lines.append(f"port {self.url.port} is held by another process ({owners}); a stale broker?")
        lines.append(f"last lines of {self.log_path}:\n{tail}" if tail else f"{self.log_path} is empty")
        error_type = _PortTakenError if foreign or in_use else BrokerError
        return error_type("\n".join(lines))

    def _terminate(self, signum: signal.Signals) -> None:
        """Signal the process group, escalate to SIGKILL after the grace period, reap, close the log."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signum)
                os.killpg(proc.pid, signal.SIGCONT)  # a broker frozen by a fault test must see the SIGTERM
            try:
                proc.wait(timeout=_STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                try:
                    proc.wait(timeout=_REAP_TIMEOUT_S)
                except subprocess.TimeoutExpired as exc:
                    raise BrokerError(f"the {self.kind} broker (pid {proc.pid}) survived SIGKILL") from exc
        if self._log is not None:
            self._log.close()
            self._log = None


def start_broker(
    kind: Literal["auto", "mosquitto", "amqtt"] = "auto",
    *,
    port: int = 0,
    host: str = "127.0.0.1",
    workdir: Path | None = None,
    max_queued_messages: int = 100_000,
    mosquitto_conf: MosquittoConf | None = None,
    probe_login: tuple[str, str] | None = None,
) -> RunningBroker:
    """Start a loopback broker and return it once it owns its port and answers MQTT.

    ``auto`` picks Mosquitto when installed, else amqtt. ``port=0`` picks a free port (retried on a
    bind race). Without ``workdir`` a temporary one is created and removed by ``stop()``.
    ``mosquitto_conf`` replaces the harness's no-loss configuration (a load test's in-memory one,
    :mod:`harness.secure_broker`'s); ``probe_login`` is the identity the readiness check logs in as
    when that configuration admits no anonymous client.
    """
    if port < 0 or port > 65535:
        raise ValueError(f"port must be 0 (pick a free one) or 1-65535, not {port}")
    if max_queued_messages < 0:
        raise ValueError(f"max_queued_messages must be >= 0, not {max_queued_messages}")
    _check_loopback(host)
    resolved, executable, version = _resolve_kind(kind)
    if mosquitto_conf is not None and resolved != "mosquitto":
        raise ValueError("mosquitto_conf configures Mosquitto; the broker chosen is amqtt")
    owns_workdir = workdir is None
    directory = Path(tempfile.mkdtemp(prefix="sot-broker-")) if workdir is None else Path(workdir).resolve()
    broker = RunningBroker(
        resolved,
        executable=executable,
        version=version,
        host=host,
        workdir=directory,
        owns_workdir=owns_workdir,
        max_queued_messages=max_queued_messages,
        mosquitto_conf=mosquitto_conf,
        probe_login=probe_login,
    )
    attempts = _PORT_ATTEMPTS if port == 0 else 1
    for attempt in range(1, attempts + 1):
        try:
            broker._launch(port or _free_port(host))
        except _PortTakenError:
            if attempt == attempts:
                broker.stop()
                raise
            broker.kill()
        except BaseException:
            broker.stop()
            raise
        else:
            return broker
    raise AssertionError("unreachable")  # pragma: no cover


def _resolve_kind(kind: str) -> tuple[BrokerKind, str, str]:
    """Return (kind, executable, version string) for the requested broker kind."""
    if kind not in ("auto", "mosquitto", "amqtt"):
        raise ValueError(f"broker kind must be 'auto', 'mosquitto' or 'amqtt', not {kind!r}")
    mosquitto = _mosquitto_path()
    if kind == "mosquitto" or (kind == "auto" and mosquitto is not None):
        if mosquitto is None:
            raise BrokerError(
                f"Mosquitto is not installed (not on PATH, not at {_DEBIAN_MOSQUITTO}); "
                "install it (apt-get install mosquitto) or use the amqtt broker"
            )
        return "mosquitto", mosquitto, _mosquitto_version(mosquitto)
    try:
        version = metadata.version("amqtt")
    except metadata.PackageNotFoundError as exc:
        raise BrokerError("neither Mosquitto nor amqtt is installed; install one of them") from exc
    return "amqtt", sys.executable, f"amqtt {version}"


def _mosquitto_version(executable: str) -> str:
    """Return ``mosquitto X.Y.Z`` from the first line of ``mosquitto -h``."""
    try:
        done = subprocess.run([executable, "-h"], capture_output=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BrokerError(f"cannot run {executable} -h: {exc}") from exc
    first = (done.stdout or done.stderr).decode(errors="replace").strip().splitlines()[:1]
    match = re.search(r"version\s+(\S+)", first[0]) if first else None
    return f"mosquitto {match.group(1)}" if match else f"mosquitto ({first[0] if first else 'unknown version'})"


def _mosquitto_conf(host: str, port: int, workdir: Path, max_queued_messages: int) -> str:
    """Render the Mosquitto 2.0 configuration of a harness broker."""
    user = pwd.getpwuid(os.geteuid()).pw_name
    return f"""\
# Written by harness.broker; rewritten on every start.
# Stay the user who started us: as root, Mosquitto would switch to `mosquitto`, which cannot
# write the persistence file or the log into this private directory.
user {user}
listener {port} {host}
# Loopback-only harness broker: anonymous clients are allowed on purpose.
allow_anonymous true
persistence true
persistence_location {workdir}/
# A stop saves the sessions and their queues; between stops a snapshot every few minutes, not one
# per change (a whole-database write per message makes every message dearer as the backlog grows).
# What a crash loses in between is not lost to the run: the world keeps each step's messages
# until the engine's ack and sends them again after a reconnect, and the engine, which
# acknowledges only what it has committed, drops the copies it already has (docs/design.md).
autosave_interval 300
autosave_on_changes false
# Mosquitto silently drops QoS 1/2 messages past this many queued per client (default 1000).
max_queued_messages {max_queued_messages}
max_queued_bytes 0
# The engine acknowledges a message only once it is committed, and under the event-time barrier
# it commits once per sync step: the in-flight window must hold a whole step's messages, or the
# broker stops delivering and the barrier never completes (Mosquitto's default is 20).
max_inflight_messages 1000
set_tcp_nodelay true
sys_interval 1
log_dest file {workdir}/mosquitto.log
log_type error
log_type warning
log_type notice
log_type information
log_timestamp_format %Y-%m-%dT%H:%M:%S
"""


def _check_loopback(host: str) -> None:
    """Refuse a non-loopback listen address: the harness broker lets anyone in."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"the harness broker listens on a loopback address (127.0.0.1 or ::1), not {host!r}")


def _free_port(host: str) -> int:
    """Return a port that was free on ``host`` a moment ago (the caller retries on a race)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
    return port


def _listening_inodes(port: int) -> set[int] | None:
    """Return the inodes of TCP sockets listening on ``port`` (any address), or None without /proc."""
    inodes: set[int] = set()
    seen_table = False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        seen_table = True
        for row in rows:
            fields = row.split()
            if len(fields) < 10 or fields[3] != _TCP_LISTEN:
                continue
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[9] != "0":
                inodes.add(int(fields[9]))
    return inodes if seen_table else None


def _socket_inodes(pid: int) -> set[int]:
    """Return the inodes of the sockets that process ``pid`` holds open."""
    inodes: set[int] = set()
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return inodes
    for fd in fds:
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:[") and target.endswith("]"):
            inodes.add(int(target[8:-1]))
    return inodes


def _describe_owner(inode: int) -> str:
    """Name the process holding socket ``inode`` (``pid 123 mosquitto``) when /proc lets us see it."""
    link = f"socket:[{inode}]"
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) == link:
                        comm = (proc / "comm").read_text().strip()
                        return f"pid {proc.name} {comm}"
    return f"socket inode {inode}, owner not visible"


def _tail(path: Path, lines: int) -> str:
    """Return the last ``lines`` lines of a text file, or '' if it cannot be read."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])
