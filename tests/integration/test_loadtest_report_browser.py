"""``loadtest.html`` in a real browser: the verdict and the books are there to read, the figures are drawn, nothing loads.

Headless Chromium opens the page from disk. By default the page is rendered from the synthetic report
of :mod:`tests.loadtest.report_fixture`; with ``SOT_LOADTEST_OUT=DIR`` it is rendered from a real
run's ``DIR/loadtest.json``. ``SOT_SCREENSHOTS=1`` saves the picture the README and docs/loadtest.md
show (docs/images/loadtest-report.png), taken from a real run that way::

    sot loadtest scenarios/city.yaml --out runs/lt --users 60 --rate 120 --duration 10s --workers 2
    SOT_LOADTEST_OUT=runs/lt SOT_SCREENSHOTS=1 pytest tests/integration/test_loadtest_report_browser.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from selenium import webdriver
from selenium.webdriver.common.by import By

from loadtest.html import render_page
from tests.browser import console_errors, full_page_screenshot, network_requests
from tests.loadtest.report_fixture import sample_report

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "docs" / "images" / "loadtest-report.png"
FIGURES = ("fig-latency", "fig-throughput", "fig-connections", "fig-lag", "fig-broker")
MEASURE = """
const svg = document.querySelector('#' + arguments[0] + ' svg');
if (!svg) return null;
const box = svg.getBoundingClientRect();
return {width: box.width, height: box.height, paths: svg.querySelectorAll('path').length,
        texts: svg.querySelectorAll('text').length};
"""
LOOK = """
const e = arguments[0], s = getComputedStyle(e), box = e.getBoundingClientRect();
return {size: parseFloat(s.fontSize), colour: s.color, right: box.right, width: box.width, height: box.height,
        viewport: document.documentElement.clientWidth};
"""


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    given = os.environ.get("SOT_LOADTEST_OUT")
    if given:
        found: dict[str, Any] = json.loads((Path(given) / "loadtest.json").read_text(encoding="utf-8"))
        return found
    return sample_report(lost=1, rejected=3, fail_on="lost>0,p99_ingest_ms>100")


@pytest.fixture(scope="module")
def page(report: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("loadtest") / "loadtest.html"
    path.write_text(render_page(report), encoding="utf-8")
    return path


def _open(driver: webdriver.Chrome, path: Path) -> None:
    network_requests(driver)  # drain what earlier pages left in the logs
    console_errors(driver)
    driver.set_window_size(1280, 900)
    driver.get(path.as_uri())
    assert driver.execute_script("return document.readyState") == "complete"


def _readable(driver: webdriver.Chrome, element: Any) -> None:
    driver.execute_script("arguments[0].scrollIntoView()", element)
    assert element.is_displayed()
    look = driver.execute_script(LOOK, element)
    assert look["size"] >= 12, look
    assert look["width"] > 0 and look["height"] > 0, look
    assert look["right"] <= look["viewport"] + 1, look  # nothing runs off the side of the window
    assert look["colour"] not in ("rgba(0, 0, 0, 0)", "rgb(255, 255, 255)"), look


def test_the_page_requests_nothing_and_logs_no_error(browser: webdriver.Chrome, page: Path) -> None:
    _open(browser, page)
    browser.execute_script("window.scrollTo(0, document.body.scrollHeight)")  # anything lazy would load now
    assert network_requests(browser) == [page.as_uri()]
    assert console_errors(browser) == []


def test_the_verdict_is_the_first_thing_read(browser: webdriver.Chrome, page: Path, report: dict[str, Any]) -> None:
    _open(browser, page)
    verdict = browser.find_element(By.CSS_SELECTOR, "#verdict .verdict")
    _readable(browser, verdict)
    word = "PASSED" if report["passed"] else "FAILED"
    assert verdict.text.startswith(word)
    assert verdict.get_attribute("data-passed") == ("true" if report["passed"] else "false")
    assert verdict.location["y"] < browser.find_element(By.ID, "reconciliation").location["y"]
    for t in report["thresholds"]:
        row = browser.find_element(By.CSS_SELECTOR, f'#thresholds tr[data-condition="{t["condition"]}"]')
        _readable(browser, row)
        assert row.text.startswith(t["condition"])
        assert row.text.endswith("FAIL" if t["failed"] else "PASS")  # the badge's text is upper case


def test_the_reconciliation_is_readable_with_the_runs_numbers(
    browser: webdriver.Chrome, page: Path, report: dict[str, Any]
) -> None:
    _open(browser, page)
    table = browser.find_element(By.ID, "books")
    _readable(browser, table)
    m = report["messages"]
    for key in ("published", "ingested", "rejected", "lost"):
        cell = browser.find_element(By.CSS_SELECTOR, f'#books tr[data-key="{key}"] td:last-child')
        _readable(browser, cell)
        assert cell.text == f"{m[key]:,}", key
    assert "lost = published" in browser.find_element(By.CSS_SELECTOR, "#reconciliation .equation").text


def test_every_figure_has_a_laid_out_size(browser: webdriver.Chrome, page: Path) -> None:
    _open(browser, page)
    for figure in FIGURES:
        box = browser.execute_script(MEASURE, figure)
        assert box is not None, f"{figure} is missing"
        assert box["width"] > 600 and box["height"] > 150, (figure, box)
        assert box["paths"] > 5 and box["texts"] > 5, (figure, box)
        assert browser.find_element(By.CSS_SELECTOR, f"#{figure} figcaption").text.strip()


def test_a_picture_of_the_page(browser: webdriver.Chrome, page: Path, tmp_path: Path) -> None:
    """The page drawn: a screenshot with colour in it; with ``SOT_SCREENSHOTS=1`` the README's picture."""
    _open(browser, page)
    wanted = os.environ.get("SOT_SCREENSHOTS") == "1"
    shot = full_page_screenshot(browser, SCREENSHOT if wanted else tmp_path / "loadtest.png", max_height=3100)
    with Image.open(shot) as image:
        width, height = image.size
        colours = image.convert("RGB").resize((320, height // 4)).getcolors(maxcolors=1 << 16)
    assert width == 1280 and height >= 2000, image.size
    assert colours is None or len(colours) > 100  # a drawn page, not a blank or single-colour one
