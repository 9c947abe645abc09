"""The report rendered by headless Chromium: every plot decodes and is not blank, the page shows its sections.

Needs Debian's ``chromium`` and ``chromium-driver`` (CI installs them); skipped only when they are missing.
Set REPORT_SCREENSHOT_DIR to keep the screenshot for a look.
"""

from __future__ import annotations

import base64
import io
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from distributed_llm_trainer.monitoring.report import write_report

from .report_runs import make_run

CHROMIUM = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
DRIVER = shutil.which("chromedriver")

# Offline, private and quiet: no sandbox (containers run as root), no GPU, no background network traffic.
CHROME_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-dev-shm-usage", "--window-size=1400,1000"]


def not_one_colour(png: bytes) -> bool:
    from PIL import Image

    img = Image.open(io.BytesIO(png)).convert("RGB")
    return any(lo != hi for lo, hi in img.getextrema())


@pytest.mark.skipif(CHROMIUM is None or DRIVER is None, reason="chromium / chromium-driver not installed")
def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    from selenium import webdriver  # dev extra; a missing selenium with chromium present is a set-up error
    from selenium.webdriver.chrome.service import Service

    run = make_run(tmp_path / "browser-run", steps=200, gpu=True)
    report = write_report(run)
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in CHROME_ARGS:
        opts.add_argument(arg)
    profile = tempfile.mkdtemp(prefix="chromium-profile-", dir=tmp_path)
    opts.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(options=opts, service=Service(DRIVER, log_output=os.devnull))
    try:
        driver.set_page_load_timeout(60)
        driver.get(report.resolve().as_uri())
        imgs = driver.execute_script(
            "return Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight,"
            " i.src])")
        headings = driver.execute_script("return Array.from(document.querySelectorAll('h2')).map(h => h.textContent)")
        height = driver.execute_script("return document.body.scrollHeight")
        driver.set_window_size(1400, min(height + 40, 8000))
        shot = tmp_path / "report.png"
        driver.save_screenshot(str(shot))
    finally:
        driver.quit()

    assert headings == ["summary", "metrics", "samples", "data", "config", "environment"]
    assert [alt for alt, *_ in imgs] == ["loss vs tokens", "learning rate", "throughput", "MFU", "memory",
                                         "data wait", "gradient norm", "utilization"]
    for alt, complete, width, height_px, src in imgs:
        assert complete and width > 0 and height_px > 0, f"{alt} did not load"
        png = base64.b64decode(src.split(",", 1)[1])
        assert not_one_colour(png), f"{alt} is blank"
    assert not_one_colour(shot.read_bytes())
    if os.environ.get("REPORT_SCREENSHOT_DIR"):
        shutil.copy(shot, Path(os.environ["REPORT_SCREENSHOT_DIR"]) / "report-screenshot.png")
