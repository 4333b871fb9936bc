"""The report in a real headless Chromium (Selenium): no console errors, every image decoded, every
audio element loaded (readyState >= 1). Skips when Chromium or its driver is absent.

``REPORT_SCREENSHOTS=<dir>`` also saves a full-page screenshot of each report there.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from asr_transfer.report.render import write_report
from tests.report.rundirs import classification_run, ctc_run, frames_run, interpret_run, sweep_dir

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER),
    reason="chromium + chromedriver not installed (apt-get install chromium chromium-driver)",
)


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="report-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 "--autoplay-policy=no-user-gesture-required", f"--user-data-dir={profile}",
                 "--window-size=1200,900"):  # fmt: skip
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def check_page(driver, html: Path, screenshot: str | None = None) -> dict:
    """Open the report from disk and assert the three properties; returns counts for the caller."""
    driver.get(html.resolve().as_uri())
    images = driver.execute_script(
        "return Array.from(document.images).map(i => [i.complete, i.naturalWidth]);"
    )
    assert images and all(done and width > 0 for done, width in images), images
    driver.execute_script("document.querySelectorAll('audio').forEach(a => a.load());")
    deadline = time.time() + 20
    while True:
        states = driver.execute_script(
            "return Array.from(document.querySelectorAll('audio')).map(a => a.readyState);"
        )
        if all(s >= 1 for s in states) or time.time() > deadline:
            break
        time.sleep(0.2)
    assert all(s >= 1 for s in states), states
    errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert not errors, errors
    if screenshot:
        height = driver.execute_script("return document.body.scrollHeight")
        driver.set_window_size(1200, min(height + 40, 6000))
        driver.save_screenshot(screenshot)
        driver.set_window_size(1200, 900)
    return {"images": len(images), "audio": len(states)}


def _shot(name: str) -> str | None:
    folder = os.environ.get("REPORT_SCREENSHOTS")
    return str(Path(folder) / name) if folder else None


@pytest.mark.parametrize(
    "kind,make,audio",
    [
        ("classification", classification_run, 4),
        ("ctc", ctc_run, 3),
        ("interpret", interpret_run, 4),
        ("frames", frames_run, 3),
    ],  # fmt: skip
)
def test_run_report_in_chromium(browser, tmp_path, kind, make, audio):
    counts = check_page(browser, write_report(make(tmp_path / "run")), _shot(f"{kind}.png"))
    assert counts["audio"] == audio


def test_segment_figures_decode_in_chromium(browser, tmp_path):
    """A frames run: each clip's segments-over-spectrogram PNG decodes to its full size in the browser."""
    check_page(browser, write_report(frames_run(tmp_path / "run")))
    sizes = browser.execute_script(
        "return Array.from(document.querySelectorAll('img[alt^=\"segments of\"]'))"
        ".map(i => [i.complete, i.naturalWidth, i.naturalHeight]);"
    )
    assert len(sizes) == 3 and all(done and w > 500 and h > 200 for done, w, h in sizes), sizes


def test_sweep_report_in_chromium(browser, tmp_path):
    assert check_page(browser, write_report(sweep_dir(tmp_path / "sweep")))["images"] == 2


def test_real_run_dirs(browser, tmp_path):
    """``REPORT_RUN_DIRS=dir1:dir2`` checks (and screenshots) reports of real runs too."""
    dirs = [d for d in os.environ.get("REPORT_RUN_DIRS", "").split(":") if d]
    if not dirs:
        pytest.skip("set REPORT_RUN_DIRS=<run dir>[:<run dir>] to check real runs")
    for d in dirs:
        html = write_report(d, tmp_path / f"{Path(d).name}.html")
        assert check_page(browser, html, _shot(f"{Path(d).name}.png"))["audio"] >= 1
