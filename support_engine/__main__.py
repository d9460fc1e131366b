"""``python -m support_engine``: run the support engine against a broker (also ``sot engine``), or inspect a database."""

from __future__ import annotations

import ipaddress
import logging
import math
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated
from urllib.parse import parse_qsl, unquote, urlsplit

import msgspec
import typer
import yaml

from contracts.engine_config import EngineConfig
from contracts.errors import PartitionError
from contracts.partitions import Partition
from contracts.topics import DEFAULT_PREFIX, Topics
from support_engine.database import Database, DatabaseInUse
from support_engine.errors import DatabaseTooNew, EngineError
from support_engine.inspection import commands_sent
from support_engine.inspection import read as read_stored
from support_engine.logs import configure_logging
from support_engine.metrics import EngineMetrics
from support_engine.mqtt_transport import MqttLogin, MqttTransport, Protocol
from support_engine.registry import iter_devices
from support_engine.service import ClockMode, EngineService
from support_engine.storage import Storage

if TYPE_CHECKING:
    from support_engine.http_api import HttpApi

app = typer.Typer(add_completion=False, help="Run the support engine against an MQTT broker.")

PASSWORD_ENV = "SOT_MQTT_PASSWORD"
HTTP_TOKEN_ENV = "SOT_HTTP_TOKEN"
DEFAULT_BROKER = "mqtt://127.0.0.1:1883"
DEFAULT_DB = "sot-engine.sqlite"
DEFAULT_SIM_EPOCH = "2026-01-01T00:00:00Z"  # support_engine.api.timebase's (not imported: it loads the web framework)


def _broker(url: str, password_file: Path | None = None) -> tuple[str, int, MqttLogin]:
    """Host, port and login of ``mqtt[s]://[user[:password]@]host[:port][?ca=&cert=&key=]``.

    The password: the URL's, else ``password_file``'s first line, else ``$SOT_MQTT_PASSWORD``."""
    hint = f"{url!r}: expected mqtt[s]://[user[:password]@]host[:port][?ca=FILE&cert=FILE&key=FILE]"
    parts = urlsplit(url.strip())
    try:
        port = parts.port
    except ValueError:
        port = 0
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname or parts.path not in ("", "/") or port == 0:
        raise typer.BadParameter(f"{hint} (port 1-65535)", param_hint="--broker")
    tls = parts.scheme == "mqtts"
    files: dict[str, Path] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name not in ("ca", "cert", "key") or name in files or not value or not tls:
            raise typer.BadParameter(
                f"{hint}: query {name}={value!r} (ca, cert, key; mqtts only)", param_hint="--broker"
            )
        if not Path(value).is_file():
            raise typer.BadParameter(f"{hint}: {name} file {value!r} does not exist", param_hint="--broker")
        files[name] = Path(value)
    if ("cert" in files) != ("key" in files):
        raise typer.BadParameter(f"{hint}: a client certificate needs both cert= and key=", param_hint="--broker")
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    if username is not None and password is None:
        if password_file is not None:
            try:
                password = password_file.read_text(encoding="utf-8").splitlines()[0]
            except (OSError, UnicodeDecodeError, IndexError) as exc:
                raise typer.BadParameter(
                    f"cannot read a password from {password_file}", param_hint="--mqtt-password-file"
                ) from exc
        else:
            password = os.environ.get(PASSWORD_ENV)
    login = MqttLogin(username, password, tls, files.get("ca"), files.get("cert"), files.get("key"))
    return parts.hostname, port or (8883 if tls else 1883), login


def _check_http_host(host: str, token: str | None) -> None:
    """Refuse to serve the API beyond loopback without a token: it would be open to the network."""
    if token:
        return
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise typer.BadParameter(
            f"{host!r} is not a loopback address: the API would be open to anyone who reaches it; "
            f"give --http-token TOKEN (or ${HTTP_TOKEN_ENV}), or serve on 127.0.0.1",
            param_hint="--http-host",
        )


def load_config(path: Path | None, policy: str | None) -> EngineConfig:
    """Read an engine configuration (YAML or JSON); the policy option overrides the file."""
    data: dict[str, object] = {}
    if path is not None:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise typer.BadParameter(f"cannot read {path}: {exc}") from exc
    if policy is not None:
        data["policy"] = policy
    try:
        return msgspec.convert(data, EngineConfig)
    except msgspec.ValidationError as exc:
        raise typer.BadParameter(f"{path}: {exc}") from exc


@app.command()
def main(
    broker: Annotated[
        str | None,
        typer.Option(
            help="Broker URL: mqtt://host:port, with a login mqtt://user[:password]@host:port, over TLS "
            f"mqtts://host:8883?ca=CA.crt[&cert=CLIENT.crt&key=CLIENT.key]. Default: {DEFAULT_BROKER}."
        ),
    ] = None,
    mqtt_password_file: Annotated[
        Path | None,
        typer.Option(
            help=f"Read the broker password from this file (first line) when the URL has a user but no "
            f"password; without it, ${PASSWORD_ENV} is used."
        ),
    ] = None,
    db: Annotated[
        str | None,
        typer.Option(
            help="Database: a SQLite file (created if missing), sqlite:///PATH, or a PostgreSQL URL, "
            "postgresql+psycopg://user@host:port/database (or postgresql://; the database must exist). "
            f"Its schema is created or upgraded to this engine's revision (sot engine db). Default: {DEFAULT_DB}."
        ),
    ] = None,
    inspect: Annotated[
        str | None,
        typer.Option(
            metavar="DB",
            help="Inspect this database (a SQLite file, sqlite:///PATH or a PostgreSQL URL) read-only instead of "
            "running: serve its HTTP API (--http, default any free port) with the figures it holds, until "
            "SIGTERM/SIGINT. No broker, no timers, no escalation; nothing is written, not even a lock.",
        ),
    ] = None,
    clock: Annotated[
        str | None,
        typer.Option(
            help="'event' (follow the world's clock barrier) or 'wall'. Default: wall; with --inspect, event "
            "(a run's database holds simulated seconds)."
        ),
    ] = None,
    time_origin: Annotated[
        float | None,
        typer.Option(
            help="Wall clock only: the Unix time that is engine time 0 (a live run passes its start). "
            "Default: 0, so that engine time is Unix time."
        ),
    ] = None,
    speed: Annotated[
        float | None,
        typer.Option(
            help="Wall clock only: engine seconds per wall second (a live run passes its factor). Default: 1."
        ),
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="Engine configuration (YAML/JSON): policy, rules, issues, SLA.")
    ] = None,
    policy: Annotated[str | None, typer.Option(help="Override the configured policy: reactive or proactive.")] = None,
    prefix: Annotated[str, typer.Option(help="Topic prefix.")] = DEFAULT_PREFIX,
    client_id: Annotated[
        str | None,
        typer.Option(
            help="Fixed MQTT client id (the persistent session's name). Default: sot-engine-K, K the partition."
        ),
    ] = None,
    partition: Annotated[
        str,
        typer.Option(
            help="This engine's partition K/N, counting from 0: it owns the device topics of the shards s "
            "with s % N == K, in its own session and database (give each partition its own --db). "
            "Default 0/1: one engine for everything."
        ),
    ] = "0/1",
    shards: Annotated[
        int | None,
        typer.Option(help="Shards the device topics are split into (as the devices publish them). Default: N.", min=1),
    ] = None,
    protocol: Annotated[str, typer.Option(help="MQTT protocol: auto, 5 or 3.1.1.")] = "auto",
    keepalive: Annotated[
        int,
        typer.Option(
            help="MQTT keepalive, seconds: the broker drops the engine after 1.5 x this without a packet "
            "(and the engine reconnects when it can).",
            min=5,
            max=3600,
        ),
    ] = 30,
    log_level: Annotated[str, typer.Option(help="Log level.")] = "INFO",
    log_format: Annotated[
        str, typer.Option(help="'text' or 'json' (one JSON object per line: time, level, logger, message, extras).")
    ] = "text",
    http: Annotated[
        int | None, typer.Option(help="Serve the HTTP API and /metrics on this port (0: any free port; logged).")
    ] = None,
    http_host: Annotated[
        str, typer.Option(help="Address the HTTP API listens on; beyond loopback only with a token.")
    ] = "127.0.0.1",
    http_token: Annotated[
        str | None,
        typer.Option(
            envvar=HTTP_TOKEN_ENV,
            show_envvar=True,
            help="Require `Authorization: Bearer TOKEN` on every HTTP route but /healthz (and /readyz).",
        ),
    ] = None,
    http_url_file: Annotated[
        Path | None,
        typer.Option(
            help="Write the HTTP API's URL to this file once it listens (for a supervisor that asked for --http 0)."
        ),
    ] = None,
    sim_epoch: Annotated[
        str,
        typer.Option(
            metavar="ISO",
            help="Event clock: the calendar time that simulated time 0 is shown as (ISO 8601; the HTTP API "
            "marks such times as simulated).",
        ),
    ] = DEFAULT_SIM_EPOCH,
    devices: Annotated[
        Path | None,
        typer.Option(
            help="Device registry (.csv, .jsonl, .json or .yaml): product, owner, region, firmware, cohorts, "
            "contract, warranty per device. Applied at start; entries may also arrive on registry/{device_id}."
        ),
    ] = None,
    ack_every: Annotated[
        int,
        typer.Option(
            help="Publish an ingest receipt (engine/ingested) for every device message whose seq is a "
            "multiple of N, once committed (load tests measure latency from them). 0: none.",
            min=0,
        ),
    ] = 0,
    audit: Annotated[
        bool,
        typer.Option(
            "--audit",
            help="Record the key of every message taken in, in table ingest_audit, with its effects (fault "
            "tests count on it what was taken in once, twice or never; it grows with every message).",
        ),
    ] = False,
) -> None:
    """Serve until SIGTERM/SIGINT: ingest, detect, open cases, dispatch, notify (or, with --inspect, show a database)."""
    if log_format not in ("text", "json"):
        raise typer.BadParameter("--log-format must be 'text' or 'json'")
    configure_logging(log_level, log_format)
    if http is not None and not 0 <= http <= 65535:
        raise typer.BadParameter("--http must be a port, 0-65535 (0: any free port)")
    clock = clock or ("event" if inspect is not None else "wall")
    if clock not in ("event", "wall"):
        raise typer.BadParameter("--clock must be 'event' or 'wall'")
    if protocol not in ("auto", "5", "3.1.1"):
        raise typer.BadParameter("--protocol must be auto, 5 or 3.1.1")
    if clock == "event" and (time_origin is not None or speed is not None):
        raise typer.BadParameter("--time-origin and --speed apply to --clock wall only")
    origin = 0.0 if time_origin is None else time_origin
    factor = 1.0 if speed is None else speed
    if not (math.isfinite(origin) and math.isfinite(factor) and factor > 0):
        raise typer.BadParameter("--time-origin must be finite and --speed a finite number > 0")
    clock_mode: ClockMode = "event" if clock == "event" else "wall"
    if inspect is not None:
        given = {
            "--broker": broker is not None, "--db": db is not None, "--devices": devices is not None,
            "--client-id": client_id is not None, "--mqtt-password-file": mqtt_password_file is not None,
            "--ack-every": ack_every > 0, "--audit": audit,
        }  # fmt: skip
        if any(given.values()):
            raise typer.BadParameter(
                f"--inspect reads its database and connects to no broker: drop {', '.join(k for k, v in given.items() if v)}",
                param_hint="--inspect",
            )
        _check_http_host(http_host, http_token)
        _check_epoch(sim_epoch)
        _inspect(
            inspect, load_config(config, policy), metrics=EngineMetrics(clock=clock_mode, speed=factor),
            host=http_host, port=0 if http is None else http, token=http_token, url_file=http_url_file,
            sim_epoch=sim_epoch, time_origin=origin,
        )  # fmt: skip
        return
    db = DEFAULT_DB if db is None else db
    if http is not None and db in (":memory:", "sqlite:///:memory:"):
        raise typer.BadParameter("--http needs a database file or server (--db PATH or --db postgresql://...)")
    if http is not None:
        _check_http_host(http_host, http_token)
        _check_epoch(sim_epoch)
    host, port, login = _broker(DEFAULT_BROKER if broker is None else broker, mqtt_password_file)
    engine_config = load_config(config, policy)
    try:
        part = Partition.parse(partition, shards)
    except PartitionError as exc:
        raise typer.BadParameter(str(exc)) from exc
    client = f"sot-engine-{part.index}" if client_id is None else client_id
    transport = MqttTransport(host, port, client_id=client, protocol=protocol, login=login, keepalive_s=keepalive)  # type: ignore[arg-type]
    api: HttpApi | None = None
    try:
        storage = Storage(db)
        logging.getLogger("sot.engine").info("database %s", storage.path, extra={"database": storage.path})
        metrics = EngineMetrics(clock=clock_mode, speed=factor)
        service = EngineService(
            engine_config,
            transport,
            storage,
            topics=Topics(prefix, shards=part.shards),
            clock=clock_mode,
            time_origin=origin,
            speed=factor,
            metrics=metrics,
            ack_every=ack_every,
            partition=part,
            audit=audit,
        )
        if devices is not None:  # read and applied a chunk at a time, committed once
            service.provision_chunks(iter_devices(devices))
        metrics.start(service.core, service.counters, commands_sent(storage.database))

        def _stop(signum: int, frame: FrameType | None) -> None:
            service.stop()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        if http is not None:  # the API reads through a pool on the engine's own database object
            api = _start_api(
                storage.database, metrics, http_host, http, http_token, url_file=http_url_file,
                connected=transport.connected.is_set,
                ready=lambda: transport.connected.is_set() and service.subscribed,
                degraded=lambda: _held_up(storage) or service.held_up(),
                engine_config=engine_config, sim_epoch=sim_epoch, time_origin=origin,
            )  # fmt: skip
        service.run()
    except (DatabaseInUse, DatabaseTooNew) as exc:  # another engine's database: refused at start, as a bad option is
        typer.echo(f"sot engine: {exc}", err=True)
        raise typer.Exit(2) from exc
    except EngineError as exc:
        typer.echo(f"sot engine: {exc}", err=True)
        raise typer.Exit(1) from exc
    finally:
        if api is not None:
            api.stop()
        transport.close()
    storage.close()


def _inspect(
    where: str,
    config: EngineConfig,
    *,
    metrics: EngineMetrics,
    host: str,
    port: int,
    token: str | None,
    url_file: Path | None,
    sim_epoch: str,
    time_origin: float,
) -> None:
    """Serve the HTTP API of a database read-only until SIGTERM/SIGINT: its figures as stored, nothing run."""
    db = Database.at(where)
    try:
        stored = read_stored(db, config)
    except EngineError as exc:
        typer.echo(f"sot engine: {exc}", err=True)
        raise typer.Exit(1) from exc
    metrics.start(stored.core, stored.counters, stored.commands)
    shown = db.location.shown
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    api = _start_api(
        db, metrics, host, port, token, url_file=url_file,
        connected=lambda: False, ready=lambda: True, degraded=lambda: None,
        engine_config=config, sim_epoch=sim_epoch, time_origin=time_origin, inspecting=shown,
    )  # fmt: skip
    typer.echo(
        f"sot engine: inspecting {shown} read-only ({len(stored.core.open_case_of)} open cases); "
        f"HTTP API on {api.url} until Ctrl-C",
        err=True,
    )
    try:
        while not stop.wait(0.5):
            pass
    finally:
        api.stop()
        db.dispose()


def _check_epoch(text: str) -> None:
    """Refuse a ``--sim-epoch`` that is no ISO 8601 time (checked here, with the HTTP API it is for)."""
    from support_engine.api.timebase import parse_epoch

    try:
        parse_epoch(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--sim-epoch") from exc


def _start_api(
    db: Database,
    metrics: EngineMetrics,
    host: str,
    port: int,
    token: str | None,
    *,
    url_file: Path | None,
    connected: Callable[[], bool],
    ready: Callable[[], bool],
    degraded: Callable[[], str | None],
    engine_config: EngineConfig,
    sim_epoch: str,
    time_origin: float,
    inspecting: str | None = None,
) -> HttpApi:
    """Bind and start the HTTP API (imported here: an engine without ``--http`` loads no web framework)."""
    from support_engine.http_api import HttpApi, create_app

    try:
        app = create_app(
            db, metrics, connected=connected, token=token or None, degraded=degraded, ready=ready,
            engine_config=engine_config, sim_epoch=sim_epoch, time_origin=time_origin, inspecting=inspecting,
        )  # fmt: skip
        api = HttpApi(app, host=host, port=port)
    except OSError as exc:
        typer.echo(f"sot engine: cannot serve HTTP on {host}:{port}: {exc}", err=True)
        raise typer.Exit(1) from exc
    api.start()
    if url_file is not None:  # whole or not at all: a reader never sees half a URL
        partial = url_file.with_name(f".{url_file.name}.partial")
        partial.write_text(api.url + "\n", encoding="utf-8")
        partial.replace(url_file)
    return api


def _held_up(storage: Storage) -> str | None:
    """What holds the engine up, for /healthz: its database locked by another process, or lost."""
    return storage.held_up


_ = Protocol
if __name__ == "__main__":
    app()
