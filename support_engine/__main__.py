"""``python -m support_engine``: run the support engine against a broker (also ``sot engine``)."""

from __future__ import annotations

import ipaddress
import json
import logging
import math
import os
import signal
import sys
from collections.abc import Callable
from datetime import UTC, datetime
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
from support_engine.database import DatabaseInUse
from support_engine.errors import EngineError
from support_engine.metrics import EngineMetrics
from support_engine.mqtt_transport import MqttLogin, MqttTransport, Protocol
from support_engine.registry import iter_devices
from support_engine.service import ClockMode, EngineService
from support_engine.storage import Storage

if TYPE_CHECKING:
    from support_engine.http_api import HttpApi

app = typer.Typer(add_completion=False, help="Run the support engine against an MQTT broker.")

# A record's own attributes, and uvicorn's copy of its message with terminal colours: not extra fields.
_SKIPPED = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "color_message"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, then the record's extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update((k, v) for k, v in record.__dict__.items() if k not in _SKIPPED and k not in line)
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def _configure_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


PASSWORD_ENV = "SOT_MQTT_PASSWORD"
HTTP_TOKEN_ENV = "SOT_HTTP_TOKEN"


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
        str,
        typer.Option(
            help="Broker URL: mqtt://host:port, with a login mqtt://user[:password]@host:port, over TLS "
            "mqtts://host:8883?ca=CA.crt[&cert=CLIENT.crt&key=CLIENT.key]."
        ),
    ] = "mqtt://127.0.0.1:1883",
    mqtt_password_file: Annotated[
        Path | None,
        typer.Option(
            help=f"Read the broker password from this file (first line) when the URL has a user but no "
            f"password; without it, ${PASSWORD_ENV} is used."
        ),
    ] = None,
    db: Annotated[
        str,
        typer.Option(
            help="Database: a SQLite file (created if missing), sqlite:///PATH, or a PostgreSQL URL, "
            "postgresql://user@host:port/database (the database must exist; tables are created)."
        ),
    ] = "sot-engine.sqlite",
    clock: Annotated[str, typer.Option(help="'event' (follow the world's clock barrier) or 'wall'.")] = "wall",
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
    """Serve until SIGTERM/SIGINT: ingest, detect, open cases, dispatch, notify."""
    if log_format not in ("text", "json"):
        raise typer.BadParameter("--log-format must be 'text' or 'json'")
    _configure_logging(log_level, log_format)
    if http is not None and not 0 <= http <= 65535:
        raise typer.BadParameter("--http must be a port, 0-65535 (0: any free port)")
    if http is not None and db in (":memory:", "sqlite:///:memory:"):
        raise typer.BadParameter("--http needs a database file or server (--db PATH or --db postgresql://...)")
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
    if http is not None:
        _check_http_host(http_host, http_token)
    host, port, login = _broker(broker, mqtt_password_file)
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
        clock_mode: ClockMode = "event" if clock == "event" else "wall"
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
        metrics.start(service.core, service.counters)

        def _stop(signum: int, frame: FrameType | None) -> None:
            service.stop()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        if http is not None:  # the API opens its own connections: the URL with its password, if any
            api = _start_api(
                db, metrics, transport, http_host, http, http_token,
                degraded=lambda: _held_up(storage) or service.held_up(),
                service_ready=lambda: service.subscribed,
            )  # fmt: skip
        service.run()
    except DatabaseInUse as exc:  # another engine writes this database: refused at start, as a bad option is
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


def _start_api(
    db: str,
    metrics: EngineMetrics,
    transport: MqttTransport,
    host: str,
    port: int,
    token: str | None = None,
    *,
    degraded: Callable[[], str | None] = lambda: None,
    service_ready: Callable[[], bool] = lambda: True,
) -> HttpApi:
    """Bind and start the HTTP API (imported here: an engine without ``--http`` loads no web framework)."""
    from support_engine.http_api import HttpApi, create_app

    try:
        app = create_app(
            db,
            metrics,
            connected=transport.connected.is_set,
            token=token or None,
            degraded=degraded,
            ready=lambda: transport.connected.is_set() and service_ready(),
        )
        api = HttpApi(app, host=host, port=port)
    except OSError as exc:
        typer.echo(f"sot engine: cannot serve HTTP on {host}:{port}: {exc}", err=True)
        raise typer.Exit(1) from exc
    api.start()
    return api


def _held_up(storage: Storage) -> str | None:
    """What holds the engine up, for /healthz: its database locked by another process, or lost."""
    return storage.held_up


_ = Protocol
if __name__ == "__main__":
    app()
