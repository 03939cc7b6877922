"""Debian's headless Chromium for the browser tests (Selenium, chromium-driver; no downloaded browser)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
ARTIFACTS = Path(__file__).resolve().parents[1] / "_artifacts"  # screenshots


def webdriver_module() -> Any:
    """selenium.webdriver; called at a test module's import. In CI (make test installs them) a missing browser is a
    failure, elsewhere the module is skipped."""
    if os.environ.get("CI"):
        from selenium import webdriver

        assert CHROMIUM and CHROMEDRIVER, "Debian chromium and chromium-driver are not installed"
        return webdriver
    webdriver = pytest.importorskip("selenium.webdriver")
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("Debian chromium and chromium-driver are not installed", allow_module_level=True)
    return webdriver


def start(downloads: Path | None = None, extra_args: tuple[str, ...] = ()) -> Any:
    """A headless Chromium keeping the console log (and saving downloads into `downloads`); `extra_args`: more
    command-line switches (e.g. ``--ignore-certificate-errors`` for a test CA's HTTPS)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run", "--window-size=1400,1800", *extra_args):  # fmt: skip
        opts.add_argument(arg)
    if downloads is not None:
        opts.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                               "download.prompt_for_download": False})  # fmt: skip
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.downloads = downloads
    ARTIFACTS.mkdir(exist_ok=True)
    return driver


def wait(driver, script: str, timeout_s: float = 15):
    """Until `script` returns something truthy (its value)."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout_s).until(lambda d: d.execute_script(script))


def errors(driver) -> list[str]:
    """The SEVERE entries of the browser console."""
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
