"""``sot``: run scenarios through a broker and the engine, validate them, run the parts alone."""

from __future__ import annotations

import json
import math
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import msgspec
import typer
from rich.console import Console
from rich.progress import BarColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from contracts.engine_config import POLICIES
from contracts.errors import TopicError
from contracts.topics import DEFAULT_PREFIX, Topics
from experiments.command import compare as compare_command
from experiments.command import sweep as sweep_command
from harness.broker_command import broker as broker_command
from harness.chaos_command import chaos as chaos_command
from harness.engine_command import engine_app
from harness.errors import BrokerError, HarnessError
from harness.lint_command import lint as lint_command
from harness.outputs import write_run
from harness.progress import progress
from loadtest.command import loadtest as loadtest_command
from sim.errors import ScenarioError
from sim.scenario import MAX_SEED, Scenario

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="sot — the Support-of-Things twin: simulate connected-product fleets, the people around them and "
    "a real support engine over MQTT, and measure the service they get.",
)
console = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)

EXIT_INVALID = 2


def _load(path: Path) -> Scenario:
    from rich.markup import escape

    from sim.scenario_file import load

    try:
        return load(path)
    except ScenarioError as exc:
        console.print(f"[bold red]{exc.source}[/]: {len(exc.problems)} problem(s)")
        for problem in exc.problems:  # escaped: paths and names hold brackets (`failure_modes[power_loss]`)
            where, at = escape(problem.where(exc.source)), escape(problem.path or "<document>")
            console.print(f"  {where}[red]{at}[/]: {escape(problem.message)}")
        console.print(
            "Fix the file and run [bold]sot validate[/] again; [bold]sot schema[/] gives a JSON Schema for your editor."
        )
        raise typer.Exit(EXIT_INVALID) from exc


@app.command()
def validate(
    scenario: Annotated[Path, typer.Argument(help="Scenario YAML file.")],
    strict: Annotated[bool, typer.Option("--strict", help="Also lint it (sot lint); exit 1 on a lint error.")] = False,
) -> None:
    """Check a scenario file; list every problem with its path (exit 2), or summarise it (exit 0)."""
    s = _load(scenario)
    modes = sum(len(f.failure_modes) for f in s.fleets)
    consumables = sum(len(f.consumables) for f in s.fleets)
    products = ", ".join(sorted({f.product for f in s.fleets}))
    out.print(
        f"[green]ok[/] {scenario}: scenario {s.name!r}, {s.device_count:,} devices in {len(s.fleets)} fleet(s) "
        f"({products}), {modes} failure mode(s), {consumables} consumable(s), {s.duration_days:g} days, seed {s.seed}"
    )
    if strict:
        from harness.lint_command import check

        check(s)


@app.command()
def schema(
    output: Annotated[Path | None, typer.Option("--out", help="Write to this file instead of standard output.")] = None,
) -> None:
    """Print the JSON Schema of scenario files (point your editor's YAML plugin at it)."""
    from sim.scenario_file import json_schema

    text = json.dumps(json_schema(), indent=2)
    if output is None:
        sys.stdout.write(text + "\n")
    else:
        output.write_text(text + "\n", encoding="utf-8")
        console.print(f"wrote {output}")


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def resized(s: Scenario, devices: int) -> Scenario:
    """``s`` with its fleets scaled to ``devices`` in all, in proportion (largest remainders; each
    fleet keeps at least one device)."""
    from sim.scenario_file import with_overrides

    counts = [f.count for f in s.fleets]
    if devices < len(counts):
        raise ValueError(f"must be at least {len(counts)} (one device per fleet), not {devices}")
    total = sum(counts)
    shares = [devices * c / total for c in counts]
    new = [max(1, int(x)) for x in shares]
    by_remainder = sorted(range(len(counts)), key=lambda i: (-(shares[i] - int(shares[i])), i))
    for i in by_remainder[: max(0, devices - sum(new))]:
        new[i] += 1
    while sum(new) > devices:  # the one-device floor of small fleets, taken from the largest
        new[new.index(max(new))] -= 1
    fleets = [{**msgspec.to_builtins(f), "count": n} for f, n in zip(s.fleets, new, strict=True)]
    return with_overrides(s, fleets=fleets)


@app.command()
def run(
    scenario: Annotated[Path, typer.Argument(help="Scenario YAML file.")],
    seed: Annotated[
        int | None, typer.Option(help="Random seed, 0 to 2^63-1 (default: the scenario's).", min=0, max=MAX_SEED)
    ] = None,
    policy: Annotated[
        str | None, typer.Option(help=f"Engine policy: {', '.join(POLICIES)} (default: the scenario's).")
    ] = None,
    broker: Annotated[
        str | None,
        typer.Option(
            help="Use this broker instead of starting one: mqtt://host:port, mqtt://user[:password]@host:port "
            "(password also from $SOT_MQTT_PASSWORD), mqtts://host:8883?ca=CA.crt[&cert=C.crt&key=C.key]."
        ),
    ] = None,
    broker_kind: Annotated[
        str, typer.Option(help="Broker to start when --broker is not given: auto, mosquitto or amqtt.")
    ] = "auto",
    protocol: Annotated[
        str,
        typer.Option(help="MQTT version for --broker: auto (5 if the broker speaks it, else 3.1.1), 5 or 3.1.1."),
    ] = "auto",
    out_dir: Annotated[
        Path,
        typer.Option(
            "--out",
            help="Directory for result.json, events.csv, ground_truth.csv, connectivity.csv, timeseries.csv "
            "(docs/outputs.md).",
        ),
    ] = Path("runs/latest"),
    days: Annotated[float | None, typer.Option(help="Override the scenario's duration_days.")] = None,
    warmup_days: Annotated[
        float | None,
        typer.Option(help="Override the scenario's warmup_days: KPIs count only what begins after the warm-up."),
    ] = None,
    devices: Annotated[
        int | None,
        typer.Option(
            help="Resize the fleets to this many devices in all, in their proportions (for scale runs: "
            "people, crews and depots stay as the scenario has them)."
        ),
    ] = None,
    prefix: Annotated[str, typer.Option(help="Topic prefix (lets runs share a broker).")] = DEFAULT_PREFIX,
    engines: Annotated[
        int,
        typer.Option(
            min=1,
            max=64,
            help="Engine partitions: the device topics are split into this many shards, one engine process "
            "(own session, own database engine-pK.sqlite) per shard, and the clock waits for them all. "
            "Decisions stay device by device, as one engine makes them.",
        ),
    ] = 1,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bar and no table; still writes the files.")
    ] = False,
    live: Annotated[
        float | None,
        typer.Option(
            metavar="FACTOR",
            help="Live mode: pace the world in real time at FACTOR simulated seconds per wall second "
            "(3600 = one simulated hour per second, 1 = real time) against the engine on the wall clock, "
            "with no clock/ack barrier. For demos and soak tests: live runs are not reproducible.",
        ),
    ] = None,
    secure: Annotated[
        bool,
        typer.Option(
            "--secure",
            help="Start Mosquitto as `sot broker --secure` configures it (passwords, ACL, TLS; files in "
            "OUT/broker) and connect the world and the engine with their own identities over TLS.",
        ),
    ] = False,
    http: Annotated[
        int | None,
        typer.Option(
            metavar="PORT",
            min=0,
            max=65535,
            help="Watch the run: the engine serves its console and HTTP API on this port while the run lasts "
            "(0: any free port); the URL is printed. One engine only (not with --engines > 1).",
        ),
    ] = None,
    http_host: Annotated[
        str, typer.Option(help="Address the engine's HTTP API listens on (--http); beyond loopback only with a token.")
    ] = "127.0.0.1",
    http_token: Annotated[
        str | None,
        typer.Option(
            envvar="SOT_HTTP_TOKEN",
            show_envvar=True,
            help="Require `Authorization: Bearer TOKEN` on the engine's HTTP API (--http) but /healthz and /readyz.",
        ),
    ] = None,
) -> None:
    """Run a scenario through an MQTT broker and the support engine; print KPIs and write the results."""
    from harness.broker import BrokerUrl
    from harness.engine_process import EngineHttp
    from harness.live import run_live
    from harness.runner import run_scenario
    from harness.secure_broker import SECURE_KIND
    from sim.scenario_file import with_overrides

    s = _load(scenario)
    if days is not None or warmup_days is not None:
        try:
            s = with_overrides(s, duration_days=days, warmup_days=warmup_days)
        except ScenarioError as exc:
            hint = "--warmup-days" if exc.path == "warmup_days" else "--days"
            raise typer.BadParameter(str(exc), param_hint=hint) from exc
    if devices is not None:
        try:
            s = resized(s, devices)
        except (ValueError, ScenarioError) as exc:
            raise typer.BadParameter(str(exc), param_hint="--devices") from exc
    _check_memory(s.device_count, "--devices" if devices is not None else "SCENARIO")
    if policy is not None and policy not in POLICIES:
        raise typer.BadParameter(f"{policy!r} is not one of {', '.join(POLICIES)}", param_hint="--policy")
    if protocol not in ("auto", "5", "3.1.1"):
        raise typer.BadParameter(f"{protocol!r}: expected auto, 5 or 3.1.1", param_hint="--protocol")
    if broker_kind not in ("auto", "mosquitto", "amqtt"):
        raise typer.BadParameter("must be auto, mosquitto or amqtt", param_hint="--broker-kind")
    try:
        url = BrokerUrl.parse(broker) if broker else None
    except BrokerError as exc:
        raise typer.BadParameter(str(exc), param_hint="--broker") from exc
    except ValueError as exc:  # what urlsplit itself refuses, such as an unclosed [IPv6 address
        raise typer.BadParameter(
            f"bad broker URL {broker!r}: {exc}; expected mqtt://host[:port]", param_hint="--broker"
        ) from exc
    topics = _topics(prefix, engines)
    _writable_dir(out_dir)
    if live is not None and not (math.isfinite(live) and live > 0):
        raise typer.BadParameter("must be a number > 0 (simulated seconds per wall second)", param_hint="--live")
    if live is not None and engines > 1:
        raise typer.BadParameter(
            "engine partitions run in event time: drop --live or --engines", param_hint="--engines"
        )
    if live is not None:
        console.print(
            f"live: {live:g} simulated s per wall second; expected wall time "
            f"[bold]{_wall_time(s.duration_s / live)}[/] plus start-up (live runs are not reproducible)"
        )
    if http is not None and engines > 1:
        raise typer.BadParameter(
            "serves one engine's console: drop --engines, or look at a partition afterwards with "
            f"sot engine --inspect {out_dir}/engine-pK.sqlite",
            param_hint="--http",
        )
    if http is not None:
        from support_engine.__main__ import _check_http_host  # the engine's own rule, checked before anything starts

        _check_http_host(http_host, http_token)
    if secure and (url is not None or broker_kind == "amqtt"):
        hint = "--broker" if url is not None else "--broker-kind"
        raise typer.BadParameter(
            "--secure starts its own Mosquitto: drop --broker / --broker-kind amqtt", param_hint=hint
        )
    signal.signal(signal.SIGTERM, _raise_interrupt)
    out_dir.mkdir(parents=True, exist_ok=True)
    bar = progress(
        console,
        "day",
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("day {task.completed:.1f} of {task.total:.0f}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        quiet=quiet,
    )
    task = bar.add_task(
        f"{s.name} · {policy or s.engine.policy} · seed {seed if seed is not None else s.seed}"
        + ("" if live is None else f" · live x{live:g}"),
        total=s.duration_days,
    )

    def on_broker(version: str) -> None:
        if not quiet:
            started = "using" if url else "started"
            console.print(f"broker: {started} [bold]{version}[/]" + ("" if url else " (stopped again at the end)"))

    def on_http(address: str) -> None:  # printed even when quiet: it is what --http asked for
        token = " (with the bearer token)" if http_token else ""
        console.print(f"engine console and API: {address}/{token}, while the run lasts", markup=False, highlight=False)

    try:
        with bar:
            common: dict[str, Any] = {
                "seed": seed,
                "policy": policy,
                "broker_url": url,
                "broker_kind": SECURE_KIND if secure else broker_kind,
                "workdir": out_dir,
                "topics": topics,
                "progress": lambda t, end: bar.update(task, completed=t / 86400.0),
                "on_broker": on_broker,
                "protocol": protocol,
                "http": None if http is None else EngineHttp(http, http_host, http_token or None),
                "on_http": on_http,
            }
            outcome = run_scenario(s, engines=engines, **common) if live is None else run_live(s, factor=live, **common)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: broker and engine stopped; no result written.")
        raise typer.Exit(130) from None
    except (BrokerError, HarnessError) as exc:
        console.print(f"[bold red]sot run failed[/]: {exc}")
        raise typer.Exit(1) from exc
    from experiments.assess import assess_outcome

    try:
        outcome.result.update(assess_outcome(s, outcome.result, outcome.records, out_dir))
    except Exception as exc:  # a scoring fault must not cost the run: its files are written all the same
        console.print(f"[yellow]the run could not be scored[/] ({type(exc).__name__}: {exc}); writing it without")
    write_run(out_dir, outcome.result, outcome.records)
    if live is not None and not outcome.result["manifest"]["caught_up"]:
        console.print(
            "[yellow]the engine had not caught up when the live run ended[/]: "
            "'lost' counts what it had not ingested yet; try a smaller --live factor"
        )
    if not quiet:
        _print_kpis(outcome.result)
        _print_partitions(outcome.result)
        console.print(
            f"wrote {out_dir}/result.json, events.csv, ground_truth.csv, connectivity.csv, timeseries.csv"
            + (
                f" (engine database: {out_dir}/engine.sqlite)"
                if engines == 1
                else f" (engine databases: {out_dir}/engine-p*.sqlite)"
            )
        )


BYTES_PER_DEVICE = 2_000
"""Peak memory a run takes per device, world, engine and broker together (docs/benchmarks.md, "Fleet
scale", measured about 1,600 at 10^6 devices), rounded up."""


def _available_bytes() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _check_memory(devices: int, hint: str) -> None:
    """Refuse, before anything starts, a fleet that this machine's memory cannot hold."""
    available = _available_bytes()
    needed = devices * BYTES_PER_DEVICE
    if available is None or needed <= 0.9 * available:
        return
    fits = int(0.9 * available / BYTES_PER_DEVICE)
    raise typer.BadParameter(
        f"{devices:,} devices need about {needed / 2**30:.1f} GB (world, engine and broker), and this machine "
        f"has {available / 2**30:.1f} GB available: at most about {fits:,} devices fit (--devices {fits})",
        param_hint=hint,
    )


def _topics(prefix: str, shards: int = 1) -> Topics:
    """The run's topics, or a usage error naming ``--prefix``."""
    try:
        return Topics(prefix, shards=shards)
    except TopicError as exc:
        raise typer.BadParameter(
            f"{exc}: a prefix is topic levels without '+', '#' or a trailing '/'", param_hint="--prefix"
        ) from exc


def _writable_dir(path: Path) -> None:
    """Create ``path`` as a directory for the run's files, or a usage error naming ``--out``."""
    if path.exists() and not path.is_dir():
        raise typer.BadParameter(f"{path} is a file, not a directory", param_hint="--out")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".sot-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise typer.BadParameter(f"cannot write to {path}: {exc.strerror or exc}", param_hint="--out") from exc


def _print_partitions(result: dict[str, Any]) -> None:
    """How the readings split between engine partitions, and what to do when one got none."""
    parts = result.get("engine_partitions")
    if not parts:
        return
    total = sum(p["readings"] for p in parts) or 1
    shares = " / ".join(f"{p['readings'] / total:.0%}" for p in parts)
    console.print(f"engine partitions: readings {shares} (partitions 0-{len(parts) - 1})")
    if any(p["devices_provisioned"] == 0 for p in parts):
        console.print(
            "[yellow]a partition owns no device[/]: a gateway's devices share its shard, so spread needs "
            "more gateways than partitions (set the fleets' devices_per_gateway lower)"
        )


def _wall_time(seconds: float) -> str:
    """``2.0 s``, ``25 min``, ``3.5 h``, ``90 days``: a wall duration for people."""
    value, unit = seconds, "s"
    for name, size in (("days", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if seconds >= 2 * size:
            value, unit = seconds / size, name
            break
    return f"{value:,.0f} {unit}" if value >= 100 else f"{value:.3g} {unit}"


_LABELS = {
    "devices": ("devices", "{:,}"),
    "failures": ("failures (true)", "{:,}"),
    "prevented_failures": ("failures prevented", "{:,}"),
    "downtime_hours_per_device_year": ("downtime h / device-year", "{:.2f}"),
    "mttr_hours": ("MTTR (restore) h", "{:.1f}"),
    "first_time_fix_rate": ("first-time fix", "{:.1%}"),
    "resolved_within_day_rate": ("restored within a day", "{:.1%}"),
    "detected_before_owner_rate": ("detected before the owner", "{:.1%}"),
    "contacts_per_1000_devices": ("owner contacts / 1000 devices", "{:.1f}"),
    "owner_effort_steps_mean": ("owner effort, steps", "{:.2f}"),
    "truck_rolls_per_1000_devices": ("truck rolls / 1000 devices", "{:.1f}"),
    "remote_resolution_rate": ("resolved remotely", "{:.1%}"),
    "availability": ("availability", "{:.3%}"),
    "sla_breaches": ("SLA breaches", "{:,}"),
    "churned_owners": ("owners churned", "{:,}"),
    "abandoned_calls": ("calls abandoned in the queue", "{:,}"),
}
# Nested figures: (section, key, label, format); absent or None values are shown as "-".
_NESTED = [
    ("contact_centre", "asa_s", "contact centre: mean wait s", "{:.1f}"),
    ("contact_centre", "service_level", "contact centre: service level", "{:.1%}"),
    ("contact_centre", "occupancy", "contact centre: occupancy", "{:.1%}"),
    ("field", "utilisation", "technicians: utilisation", "{:.1%}"),
    ("field", "mean_response_h", "technicians: response h", "{:.1f}"),
    ("parts", "fill_rate", "parts: depot fill rate", "{:.1%}"),
]


def _print_kpis(result: dict[str, Any]) -> None:
    kpis = result["kpis"]
    table = Table(
        title=f"{result['scenario']} · policy {result['policy']} · seed {result['seed']} · {result['sim_days']:g} days"
    )
    table.add_column("KPI")
    table.add_column("value", justify="right")
    for key, (label, fmt) in _LABELS.items():
        table.add_row(label, fmt.format(kpis[key]))
    for section, key, label, fmt in _NESTED:
        value = kpis.get(section, {}).get(key)
        table.add_row(label, "-" if value is None else fmt.format(value))
    restored = ", ".join(f"{who} {n:,}" for who, n in kpis.get("restored_by", {}).items() if n)
    if restored:
        table.add_row("restored by", restored)
    cost = kpis["cost"]
    table.add_row("cost total", f"{cost['total']:,.0f}")
    table.add_row(
        "  downtime / field / contact / parts",
        f"{cost['downtime']:,.0f} / {cost['field']:,.0f} / {cost['contact_centre']:,.0f} / {cost['parts']:,.0f}",
    )
    score = result.get("scorecard", {}).get("overall", {})
    if score:
        pct = "-" if score.get("precision") is None else f"{score['precision']:.1%}"
        rec = "-" if score.get("recall") is None else f"{score['recall']:.1%}"
        table.add_row("engine alerts: precision / recall", f"{pct} / {rec}")
        claims = result["scorecard"].get("remote_fixes", {})
        table.add_row(
            "engine: remote fixes claimed / true", f"{claims.get('claimed', 0):,} / {claims.get('true', 0):,}"
        )
    net = result.get("ledger", {}).get("net_per_device_year")
    if net is not None:
        table.add_row(f"net cost / device-year ({result['ledger'].get('currency', '')})", f"{net:,.2f}")
    m = result["messages"]
    table.add_row("messages published / ingested / lost", f"{m['published']:,} / {m['ingested']:,} / {m['lost']:,}")
    if m.get("broker_dropped"):  # the broker's own count: its queue limit is too small for this run
        table.add_row("broker dropped (sent again)", f"{m['broker_dropped']:,}")
    out.print(table)
    out.print(
        f"broker: {result['manifest']['broker']} · {result['timing']['wall_s']:.1f} s wall · {result['timing']['readings_per_s']:,} readings/s"
    )


@app.command()
def products(
    name: Annotated[str | None, typer.Argument(help="Show this catalogue entry in full (YAML).")] = None,
) -> None:
    """List the product catalogue, or print one entry to start a product of your own from."""
    from sim import catalogue

    entries = catalogue.builtin()
    if name is not None:
        if name not in entries:
            console.print(f"[red]no product {name!r}[/]; the catalogue has: {', '.join(catalogue.names())}")
            raise typer.Exit(EXIT_INVALID)
        from importlib import resources

        sys.stdout.write(resources.files("sim.catalogue").joinpath(f"{name}.yaml").read_text(encoding="utf-8"))
        return
    table = Table(title="product catalogue (use with `product: NAME` in a fleet)")
    for column in ("product", "failure modes", "consumables", "remote fixes"):
        table.add_column(column)
    for key, entry in entries.items():
        modes = entry.get("failure_modes", [])
        fixes = [m["name"] for m in modes if m.get("remote_fix")]
        table.add_row(
            key,
            ", ".join(m["name"] for m in modes),
            ", ".join(c["name"] for c in entry.get("consumables", [])) or "-",
            ", ".join(fixes) or "-",
        )
    out.print(table)
    out.print("`sot products NAME` prints an entry; docs/products.md explains how to describe your own product.")


app.add_typer(engine_app, name="engine")
app.command("chaos")(chaos_command)
app.command("broker")(broker_command)
app.command("loadtest")(loadtest_command)
app.command("compare")(compare_command)
app.command("sweep")(sweep_command)
app.command("lint")(lint_command)


if __name__ == "__main__":
    app()
