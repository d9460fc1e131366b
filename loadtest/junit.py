"""``--junit FILE``: a load test's verdict as JUnit XML, for CI's test reports.

One test suite, ``sot loadtest``, with a test case per ``--fail-on`` condition (a *failure* when it
held, with the measured value and the limit; an *error* when the run could not measure it), one for
the reconciliation, ``no acknowledged message lost`` (a failure when ``lost`` > 0, *skipped* when no
engine was watched), and with ``--baseline`` one per headline figure (a failure when it regressed,
or, under ``--fail-on-regression``, could not be compared). The reconciliation and the baseline
cases report what they found whether or not a gate asked for it: the exit code follows the gates
alone. Pure: it returns the document's text.
"""

from __future__ import annotations

import socket
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any

from loadtest.baseline import change_text
from loadtest.thresholds import METRICS

__all__ = ["SUITE", "junit_xml"]

SUITE = "sot loadtest"


def _case(suite: ET.Element, classname: str, name: str) -> ET.Element:
    return ET.SubElement(suite, "testcase", {"classname": classname, "name": name, "time": "0"})


def _number(value: float | None) -> str:
    return "not measured" if value is None else f"{value:g}"


def junit_xml(report: Mapping[str, Any], *, hostname: str | None = None) -> str:
    """The JUnit XML of a finished ``loadtest.json`` report (thresholds, reconciliation, comparison)."""
    timing = report.get("timing") or {}
    manifest = report.get("manifest") or {}
    suite = ET.Element(
        "testsuite",
        {
            "name": SUITE,
            "timestamp": str(manifest.get("started_at") or ""),
            "hostname": hostname if hostname is not None else socket.gethostname(),
            "time": f"{float(timing.get('wall_s') or 0.0):.3f}",
        },
    )
    properties = ET.SubElement(suite, "properties")
    for key in ("scenario", "kind", "users", "shape", "duration_s", "qos", "ack_every"):
        value = report.get(key)
        text = value.get("name", "") if isinstance(value, Mapping) else value
        ET.SubElement(properties, "property", {"name": key, "value": str(text)})
    for t in report.get("thresholds") or []:
        case = _case(suite, f"{SUITE}.thresholds", str(t["condition"]))
        metric = str(t.get("metric") or t["condition"])
        if t["measured"] is None:
            error = ET.SubElement(
                case, "error", {"type": "NotMeasured", "message": f"{metric} was not measured in this run"}
            )
            error.text = f"{t['condition']}: {METRICS.get(metric, metric)}; a gate that cannot see fails the run"
        elif t["failed"]:
            limit = f"{t.get('op', '')}{_number(t.get('limit'))}" if "limit" in t else str(t["condition"])
            failure = ET.SubElement(
                case,
                "failure",
                {
                    "type": "ThresholdCrossed",
                    "message": f"measured {metric} = {_number(t['measured'])}; fails when {limit}",
                },
            )
            failure.text = f"{t['condition']} held: {METRICS.get(metric, metric)} was {_number(t['measured'])}"
    _reconciliation(suite, report.get("messages") or {})
    comparison = report.get("comparison")
    if comparison:
        _comparison(suite, comparison)
    cases = suite.findall("testcase")
    counts = {
        "tests": len(cases),
        "failures": sum(1 for c in cases if c.find("failure") is not None),
        "errors": sum(1 for c in cases if c.find("error") is not None),
        "skipped": sum(1 for c in cases if c.find("skipped") is not None),
    }
    for key, n in counts.items():
        suite.set(key, str(n))
    root = ET.Element(
        "testsuites", {"name": SUITE, **{k: str(v) for k, v in counts.items()}, "time": suite.get("time", "0")}
    )
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _reconciliation(suite: ET.Element, m: Mapping[str, Any]) -> None:
    case = _case(suite, f"{SUITE}.reconciliation", "no acknowledged message lost")
    lost, published = m.get("lost"), m.get("published")
    if lost is None:
        ET.SubElement(
            case,
            "skipped",
            {"message": "the engine was not watched (--broker without --engine-metrics): nothing to reconcile"},
        )
        return
    books = (
        f"published {published}, ingested {m.get('ingested')}, rejected {m.get('rejected')}, lost {lost}, "
        f"duplicates {m.get('duplicates')}, surplus {m.get('surplus')}"
    )
    if lost > 0:
        failure = ET.SubElement(
            case,
            "failure",
            {
                "type": "MessagesLost",
                "message": f"lost {lost} of {published} acknowledged messages (published - ingested - rejected)",
            },
        )
        failure.text = books
    else:
        ET.SubElement(case, "system-out").text = books


def _comparison(suite: ET.Element, comparison: Mapping[str, Any]) -> None:
    tolerance = f"{float(comparison['tolerance']) * 100:g} %"
    for x in comparison["figures"]:
        case = _case(suite, f"{SUITE}.baseline", f"{x['figure']} within {tolerance} of the baseline")
        measured = f"baseline {_number(x['baseline'])}, this run {_number(x['current'])}"
        if x["status"] == "regressed":
            message = (
                f"{x['label']} regressed: {measured} ({change_text(x['change'], x['status'])}; {x['better']} is better)"
            )
            ET.SubElement(case, "failure", {"type": "Regression", "message": message})
        elif x["status"] == "not comparable":
            message = f"{x['label']}: {x['note']}"
            if comparison.get("gate"):
                ET.SubElement(case, "failure", {"type": "NotComparable", "message": message})
            else:
                ET.SubElement(case, "skipped", {"message": message})
