"""The report in a real browser: it loads nothing from anywhere, its figures are drawn, its headline is read.

Headless Chromium opens the rendered file from disk; the DevTools performance log lists every
request the page made, and each figure's ``<svg>`` is measured where the browser laid it out.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from selenium import webdriver
from selenium.webdriver.common.by import By

from experiments.report import render_report
from tests.browser import console_errors, full_page_screenshot, network_requests
from tests.report_fixtures import comparison_document

pytestmark = pytest.mark.integration

FIGURES = {
    "compare": ["fig-forest", "fig-paired", "fig-cost", "fig-timeseries", "fig-restore"],
    "sweep": ["fig-forest", "fig-paired", "fig-cost", "fig-restore", "fig-tradeoff"],
}
MEASURE = """
const svg = document.querySelector(arguments[0] + ' svg');
if (!svg) return null;
const box = svg.getBoundingClientRect();
return {width: box.width, height: box.height, paths: svg.querySelectorAll('path').length,
        texts: svg.querySelectorAll('text').length};
"""


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each kind of report, rendered once for the module."""
    out = tmp_path_factory.mktemp("reports")
    return {kind: render_report(comparison_document(kind), out / f"{kind}.html") for kind in FIGURES}


def _open(driver: webdriver.Chrome, path: Path) -> None:
    network_requests(driver)  # drain what earlier pages left in the logs
    console_errors(driver)
    driver.set_window_size(1280, 900)
    driver.get(path.as_uri())
    assert driver.execute_script("return document.readyState") == "complete"


@pytest.mark.parametrize("kind", ["compare", "sweep"])
def test_page_requests_nothing_beyond_itself(browser: webdriver.Chrome, pages: dict[str, Path], kind: str) -> None:
    path = pages[kind]
    _open(browser, path)
    browser.execute_script("window.scrollTo(0, document.body.scrollHeight)")  # anything lazy would load now
    urls = network_requests(browser)
    assert path.as_uri() in urls
    assert [u for u in urls if not u.startswith(("file://", "data:"))] == []
    assert console_errors(browser) == []


@pytest.mark.parametrize("kind", ["compare", "sweep"])
def test_every_figure_is_drawn(browser: webdriver.Chrome, pages: dict[str, Path], kind: str) -> None:
    _open(browser, pages[kind])
    for figure in FIGURES[kind]:
        box = browser.execute_script(MEASURE, f"#{figure}")
        assert box is not None, f"{figure} is missing"
        assert box["width"] > 300 and box["height"] > 100, (figure, box)
        assert box["paths"] > 5 and box["texts"] > 3, (figure, box)
        caption = browser.find_element(By.CSS_SELECTOR, f"#{figure} figcaption")
        assert caption.text.strip()
    assert len(browser.find_elements(By.CSS_SELECTOR, "figure.plot svg")) == len(FIGURES[kind])


def test_headline_is_visible_and_the_log_tail_opens(browser: webdriver.Chrome, pages: dict[str, Path]) -> None:
    _open(browser, pages["compare"])
    sentence = browser.find_element(
        By.CSS_SELECTOR, '#headline .sentence[data-metric="kpis.downtime_hours_per_device_year"]'
    )
    browser.execute_script("arguments[0].scrollIntoView()", sentence)
    assert sentence.is_displayed()
    assert sentence.text.startswith("proactive cuts downtime by ")
    assert "h per device-year, 95 % CI" in sentence.text
    log = browser.find_element(By.CSS_SELECTOR, "#run details pre.log")
    assert not log.is_displayed()
    browser.find_element(By.CSS_SELECTOR, "#run details summary").click()
    assert log.is_displayed()
    assert "MemoryError" in log.text


def test_screenshot_of_the_whole_page(browser: webdriver.Chrome, pages: dict[str, Path], tmp_path: Path) -> None:
    _open(browser, pages["compare"])
    shot = full_page_screenshot(browser, tmp_path / "report.png")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(shot) as image:
        width, height = image.size
        colours = image.convert("RGB").resize((320, height // 4)).getcolors(maxcolors=1 << 16)
    assert width == 1280 and height > 4000, image.size
    assert colours is None or len(colours) > 200  # a drawn page, not a blank or single-colour one
    assert shot.stat().st_size > 100_000
