"""The real Streamlit server in a real (headless) browser: the app starts, serves the sample workspace and
shows the flagged campaign. Needs Chromium (``apt-get install chromium chromium-driver``) and Selenium."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CHROMIUM = "/usr/bin/chromium"
CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1600,1400"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def streamlit_server(workspace: Path, log: Path, extra_env: dict[str, str] | None = None) -> Iterator[str]:
    """Run ``streamlit run app.py`` on a free loopback port; yield its URL once healthy."""
    port = _free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port", str(port),
           "--server.headless", "true", "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
           "--", "--workspace", str(workspace)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **(extra_env or {})}
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"streamlit did not start:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _driver():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} not found: install it with 'apt-get install chromium chromium-driver'")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = CHROMIUM
    for flag in CHROME_FLAGS:
        opts.add_argument(flag)
    driver_path = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    service = Service(driver_path) if os.path.exists(driver_path) else Service()
    return webdriver.Chrome(options=opts, service=service)


def _wait_for_text(driver, needle: str, timeout: float = 60) -> str:
    deadline = time.time() + timeout
    body = ""
    while time.time() < deadline:
        body = driver.find_element("tag name", "body").text
        if needle in body:
            return body
        time.sleep(0.5)
    raise AssertionError(f"{needle!r} did not appear within {timeout}s; page text:\n{body[:3000]}")


def _settle(driver, timeout: float = 15) -> None:
    """Wait until Streamlit has replaced its loading skeletons (tables, widgets) with content."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        skeletons = driver.find_elements("css selector", '[data-testid="stSkeleton"], [data-testid="stTableStyledEmptyTableCell"]')
        running = driver.find_elements("css selector", '[data-testid="stStatusWidget"]')
        if not skeletons and not running:
            break
        time.sleep(0.25)
    time.sleep(1.0)  # canvas-drawn tables and plotly paint after the DOM settles


def _flagged(workspace: Path) -> list[tuple[str, str]]:
    from analyzer.app.data import query

    rows = query(str(workspace), "SELECT campaign_id, label FROM campaigns WHERE flagged ORDER BY rank")
    return list(zip(rows["campaign_id"], rows["label"], strict=True))


def test_server_shows_flagged_campaigns_in_browser(sample_workspace, tmp_path):
    """Every page paints; each flagged campaign's label shows on its page (table cells are canvas-drawn, so
    the label is checked where it is DOM text). Screenshots and first-paint seconds go to ``tmp_path``."""
    driver = _driver()
    flagged = _flagged(sample_workspace)
    assert flagged, "the sample should flag at least one campaign"
    timings: dict[str, float] = {}
    try:
        with streamlit_server(sample_workspace, tmp_path / "streamlit.log") as url:
            for page, needle in (("Overview", "Flagged campaigns"), ("Campaigns", f"({len(flagged)} flagged)"),
                                 ("Map", "Colour by"), ("Search", "semantic search"), ("Triage", "Decisions"),
                                 ("Export", "schema_version"), ("Account", "Traffic across clusters")):
                t0 = time.time()
                driver.get(f"{url}/?page={page}")
                _wait_for_text(driver, needle)
                timings[page] = round(time.time() - t0, 2)
                _settle(driver)
                driver.save_screenshot(str(tmp_path / f"{page.lower()}.png"))
            for cid, label in flagged:
                t0 = time.time()
                driver.get(f"{url}/?page=Campaign&campaign={cid}")
                _wait_for_text(driver, label[:60])
                timings.setdefault("Campaign", round(time.time() - t0, 2))
                # the page paints top-down (evidence, history across runs, signals): wait for the last heading
                body = _wait_for_text(driver, "Signals")
                assert "Evidence" in body and "History across runs" in body
            _settle(driver)
            driver.save_screenshot(str(tmp_path / "campaign.png"))
    finally:
        driver.quit()
    (tmp_path / "timings.json").write_text(json.dumps(timings))
    shot = tmp_path / "campaigns.png"
    assert shot.exists() and shot.stat().st_size > 10_000


def test_server_refuses_without_login_in_browser(sample_workspace, tmp_path):
    driver = _driver()
    try:
        with streamlit_server(sample_workspace, tmp_path / "streamlit.log",
                              {"ANALYZER_REQUIRE_LOGIN": "1"}) as url:
            driver.get(url)
            body = _wait_for_text(driver, "requires sign-in")
            assert "Campaigns" not in body
    finally:
        driver.quit()
