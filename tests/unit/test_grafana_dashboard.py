"""The Grafana dashboard in docs/grafana queries only metrics the engine exposes, and every panel
says what it is and where its data comes from (the ``${DS_PROMETHEUS}`` input)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from support_engine.metrics import EngineMetrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "docs" / "grafana" / "sot-engine.json"
DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
# What a PromQL identifier may be besides a metric name: keywords, and aggregation clauses' labels.
_KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless"})
_SUFFIXES = {"counter": ("_total", "_created"), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count", "_created")}


def exposed() -> set[str]:
    """Every series name an engine's registry exposes, labelled metrics with no sample yet included."""
    return {family.name + suffix for family in EngineMetrics().registry.collect() for suffix in _SUFFIXES[family.type]}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: its identifiers but functions, keywords, the
    labels of ``by (...)``/``without (...)``, label matchers, strings, ranges and numbers."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings ("$instance", "{{reason}}")
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges and subqueries
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        name, rest = match.group(), text[match.end() :].lstrip()
        if rest.startswith("(") or name in _KEYWORDS or re.fullmatch(r"[0-9.eE+-]+|Inf|NaN", name):
            continue  # a function call, a keyword or a number
        names.add(name)
    return names


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, those inside collapsed rows too."""
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found += panel.get("panels", [])
    return found


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def test_the_name_extraction_sees_through_promql() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, reason) (rate(sot_ingest_lag_seconds_bucket{instance=~"$x"}[5m])))'
        " / on (instance) group_left sum(sot_open_cases) or vector(0)"
    )
    assert metric_names(expr) == {"sot_ingest_lag_seconds_bucket", "sot_open_cases"}


def test_every_query_names_a_metric_the_engine_exposes(dashboard: dict[str, Any]) -> None:
    known = exposed()
    assert {"sot_messages_ingested_total", "sot_ingest_lag_seconds_bucket", "sot_open_cases"} <= known
    queries = [(p["title"], t["expr"]) for p in panels(dashboard) for t in p.get("targets", [])]
    for variable in dashboard["templating"]["list"]:  # Grafana's label_values(SELECTOR, LABEL): the selector
        selector = re.fullmatch(r"label_values\((.+),\s*\w+\)", variable["definition"])
        assert selector, variable["definition"]
        queries.append((f"variable {variable['name']}", selector.group(1)))
    assert len(queries) >= 20
    used = set()
    for title, expr in queries:
        names = metric_names(expr)
        assert names, f"{title}: {expr!r} selects no metric"
        assert names <= known, f"{title}: {sorted(names - known)} not exposed by the engine"
        used |= names
    wanted = {"ingested", "lag", "rejected", "open_cases", "sla_breaches", "commands", "campaign", "broker_dropped"}
    assert all(any(w in name for name in used) for w in wanted), sorted(used)


def test_every_panel_has_a_title_and_the_prometheus_input_as_datasource(dashboard: dict[str, Any]) -> None:
    assert [i["name"] for i in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
    assert dashboard["__inputs"][0]["pluginId"] == "prometheus"
    assert 36 <= dashboard["schemaVersion"] <= 41 and dashboard["uid"] == "sot-engine"
    for panel in panels(dashboard):
        assert panel.get("title"), panel
        assert panel.get("datasource") == DATASOURCE, panel["title"]
        for target in panel.get("targets", []):
            assert target.get("datasource") == DATASOURCE, panel["title"]
        if panel["type"] != "row":
            assert panel["targets"] and panel.get("description"), panel["title"]


def test_panels_do_not_overlap(dashboard: dict[str, Any]) -> None:
    taken: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        g = panel["gridPos"]
        assert g["x"] + g["w"] <= 24, panel["title"]
        cells = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & taken, panel["title"]
        taken |= cells


def test_the_scrape_example_reads_the_engines_metrics() -> None:
    config = yaml.safe_load((ROOT / "docs" / "grafana" / "prometheus.yml").read_text(encoding="utf-8"))
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics" and job["static_configs"][0]["targets"]
