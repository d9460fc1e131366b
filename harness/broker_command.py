"""``sot broker``: a loopback broker with the project's configuration, or a secure deployment
written and started (:mod:`harness.secure_broker`), or a configuration linted."""

from __future__ import annotations

import functools
import signal
import time
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer
from rich.console import Console

from contracts.topics import DEFAULT_PREFIX, Topics
from harness.errors import BrokerError

__all__ = ["broker"]

console = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def broker(
    port: Annotated[int, typer.Option(help="TCP port on 127.0.0.1.")] = 1883,
    kind: Annotated[str, typer.Option(help="auto (Mosquitto if installed), mosquitto or amqtt.")] = "auto",
    secure: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR",
            help="Write a secure deployment into DIR (passwords per identity, ACL, TLS CA and server "
            "certificate, limits; kept secrets are reused) and start Mosquitto with it.",
        ),
    ] = None,
    tls_port: Annotated[int, typer.Option(help="With --secure: the TLS listener's port on 127.0.0.1.")] = 8883,
    prefix: Annotated[
        str, typer.Option(help="With --secure: the topic prefix the ACL is written for.")
    ] = DEFAULT_PREFIX,
    engines: Annotated[
        int, typer.Option(min=1, max=64, help="With --secure: engine identities, one per partition.")
    ] = 1,
    device: Annotated[
        list[str] | None, typer.Option(help="With --secure: a device identity (its id; repeat the option).")
    ] = None,
    gateway: Annotated[list[str] | None, typer.Option(help="With --secure: a gateway identity (repeatable).")] = None,
    technician: Annotated[
        list[str] | None, typer.Option(help="With --secure: a technician identity (repeatable).")
    ] = None,
    backlog: Annotated[
        int, typer.Option(min=1, help="Messages queued per client that must not be lost (--secure and --check).")
    ] = 100_000,
    generate_only: Annotated[bool, typer.Option(help="With --secure: write the files and exit.")] = False,
    check: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="Lint a Mosquitto configuration as a deployment: one line per problem and exit 1, or exit 0.",
        ),
    ] = None,
) -> None:
    """Start a broker with the project's configuration and keep it running until Ctrl-C; or write and
    start a secure one (--secure DIR); or lint a configuration (--check FILE)."""
    from harness.broker import start_broker
    from harness.secure_broker import check_config

    if check is not None:
        problems = check_config(check, backlog=backlog)
        for problem in problems:
            out.print(f"{check}: {problem}", markup=False, highlight=False)
        if problems:
            raise typer.Exit(1)
        out.print(f"{check}: ok (no anonymous access, password file and ACL, backlog {backlog:,}, limits set)")
        return
    try:
        if secure is not None:
            b = _start_secure(
                secure, port, tls_port, prefix, engines, device, gateway, technician, backlog, generate_only
            )
            if b is None:
                return
        else:
            b = start_broker(kind, port=port)  # type: ignore[arg-type]
    except (BrokerError, ValueError) as exc:
        console.print(f"[bold red]sot broker failed[/]: {exc}")
        raise typer.Exit(1) from exc
    signal.signal(signal.SIGTERM, _raise_interrupt)
    console.print(f"[green]{b.version}[/] listening on [bold]{b.url}[/] (log: {b.log_path}); Ctrl-C stops it.")
    try:
        while b.alive():
            time.sleep(0.5)
        console.print("[red]the broker exited[/]; see its log above")
        raise typer.Exit(1)
    except KeyboardInterrupt:
        pass
    finally:
        b.stop()


def _start_secure(
    directory: Path,
    port: int,
    tls_port: int,
    prefix: str,
    engines: int,
    devices: list[str] | None,
    gateways: list[str] | None,
    technicians: list[str] | None,
    backlog: int,
    generate_only: bool,
) -> Any:
    """Write the deployment, print where its credentials are and the URLs to use; start it unless told not to."""
    from harness.broker import start_broker
    from harness.secure_broker import write_deployment

    Topics(prefix)  # a bad prefix fails here, before any file is written
    write = functools.partial(
        write_deployment,
        directory,
        tls_port=tls_port,
        prefix=prefix,
        engines=engines,
        devices=devices or (),
        gateways=gateways or (),
        technicians=technicians or (),
        backlog=backlog,
    )

    def conf(host: str, listen_port: int, workdir: Path, max_queued_messages: int) -> str:
        return write(host=host, port=listen_port).conf.read_text()

    d = write(port=port)
    engine = "engine" if engines == 1 else "engine-p0"
    console.print(f"wrote [bold]{d.conf}[/], passwd, acl, ca.crt, server.crt/key in {d.directory}")
    console.print(f"credentials (mode 0600): [bold]{d.credentials}[/] and {d.directory}/credentials/NAME.password")
    console.print(f"identities: {', '.join(f'{n} ({r})' for n, r in d.roles.items())}")
    console.print(f"plain, loopback only: [bold]{d.url(engine)}[/]")
    console.print(f"TLS:                  [bold]{d.url(engine, tls=True)}[/]")
    console.print(
        f"engine: SOT_MQTT_PASSWORD=$(cat {d.password_file(engine)}) sot engine --broker '{d.url(engine, tls=True)}'"
    )
    if generate_only:
        return None
    return start_broker(
        "mosquitto", port=port, workdir=directory, mosquitto_conf=conf, probe_login=("probe", d.passwords["probe"])
    )
