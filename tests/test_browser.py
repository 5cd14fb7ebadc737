"""Real-browser test: `streamlit run` on a free loopback port, every page opened in headless Chromium.

Uses Debian's /usr/bin/chromium (`make browser`) driven by Playwright's Python package; the
app reads a small generated Delta fixture and has no broker, so the broker-down paths show
too. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from pipeline.broker import free_port
from tests.app_fixtures import write_demo_tables

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]
# url path, a text the page must show, whether it draws Plotly charts
PAGES = [
    ("", "storm data at a glance", False),
    ("pipeline_health", "Batch duration vs trigger interval", True),
    ("storm_control", "Kafka does not answer", False),
    ("live_sales", "Top merchants by high-value amount", True),
    ("explorer", "matching transactions", False),
]

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium: `make browser`")]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    data = tmp_path_factory.mktemp("browser-data")
    write_demo_tables(data, high_value_rows=5_000, days=2)
    port = free_port()
    env = dict(os.environ, TORMENTA_DATA_DIR=str(data), TORMENTA_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}")
    log = (data / "streamlit.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true", "--server.fileWatcherType", "none",
         "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).status == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("streamlit did not start: " + (data / "streamlit.log").read_text()[-2000:])
            time.sleep(0.3)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        log.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.mark.parametrize("path,must_show,charts", PAGES, ids=[p[0] or "overview" for p in PAGES])
def test_page_renders_in_chromium(app_url, browser, artifacts, path, must_show, charts):
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    try:
        page.goto(f"{app_url}/{path}", wait_until="domcontentloaded")
        page.get_by_text(must_show, exact=False).first.wait_for(timeout=30_000)
        if charts:
            page.locator(".js-plotly-plot").first.wait_for(timeout=30_000)
        # let the script run finish (the status widget disappears) and charts settle
        page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=30_000)
        page.wait_for_timeout(1200)
        page.screenshot(path=str(artifacts / f"dashboard-{path or 'overview'}.png"), full_page=True)
        assert page.locator('[data-testid="stException"]').count() == 0
        assert page.locator('[data-testid="stAlertContentError"]').count() == 0
        body = page.inner_text("body")
        assert "Traceback" not in body and "Error:" not in body
        nav = page.locator('[data-testid="stSidebarNav"]').inner_text()
        for title in ("Overview", "Pipeline", "Storm control", "Live sales", "Explorer"):
            assert title in nav
    finally:
        page.close()
