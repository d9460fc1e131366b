"""``sot loadtest``: a scenario's fleet as Locust users against a broker and the engine, reconciled and gated.

Registered on the ``sot`` app by :mod:`harness.cli`; everything heavy is imported when the command runs.
"""

from __future__ import annotations

import json
import math
import signal
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from contracts.topics import DEFAULT_PREFIX
from harness.progress import progress
from loadtest.baseline import DEFAULT_TOLERANCE

__all__ = ["EXIT_CROSSED", "EXIT_FAILED", "EXIT_INVALID", "loadtest"]

EXIT_CROSSED = 1  # a --fail-on threshold was crossed
EXIT_INVALID = 2  # bad options or scenario
EXIT_FAILED = 3  # the run itself could not be carried out

console = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def loadtest(
    scenario: Annotated[Path, typer.Argument(help="Scenario YAML file: its fleets are the load.")],
    users: Annotated[
        int | None,
        typer.Option(help="Peak Locust users: devices (one connection each), or gateways. Default: the whole fleet."),
    ] = None,
    spawn_rate: Annotated[float, typer.Option(help="Users started per second.")] = 50.0,
    duration: Annotated[str, typer.Option(help="Load duration: 90, 90s, 2m, 1h30m (a drain follows).")] = "60s",
    shape: Annotated[
        str,
        typer.Option(help="soak, ramp[:up=30s,down=10s], step[:steps=5,step=20s] or spike[:base=N,at=20s,hold=10s]."),
    ] = "soak",
    kind: Annotated[
        str, typer.Option(help="device (one connection per device, JSON) or gateway (batches).")
    ] = "device",
    workers: Annotated[
        int | None, typer.Option(help="Locust worker processes (default: one per core; 0: a single process).")
    ] = None,
    out_dir: Annotated[
        Path, typer.Option("--out", help="Directory for loadtest.json and Locust's CSV and HTML reports.")
    ] = Path("runs/loadtest"),
    fail_on: Annotated[
        list[str] | None,
        typer.Option(help='Fail (exit 1) when a condition holds: "p99_ingest_ms>100,lost>0". Repeatable.'),
    ] = None,
    ui: Annotated[
        bool, typer.Option("--ui", help="Locust's web UI (it starts the run at once; open the URL).")
    ] = False,
    ui_port: Annotated[int, typer.Option(help="Port of the web UI.")] = 8089,
    broker: Annotated[
        str | None,
        typer.Option(
            help="Use this broker and start neither broker nor engine: mqtt://host:port, "
            "mqtt://user@host:port (password from $SOT_MQTT_PASSWORD), mqtts://host:8883?ca=CA.crt."
        ),
    ] = None,
    engine_metrics: Annotated[
        str | None,
        typer.Option(help="With --broker: the engine's /metrics URL, to reconcile against (http://host:port/metrics)."),
    ] = None,
    speed: Annotated[float | None, typer.Option(help="Divide the fleet's telemetry intervals by this.")] = None,
    rate: Annotated[
        float | None, typer.Option(help="Messages per second at the peak (sets --speed from the fleet's intervals).")
    ] = None,
    ack_every: Annotated[
        int, typer.Option(help="Sample every N-th message for a publish-to-ingest receipt (0: none).")
    ] = 10,
    qos: Annotated[int, typer.Option(help="QoS of the devices' messages: 0 or 1.")] = 1,
    outbox: Annotated[
        str,
        typer.Option(
            help="QoS 1: a device keeps a message until the broker's PUBACK (puback) or the engine's receipt "
            "(receipt: needs --ack-every 1; survives a broker crash), and sends it again after a reconnect."
        ),
    ] = "puback",
    outbox_size: Annotated[int, typer.Option(help="Messages a device's outbox holds at most (oldest dropped).")] = 100,
    jitter: Annotated[float, typer.Option(help="Each interval varies by up to this share.")] = 0.1,
    event_share: Annotated[float, typer.Option(help="Share of device ticks that also send an event.")] = 0.01,
    drain: Annotated[str, typer.Option(help="Seconds without users at the end, for the last receipts.")] = "10s",
    receipt_timeout: Annotated[str, typer.Option(help="A receipt not back by then counts as missing.")] = "5s",
    warmup: Annotated[
        str, typer.Option(help="Messages of the first seconds are counted but left out of the latency quantiles.")
    ] = "0s",
    prefix: Annotated[str, typer.Option(help="Topic prefix.")] = DEFAULT_PREFIX,
    locustfile: Annotated[
        Path | None, typer.Option(help="Your own locustfile (default: loadtest/locustfile.py), same options.")
    ] = None,
    junit: Annotated[
        Path | None, typer.Option(help="Also write the verdict as JUnit XML here, for CI (thresholds, reconciliation).")
    ] = None,
    baseline: Annotated[
        Path | None,
        typer.Option(
            help="An earlier run's loadtest.json (or its directory): mark the headline figures that regressed."
        ),
    ] = None,
    tolerance: Annotated[
        float, typer.Option(help="With --baseline: a figure regressed when worse by more than this share (0.10: 10 %).")
    ] = DEFAULT_TOLERANCE,
    fail_on_regression: Annotated[
        bool,
        typer.Option(
            "--fail-on-regression",
            help="With --baseline: fail (exit 1) when a headline figure regressed or could not be compared.",
        ),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar and no table.")] = False,
) -> None:
    """Load-test the ingestion path with Locust: devices (or gateways) from a scenario against a broker
    and the engine; reconcile published / broker / ingested; write loadtest.json and loadtest.html;
    gate on --fail-on (and, against a --baseline, on --fail-on-regression)."""
    from harness.broker import BrokerUrl
    from harness.errors import BrokerError, HarnessError
    from loadtest.baseline import BaselineError, baseline_path, compare, read_baseline, summary_lines
    from loadtest.fleet import from_scenario
    from loadtest.report import flat_metrics
    from loadtest.runner import LoadTestError, LoadTestOptions, Status, run_loadtest
    from loadtest.shapes import ShapeError, parse_duration
    from loadtest.thresholds import ThresholdError, evaluate, parse_fail_on, records

    s = _scenario(scenario)
    mix = from_scenario(s)
    if kind not in ("device", "gateway"):
        raise typer.BadParameter("must be device or gateway", param_hint="--kind")
    try:
        thresholds = parse_fail_on(",".join(fail_on)) if fail_on else []
    except ThresholdError as exc:
        raise typer.BadParameter(str(exc), param_hint="--fail-on") from exc
    if not (math.isfinite(tolerance) and tolerance >= 0):
        raise typer.BadParameter("must be a number >= 0 (0.10: 10 %)", param_hint="--tolerance")
    if fail_on_regression and baseline is None:
        raise typer.BadParameter("needs a --baseline to compare with", param_hint="--fail-on-regression")
    try:
        old = read_baseline(baseline) if baseline is not None else None
    except BaselineError as exc:
        raise typer.BadParameter(str(exc), param_hint="--baseline") from exc
    try:
        url = BrokerUrl.parse(broker) if broker else None
    except BrokerError as exc:
        raise typer.BadParameter(str(exc), param_hint="--broker") from exc
    try:
        options = LoadTestOptions(
            users=users if users is not None else mix.full_size(kind),  # type: ignore[arg-type]
            spawn_rate=spawn_rate,
            duration_s=parse_duration(duration),
            shape=shape,
            kind=kind,  # type: ignore[arg-type]
            workers=workers,
            broker_url=url,
            engine_metrics_url=engine_metrics,
            prefix=prefix,
            speed=speed,
            rate=rate,
            ack_every=ack_every,
            qos=qos,
            outbox=outbox,  # type: ignore[arg-type]  # checked by options.check()
            outbox_size=outbox_size,
            jitter=jitter,
            event_share=event_share,
            drain_s=parse_duration(drain),
            receipt_timeout_s=parse_duration(receipt_timeout),
            warmup_s=parse_duration(warmup),
            ui=ui,
            ui_port=ui_port,
            **({"locustfile": locustfile} if locustfile is not None else {}),
        )
        options.check()
        plan = options.plan()
    except (ShapeError, ValueError) as exc:
        console.print(f"[bold red]sot loadtest[/]: {exc}")
        raise typer.Exit(EXIT_INVALID) from exc
    if options.locustfile is not None and not options.locustfile.exists():
        raise typer.BadParameter(f"{options.locustfile} does not exist", param_hint="--locustfile")
    signal.signal(signal.SIGTERM, _interrupt)
    bar = progress(
        console,
        "second",
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f} s {task.fields[note]}"),
        TimeElapsedColumn(),
        quiet=quiet,
    )
    label = f"{mix.scenario} · {options.users:,} {kind} users · {plan.shape.name}"
    task = bar.add_task(label, total=plan.total_s, note="")

    def on_status(st: Status) -> None:
        parts = [] if st.connected is None else [f"{st.connected:,} connected"]
        if st.ingested_per_s is not None:
            parts.append(f"{st.ingested_per_s:,.0f} ingested/s")
        bar.update(task, completed=min(st.elapsed_s, st.total_s), note="· " + " · ".join(parts) if parts else "")

    def on_ready(text: str) -> None:
        if not quiet:
            console.print(text)
            if ui:
                console.print(f"Locust web UI: [bold]http://127.0.0.1:{ui_port}[/] (closes 30 s after the run)")

    try:
        with bar:
            outcome = run_loadtest(mix, options, out_dir, engine_config=s.engine, status=on_status, on_ready=on_ready)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: everything started was stopped; no report written.")
        raise typer.Exit(130) from None
    except (LoadTestError, HarnessError, OSError) as exc:
        console.print(f"[bold red]sot loadtest failed[/]: {exc}")
        raise typer.Exit(EXIT_FAILED) from exc
    report = outcome.report
    verdicts = evaluate(thresholds, flat_metrics(report))
    report["thresholds"] = records(verdicts)
    report["comparison"] = None
    if old is not None and baseline is not None:
        report["comparison"] = compare(
            report, old, tolerance=tolerance, source=str(baseline_path(baseline)), gate=fail_on_regression
        )
    regressed = bool(report["comparison"] and report["comparison"]["failed"])
    report["passed"] = not any(v.failed for v in verdicts) and not regressed
    written = _write(report, out_dir, junit)
    for warning in outcome.warnings:
        console.print(f"[yellow]warning[/]: {warning}")
    if not quiet:
        _print_summary(report)
        console.print(f"wrote {', '.join(written)}, locust.html (logs: locust-*.log, engine.log)")
    for v in verdicts:
        style = "red" if v.failed else "green"
        console.print(f"[{style}]{'FAIL' if v.failed else 'ok'}[/] {v.message()}")
    if report["comparison"] is not None:
        for style, line in summary_lines(report["comparison"]):
            console.print(f"[{style}]{line}[/]" if style else line)
        if regressed:
            console.print("[red]FAIL[/] --fail-on-regression: the run is worse than its baseline")
    if not report["passed"]:
        raise typer.Exit(EXIT_CROSSED)


def _write(report: dict[str, Any], out_dir: Path, junit: Path | None) -> list[str]:
    """Write loadtest.json, loadtest.html and the JUnit file (when asked); the paths written."""
    from loadtest.html import render_page
    from loadtest.junit import junit_xml

    (out_dir / "loadtest.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (out_dir / "loadtest.html").write_text(render_page(report), encoding="utf-8")
    written = [f"{out_dir}/loadtest.json", f"{out_dir}/loadtest.html"]
    if junit is not None:
        junit.parent.mkdir(parents=True, exist_ok=True)
        junit.write_text(junit_xml(report), encoding="utf-8")
        written.append(str(junit))
    return written


def _scenario(path: Path) -> Any:
    """The scenario at ``path``, or its problems printed as ``sot validate`` prints them and exit 2."""
    from harness.cli import _load

    return _load(path)


def _fmt(value: float | None, spec: str = "{:,.0f}") -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else spec.format(value)


def _print_summary(report: dict[str, Any]) -> None:
    m, rates, lat = report["messages"], report["rates"], report["latency_ms"]
    table = Table(title=f"load test · {report['scenario']} · {report['users']:,} {report['kind']} users")
    table.add_column("figure")
    table.add_column("value", justify="right")
    ms = "{:,.2f}"
    table.add_row(
        "published / ingested / rejected / lost",
        " / ".join(_fmt(m[k]) for k in ("published", "ingested", "rejected", "lost")),
    )
    table.add_row("duplicates · publish failures", f"{_fmt(m['duplicates'])} · {_fmt(m['publish_failed'])}")
    table.add_row(
        "outbox: resent / overflow / unconfirmed",
        " / ".join(_fmt(m.get(k)) for k in ("resent", "outbox_overflow", "unconfirmed")),
    )
    table.add_row("receipts timed / missing", f"{_fmt(m['receipts']['timed'])} / {_fmt(m['receipts']['missing'])}")
    table.add_row(
        "msgs/s published (mean · median second)",
        f"{_fmt(rates['published_per_s'])} · {_fmt(rates['published_per_s_median'])}",
    )
    table.add_row("msgs/s ingested", _fmt(rates["ingested_per_s"]))
    for name, what in (("ingest", "publish → engine receipt"), ("publish", "publish → PUBACK"), ("connect", "connect")):
        figures = lat[name]
        table.add_row(f"{what} ms p50 / p99 / max", " / ".join(_fmt(figures[k], ms) for k in ("p50", "p99", "max")))
    lag = lat["engine_lag"]
    table.add_row("engine ingest lag ms p50 / p99 (histogram)", " / ".join(_fmt(lag[k], ms) for k in ("p50", "p99")))
    c = report["connections"]
    table.add_row("connections made / failed / lost", f"{c['made']:,} / {c['failed']:,} / {c['lost']:,}")
    b = report["broker"]
    if b is not None:
        table.add_row("broker: PUBLISH in / dropped", f"{_fmt(b['publish_received'])} / {_fmt(b['publish_dropped'])}")
    out.print(table)
