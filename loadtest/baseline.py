"""This run against an earlier one: ``--baseline OLD/loadtest.json`` marks the headline figures that regressed.

Each headline figure has a direction (a latency or a loss is better lower, a rate higher). A figure
*regressed* when it is worse than the baseline's by more than ``tolerance`` of the baseline's value
(10 %: an ingest p99 of 8.0 ms against 7.0 ms has regressed, 7.7 ms has not); it *improved* when it
is better by more than that; otherwise it is *unchanged*. From a baseline of 0 any worsening is a
regression (a run that loses one message where the baseline lost none). A figure either run did not
measure is *not comparable*; with ``--fail-on-regression`` that fails the run as a regression does
(a gate that cannot see is shut, as with ``--fail-on``). Pure, but for :func:`read_baseline`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from loadtest.errors import LoadTestError

__all__ = [
    "DEFAULT_TOLERANCE",
    "HEADLINE",
    "READABLE_VERSIONS",
    "BaselineError",
    "Figure",
    "baseline_path",
    "change_text",
    "compare",
    "read_baseline",
    "summary_lines",
]

DEFAULT_TOLERANCE = 0.10
READABLE_VERSIONS = (1, 2)  # loadtest.json schemas whose headline figures sit where this module looks
_EPSILON = 1e-9  # a change of exactly the tolerance is within it, whatever the float rounding

Better = Literal["lower", "higher"]
Status = Literal["regressed", "improved", "unchanged", "not comparable"]


@dataclass(frozen=True)
class Figure:
    """One headline figure: its name (``--fail-on``'s), where it is in ``loadtest.json``, its direction."""

    name: str
    label: str
    path: tuple[str, ...]
    better: Better
    unit: str = ""


HEADLINE = (
    Figure("p50_ingest_ms", "ingest p50", ("latency_ms", "ingest", "p50"), "lower", "ms"),
    Figure("p95_ingest_ms", "ingest p95", ("latency_ms", "ingest", "p95"), "lower", "ms"),
    Figure("p99_ingest_ms", "ingest p99", ("latency_ms", "ingest", "p99"), "lower", "ms"),
    Figure("p99_publish_ms", "publish p99", ("latency_ms", "publish", "p99"), "lower", "ms"),
    Figure("published_per_s", "published per second", ("rates", "published_per_s"), "higher", "msg/s"),
    Figure("ingested_per_s", "ingested per second", ("rates", "ingested_per_s"), "higher", "msg/s"),
    Figure("lost", "lost", ("messages", "lost"), "lower"),
    Figure("rejected", "rejected", ("messages", "rejected"), "lower"),
)
# What a run was asked to do: a comparison across different ones says so.
_SETTINGS = ("scenario", "kind", "users", "duration_s", "speed", "qos", "ack_every", "outbox")


class BaselineError(LoadTestError, ValueError):
    """A baseline that cannot be compared with: missing, not a load-test report, another schema."""


def baseline_path(given: Path) -> Path:
    """The baseline's ``loadtest.json``: ``given`` itself, or the one in the directory ``given``."""
    return given / "loadtest.json" if given.is_dir() else given


def read_baseline(given: Path) -> dict[str, Any]:
    """Read and check a baseline report; raise :class:`BaselineError` saying what is wrong with it."""
    path = baseline_path(given)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise BaselineError(f"{path}: no such file (give a loadtest.json or the directory holding one)") from exc
    except OSError as exc:
        raise BaselineError(f"{path}: cannot be read: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise BaselineError(f"{path}: not JSON ({exc})") from exc
    if not isinstance(document, dict) or "schema_version" not in document:
        raise BaselineError(f"{path}: not a loadtest.json written by sot loadtest (it has no schema_version)")
    version = document["schema_version"]
    if version not in READABLE_VERSIONS:
        readable = " and ".join(str(v) for v in READABLE_VERSIONS)
        raise BaselineError(
            f"{path}: schema_version {version!r}; this sot compares against load-test reports of schema {readable} "
            "only: run the baseline again with this version"
        )
    if not any(_present(document, f.path) for f in HEADLINE):
        names = ", ".join(".".join(f.path) for f in HEADLINE)
        raise BaselineError(f"{path}: none of the headline figures is in it ({names})")
    return document


def _present(document: Mapping[str, Any], path: tuple[str, ...]) -> bool:
    node: Any = document
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return False
        node = node[key]
    return True


def _value(document: Mapping[str, Any], path: tuple[str, ...]) -> float | None:
    node: Any = document
    for key in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    if isinstance(node, bool) or not isinstance(node, int | float) or not math.isfinite(node):
        return None
    return float(node)


def _status(figure: Figure, baseline: float, current: float, tolerance: float) -> tuple[Status, float | None]:
    """The figure's verdict and its change relative to the baseline (None from a baseline of 0)."""
    worse = current - baseline if figure.better == "lower" else baseline - current
    if baseline == 0:
        return ("regressed" if worse > 0 else "improved" if worse < 0 else "unchanged"), None
    change = (current - baseline) / abs(baseline)
    margin = tolerance * abs(baseline)
    if worse > margin + _EPSILON * abs(baseline):
        return "regressed", change
    if -worse > margin + _EPSILON * abs(baseline):
        return "improved", change
    return "unchanged", change


def compare(
    report: Mapping[str, Any],
    baseline: Mapping[str, Any],
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    source: str = "",
    gate: bool = False,
) -> dict[str, Any]:
    """The ``comparison`` section of ``loadtest.json``: each headline figure of ``report`` against
    ``baseline``'s, its status, and whether the comparison fails the run (``gate``: ``--fail-on-regression``)."""
    if not (math.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(f"the tolerance must be a number >= 0, not {tolerance}")
    figures = []
    for f in HEADLINE:
        base, now = _value(baseline, f.path), _value(report, f.path)
        note = ""
        if base is None or now is None:
            status: Status = "not comparable"
            change = None
            if not _present(baseline, f.path):
                note = "absent from the baseline"
            else:
                note = (
                    " and ".join(w for w, v in (("the baseline", base), ("this run", now)) if v is None)
                    + " did not measure it"
                )
        else:
            status, change = _status(f, base, now, tolerance)
        figures.append(
            {
                "figure": f.name,
                "label": f.label,
                "unit": f.unit,
                "better": f.better,
                "baseline": base,
                "current": now,
                "change": change,
                "status": status,
                "note": note,
            }
        )
    regressions = sum(1 for x in figures if x["status"] == "regressed")
    blind = sum(1 for x in figures if x["status"] == "not comparable")
    return {
        "baseline": source,
        "baseline_schema_version": baseline.get("schema_version"),
        "baseline_started_at": (baseline.get("manifest") or {}).get("started_at"),
        "tolerance": tolerance,
        "figures": figures,
        "regressions": regressions,
        "not_comparable": blind,
        "differences": _differences(report, baseline),
        "gate": gate,
        "failed": gate and (regressions > 0 or blind > 0),
    }


def _differences(report: Mapping[str, Any], baseline: Mapping[str, Any]) -> list[str]:
    """The settings in which the two runs differ, ``name: baseline → this run``."""
    found = []
    for key in _SETTINGS:
        a, b = baseline.get(key), report.get(key)
        if key in baseline and key in report and a != b:
            found.append(f"{key}: {_text(a)} \u2192 {_text(b)}")
    return found


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_text(v)}" for k, v in value.items())
    return str(value)


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    text = f"{value:,.2f}" if unit == "ms" else f"{value:,.1f}" if unit else f"{value:,.0f}"
    return f"{text} {unit}".rstrip()


def change_text(change: float | None, status: str) -> str:
    """A figure's relative change as ``+12.5 %`` (``new`` from a baseline of 0)."""
    if change is None:
        return "new" if status == "regressed" else "-"
    return f"{change * 100:+.1f} %"


def summary_lines(comparison: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(style, line) for the CLI: each figure that is not unchanged, then what fails."""
    lines = []
    tolerance = f"{comparison['tolerance'] * 100:g} %"
    for x in comparison["figures"]:
        if x["status"] == "unchanged":
            continue
        style = {"regressed": "red", "improved": "green"}.get(x["status"], "yellow")
        was, now = _number(x["baseline"], x["unit"]), _number(x["current"], x["unit"])
        detail = x["note"] or f"{was} \u2192 {now} ({change_text(x['change'], x['status'])}, tolerance {tolerance})"
        lines.append((style, f"{x['status']} {x['figure']}: {detail}"))
    unchanged = sum(1 for x in comparison["figures"] if x["status"] == "unchanged")
    lines.append(
        ("", f"{unchanged} of {len(comparison['figures'])} headline figures within {tolerance} of the baseline")
    )
    lines.extend(("yellow", f"the runs differ in {d}") for d in comparison["differences"])
    return lines
