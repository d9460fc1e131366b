"""``sot chaos``: a scenario run undisturbed and again with faults injected, and the verdict.

The faulted run passes when nothing is lost, every KPI is the undisturbed run's, and every message
the world sent was taken in exactly once by the engine (:mod:`harness.accounting`); on a failure
the accounting table names what was lost, duplicated or unexpected.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from harness.errors import BrokerError, HarnessError
from harness.outputs import write_run
from sim.errors import ScenarioError
from sim.scenario import MAX_SEED

__all__ = ["chaos", "verdict_of"]

console = Console(stderr=True, soft_wrap=True)


def chaos(
    scenario: Annotated[Path, typer.Argument(help="Scenario YAML file.")],
    fault: Annotated[
        list[str],
        typer.Option(
            "--fault",
            help="A fault, KIND@TIME[+DURATION] (TIME simulated, DURATION wall; units s, m, h, d): "
            "broker-kill@2d, broker-kill@2d+5s, broker-restart@12h, engine-kill@36h, engine-kill:1@36h, "
            "engine-pause@1d+5s, partition:engine@3d+15s. Repeat for several.",
        ),
    ],
    days: Annotated[float | None, typer.Option(help="Override the scenario's duration_days.")] = None,
    seed: Annotated[
        int | None, typer.Option(help="Random seed (default: the scenario's).", min=0, max=MAX_SEED)
    ] = None,
    engines: Annotated[int, typer.Option(min=1, max=64, help="Engine partitions, as for sot run.")] = 1,
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for the faulted run's files.")] = Path("runs/chaos"),
) -> None:
    """Run a scenario undisturbed and again with faults injected; pass when nothing is lost, every KPI
    is the same and every message sent was taken in exactly once (exit 0), fail otherwise (exit 1).
    The verdict is in result.json under "chaos"."""
    from harness.cli import _load, _writable_dir
    from harness.faults import Fault
    from harness.runner import run_scenario
    from sim.scenario_file import with_overrides

    s = _load(scenario)
    if days is not None:
        try:
            s = with_overrides(s, duration_days=days)
        except ScenarioError as exc:
            raise typer.BadParameter(str(exc), param_hint="--days") from exc
    try:
        faults = [Fault.parse(text) for text in fault]
    except HarnessError as exc:
        raise typer.BadParameter(str(exc), param_hint="--fault") from exc
    _writable_dir(out_dir)
    try:
        with console.status("the undisturbed run"):
            calm = run_scenario(s, seed=seed, engines=engines, workdir=out_dir / "undisturbed").result
        with console.status(f"the run with {len(faults)} fault(s)"):
            hit = run_scenario(s, seed=seed, engines=engines, workdir=out_dir, faults=faults)
    except (BrokerError, HarnessError) as exc:
        console.print(f"[bold red]sot chaos failed[/]: {exc}")
        raise typer.Exit(1) from exc
    result = hit.result
    result["chaos"].update(verdict_of(calm, result))
    write_run(out_dir, result, hit.records)
    _show(s.name, result)
    console.print(f"wrote {out_dir}/result.json (the undisturbed run: {out_dir}/undisturbed/)")
    if result["chaos"]["verdict"] != "pass":
        raise typer.Exit(1)


def verdict_of(calm: dict[str, Any], hit: dict[str, Any]) -> dict[str, Any]:
    """The faulted run ``hit`` judged against the undisturbed ``calm``: pass or fail, and why."""
    differing = sorted(k for k in set(calm["kpis"]) | set(hit["kpis"]) if calm["kpis"].get(k) != hit["kpis"].get(k))
    lost = hit["messages"]["lost"]
    accounted = hit.get("accounting", {})
    exact = all(accounted.get(name, 0) == 0 for name in ("lost", "duplicated", "unexpected"))
    passed = lost == 0 and exact and not differing and not hit["chaos"]["not_reached"]
    return {"verdict": "pass" if passed else "fail", "lost": lost, "kpis_differing": differing}


def _show(name: str, result: dict[str, Any]) -> None:
    c = result["chaos"]
    table = Table(title=f"{name}: {c['verdict'].upper()}", show_header=True)
    table.add_column("fault")
    table.add_column("at (simulated)", justify="right")
    table.add_column("injection took", justify="right")
    for done in c["injected"]:
        table.add_row(done["fault"], f"{done['at_s'] / 86400:.2f} d", f"{done['took_s']:.2f} s")
    for missed in c["not_reached"]:
        table.add_row(missed, "after the end", "not injected")
    console.print(table)
    accounted = result.get("accounting")
    if accounted is not None:
        books = Table(title=f"every message sent ({accounted['sent']:,}), as the engine took it in", show_header=True)
        books.add_column("taken in")
        books.add_column("messages", justify="right")
        books.add_column("for example")
        examples = accounted.get("examples", {})
        for label, key in (("once", "ingested_once"), ("never (lost)", "lost"), ("more than once", "duplicated")):
            books.add_row(label, f"{accounted[key]:,}", ", ".join(examples.get(key, [])))
        books.add_row(
            "never sent (unexpected)", f"{accounted['unexpected']:,}", ", ".join(examples.get("unexpected", []))
        )
        console.print(books)
    m = result["messages"]
    console.print(
        f"published {m['published']:,} · ingested {m['ingested']:,} · lost {c['lost']:,} · duplicates absorbed "
        f"{m['duplicates']:,} · broker reconnects {result['timing']['broker_reconnects']}"
        + (f" · broker dropped {m['broker_dropped']:,} (sent again)" if m.get("broker_dropped") else "")
    )
    differing = c["kpis_differing"]
    console.print(
        "KPIs: identical to the undisturbed run" if not differing else f"KPIs differing: {', '.join(differing)}"
    )
