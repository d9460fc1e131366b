"""``sot lint``: dry-run a scenario's engine rules on its products' own sensor models and list what is wrong.

A shell over :func:`harness.lint.lint`: a table of findings (and of each rule's figures), the report
as JSON on request, exit 0 when clean or warnings only, 1 on an error, 2 for a scenario that does
not validate. :func:`check` is the same for ``sot validate --strict``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import msgspec
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sim.scenario import MAX_SEED, Scenario

if TYPE_CHECKING:
    from harness.lint import Report

__all__ = ["check", "lint", "show"]

console = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)

EXIT_ERRORS = 1
EXIT_INVALID = 2
_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def _load(path: Path) -> Scenario:
    """The scenario at ``path``, or its problems printed as ``sot validate`` prints them and exit 2."""
    from harness.cli import _load as load_or_exit

    return load_or_exit(path)


def show(report: Report, *, figures: bool = True) -> None:
    """Print the findings (worst first) and, with ``figures``, each rule's false alarms and catches."""
    if figures and report.rules:
        table = Table(title=f"rules on their products' sensor models ({report.device_days:,.0f} healthy device-days)")
        table.add_column("rule", overflow="fold")
        table.add_column("fleet", overflow="fold")
        table.add_column("false alarms / 1,000 device-days", justify="right")
        table.add_column("fires on (share of failures)")
        for r in report.rules:
            caught = ", ".join(f"{mode} {share:.0%}" for mode, share in r.fires_on.items()) or "-"
            table.add_row(
                escape(r.rule), escape(r.fleet), f"{r.false_alarms_per_1000_device_days:,.1f}", escape(caught)
            )
        out.print(table)
    if report.findings:
        table = Table(title="findings", show_lines=True)
        table.add_column("severity")
        table.add_column("path", no_wrap=True)
        table.add_column("finding and fix")
        for f in report.findings:
            text = f"{escape(f.message)}\n[dim]fix:[/] {escape(f.hint)}"
            table.add_row(f"[{_STYLE[f.severity]}]{f.severity}[/]", escape(f.path), text)
        out.print(table)
    errors, warnings, infos = (report.count(s) for s in ("error", "warning", "info"))
    verdict = "[bold red]fails[/]" if errors else "[green]ok[/]"
    out.print(
        f"lint {verdict}: {errors} error(s), {warnings} warning(s), {infos} note(s) "
        f"for scenario {escape(repr(report.scenario))} (seed {report.seed})"
    )


def check(scenario: Scenario) -> None:
    """Lint ``scenario`` with the defaults and print the findings; exit 1 on an error (``validate --strict``)."""
    from harness.lint import lint as run_lint

    report = run_lint(scenario)
    show(report, figures=False)
    if report.count("error"):
        raise typer.Exit(EXIT_ERRORS)


def lint(
    scenario: Annotated[Path, typer.Argument(help="Scenario YAML file.")],
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the report as JSON to this file.")] = None,
    device_days: Annotated[
        float, typer.Option("--device-days", min=10.0, help="Healthy device-days to dry-run per fleet.")
    ] = 1000.0,
    seed: Annotated[
        int | None, typer.Option(help="Random seed of the dry run (default: the scenario's).", min=0, max=MAX_SEED)
    ] = None,
) -> None:
    """Dry-run each engine rule on the products' own sensor models: healthy devices with their noise and
    each failure mode's precursor and effects. Reports rules that fire on healthy devices (false alarms
    per 1,000 device-days), rules that never fire, precursors no rule catches and modes nothing detects,
    each with its path and a fix. Exit 0 clean or warnings only, 1 on an error, 2 if the file is invalid."""
    from harness.lint import lint as run_lint

    s = _load(scenario)
    report = run_lint(s, device_days=device_days, seed=seed)
    show(report)
    if json_out is not None:
        json_out.write_text(json.dumps(msgspec.to_builtins(report), indent=2) + "\n", encoding="utf-8")
        console.print(f"wrote {json_out}")
    if report.count("error"):
        raise typer.Exit(EXIT_ERRORS)
