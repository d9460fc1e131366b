"""The engine's console in a real browser, over the database of a real run.

A short run of the regional outage (freezers and vending machines in three regions; alerts, remote
fixes, visits, refills) leaves its database; the API serves it read-only and headless Chromium
opens the console: the cases listed are the database's, a filter narrows them, a case page shows
its timeline, the pages request nothing beyond the engine and log no error, they work with
JavaScript off, and the API docs render offline. ``SOT_SCREENSHOTS=1`` saves the pictures the
README shows (docs/images/console-*.png).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from contracts.engine_config import EngineConfig
from support_engine.http_api import HttpApi, create_app
from support_engine.metrics import EngineMetrics
from tests.browser import console_errors, full_page_screenshot, network_requests
from tests.integration.cli import ROOT, processes_mentioning, sot

pytestmark = pytest.mark.integration

SCENARIO = ROOT / "scenarios" / "regional_outage.yaml"
IMAGES = ROOT / "docs" / "images"
PAGES = [
    "/",
    "/console/fleet",
    "/console/cases",
    "/console/cases?state=all&region=north",
    "/console/work-orders",
    "/console/campaigns",
    "/console/alerts",
    "/console/dead-letters",
]
WAIT_S = 30.0  # the longest a page may take to draw (no test asserts how long it took)


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory of a finished three-day run."""
    out = tmp_path_factory.mktemp("outage")
    proc = sot("run", str(SCENARIO), "--days", "3", "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert processes_mentioning(str(out)) == [], "broker or engine left running"
    return out


def stored(finished: Path, sql: str, *args: object) -> list[tuple[object, ...]]:
    with sqlite3.connect(f"file:{finished / 'engine.sqlite'}?mode=ro", uri=True) as conn:
        return conn.execute(sql, args).fetchall()


@pytest.fixture(scope="module")
def base(finished: Path) -> Iterator[str]:
    """The URL of the API and console over the run's database."""
    config = msgspec.json.decode((finished / "engine-config.json").read_bytes(), type=EngineConfig)
    app = create_app(
        finished / "engine.sqlite", EngineMetrics(clock="event"), connected=lambda: True, engine_config=config
    )
    api = HttpApi(app)
    api.start()
    try:
        yield api.url
    finally:
        api.stop()


def visit(driver: webdriver.Chrome, url: str) -> None:
    network_requests(driver)  # drain what earlier pages left in the logs
    console_errors(driver)
    driver.set_window_size(1280, 900)
    driver.get(url)
    WebDriverWait(driver, WAIT_S).until(lambda d: d.execute_script("return document.readyState") == "complete")


def case_ids(driver: webdriver.Chrome) -> list[str]:
    return [row.get_attribute("data-case") or "" for row in driver.find_elements(By.CSS_SELECTOR, "tr[data-case]")]


def total(driver: webdriver.Chrome) -> int:
    return int(driver.find_element(By.ID, "case-total").text)


def test_the_cases_page_lists_the_runs_cases(browser: webdriver.Chrome, base: str, finished: Path) -> None:
    every = {str(c) for (c,) in stored(finished, "SELECT case_id FROM cases")}
    assert len(every) > 50  # more than a page
    visit(browser, f"{base}/console/cases?state=all")
    assert total(browser) == len(every)
    seen: list[str] = []
    while True:
        seen += case_ids(browser)
        following = browser.find_elements(By.CSS_SELECTOR, "a[rel=next]")
        if not following:
            break
        visit(browser, following[0].get_attribute("href") or "")
    assert sorted(seen) == sorted(every) and len(seen) == len(every)
    visit(browser, f"{base}/console/cases")  # the default: the open ones
    (open_now,) = stored(finished, "SELECT count(*) FROM cases WHERE state IN ('open', 'in_progress')")
    assert total(browser) == open_now[0] > 0


def test_a_filter_narrows_the_list(browser: webdriver.Chrome, base: str, finished: Path) -> None:
    visit(browser, f"{base}/console/cases?state=all")
    everything = total(browser)
    (issue, expected), *_ = stored(
        finished, "SELECT issue, count(*) FROM cases GROUP BY issue ORDER BY count(*), issue"
    )  # the rarest issue
    Select(browser.find_element(By.NAME, "issue")).select_by_value(str(issue))
    browser.find_element(By.CSS_SELECTOR, "form.filters button[type=submit]").click()
    WebDriverWait(browser, WAIT_S).until(lambda d: f"issue={issue}" in d.current_url)
    assert total(browser) == expected < everything
    issues = {c.text for c in browser.find_elements(By.CSS_SELECTOR, "tr[data-case] td:nth-child(5)")}
    assert issues == {str(issue).replace("_", " ")}
    wanted = {str(c) for (c,) in stored(finished, "SELECT case_id FROM cases WHERE issue = ?", issue)}
    assert set(case_ids(browser)) == wanted


def test_a_case_page_shows_its_timeline(browser: webdriver.Chrome, base: str, finished: Path) -> None:
    commanded = stored(
        finished,
        "SELECT c.case_id FROM cases c JOIN outbox o ON o.device_id = c.device_id AND o.kind = 'SendCommand'"
        " WHERE o.payload LIKE '%\"case_id\":\"' || c.case_id || '\"%' ORDER BY c.case_id",
    )
    assert commanded, "the run sent no command for a case"
    case_id = str(commanded[0][0])
    visit(browser, f"{base}/console/cases/{case_id}")
    assert case_id in browser.find_element(By.TAG_NAME, "h1").text
    entries = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#timeline li")]
    (notes,) = stored(
        finished, "SELECT count(*) FROM outbox WHERE kind = 'Notify' AND payload LIKE ?", f'%"case_id":"{case_id}"%'
    )
    assert len(entries) >= 3 + notes[0]
    assert entries[0].split(" sim ")[0].endswith("Z") and "Case opened from" in entries[0]
    assert any("Command" in e and "sent to the device" in e for e in entries)
    assert sum("Owner told" in e for e in entries) == notes[0] > 0
    stamps = browser.execute_script("return document.querySelectorAll('#timeline time.ts').length")
    marks = browser.execute_script("return document.querySelectorAll('#timeline abbr.sim').length")
    assert stamps == marks == len(entries)  # every simulated time says so
    symptom = browser.find_element(By.ID, "symptom").text
    assert symptom and symptom != "\u2014"


def test_pages_request_nothing_beyond_the_engine_and_log_no_error(
    browser: webdriver.Chrome, base: str, finished: Path
) -> None:
    (case_id,) = stored(finished, "SELECT min(case_id) FROM cases")[0]
    for path in [*PAGES, f"/console/cases/{case_id}"]:
        visit(browser, base + path)
        browser.execute_script("window.scrollTo(0, document.body.scrollHeight)")  # anything lazy would load now
        urls = network_requests(browser)
        assert base + path in urls, path
        assert [u for u in urls if not u.startswith((base + "/", "data:"))] == [], path
        assert console_errors(browser) == [], path
    visit(browser, base + "/")
    charts = browser.execute_script("return document.querySelectorAll('.charts svg').length")
    assert charts == 2


def test_the_page_refreshes_itself_from_the_engine(browser: webdriver.Chrome, base: str) -> None:
    visit(browser, f"{base}/console/cases")
    status = browser.find_element(By.ID, "live-status")
    WebDriverWait(browser, WAIT_S).until(lambda d: "updated" in status.text)
    urls = network_requests(browser)
    assert urls.count(f"{base}/console/cases") >= 2  # the page, then a refresh of it
    assert [u for u in urls if not u.startswith((base + "/", "data:"))] == []
    assert console_errors(browser) == []
    assert total(browser) > 0  # the swapped-in section


def test_on_the_wall_clock_the_sla_countdowns_tick(browser: webdriver.Chrome, finished: Path) -> None:
    """The same database read as a live run's, an hour of engine time a second: the countdowns move between refreshes."""
    config = msgspec.json.decode((finished / "engine-config.json").read_bytes(), type=EngineConfig)
    (latest,) = stored(finished, "SELECT max(updated_s) FROM cases")[0]
    speed = 3600.0
    origin = time.time() - float(latest) / speed  # engine time now: the run's end
    metrics = EngineMetrics(clock="wall", speed=speed)
    app = create_app(
        finished / "engine.sqlite", metrics, connected=lambda: True, engine_config=config, time_origin=origin
    )
    api = HttpApi(app)
    api.start()
    try:
        visit(browser, f"{api.url}/console/cases?sort=priority")
        clocks = browser.find_elements(By.CSS_SELECTOR, "#live-cases .due")
        assert clocks, "no SLA clock running"
        first = clocks[0].text
        assert first.endswith(("left", "s")) and "sim" not in browser.find_element(By.ID, "clock").text
        WebDriverWait(browser, WAIT_S).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, "#live-cases .due")[0].text != first
        )
        assert console_errors(browser) == []
    finally:
        api.stop()


def test_the_pages_work_without_javascript(browser: webdriver.Chrome, base: str, finished: Path) -> None:
    browser.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": True})
    try:
        visit(browser, f"{base}/console/cases?state=all")
        assert total(browser) == len(stored(finished, "SELECT case_id FROM cases"))
        assert browser.find_element(By.ID, "live-status").is_displayed() is False  # what the script would show
        assert browser.find_elements(By.CSS_SELECTOR, "a[rel=next]")  # paging is links
    finally:
        browser.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": False})


def test_the_api_docs_render_offline(browser: webdriver.Chrome, base: str) -> None:
    visit(browser, f"{base}/docs")
    WebDriverWait(browser, WAIT_S).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".opblock-summary-path"))
    shown = {e.get_attribute("data-path") for e in browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
    assert {"/cases", "/cases/{case_id}", "/alerts", "/dead-letters", "/clock"} <= shown
    urls = network_requests(browser)
    assert f"{base}/docs/openapi.json" in urls and f"{base}/docs/assets/swagger-ui-bundle.js" in urls
    assert [u for u in urls if not u.startswith((base + "/", "data:"))] == []
    assert console_errors(browser) == []


def test_screenshots_for_the_readme(browser: webdriver.Chrome, base: str, finished: Path) -> None:
    """With ``SOT_SCREENSHOTS=1``, the pictures of docs/console.md and the README; else the pages are drawn."""
    commanded = stored(
        finished,
        "SELECT c.case_id FROM cases c JOIN work_orders w ON w.case_id = c.case_id"
        " WHERE c.origin = 'telemetry' ORDER BY c.case_id",
    )
    case_id = str((commanded or stored(finished, "SELECT min(case_id) FROM cases"))[0][0])
    wanted = os.environ.get("SOT_SCREENSHOTS") == "1"
    shots = [
        ("/console/cases?region=north", "console-cases.png"),
        (f"/console/cases/{case_id}", "console-case.png"),
    ]
    for path, name in shots:
        visit(browser, base + path)
        height = browser.execute_script("return document.documentElement.scrollHeight")
        assert height > 300
        if wanted:
            shot = full_page_screenshot(browser, IMAGES / name, max_height=1800)
            assert shot.stat().st_size > 10_000
