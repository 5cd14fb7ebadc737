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
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.app_fixtures import write_demo_tables
from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
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


@contextmanager
def running_app(data: Path, **env: str):
    """`streamlit run` on a free loopback port with TORMENTA_* env; stopped (process group) on exit."""
    port = free_port()
    full_env = dict(os.environ, TORMENTA_DATA_DIR=str(data), **{f"TORMENTA_{k.upper()}": v for k, v in env.items()})
    full_env.setdefault("TORMENTA_BOOTSTRAP_SERVERS", f"127.0.0.1:{free_port()}")
    log_path = data / f"streamlit-{port}.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true", "--server.fileWatcherType", "none",
         "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
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
                raise RuntimeError("streamlit did not start: " + log_path.read_text()[-2000:])
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
def app_url(tmp_path_factory):
    data = tmp_path_factory.mktemp("browser-data")
    write_demo_tables(data, high_value_rows=5_000, days=2)
    with running_app(data) as url:
        yield url


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


def settle(page) -> None:
    page.wait_for_function("() => !document.querySelector('[data-testid=stStatusWidget]')", timeout=30_000)
    page.wait_for_timeout(1200)


@pytest.mark.integration
def test_storm_control_with_a_real_broker(browser, artifacts, stack, tmp_path):
    """With Kafka up, the page shows the desired state and a slider change reaches the control topic."""
    from pipeline.emulator.control import EmulatorControl

    write_demo_tables(tmp_path, high_value_rows=500, days=1)
    env = {"bootstrap_servers": stack.bootstrap_servers, "topic": stack.topic,
           "control_topic": stack.control_topic, "status_topic": stack.status_topic}
    with running_app(tmp_path, **env) as url, EmulatorControl(stack) as ctl:
        ctl.set_desired(rate=30_000)
        page = browser.new_page(viewport={"width": 1440, "height": 1100})
        try:
            page.goto(f"{url}/storm_control", wait_until="domcontentloaded")
            page.get_by_text("Rate (transactions per second)").first.wait_for(timeout=30_000)
            page.get_by_text("No emulator is reporting").first.wait_for(timeout=30_000)
            settle(page)
            assert "30,000 tx/s" in page.inner_text("body")
            nav = page.locator('[data-testid="stSidebarNav"]').inner_text()
            assert "Overview" in nav and "common" not in nav  # routed by st.navigation, even as the first visit
            page.get_by_role("button", name="Christmas · 50,000 tx/s").click()
            deadline = time.monotonic() + 10
            while ctl.desired()["rate"] != 50_000 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert ctl.desired()["rate"] == 50_000
            page.get_by_text("50,000 tx/s =").first.wait_for(timeout=10_000)
            settle(page)
            slider = page.locator('[data-testid="stSlider"]').first.inner_text()
            assert "50000" in slider.replace(",", ""), slider  # the widget follows the new desired state
            page.screenshot(path=str(artifacts / "dashboard-storm_control-live.png"), full_page=True)
            assert page.locator('[data-testid="stException"]').count() == 0
        finally:
            page.close()
