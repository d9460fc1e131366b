"""``sot engine``: the support engine alone, against any broker, or a database inspected read-only;
its options forwarded to ``python -m support_engine``, which the command becomes (``exec``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from contracts.topics import DEFAULT_PREFIX
from support_engine.dbcli import app as engine_db_app

__all__ = ["engine", "engine_app"]

engine_app = typer.Typer(
    add_completion=False,
    help="Run the support engine alone against a broker (no subcommand), inspect a database read-only "
    "(--inspect), or manage its schema (db).",
)


@engine_app.callback(invoke_without_command=True)
def engine(
    ctx: typer.Context,
    broker: Annotated[
        str | None, typer.Option(help="Broker URL, mqtt://host:port (default mqtt://127.0.0.1:1883).")
    ] = None,
    db: Annotated[
        str | None,
        typer.Option(
            help="Database: a SQLite file, sqlite:///PATH, or postgresql+psycopg://user@host:port/db "
            "(or postgresql://; default sot-engine.sqlite)."
        ),
    ] = None,
    inspect: Annotated[
        str | None,
        typer.Option(
            metavar="DB",
            help="Inspect a finished run's database read-only instead: serve its HTTP API and console "
            "(--http, default any free port) without a broker; nothing runs, nothing is written.",
        ),
    ] = None,
    clock: Annotated[
        str | None,
        typer.Option(
            help="'wall' (production) or 'event' (follow a world's clock barrier). Default: wall; "
            "with --inspect, event."
        ),
    ] = None,
    sim_epoch: Annotated[
        str | None,
        typer.Option(
            metavar="ISO",
            help="Event clock: the calendar time simulated time 0 is shown as (default 2026-01-01T00:00:00Z).",
        ),
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="Engine configuration file (YAML/JSON): policy, rules, issues, SLA.")
    ] = None,
    policy: Annotated[str | None, typer.Option(help="Override the configured policy.")] = None,
    prefix: Annotated[str, typer.Option(help="Topic prefix.")] = DEFAULT_PREFIX,
    client_id: Annotated[
        str | None, typer.Option(help="Fixed MQTT client id (names the persistent session). Default: sot-engine-K.")
    ] = None,
    partition: Annotated[
        str,
        typer.Option(
            help="Partition K/N (from 0): own the device topics of shards s with s % N == K; "
            "each partition needs its own --db. Default 0/1: everything."
        ),
    ] = "0/1",
    shards: Annotated[
        int | None, typer.Option(help="Shards the device topics are split into (default: N of --partition).")
    ] = None,
    protocol: Annotated[str, typer.Option(help="MQTT protocol: auto, 5 or 3.1.1.")] = "auto",
    log_level: Annotated[str, typer.Option(help="Log level.")] = "INFO",
    time_origin: Annotated[
        float | None, typer.Option(help="Wall clock only: Unix time that counts as time 0 (default: the epoch).")
    ] = None,
    speed: Annotated[
        float | None, typer.Option(help="Wall clock only: simulated seconds per real second (default 1).")
    ] = None,
    http: Annotated[
        int | None, typer.Option(help="Serve the HTTP API and Prometheus /metrics on this port (0: any free port).")
    ] = None,
    http_host: Annotated[
        str, typer.Option(help="Address the HTTP API listens on; beyond loopback only with --http-token.")
    ] = "127.0.0.1",
    http_token: Annotated[
        str | None,
        typer.Option(help="Require `Authorization: Bearer TOKEN` on the HTTP API (or set $SOT_HTTP_TOKEN)."),
    ] = None,
    mqtt_password_file: Annotated[
        Path | None,
        typer.Option(help="The broker password, from this file, for a URL with a user and no password."),
    ] = None,
    log_format: Annotated[str, typer.Option(help="Log format: text or json (one object per line).")] = "text",
    devices: Annotated[
        Path | None,
        typer.Option(help="Device registry (.csv, .jsonl, .json, .yaml): product, owner, region, firmware, contract."),
    ] = None,
    ack_every: Annotated[
        int, typer.Option(help="Publish an ingest receipt for every device message whose seq is a multiple of N.")
    ] = 0,
) -> None:
    """Run the support engine alone against a broker, until Ctrl-C (or inspect a database: --inspect);
    `sot engine db --help` for its schema."""
    if ctx.invoked_subcommand is not None:
        return
    args = ["--prefix", prefix, "--partition", partition]
    args += ["--protocol", protocol, "--log-level", log_level, "--log-format", log_format]
    given = {"--broker": broker, "--db": db, "--inspect": inspect, "--clock": clock, "--sim-epoch": sim_epoch}
    for name, value in given.items():
        if value is not None:
            args += [name, value]
    if client_id is not None:
        args += ["--client-id", client_id]
    if shards is not None:
        args += ["--shards", str(shards)]
    if http is not None:
        args += ["--http", str(http), "--http-host", http_host]
    if http_token is not None:
        args += ["--http-token", http_token]
    if mqtt_password_file is not None:
        args += ["--mqtt-password-file", str(mqtt_password_file)]
    if time_origin is not None:
        args += ["--time-origin", str(time_origin)]
    if speed is not None:
        args += ["--speed", str(speed)]
    if config is not None:
        args += ["--config", str(config)]
    if policy is not None:
        args += ["--policy", policy]
    if devices is not None:
        args += ["--devices", str(devices)]
    if ack_every:
        args += ["--ack-every", str(ack_every)]
    os.execv(sys.executable, [sys.executable, "-m", "support_engine", *args])


engine_app.add_typer(engine_db_app, name="db")
