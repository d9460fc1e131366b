"""A secure Mosquitto deployment as files: identities, an ACL per role, TLS, limits, and a lint for it.

:func:`write_deployment` writes, into one directory, what a Mosquitto 2.0 broker needs to admit
only known clients and let each do only its own job:

| file | what |
|---|---|
| ``mosquitto.conf`` | listeners (plain on loopback, TLS beside it), ``allow_anonymous false``, limits, persistence |
| ``passwd`` | one PBKDF2-SHA512 entry per identity (Mosquitto 2's ``$7$`` format, as ``mosquitto_passwd`` writes) |
| ``acl`` | the rights of each role (below) |
| ``ca.crt``, ``ca.key``, ``server.crt``, ``server.key`` | a private CA and a server certificate for 127.0.0.1, ::1 and localhost |
| ``credentials.json``, ``credentials/NAME.password`` | the generated passwords (mode 0600) and the URLs to use |

Roles, under one topic prefix P (each device topic also in its sharded form ``P/s/+/...``):

| identity | may publish | may read |
|---|---|---|
| ``engine`` (``engine-pK`` per partition) | ``P/dev/+/cmd``, ``P/engine/#``, ``P/clock/ack`` | ``P/#``, ``$SYS/#`` |
| ``harness`` (the world, a load test) | device topics, ``P/clock`` | ``P/#``, ``$SYS/#`` |
| a device, user name = its id | ``P/dev/ID/telemetry``, ``P/dev/ID/event`` | ``P/dev/ID/cmd`` |
| a gateway, user name = its id | ``P/gw/ID/batch`` | nothing |
| a technician | ``P/field/+/status`` | nothing |
| ``probe`` | nothing (readiness checks only) | nothing |

Devices and gateways get their rights from ``pattern`` lines on ``%u`` (the user name), so that the
ACL does not grow with the fleet; so a user name is one plain topic level (:func:`check_identity`),
never a ``+`` or ``#`` that would widen a pattern to every device. The services read ``$SYS`` for the
broker's own counters (``$SYS/broker/publish/messages/dropped``: messages it lost); devices never
do. ``use_username_as_clientid`` makes the user name the client id:
no identity can take over another's session (Mosquitto disconnects the older of two clients with
one id), and only the engine's password opens the engine's session. Secrets are generated once and
kept: writing the deployment again rewrites the configuration and keeps the passwords and the CA.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import json
import os
import pwd
import re
import secrets
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contracts.codec import MAX_PAYLOAD_BYTES
from contracts.topics import DEFAULT_PREFIX

if TYPE_CHECKING:
    from cryptography import x509

from harness.broker import DEFAULT_PORT, TLS_PORT, BrokerUrl, RunningBroker, start_broker

__all__ = [
    "BACKLOG_MESSAGES",
    "MAX_CONNECTIONS",
    "SECURE_KIND",
    "Deployment",
    "ServiceLogins",
    "check_config",
    "check_identity",
    "logins_for_deployment",
    "logins_for_url",
    "password_entry",
    "start_secure_broker",
    "write_deployment",
]

BACKLOG_MESSAGES = 100_000
"""The backlog promised per client: an engine may be away while this many messages queue for it
(20 s at the 5,000 msg/s a paho publisher reaches, 10 min at 170 msg/s) and lose none. Mosquitto
drops past ``max_queued_messages`` silently, so the configuration holds this many and the lint
refuses less."""
MAX_CONNECTIONS = 10_000
"""Connections each listener accepts, plain and TLS counted apart (one file descriptor each: raise
``ulimit -n`` to twice this to match)."""
_PBKDF2_ITERATIONS = 101  # what mosquitto_passwd 2.0 writes
_SALT_BYTES = 12
_CERT_DAYS = 825
_IDENTITY = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_DEVICE_LEAVES = ("dev/+/telemetry", "dev/+/event", "gw/+/batch", "contact/+", "field/+/status", "registry/+")


def password_entry(user: str, password: str, salt: bytes | None = None) -> str:
    """One line of a Mosquitto 2 password file: ``user:$7$101$salt$hash`` (PBKDF2-HMAC-SHA512)."""
    salt = secrets.token_bytes(_SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, _PBKDF2_ITERATIONS)
    b64 = base64.b64encode
    return f"{user}:$7${_PBKDF2_ITERATIONS}${b64(salt).decode()}${b64(digest).decode()}"


@dataclass(frozen=True)
class Deployment:
    """A written deployment: where its files are and the URLs each identity connects with."""

    directory: Path
    host: str
    port: int
    tls_port: int
    passwords: dict[str, str] = field(repr=False)
    roles: dict[str, str]

    @property
    def conf(self) -> Path:
        return self.directory / "mosquitto.conf"

    @property
    def ca(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def credentials(self) -> Path:
        return self.directory / "credentials.json"

    def password_file(self, identity: str) -> Path:
        """The file holding ``identity``'s password alone (for ``--mqtt-password-file``)."""
        return self.directory / "credentials" / f"{identity}.password"

    def url(self, identity: str, *, tls: bool = False) -> BrokerUrl:
        """Where ``identity`` connects: the plain loopback listener, or the TLS one verified by our CA."""
        if identity not in self.passwords:
            raise KeyError(f"no identity {identity!r} in {self.directory} (there are {', '.join(self.passwords)})")
        if tls:
            return BrokerUrl(
                self.host, self.tls_port, username=identity, password=self.passwords[identity], tls=True, ca=self.ca
            )
        return BrokerUrl(self.host, self.port, username=identity, password=self.passwords[identity])


def write_deployment(
    directory: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 1883,
    tls_port: int = 8883,
    prefix: str = DEFAULT_PREFIX,
    engines: int = 1,
    devices: Iterable[str] = (),
    gateways: Iterable[str] = (),
    technicians: Iterable[str] = (),
    backlog: int = BACKLOG_MESSAGES,
    max_connections: int = MAX_CONNECTIONS,
) -> Deployment:
    """Write (or rewrite) a secure deployment into ``directory`` and return it.

    Passwords and the CA already there are kept; identities new to this call get new passwords.
    ``engines`` > 1 names one engine identity per partition (``engine-p0`` ...)."""
    engine_ids = ["engine"] if engines == 1 else [f"engine-p{k}" for k in range(engines)]
    roles = {name: "engine" for name in engine_ids} | {"harness": "harness", "probe": "probe"}
    roles |= {name: "device" for name in devices} | {name: "gateway" for name in gateways}
    roles |= {name: "technician" for name in technicians}
    for name in roles:
        check_identity(name)
    directory = Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    passwords = _passwords(directory, roles)
    _write_private(directory / "passwd", "".join(password_entry(u, p) + "\n" for u, p in passwords.items()))
    _write_private(directory / "acl", render_acl(prefix, roles))
    _tls_files(directory, host)
    deployment = Deployment(directory, host, port, tls_port, passwords, roles)
    conf = render_conf(deployment, backlog=backlog, max_connections=max_connections)
    _write_private(directory / "mosquitto.conf", conf)
    return deployment


def check_identity(name: str) -> str:
    """Return ``name`` if it can be a user name of the deployment, else raise ``ValueError``.

    The ACL's ``pattern`` lines put the user name into topics (``%u``), so a name must be one plain
    topic level: a ``+`` or ``#`` would widen a pattern to every device, a ``/`` would move it to
    other topics, a ``:`` or a line break would split a password-file or ACL line."""
    if not _IDENTITY.fullmatch(name):
        raise ValueError(
            f"identity {name!r} is not a usable MQTT user name: 1-64 letters, digits and '_.-' "
            "('+', '#' and '/' would widen the ACL's %u patterns; ':', spaces and control characters "
            "would break the password file and the ACL)"
        )
    return name


def _passwords(directory: Path, roles: dict[str, str]) -> dict[str, str]:
    """The identities' passwords: those in ``credentials.json`` kept, the others new; all written back."""
    known: dict[str, str] = {}
    path = directory / "credentials.json"
    if path.exists():
        known = {k: v["password"] for k, v in json.loads(path.read_text())["identities"].items()}
    passwords = {name: known.get(name) or secrets.token_urlsafe(24) for name in roles}
    (directory / "credentials").mkdir(mode=0o700, exist_ok=True)
    for name, password in passwords.items():
        _write_private(directory / "credentials" / f"{name}.password", password + "\n")
    doc = {
        "identities": {n: {"role": roles[n], "password": p} for n, p in passwords.items()},
        "note": "each identity's password is also alone in credentials/NAME.password (for --mqtt-password-file)",
    }
    _write_private(path, json.dumps(doc, indent=2) + "\n")
    return passwords


def render_acl(prefix: str, roles: dict[str, str]) -> str:
    """The ACL file of :func:`write_deployment` (see the module docstring for the table)."""
    p = prefix
    device_topics = [f"{p}/{leaf}" for leaf in _DEVICE_LEAVES] + [f"{p}/s/+/{leaf}" for leaf in _DEVICE_LEAVES]
    lines = [
        "# Written by harness.secure_broker. Mosquitto denies whatever no line below allows.",
        "# Device topics appear twice: unsharded and with the shard level (P/s/{shard}/...) partitions use.",
    ]
    for name, role in roles.items():
        if role == "engine":
            # Reads all under P (its catch-all subscription sees what a device sends anywhere there).
            lines += ["", f"user {name}", f"topic read {p}/#", "topic read $SYS/#"]
            lines += [f"topic write {p}/clock/ack", f"topic write {p}/dev/+/cmd", f"topic write {p}/engine/#"]
        elif role == "harness":
            lines += ["", f"user {name}", *(f"topic write {t}" for t in device_topics)]
            lines += [f"topic write {p}/clock", f"topic read {p}/#", "topic read $SYS/#"]
        elif role == "technician":
            lines += ["", f"user {name}", f"topic write {p}/field/+/status", f"topic write {p}/s/+/field/+/status"]
    lines += [
        "",
        "# Every identity is also the device and the gateway its user name names (a pattern applies to all",
        "# users): so never give a technician or a service the id of a device.",
    ]
    for under in (p, f"{p}/s/+"):
        lines += [f"pattern write {under}/dev/%u/telemetry", f"pattern write {under}/dev/%u/event"]
        lines += [f"pattern write {under}/gw/%u/batch"]
    lines += [f"pattern read {p}/dev/%u/cmd", ""]
    return "\n".join(lines)


def render_conf(deployment: Deployment, *, backlog: int, max_connections: int) -> str:
    """The ``mosquitto.conf`` of a deployment."""
    d = deployment.directory
    user = pwd.getpwuid(os.geteuid()).pw_name
    return f"""\
# Written by harness.secure_broker (sot broker --secure); `sot broker --check` lints it.
user {user}
per_listener_settings false
allow_anonymous false
password_file {d}/passwd
acl_file {d}/acl

# Plain MQTT on loopback only; anything that crosses a network uses the TLS listener. On each, the
# user name is the client id: nobody takes over another identity's session, and at most
# {max_connections:,} connections are accepted. (Listener settings: before the first listener they would
# open a default listener on every interface, port 1883; after the last, they bind that one only.)
listener {deployment.port} {deployment.host}
use_username_as_clientid true
max_connections {max_connections}
listener {deployment.tls_port} {deployment.host}
use_username_as_clientid true
max_connections {max_connections}
cafile {d}/ca.crt
certfile {d}/server.crt
keyfile {d}/server.key
tls_version tlsv1.2
require_certificate false

# Limits. The largest payload the engine decodes (contracts.codec.MAX_PAYLOAD_BYTES): larger ones
# are refused at the broker and reach nobody. The publisher is told 0x95 in its PUBACK on MQTT 5 (a
# code the standard gives no PUBACK: paho drops the connection on it), nothing on MQTT 3.1.1.
message_size_limit {MAX_PAYLOAD_BYTES}
# The promised backlog: {backlog:,} messages queued per client (Mosquitto drops past it silently).
max_queued_messages {backlog}
max_queued_bytes 0
max_inflight_messages 1000

# Persistence as the harness broker keeps it: saved on stop and every 5 minutes, never on every
# change (a whole-database write per message); devices and the world resend what a crash loses.
persistence true
persistence_location {d}/
autosave_interval 300
autosave_on_changes false

set_tcp_nodelay true
sys_interval 1
log_dest file {d}/mosquitto.log
log_type error
log_type warning
log_type notice
log_type information
log_timestamp_format %Y-%m-%dT%H:%M:%S
"""


def _tls_files(directory: Path, host: str) -> None:
    """A CA and a server certificate for ``host``, 127.0.0.1, ::1 and localhost (kept if present)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_key_path, ca_path = directory / "ca.key", directory / "ca.crt"
    pem = serialization.Encoding.PEM
    if ca_key_path.exists() and ca_path.exists():
        ca_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), password=None)
        ca_cert = x509.load_pem_x509_certificate(ca_path.read_bytes())
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sot deployment CA")])
        ca_cert = (
            _builder(name, name, ca_key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_usage(cert_sign=True), critical=True)
            .sign(ca_key, hashes.SHA256())
        )
        _write_private(ca_key_path, _key_pem(ca_key))
        ca_path.write_bytes(ca_cert.public_bytes(pem))
    if (directory / "server.crt").exists() and (directory / "server.key").exists():
        return
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    addresses = {"127.0.0.1", "::1"} | ({host} if _is_ip(host) else set())
    names += [x509.IPAddress(ipaddress.ip_address(a)) for a in sorted(addresses)]
    if not _is_ip(host) and host != "localhost":
        names.append(x509.DNSName(host))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    cert = (
        _builder(subject, ca_cert.subject, key.public_key())
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    _write_private(directory / "server.key", _key_pem(key))
    (directory / "server.crt").write_bytes(cert.public_bytes(pem))


def _builder(subject: x509.Name, issuer: x509.Name, public_key: Any) -> x509.CertificateBuilder:
    from cryptography import x509

    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=_CERT_DAYS))
    )


def _usage(*, cert_sign: bool) -> x509.KeyUsage:
    from cryptography import x509

    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=not cert_sign,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _key_pem(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(  # type: ignore[no-any-return]
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _write_private(path: Path, content: str | bytes) -> None:
    """Write ``content`` to ``path`` readable by its owner only (created so, never world-readable first)."""
    data = content.encode() if isinstance(content, str) else content
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(data)


# -- the lint -------------------------------------------------------------------------------------
def check_config(path: Path, *, backlog: int = BACKLOG_MESSAGES) -> list[str]:
    """The problems of a Mosquitto configuration as a deployment; one line each, [] when it passes.

    Refused: anonymous access (or not refused explicitly), no password file (or one others can
    read), no ACL file, an ACL that grants ``#`` to every user, ``max_queued_messages`` below
    ``backlog``, ``autosave_on_changes true``, no ``message_size_limit``/``max_packet_size``, a
    listener without its own ``max_connections`` (the setting binds only the listener above it),
    ``persistence false``, a plaintext listener beyond loopback."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return [f"{path}: cannot read: {exc}"]
    settings: dict[str, list[str]] = {}
    listeners: list[_Listener] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        value = value.strip()
        settings.setdefault(key, []).append(value)
        if key == "listener":
            fields = value.split()
            listeners.append(_Listener(value, fields[1] if len(fields) > 1 else ""))
        elif key in ("certfile", "psk_hint") and listeners:
            listeners[-1].tls = True
        elif key == "max_connections" and listeners:
            listeners[-1].max_connections = value
    problems: list[str] = []

    def last(key: str) -> str | None:
        values = settings.get(key)
        return values[-1] if values else None

    if "true" in settings.get("allow_anonymous", []):
        problems.append("allow_anonymous true: anyone may connect, publish as any device and read everything")
    elif last("allow_anonymous") != "false":
        problems.append("allow_anonymous is not set to false: say it (Mosquitto 1.x let anonymous clients in)")
    auth_plugin = last("plugin") or last("auth_plugin")
    password_file = last("password_file")
    if password_file is None and auth_plugin is None:
        problems.append("no password_file: no identity can be checked")
    elif password_file is not None:
        problems += _private_file(password_file, "password_file")
    acl_file = last("acl_file")
    if acl_file is None and auth_plugin is None:
        problems.append("no acl_file: every client may publish and read every topic")
    elif acl_file is not None:
        problems += _acl_problems(acl_file)
    if "true" not in settings.get("use_username_as_clientid", []):
        problems.append(
            "use_username_as_clientid is not true: an identity may take over another's session by its client id"
        )
    queued = last("max_queued_messages")
    if queued is None or not queued.isdigit() or 0 < int(queued) < backlog:  # 0: no limit
        shown = "unset (Mosquitto's default, 1000)" if queued is None else queued
        problems.append(
            f"max_queued_messages {shown} is below the promised backlog of {backlog:,} per client "
            "(Mosquitto drops past it silently)"
        )
    if last("autosave_on_changes") == "true":
        problems.append("autosave_on_changes true: the whole persistence file is rewritten on every change")
    if last("persistence") != "true":
        problems.append("persistence is not true: a broker restart loses every session and queued message")
    size = last("message_size_limit") or last("max_packet_size")
    if size is None or size == "0":
        problems.append("no message_size_limit (or max_packet_size): any client may send 256 MB messages")
    if not listeners and last("max_connections") in (None, "-1"):
        problems.append("max_connections unset or -1: connections are bounded only by file descriptors")
    for listener in listeners:
        if listener.max_connections in (None, "-1"):
            problems.append(
                f"max_connections unset or -1 on `listener {listener.spec}`: its connections are bounded only by "
                "file descriptors (Mosquitto applies max_connections to the listener it follows, not to all)"
            )
        if not listener.tls and not _is_loopback(listener.address):
            where = listener.address or "every interface"
            problems.append(f"plaintext listener on {where}: credentials would cross the network in clear (add TLS)")
    if not listeners and settings.get("port"):
        problems.append("`port` without `listener`: listens on every interface (use `listener PORT 127.0.0.1`)")
    return problems


@dataclass
class _Listener:
    """What the lint gathers of one ``listener`` block: its line, address, TLS and connection limit."""

    spec: str
    address: str
    tls: bool = False
    max_connections: str | None = None


def _private_file(name: str, what: str) -> list[str]:
    try:
        mode = os.stat(name).st_mode
    except OSError as exc:
        return [f"{what} {name}: cannot read: {exc.strerror}"]
    if mode & (stat.S_IROTH | stat.S_IWOTH):
        return [f"{what} {name} is readable by every user (chmod 600 it)"]
    return []


def _acl_problems(name: str) -> list[str]:
    """An ACL that cannot be read, or that lets every user (before any ``user`` line) write ``#``."""
    try:
        lines = Path(name).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        return [f"acl_file {name}: cannot read: {exc}"]
    problems = []
    in_user = False
    for number, raw in enumerate(lines, 1):
        words = raw.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0] == "user":
            in_user = True
        shared = words[0] == "pattern" or (words[0] == "topic" and not in_user)
        if shared and words[-1] in ("#", "+/#") and (len(words) == 2 or words[1] in ("write", "readwrite")):
            problems.append(f"acl_file {name} line {number}: every user may publish on {words[-1]}")
    return problems


def _is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


# -- a run's broker and logins --------------------------------------------------------------------
SECURE_KIND = "secure"
"""The broker kind ``sot run --secure`` asks the runner for: Mosquitto with :func:`write_deployment`."""


@dataclass(frozen=True)
class ServiceLogins:
    """How a run's world and each engine partition log in: URLs, and the engines' password files
    (a password never goes on a command line)."""

    world: BrokerUrl
    engines: tuple[BrokerUrl, ...]
    password_files: tuple[Path | None, ...]

    def engine_args(self, k: int) -> list[str]:
        """The ``python -m support_engine`` options that connect partition ``k``."""
        args = ["--broker", str(self.engines[k])]
        secret = self.password_files[k]
        return args if secret is None else [*args, "--mqtt-password-file", str(secret)]


def logins_for_url(url: BrokerUrl, engines: int, workdir: Path) -> ServiceLogins:
    """Everyone logs in as ``url`` says; a password goes to the engines through a private file in ``workdir``."""
    secret = None
    if url.password is not None:
        secret = workdir / "mqtt-engine.password"
        _write_private(secret, url.password + "\n")
    return ServiceLogins(url, (url,) * engines, (secret,) * engines)


def logins_for_deployment(deployment: Deployment, engines: int) -> ServiceLogins:
    """The world as ``harness``, partition K as its engine identity, all over TLS verified by the deployment's CA."""
    names = ["engine"] if engines == 1 else [f"engine-p{k}" for k in range(engines)]
    urls = tuple(replace(deployment.url(n, tls=True), password=None) for n in names)
    return ServiceLogins(deployment.url("harness", tls=True), urls, tuple(deployment.password_file(n) for n in names))


def start_secure_broker(
    workdir: Path,
    *,
    prefix: str = DEFAULT_PREFIX,
    engines: int = 1,
    devices: Iterable[str] = (),
    gateways: Iterable[str] = (),
    technicians: Iterable[str] = (),
    max_connections: int = MAX_CONNECTIONS,
) -> tuple[RunningBroker, Deployment]:
    """Start Mosquitto with a secure deployment in ``workdir`` on free loopback ports (plain and TLS)."""
    from harness.broker import _free_port

    devices, gateways, technicians = tuple(devices), tuple(gateways), tuple(technicians)
    first = write_deployment(
        workdir,
        port=DEFAULT_PORT,
        tls_port=TLS_PORT,
        prefix=prefix,
        engines=engines,
        devices=devices,
        gateways=gateways,
        technicians=technicians,
        max_connections=max_connections,
    )
    written: list[Deployment] = [first]
    tls_ports: dict[int, int] = {}  # a restart keeps both ports: the clients reconnect where they were

    def conf(host: str, port: int, directory: Path, max_queued_messages: int) -> str:
        deployment = write_deployment(
            workdir,
            host=host,
            port=port,
            tls_port=tls_ports.setdefault(port, _free_port(host)),
            prefix=prefix,
            engines=engines,
            backlog=max(max_queued_messages, BACKLOG_MESSAGES),
            devices=devices,
            gateways=gateways,
            technicians=technicians,
            max_connections=max_connections,
        )
        written.append(deployment)
        return deployment.conf.read_text()

    broker = start_broker(
        "mosquitto",
        workdir=workdir,
        max_queued_messages=BACKLOG_MESSAGES,
        mosquitto_conf=conf,
        probe_login=("probe", first.passwords["probe"]),
    )
    return broker, written[-1]
