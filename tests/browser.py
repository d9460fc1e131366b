"""Headless Chromium for the browser tests, driven by Selenium through the system's chromedriver.

:func:`chromium` opens a browser with the DevTools performance log on, so that a test can list
every request a page made (:func:`network_requests`) and what it logged to its console
(:func:`console_errors`). The executables are ``SOT_CHROMIUM`` and ``SOT_CHROMEDRIVER`` when set,
else Debian's ``/usr/bin/chromium`` and ``/usr/bin/chromedriver``, else the first on the PATH; when
neither is found :func:`chromium_paths` raises :class:`FileNotFoundError` with :data:`INSTALL`, and
the tests fail with it rather than skip.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

__all__ = ["INSTALL", "chromium", "chromium_paths", "console_errors", "full_page_screenshot", "network_requests"]

ENV_BROWSER, ENV_DRIVER = "SOT_CHROMIUM", "SOT_CHROMEDRIVER"
INSTALL = (
    "Chromium and its WebDriver are needed for the browser tests and are not installed: "
    f"apt-get install chromium chromium-driver (or point {ENV_BROWSER} and {ENV_DRIVER} at yours)"
)
BROWSERS = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
DRIVERS = ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")


def _find(env: str, candidates: tuple[str, ...], names: tuple[str, ...]) -> str:
    given = os.environ.get(env)
    if given:
        if not os.access(given, os.X_OK):
            raise FileNotFoundError(f"{env}={given} is not an executable. {INSTALL}")
        return given
    for path in candidates:
        if os.access(path, os.X_OK):
            return path
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    raise FileNotFoundError(INSTALL)


def chromium_paths() -> tuple[str, str]:
    """The Chromium and chromedriver executables, or :class:`FileNotFoundError` saying how to install them."""
    browser = _find(ENV_BROWSER, BROWSERS, ("chromium", "chromium-browser", "google-chrome"))
    driver = _find(ENV_DRIVER, DRIVERS, ("chromedriver",))
    return browser, driver


@contextmanager
def chromium(*, width: int = 1280, height: int = 900) -> Iterator[webdriver.Chrome]:
    """A headless Chromium with the performance and browser logs on; closed on exit."""
    browser, driver_path = chromium_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        f"--window-size={width},{height}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _events(driver: webdriver.Chrome) -> Iterator[dict[str, Any]]:
    for entry in driver.get_log("performance"):
        yield json.loads(entry["message"])["message"]


def network_requests(driver: webdriver.Chrome) -> list[str]:
    """The URL of every request the page sent since the last call (the log is drained as it is read)."""
    return [e["params"]["request"]["url"] for e in _events(driver) if e.get("method") == "Network.requestWillBeSent"]


def console_errors(driver: webdriver.Chrome) -> list[str]:
    """The page's console messages of level SEVERE since the last call."""
    return [entry["message"] for entry in driver.get_log("browser") if entry.get("level") == "SEVERE"]


def full_page_screenshot(driver: webdriver.Chrome, path: Path, *, max_height: int = 16_000) -> Path:
    """Resize the window to the whole page (up to ``max_height`` pixels) and save a PNG of it to ``path``."""
    width = driver.get_window_size()["width"]
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    driver.set_window_size(width, min(height, max_height))
    path.parent.mkdir(parents=True, exist_ok=True)
    if not driver.save_screenshot(str(path)):
        raise OSError(f"the browser could not write a screenshot to {path}")
    return path
