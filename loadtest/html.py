"""``loadtest.html``: a load test's report as one self-contained page, from its ``loadtest.json`` document.

At the top the verdict and each ``--fail-on`` condition with what was measured; then the three
witnesses' books reconciled, the latency quantiles, the comparison with a baseline, and the run over
time (:mod:`loadtest.figures`: latency per request type, throughput, connections, the engine's
ingest lag, the broker's counters). The page is the Jinja2 template ``templates/loadtest.html``
(autoescaped, prose in the template, numbers formatted by the filters here) with the figures inline
as SVG: no scripts, fonts, images or styles from anywhere else, so it opens offline and prints as it
shows. Locust's own report (``locust.html``) stays beside it and is linked. Pure: it returns the text.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from functools import cache
from typing import Any

import jinja2
from markupsafe import Markup

from loadtest import figures
from loadtest.baseline import change_text
from loadtest.thresholds import METRICS

__all__ = ["LOCUST_REPORT", "render_page"]

LOCUST_REPORT = "locust.html"
DASH, MINUS = "\u2014", "\u2212"
LATENCIES = (
    ("ingest", "publish \u2192 engine receipt"),
    ("publish", "publish \u2192 PUBACK"),
    ("connect", "CONNECT \u2192 CONNACK"),
    ("engine_lag", "engine ingest lag (its histogram)"),
)


def render_page(report: Mapping[str, Any]) -> str:
    """The HTML of ``loadtest.html`` for a finished report (``loadtest.json``, thresholds and verdict in)."""
    return _environment().get_template("loadtest.html").render(**_view(report))


# -- the template's filters ------------------------------------------------------------------------
def number(value: Any, decimals: int | None = None) -> str:
    """Thousands separated, a true minus, ``—`` when unknown; counts whole, other figures to three digits."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return DASH
    if decimals is None:
        if float(value).is_integer():
            decimals = 0
        else:
            size = abs(value)
            decimals = 0 if size >= 100 else 1 if size >= 10 else 2 if size >= 1 else 3
    return f"{value:,.{decimals}f}".replace("-", MINUS)


def change(value: float | None, status: str) -> str:
    """A relative change as the page writes it: ``+12.5 %``, a true minus when down, ``new`` from 0, a dash when unknown."""
    text = change_text(value, status)
    return DASH if text == "-" else text.replace("-", MINUS)


def plain(value: Any) -> str:
    """A setting as given: numbers to six significant digits, anything else as it is."""
    if isinstance(value, float):
        return f"{value:,.6g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def _every(n: Any) -> str:
    if not isinstance(n, int) or n <= 0:
        return "none"
    if n == 1:
        return "every message"
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"every {n}{suffix} message"


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("loadtest", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(number=number, plain=plain, change=change)
    return env


# -- the page's content ----------------------------------------------------------------------------
def _view(report: Mapping[str, Any]) -> dict[str, Any]:
    manifest: Mapping[str, Any] = report.get("manifest") or {}
    shape = report.get("shape") or {}
    shape_name = shape.get("name", "") if isinstance(shape, Mapping) else str(shape)
    title = f"Load test: {report.get('scenario', '')}, {number(report.get('users'))} {report.get('kind', '')} users, {shape_name}"
    thresholds = [_threshold(t) for t in report.get("thresholds") or []]
    comparison = report.get("comparison")
    return {
        "title": title,
        "report": report,
        "passed": bool(report.get("passed", not any(t["failed"] for t in thresholds))),
        "thresholds": thresholds,
        "facts": _facts(report, manifest, shape_name),
        "books": _books(report),
        "latencies": _latencies(report.get("latency_ms") or {}),
        "comparison": comparison,
        "figures": _figures(report),
        "locust_report": LOCUST_REPORT,
        "warnings": list(report.get("warnings") or []),
        "manifest": manifest,
    }


def _threshold(t: Mapping[str, Any]) -> dict[str, Any]:
    metric = str(t.get("metric") or re.split(r"[<>=!]", str(t["condition"]), maxsplit=1)[0])
    result = "not measured" if t["measured"] is None else "fail" if t["failed"] else "pass"
    return {
        "condition": t["condition"],
        "metric": metric,
        "what": METRICS.get(metric, ""),
        "measured": t["measured"],
        "limit": f"{t['op']} {number(t['limit'])}" if "op" in t and "limit" in t else "",
        "failed": bool(t["failed"]),
        "result": result,
    }


def _facts(report: Mapping[str, Any], manifest: Mapping[str, Any], shape_name: str) -> list[tuple[str, str]]:
    rates = report.get("rates") or {}
    timing = report.get("timing") or {}
    facts = [
        ("Scenario", str(report.get("scenario", DASH))),
        ("Users", f"{number(report.get('users'))} {report.get('kind', '')}"),
        ("Shape", f"{shape_name}, {number(report.get('duration_s'))} s of load"),
        ("Offered at the peak", f"{number(report.get('offered_per_s_at_peak'))} msg/s"),
        ("Published", f"{number(rates.get('published_per_s'))} msg/s"),
        ("Ingested", f"{number(rates.get('ingested_per_s'))} msg/s"),
        ("QoS · receipts", f"{report.get('qos', DASH)} · {_every(report.get('ack_every'))}"),
        ("Broker", str(manifest.get("broker", DASH))),
        ("Locust workers", str(manifest.get("workers", DASH))),
        ("Started", str(manifest.get("started_at", DASH))),
        ("Wall time", f"{number(timing.get('wall_s'), 1)} s"),
    ]
    return facts


def _row(witness: str, figure: str, what: str, value: Any, key: str = "", *, sub: bool = False) -> dict[str, Any]:
    """A row of the reconciliation table; ``key`` (default: the figure, snake case) names it for the tests."""
    return {
        "witness": witness,
        "figure": figure,
        "what": what,
        "value": value,
        "key": key or figure.replace(" ", "_"),
        "sub": sub,
    }


def _books(report: Mapping[str, Any]) -> dict[str, Any]:
    m: Mapping[str, Any] = report.get("messages") or {}
    b: Mapping[str, Any] = report.get("broker") or {}
    receipts = m.get("receipts") or {}
    rows = [
        _row("Locust", "published", "acknowledged by the broker, each message once", m.get("published")),
        _row(
            "Locust",
            "publish failed",
            "refused, dropped from a full outbox or never acknowledged",
            m.get("publish_failed"),
        ),
        _row("Locust", "resent", "copies the devices' outboxes sent again", m.get("resent")),
        _row(
            "Broker",
            "received from devices",
            "PUBLISH packets received, less the engine's and the runner's",
            b.get("from_devices"),
            "broker_from_devices",
        ),
        _row("Broker", "dropped", "$SYS/broker/publish/messages/dropped", b.get("publish_dropped"), "broker_dropped"),
        _row("Engine", "ingested", "unique messages taken in", m.get("ingested")),
        _row("Engine", "rejected", "dead-lettered, any reason", m.get("rejected")),
    ]
    for reason, n in sorted((m.get("rejected_by_reason") or {}).items()):
        rows.append(_row("Engine", f"rejected: {reason}", "by reason", n, f"rejected_{reason}", sub=True))
    rows.append(_row("Engine", "duplicates", "copies of messages it already had", m.get("duplicates")))
    lost, surplus = m.get("lost"), m.get("surplus")
    state = "unknown" if lost is None else "lost" if lost > 0 else "balanced"
    equation = None
    if lost is not None:
        equation = (
            f"lost = published {MINUS} ingested {MINUS} rejected = {number(m.get('published'))} {MINUS} "
            f"{number(m.get('ingested'))} {MINUS} {number(m.get('rejected'))} = {number(lost)}"
        )
    return {
        "rows": rows,
        "lost": lost,
        "surplus": surplus,
        "state": state,
        "equation": equation,
        "receipts": receipts,
        "outbox_overflow": m.get("outbox_overflow"),
        "unconfirmed": m.get("unconfirmed"),
        "by_kind": m.get("by_kind") or {},
    }


def _latencies(latency: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for name, what in LATENCIES:
        figures_ = latency.get(name)
        if not isinstance(figures_, Mapping):
            continue
        rows.append(
            {
                "name": name,
                "what": what,
                **{k: figures_.get(k) for k in ("count", "failures", "p50", "p90", "p95", "p99", "max")},
            }
        )
    return rows


def _span(report: Mapping[str, Any], timeline: Mapping[str, Any]) -> figures.Span:
    ends = [0.0]
    for part in ("requests_per_s", "users", "engine", "broker"):
        series = timeline.get(part)
        if isinstance(series, Mapping):
            ends += [float(t) for t in series.get("t_s", [])]
    for series in (timeline.get("latency_ms") or {}).values():
        if isinstance(series, Mapping):
            ends += [float(t) for t in series.get("t_s", [])]
    start = _finite(timeline.get("load_started_s"))
    warmup_s = _finite(report.get("warmup_s")) or 0.0
    duration = _finite(report.get("duration_s"))
    return figures.Span(
        end_s=max(ends),
        warmup=None if start is None or warmup_s <= 0 else (start, start + warmup_s),
        drain_s=None if start is None or duration is None else start + duration,
    )


def _figures(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    timeline: Mapping[str, Any] = report.get("timeline") or {}
    span = _span(report, timeline)
    latency = timeline.get("latency_ms") or {}
    requests = timeline.get("requests_per_s") or {}
    users = timeline.get("users") or {}
    engine = timeline.get("engine") or {}
    broker = timeline.get("broker") or {}
    rt = requests.get("t_s", [])
    step = number(_finite(timeline.get("step_s")) or _finite(latency.get("step_s")))
    found = [
        (
            "fig-latency",
            "Latency over time, by request type",
            figures.latency(
                {k: latency[k] for k in ("publish", "ingest", "connect") if k in latency},
                span,
                key="fig-latency",
                title="Latency over time, by request type",
            ),
            f"p50, p95 and p99 of the requests that completed in each {step} s interval: publish to PUBACK, "
            "publish to the engine's receipt (sampled messages), CONNECT to CONNACK. Warm-up messages included.",
            "no latency per interval: the locustfile did not record it (a locustfile without loadtest.locustfile's hooks) "
            "or the report predates it",
        ),
        (
            "fig-throughput",
            "Throughput over time",
            figures.throughput(
                {
                    "published (Locust)": (rt, requests.get("published", [])),
                    "publish failed (Locust)": (rt, requests.get("publish_failed", [])),
                    "ingested (engine)": (engine.get("t_s", []), engine.get("ingested_per_s", [])),
                    "rejected (engine)": (engine.get("t_s", []), engine.get("rejected_per_s", [])),
                },
                span,
                key="fig-throughput",
                title="Throughput over time",
            ),
            "Messages the broker acknowledged per second (Locust) and the engine took in or rejected per second "
            "(its /metrics, read about once a second).",
            "no throughput over time in this report",
        ),
        (
            "fig-connections",
            "Connections over time",
            figures.connections(
                {
                    "Locust users": (users.get("t_s", []), users.get("users", [])),
                    "broker clients connected": (broker.get("t_s", []), broker.get("connected", [])),
                },
                span,
                key="fig-connections",
                title="Connections over time",
            ),
            "Locust's running users (one connection each) and the clients the broker counts as connected "
            "($SYS/broker/clients/connected: the engine's and the runner's connections too).",
            "no connection counts over time in this report",
        ),
        (
            "fig-lag",
            "Engine ingest lag over time",
            figures.engine_lag(engine, span, key="fig-lag", title="Engine ingest lag over time"),
            "The engine's own sot_ingest_lag_seconds histogram between two readings (commit time minus the "
            "message's timestamp, every message): quantiles interpolated within its buckets, and the mean.",
            "no engine metrics over time (an engine not watched: --broker without --engine-metrics)",
        ),
        (
            "fig-broker",
            "Broker counters over time",
            figures.broker_counters(broker, span, key="fig-broker", title="Broker counters over time"),
            "PUBLISH packets the broker received, sent and dropped per second ($SYS/broker/publish/messages/*, "
            "published by Mosquitto every second): the devices' messages, the engine's receipts and outputs.",
            "no $SYS counters over time (a broker that does not publish them)",
        ),
    ]
    return [
        {"id": fid, "title": title, "svg": None if svg is None else Markup(svg), "caption": caption, "missing": missing}
        for fid, title, svg, caption, missing in found
    ]
