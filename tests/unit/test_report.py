"""The comparison report: one self-contained page, every section in order, and thin documents survive."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from experiments.report import diff_part, number, render_report, stats_cell
from tests.report_fixtures import comparison_document

COMPARE_FIGURES = ["fig-forest", "fig-paired", "fig-cost", "fig-timeseries", "fig-restore"]
SWEEP_FIGURES = ["fig-forest", "fig-paired", "fig-cost", "fig-restore", "fig-tradeoff"]
SECTIONS = ["run", "headline", "kpis", "cost", "scorecard", "checklist", "timeseries", "restore"]
DOWNTIME = "kpis.downtime_hours_per_device_year"
INLINE = {"strong", "em", "b", "i", "code", "a"}  # tags that do not break a sentence's text


class Page(HTMLParser):
    """What a test asks of a page: its text, tags, links, ids and classes."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.text: list[str] = []
        self.tags: list[str] = []
        self.links: list[str] = []
        self.ids: list[str] = []
        self.classes: list[str] = []
        self._skip = 0
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag not in INLINE:
            self.text.append(" ")
        self._skip += tag in ("style", "svg")
        for name, value in attrs:
            if name in ("src", "href", "xlink:href", "srcset", "action", "data") and value is not None:
                self.links.append(value)
            elif name == "id" and value:
                self.ids.append(value)
            elif name == "class" and value:
                self.classes.extend(value.split())

    def handle_endtag(self, tag: str) -> None:
        self._skip -= tag in ("style", "svg")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.text.append(data)

    @property
    def words(self) -> str:
        return " ".join("".join(self.text).split())


def render(doc: dict[str, Any], tmp_path: Path, name: str = "report.html") -> tuple[str, Page]:
    path = render_report(doc, tmp_path / name)
    html = path.read_text(encoding="utf-8")
    return html, Page(html)


@pytest.fixture
def no_drawing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Figures as empty SVGs, for the tests about the page's words (the figures cost most of the time)."""
    from experiments import plots

    stub = '<svg viewBox="0 0 1 1"></svg>'
    for name in ("forest", "paired", "cost_stack", "timeseries", "tradeoff"):
        monkeypatch.setattr(plots, name, lambda *_, **__: stub)
    monkeypatch.setattr(plots, "restore_ecdf", lambda *_, **__: (stub, False))


@pytest.fixture(scope="module")
def compare(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Page]:
    """The compare fixture's report, rendered once for the module."""
    return render(comparison_document("compare"), tmp_path_factory.mktemp("compare"))


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Page]:
    """The sweep fixture's report, rendered once for the module."""
    return render(comparison_document("sweep"), tmp_path_factory.mktemp("sweep"))


def test_compare_page_is_self_contained(compare: tuple[str, Page]) -> None:
    html, page = compare
    assert "http://" not in html and "https://" not in html
    assert all(link.startswith(("#", "data:")) for link in page.links), page.links
    assert not {"script", "img", "iframe", "object", "embed"} & set(page.tags)
    assert html.count("<svg") == len(COMPARE_FIGURES)
    assert re.findall(r'<figure id="([^"]+)"', html) == COMPARE_FIGURES
    assert html.count("<figcaption>") == len(COMPARE_FIGURES)
    assert html.count("<title id=") == len(COMPARE_FIGURES)  # every plot has an accessible name


def test_sections_come_in_order(compare: tuple[str, Page]) -> None:
    _, page = compare
    found = [i for i in page.ids if i in SECTIONS]
    assert found == SECTIONS


def test_run_facts_and_the_failed_replication(compare: tuple[str, Page]) -> None:
    html, page = compare
    for fact in ("2,000", "180 days", "14 days, not counted", "1\u201312", "Reached after 12 replications (cap 40)"):
        assert fact in page.words
    assert "11 replications of 12 requested" in page.words
    assert "1 replication failed" in page.words
    assert re.search(r"<details>\s*<summary>proactive-tuned, seed 3: EngineError", html)
    assert "MemoryError in fleet_patterns" in page.words
    assert "missing" not in page.words.split("failed")[0]  # a failed replication is not listed twice


@pytest.mark.usefixtures("no_drawing")
def test_headline_sentence_for_a_known_difference(tmp_path: Path) -> None:
    doc = comparison_document("compare")
    d = doc["metrics"][DOWNTIME]["differences"]["proactive"]
    d.update(mean=-3.9, t_lo=-4.9, t_hi=-2.9, p_holm=0.002, significant=True)
    _, page = render(doc, tmp_path)
    assert (
        "proactive cuts downtime by 3.9 h per device-year, 95 % CI 2.9\u20134.9; "
        "significant after Holm adjustment (p = 0.002)."
    ) in page.words


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"mean": 0.4, "t_lo": -1.3, "t_hi": 2.1, "p_holm": 0.41, "significant": False},
            "proactive: no significant difference in downtime (+0.4 h per device-year, 95 % CI \u22121.3 to 2.1); p = 0.41 after Holm adjustment.",
        ),
        (
            {"mean": 2.0, "t_lo": 1.0, "t_hi": 3.0, "p_holm": 0.001, "significant": True},
            "proactive increases downtime by 2.0 h per device-year, 95 % CI 1.0\u20133.0",
        ),
        (
            {"mean": -2.0, "t_lo": -3.0, "t_hi": -1.0, "p_holm": 0.08, "significant": False},
            "not significant after Holm adjustment (p = 0.080)",
        ),
    ],
)
@pytest.mark.usefixtures("no_drawing")
def test_headline_wording_follows_sign_interval_and_holm(tmp_path: Path, change: dict[str, Any], expected: str) -> None:
    doc = comparison_document("compare")
    doc["metrics"][DOWNTIME]["differences"]["proactive"].update(change)
    _, page = render(doc, tmp_path)
    assert expected in page.words


def test_shares_read_as_percent_and_percentage_points(compare: tuple[str, Page]) -> None:
    _, page = compare
    assert re.search(r"proactive raises restored within a day by [\d.]+ percentage points", page.words)


def test_checklist_rows_and_badges(compare: tuple[str, Page]) -> None:
    html, _ = compare
    table = html[
        html.index('<table class="checklist">') : html.index("</table>", html.index('<table class="checklist">'))
    ]
    assert table.count("<tr>") == 1 + 7  # the header, then one row per point
    for verdict in ("pass", "partial", "fail", "not-exercised"):
        assert f"badge-{verdict}" in table
    assert "\u2265 80 %" in table


def test_kpi_table_has_every_metric(compare: tuple[str, Page]) -> None:
    html, _ = compare
    doc = comparison_document("compare")
    table = html[html.index('<table class="kpi">') : html.index("</table>", html.index('<table class="kpi">'))]
    rows = table.count('<th scope="row"')
    assert rows == len(doc["metrics"])
    assert "BCa [" in table and "t [" in table and "\u00d7</td>" in table  # both intervals and the variance ratio


def test_sweep_report(sweep: tuple[str, Page]) -> None:
    doc = comparison_document("sweep")
    html, page = sweep
    assert re.findall(r'<figure id="([^"]+)"', html) == SWEEP_FIGURES
    assert html.count("<svg") == len(SWEEP_FIGURES)
    assert "No time series were recorded" in page.words
    assert "http://" not in html and "https://" not in html
    table = html[html.index('<table class="tradeoff">') :]
    pareto = doc["sweep"]["tradeoff"]["pareto"]
    assert 0 < len(pareto) < len(doc["sweep"]["points"])
    assert table.count('<span class="unit">Pareto-optimal') == len(pareto)
    assert table.count('<span class="unit">dominated') == len(doc["sweep"]["points"]) - len(pareto)
    assert "above=0.70" in page.words and "baseline" in page.words


@pytest.mark.usefixtures("no_drawing")
@pytest.mark.parametrize("block", [None, {"parameters": ["a.b"], "points": []}, {"points": [{"label": "x"}]}])
def test_sweeps_with_nothing_to_trade_off(tmp_path: Path, block: dict[str, Any] | None) -> None:
    doc = comparison_document("sweep")
    doc["sweep"] = block
    html, _ = render(doc, tmp_path)
    assert "fig-tradeoff" not in html


@pytest.mark.usefixtures("no_drawing")
def test_sweep_without_timeseries_key_or_tradeoff(tmp_path: Path) -> None:
    doc = comparison_document("sweep")
    del doc["timeseries"]
    doc["sweep"]["tradeoff"] = {"x": "no.such.metric", "y": DOWNTIME, "pareto": []}
    html, _ = render(doc, tmp_path)
    assert "fig-tradeoff" not in html and '<table class="tradeoff">' in html


def test_nulls_everywhere_still_render(tmp_path: Path) -> None:
    doc = comparison_document("compare")
    for i, metric in enumerate(doc["metrics"].values()):
        for arm in metric["arms"].values():
            if i % 2:
                arm.update(mean=None, lo=None, hi=None, sd=None)
            arm["values"] = [None if j % 3 == 0 else v for j, v in enumerate(arm["values"])]
        for d in metric["differences"].values():
            if i % 3 == 0:
                d.update(
                    dict.fromkeys(
                        (
                            "mean",
                            "t_lo",
                            "t_hi",
                            "bca_lo",
                            "bca_hi",
                            "p_value",
                            "p_holm",
                            "relative",
                            "variance_reduction",
                        )
                    )
                )
    doc["checklist"][0]["target"] = None
    doc["cost_breakdown"]["proactive"]["parts"] = None
    doc["restore_hours"]["proactive"] = []
    doc["replications"]["precision"] = None
    doc["timeseries"]["devices_down"]["arms"]["proactive"]["lo"] = [None] * 10
    html, page = render(doc, tmp_path)
    assert "\u2014" in page.words
    assert "A fixed number of replications: 12 per arm." in page.words
    assert html.count("<svg") == len(COMPARE_FIGURES)


def test_one_replication_has_no_intervals(tmp_path: Path) -> None:
    doc = comparison_document("compare", replications=1)
    assert doc["metrics"][DOWNTIME]["differences"] == {}  # the builder pairs nothing under two replications
    html, page = render(doc, tmp_path)
    assert re.search(
        r"proactive cuts downtime by [\d.]+ h per device-year \(a single replication: no interval\)", page.words
    )
    assert "(no interval)" in html  # on the forest plot
    assert "1 replication of 1 requested" in page.words


def test_a_single_arm_has_nothing_to_compare(tmp_path: Path) -> None:
    doc = comparison_document("compare")
    doc["arms"] = doc["arms"][:1]
    for metric in doc["metrics"].values():
        metric["arms"] = {"reactive": metric["arms"]["reactive"]}
        metric["differences"] = {}
    for key in ("restore_hours", "cost_breakdown"):
        doc[key] = {"reactive": doc[key]["reactive"]}
    html, page = render(doc, tmp_path)
    assert "Only one arm (reactive): there is nothing to compare it with." in page.words
    assert "fig-forest" not in html and "fig-paired" not in html
    assert html.count("<svg") == 3  # cost, time series, time to restore


def test_an_almost_empty_document(tmp_path: Path) -> None:
    doc = {"kind": "compare", "baseline": "a", "arms": [{"label": "a", "policy": "reactive"}], "metrics": {}}
    html, page = render(doc, tmp_path)
    assert "<svg" not in html
    assert "No time series were recorded" in page.words and "No cost breakdown" in page.words


@pytest.mark.usefixtures("no_drawing")
def test_text_from_the_document_is_escaped(tmp_path: Path) -> None:
    doc = comparison_document("compare")
    doc["scenario"]["name"] = "<script>alert(1)</script>"
    doc["replications"]["failed"][0]["log_tail"] = "</pre><img src=x onerror=alert(1)>"
    html, _ = render(doc, tmp_path)
    assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;" in html


def test_the_same_document_gives_the_same_bytes(sweep: tuple[str, Page], tmp_path: Path) -> None:
    doc = comparison_document("sweep")
    again = render_report(doc, tmp_path / "b" / "c.html").read_text(encoding="utf-8")
    assert again == sweep[0]
    assert comparison_document("sweep") == doc  # rendering reads the document and changes nothing in it


def test_numbers_are_written_as_precisely_as_they_are_known() -> None:
    assert number(-3.9, "h", 1.0) == "\u22123.9"
    assert number(-3.3002, "h", 0.55) == "\u22123.30"
    assert number(412_345.6, "EUR", 15_000.0) == "412,346"
    assert number(0.5812, "share", 0.021) == "58.1"
    assert number(None) == "\u2014"
    assert number(float("nan")) == "\u2014"
    assert number(2.0, signed=True, decimals=1) == "+2.0"
    assert stats_cell({"mean": 13.41, "lo": 12.57, "hi": 14.25}, "") == "13.41 [12.57, 14.25]"
    assert stats_cell({"mean": 13.41, "lo": None, "hi": None}, "") == "13.4"
    assert diff_part({"mean": -3.3, "t_lo": -3.85, "t_hi": -2.75}, "", "t") == "[\u22123.85, \u22122.75]"
    assert diff_part(None, "", "bca") == "\u2014"
