"""``loadtest.html`` from a report: the verdict at the top, the books reconciled, every figure drawn, nothing fetched."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

import pytest

from loadtest.html import number, render_page
from tests.loadtest.report_fixture import sample_report

FIGURES = ("fig-latency", "fig-throughput", "fig-connections", "fig-lag", "fig-broker")
VOID = {"meta", "link", "br", "img", "input", "hr", "col", "area", "base", "source", "wbr"}


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    parts: list[Node | str] = field(default_factory=list)  # text and elements, in document order

    @property
    def children(self) -> list[Node]:
        return [p for p in self.parts if isinstance(p, Node)]

    def all(self) -> list[Node]:
        found = [self]
        for c in self.children:
            found += c.all()
        return found

    def find(self, tag: str | None = None, **attrs: str) -> list[Node]:
        return [
            n
            for n in self.all()
            if (tag is None or n.tag == tag)
            and all(n.attrs.get(k.rstrip("_").replace("_", "-")) == v for k, v in attrs.items())
        ]

    def by_id(self, id_: str) -> Node:
        (found,) = self.find(id=id_)
        return found

    def content(self) -> str:
        return " ".join(" ".join(p if isinstance(p, str) else p.content() for p in self.parts).split())


class _Tree(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].parts.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].parts.append(data)


def parse(html: str) -> Node:
    tree = _Tree()
    tree.feed(html)
    tree.close()
    return tree.root


@pytest.fixture(scope="module")
def failed() -> tuple[dict[str, Any], str]:
    report = sample_report(lost=1)
    return report, render_page(report)


@pytest.fixture(scope="module")
def compared() -> tuple[dict[str, Any], str]:
    report = sample_report(slow_after_s=25, baseline=sample_report(), gate=True)
    return report, render_page(report)


def test_a_run_that_lost_a_message_fails_at_the_top_with_each_condition(failed: tuple[dict[str, Any], str]) -> None:
    _, html = failed
    page = parse(html)
    verdict = page.by_id("verdict")
    (box,) = verdict.find("div", data_passed="false")
    assert box.content().startswith("FAILED 1 of 2 --fail-on conditions held: the run fails.")
    assert html.index('id="verdict"') < html.index('id="reconciliation"') < html.index('id="over-time"')
    (lost,) = page.find("tr", data_condition="lost>0")
    assert lost.attrs["class"] == "failed"
    assert [td.content() for td in lost.find("td")][1:] == ["1", "lost > 0", "fail"]
    (p99,) = page.find("tr", data_condition="p99_ingest_ms>100")
    assert p99.attrs["class"] == "held"
    assert [td.content() for td in p99.find("td")][1:] == ["12", "p99_ingest_ms > 100", "pass"]


def without_figures(report: dict[str, Any]) -> dict[str, Any]:
    """The report without its time series: the figures are what takes the time to render."""
    return {**report, "timeline": None}


def test_a_run_within_its_conditions_passes() -> None:
    page = parse(render_page(without_figures(sample_report())))
    (box,) = page.by_id("verdict").find("div", data_passed="true")
    assert box.content() == "PASSED 0 of 2 --fail-on conditions held."


def test_without_conditions_the_page_says_nothing_gates_the_run() -> None:
    page = parse(render_page(without_figures(sample_report(fail_on=""))))
    assert "No --fail-on condition was given: nothing gates this run." in page.by_id("verdict").content()
    assert page.find(id="thresholds") == []


def test_the_three_witnesses_books_are_reconciled(failed: tuple[dict[str, Any], str]) -> None:
    report, html = failed
    books = parse(html).by_id("books")
    cell = {tr.attrs["data-key"]: tr.find("td")[-1].content() for tr in books.find("tr") if "data-key" in tr.attrs}
    m = report["messages"]
    assert (m["published"], m["ingested"], m["rejected"], m["lost"]) == (12_000, 11_996, 3, 1)
    assert cell["published"] == "12,000"
    assert cell["broker_from_devices"] == "12,000"
    assert cell["ingested"] == "11,996"
    assert cell["rejected"] == "3" and cell["rejected_device_mismatch"] == "3"
    assert cell["duplicates"] == "0" and cell["surplus"] == "0"
    assert cell["lost"] == "1"
    (badge,) = [s for s in books.find("span") if "badge" in s.attrs.get("class", "")]
    assert badge.content() == "lost"
    assert "lost = published \u2212 ingested \u2212 rejected = 12,000 \u2212 11,996 \u2212 3 = 1" in html


def test_every_figure_is_an_inline_svg_with_a_title_and_a_caption(failed: tuple[dict[str, Any], str]) -> None:
    page = parse(failed[1])
    for figure in FIGURES:
        node = page.by_id(figure)
        (svg,) = node.find("svg")
        assert svg.attrs["role"] == "img"
        assert node.find("title") and node.find("title")[0].content()
        assert len(svg.find("path")) > 10, figure
        assert node.find("figcaption")[0].content()
    panels = [t.content() for t in page.by_id("fig-latency").find("text")]
    for title in ("publish (12,000 timed requests)", "ingest (1,200 timed requests)", "connect (198 timed requests)"):
        assert any(title in t for t in panels), title


def test_a_part_the_run_did_not_watch_is_said_missing_not_drawn() -> None:
    report = sample_report()
    report["timeline"]["engine"] = None
    report["timeline"]["latency_ms"] = None
    page = parse(render_page(report))
    for figure, words in (("fig-lag", "no engine metrics over time"), ("fig-latency", "no latency per interval")):
        node = page.by_id(figure)
        assert node.find("svg") == []
        assert words in node.content()
    assert page.by_id("fig-broker").find("svg")


def test_a_report_of_schema_1_still_renders() -> None:
    report = copy.deepcopy(sample_report())
    for key in ("timeline", "comparison"):
        del report[key]
    for t in report["thresholds"]:
        for key in ("metric", "op", "limit"):
            del t[key]
    report["schema_version"] = 1
    page = parse(render_page(report))
    assert "PASSED" in page.by_id("verdict").content()
    assert all(page.by_id(f).find("svg") == [] for f in FIGURES)


def test_regressions_against_the_baseline_are_highlighted(compared: tuple[dict[str, Any], str]) -> None:
    report, html = compared
    page = parse(html)
    rows = {tr.attrs["data-figure"]: tr for tr in page.by_id("comparison").find("tr") if "data-figure" in tr.attrs}
    assert set(rows) == {x["figure"] for x in report["comparison"]["figures"]}
    assert rows["p99_ingest_ms"].attrs["class"] == "regressed"
    assert rows["p99_publish_ms"].attrs["class"] == "unchanged"
    assert re.fullmatch(r"\+\d+\.\d %", rows["p99_ingest_ms"].find("td")[-2].content())
    assert "--fail-on-regression fails the run" in page.by_id("verdict").content()
    assert 'href="#baseline"' in html


def test_the_page_needs_nothing_but_itself_and_links_locusts_report(failed: tuple[dict[str, Any], str]) -> None:
    html = failed[1]
    page = parse(html)
    assert page.find("script") == [] and page.find("img") == []
    for node in page.all():
        for attr in ("src", "href"):
            value = node.attrs.get(attr, "")
            assert not re.match(r"(https?:)?//", value), (node.tag, value)
    assert "@import" not in html and "url(http" not in html and "@font-face" not in html
    assert page.find("a", href="locust.html")
    assert "Final ratio" in page.by_id("locust").content()


def test_the_same_report_gives_the_same_page() -> None:
    report = sample_report(fail_on="lost>0")
    assert render_page(report) == render_page(copy.deepcopy(report))


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "\u2014"),
        (0, "0"),
        (0.0, "0"),
        (12000, "12,000"),
        (1.234, "1.23"),
        (0.1234, "0.123"),
        (12.34, "12.3"),
        (-3.0, "\u22123"),
    ],
)
def test_numbers_are_written_for_reading(value: Any, text: str) -> None:
    assert number(value) == text
