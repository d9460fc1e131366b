"""``sot compare`` and ``sot sweep``: paired experiments from the command line, with a progress bar."""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from harness.progress import progress

if TYPE_CHECKING:
    from experiments.experiment import Outcome, Precision
    from experiments.plan import Plan
    from sim.scenario import Scenario

__all__ = ["compare", "sweep"]

console = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)
EXIT_INVALID = 2


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _scenario(path: Path, days: float | None, warmup_days: float | None) -> Scenario:
    from harness.cli import _load
    from sim.errors import ScenarioError
    from sim.scenario_file import with_overrides

    s = _load(path)
    changes: dict[str, Any] = {"duration_days": days}
    if warmup_days is not None:
        changes["warmup_days"] = warmup_days
    if any(v is not None for v in changes.values()):
        try:
            s = with_overrides(s, **changes)
        except ScenarioError as exc:
            problems = "; ".join(str(p) for p in exc.problems)
            raise typer.BadParameter(problems, param_hint="--days / --warmup-days") from exc
    return s


def _precision(text: str | None, start: int, cap: int) -> Precision | None:
    from experiments.experiment import Precision

    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(%?)\s*", text)
    if m is None:
        raise typer.BadParameter("write a relative half-width such as 5% or 0.05", param_hint="--precision")
    value = float(m.group(1)) / (100.0 if m.group(2) else 1.0)
    if not 0 < value < 1:
        raise typer.BadParameter("must be between 0 and 100 %", param_hint="--precision")
    return Precision(value, start=max(2, start), cap=max(cap, start))


def _check_common(out_dir: Path, broker_kind: str) -> None:
    if broker_kind not in ("auto", "mosquitto", "amqtt"):
        raise typer.BadParameter("must be auto, mosquitto or amqtt", param_hint="--broker-kind")
    if out_dir.exists() and not out_dir.is_dir():
        raise typer.BadParameter(f"{out_dir} is a file; name a directory", param_hint="--out")


def _check_counts(replications: int, jobs: int | None) -> int:
    if replications < 2:
        raise typer.BadParameter("needs at least 2 replications for an interval", param_hint="-r")
    if jobs is not None and jobs < 1:
        raise typer.BadParameter("must be at least 1", param_hint="--jobs")
    return jobs or os.cpu_count() or 1


def _run(plan: Plan, out_dir: Path, **kwargs: Any) -> Outcome:
    from experiments.experiment import run_experiment
    from harness.errors import HarnessError

    previous = signal.signal(signal.SIGTERM, _interrupt)
    bar = progress(
        console,
        "replications",
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[state]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    task = bar.add_task(f"{plan.base.name} · {len(plan.arms)} arms", total=0, state="")
    tally = {"done": 0, "running": 0, "failed": 0, "reused": 0}

    def refresh() -> None:
        state = f"done {tally['done'] + tally['reused']} · running {tally['running']} · failed {tally['failed']}"
        bar.update(task, completed=tally["done"] + tally["failed"] + tally["reused"], state=state)

    def on_round(total: int) -> None:
        bar.update(task, total=total)

    def on_event(kind: str, spec: Any, done: Any) -> None:
        if kind == "started":
            tally["running"] += 1
        elif kind in ("done", "failed"):
            tally["running"] -= 1
            tally[kind] += 1
            if kind == "failed":
                bar.console.print(f"[red]replication failed[/]: {spec.arm} seed {spec.seed}: {done.error}")
        elif kind == "reused":
            tally["reused"] += 1
        refresh()

    try:
        with bar:
            return run_experiment(plan, out_dir, on_event=on_event, on_round=on_round, **kwargs)
    except KeyboardInterrupt:
        console.print(
            f"[yellow]interrupted[/]: finished replications are kept in {out_dir}/replications; "
            "run the same command again to run only the missing ones."
        )
        raise typer.Exit(130) from None
    except HarnessError as exc:
        console.print(f"[bold red]the experiment failed[/]: {exc}")
        raise typer.Exit(1) from exc
    except OSError as exc:
        console.print(f"[bold red]cannot write the experiment's files[/]: {exc}; choose another --out")
        raise typer.Exit(1) from exc
    finally:
        signal.signal(signal.SIGTERM, previous)


def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:,.3g}" if abs(x) < 100 else f"{x:,.0f}"


def _summary(outcome: Outcome) -> None:
    doc = outcome.comparison
    base = doc["baseline"]
    table = Table(title=f"{doc['scenario']['name']}: differences against {base} (95 % CI, paired)")
    table.add_column("figure")
    table.add_column(base, justify="right")
    others = [a["label"] for a in doc["arms"] if a["label"] != base]
    for arm in others:
        table.add_column(arm, justify="right")
        table.add_column(f"{arm} - {base}", justify="right")
    for key in doc["headline"]:
        m = doc["metrics"][key]
        row = [f"{m['label']} ({m['unit']})" if m["unit"] else m["label"], _fmt(m["arms"][base]["mean"])]
        for arm in others:
            d = m["differences"].get(arm)
            row.append(_fmt(m["arms"][arm]["mean"]))
            if d is None:
                row.append("-")
            else:
                star = " *" if d.get("significant") else ""
                row.append(f"{_fmt(d['mean'])} [{_fmt(d['t_lo'])}, {_fmt(d['t_hi'])}]{star}")
        table.add_row(*row)
    out.print(table)
    reps = doc["replications"]
    line = f"{reps['requested']} replication(s) per arm"
    if reps["precision"]:
        p = reps["precision"]
        line += f"; precision {p['target']:.0%}: {'reached' if p['reached'] else 'not reached (cap)'}"
    if reps["failed"]:
        line += f"; [red]{len(reps['failed'])} failed[/] (see the report)"
    out.print(f"{line}; * significant after Holm's adjustment. ran {outcome.ran}, reused {outcome.reused}.")
    out.print("wrote " + ", ".join(str(f) for f in outcome.files))


Replications = Annotated[
    int, typer.Option("--replications", "-r", help="Replications per arm (with --precision: how many to start with).")
]
Jobs = Annotated[int | None, typer.Option(help="Replications run at once (default: the machine's cores).")]
Scheduler = Annotated[
    str | None,
    typer.Option(
        help="Run the replications on a Dask distributed cluster (tcp://HOST:PORT) instead of local processes."
    ),
]
Days = Annotated[float | None, typer.Option(help="Override the scenario's duration_days.")]
Warmup = Annotated[float | None, typer.Option("--warmup-days", help="Days at the start left out of every figure.")]
BrokerKind = Annotated[str, typer.Option(help="Broker each replication starts: auto, mosquitto or amqtt.")]


def compare(
    scenario: Annotated[Path, typer.Argument(help="Scenario YAML file.")],
    policy: Annotated[
        list[str],
        typer.Option(
            "--policy",
            "-p",
            help="A policy to compare: reactive, proactive, or a YAML file over the scenario's engine: section. "
            "Give it once per policy; the first is the baseline.",
        ),
    ],
    replications: Replications = 10,
    precision: Annotated[
        str | None,
        typer.Option(
            help="Add replications until every headline difference's 95 % half-width is within this share of "
            "the baseline's mean (e.g. 5%); -r is where it starts."
        ),
    ] = None,
    max_replications: Annotated[int, typer.Option(help="Cap for --precision.")] = 40,
    jobs: Jobs = None,
    scheduler: Scheduler = None,
    days: Days = None,
    warmup_days: Warmup = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for the report and every replication.")] = Path(
        "runs/compare"
    ),
    broker_kind: BrokerKind = "auto",
) -> None:
    """Compare policies on paired replications (same seeds): intervals, scorecard, costs, checklist, report.

    Re-running the same command resumes: only replications not already in --out are run.
    """
    from experiments.plan import compare_plan
    from experiments.policies import read_policy

    jobs_n = _check_counts(replications, jobs)
    _check_common(out_dir, broker_kind)
    if len(policy) < 2:
        raise typer.BadParameter("give at least two policies, e.g. --policy reactive --policy proactive")
    s = _scenario(scenario, days, warmup_days)
    plan = _planned(lambda: compare_plan(s, [read_policy(p) for p in policy]), "--policy")
    outcome = _run(
        plan,
        out_dir,
        replications=replications,
        jobs=jobs_n,
        scheduler=scheduler,
        precision=_precision(precision, replications, max_replications),
        broker_kind=broker_kind,
    )
    _summary(outcome)


def _planned(build: Callable[[], Plan], hint: str) -> Plan:
    """Build a plan; a bad option is a usage error naming ``hint``, a bad file lists its problems (exit 2)."""
    from experiments.errors import ExperimentError
    from sim.errors import ScenarioError

    try:
        return build()
    except ExperimentError as exc:
        raise typer.BadParameter(str(exc), param_hint=hint) from exc
    except ScenarioError as exc:
        _problems(exc)
        raise typer.Exit(EXIT_INVALID) from exc


def _problems(exc: Any) -> None:
    console.print(f"[bold red]{exc.source}[/]: {len(exc.problems)} problem(s)")
    for problem in exc.problems:
        console.print(f"  [red]{problem.path or '<document>'}[/]: {problem.message}")


def sweep(
    scenario: Annotated[Path, typer.Argument(help="Scenario YAML file.")],
    setting: Annotated[
        list[str],
        typer.Option(
            "--set",
            help="PATH=V1,V2,… to try, e.g. 'engine.rules\\[compressor_duty].above=0.55,0.65,0.8'. Lists are "
            "entered by position (\\[0]) or by name (\\[freezer_compressor_overwork], or a value such as the "
            "sensor). Several --set make a grid; the first point is the baseline.",
        ),
    ],
    policy: Annotated[str, typer.Option(help="Policy for every point (a name or a policy file).")] = "proactive",
    replications: Annotated[int, typer.Option("--replications", "-r", help="Replications per point.")] = 5,
    jobs: Jobs = None,
    scheduler: Scheduler = None,
    days: Days = None,
    warmup_days: Warmup = None,
    x: Annotated[str | None, typer.Option(help="Trade-off x axis (a metric key of comparison.json).")] = None,
    y: Annotated[str | None, typer.Option(help="Trade-off y axis (a metric key of comparison.json).")] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for the report and every replication.")] = Path(
        "runs/sweep"
    ),
    broker_kind: BrokerKind = "auto",
) -> None:
    """Run the same paired machinery over a grid of overrides; trade-off table and curves, Pareto front marked."""
    from experiments.compare import DEFAULT_TRADEOFF
    from experiments.overrides import parse_setting
    from experiments.plan import sweep_plan
    from experiments.policies import read_policy

    jobs_n = _check_counts(replications, jobs)
    _check_common(out_dir, broker_kind)
    for axis, name in ((x, "--x"), (y, "--y")):
        if axis is not None and not axis.startswith(("kpis.", "scorecard.", "ledger.", "checklist.")):
            raise typer.BadParameter(
                "a metric key of comparison.json, such as kpis.truck_rolls_per_1000_devices or "
                "scorecard.overall.missed_failures",
                param_hint=name,
            )
    s = _scenario(scenario, days, warmup_days)
    plan = _planned(lambda: sweep_plan(s, read_policy(policy), [parse_setting(t) for t in setting]), "--set / --policy")
    outcome = _run(
        plan,
        out_dir,
        replications=replications,
        jobs=jobs_n,
        scheduler=scheduler,
        broker_kind=broker_kind,
        tradeoff=(x or DEFAULT_TRADEOFF[0], y or DEFAULT_TRADEOFF[1]),
    )
    _summary(outcome)
    doc = outcome.comparison["sweep"]
    for axis in (doc["tradeoff"]["x"], doc["tradeoff"]["y"]):
        if axis not in outcome.comparison["metrics"]:
            console.print(f"[yellow]no figure {axis!r} in the results[/]: the trade-off curve has no points on it")
    table = Table(title="trade-off: means over replications; ◆ marks the points on the Pareto front")
    table.add_column("figure")
    for p in doc["points"]:
        mark = " ◆" if p["label"] in doc["tradeoff"]["pareto"] else ""
        table.add_column(p["label"].replace(", ", "\n") + mark, justify="right")
    for key in doc["columns"]:
        metric = outcome.comparison["metrics"][key]
        table.add_row(metric["label"], *(_fmt(p["metrics"][key]) for p in doc["points"]))
    out.print(table)
