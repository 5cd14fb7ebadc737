"""Real-browser test: `streamlit run` on a free loopback port, every page opened in headless Chromium.

Uses Debian's /usr/bin/chromium (`make browser`) driven by Playwright's Python package; the
app reads a small generated Delta fixture and has no broker, so the broker-down paths show
too. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.app_fixtures import CHROMIUM, running_app, settle, write_demo_tables
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
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
    with running_app(data) as url:
        yield url


@pytest.mark.parametrize("path,must_show,charts", PAGES, ids=[p[0] or "overview" for p in PAGES])
def test_page_renders_in_chromium(app_url, browser, artifacts, path, must_show, charts):
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    try:
        page.goto(f"{app_url}/{path}", wait_until="domcontentloaded")
        page.get_by_text(must_show, exact=False).first.wait_for(timeout=30_000)
        if charts:
            page.locator(".js-plotly-plot").first.wait_for(timeout=30_000)
        settle(page, charts)
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
            wait_for(lambda: ctl.desired()["rate"] == 50_000, 10, "the Christmas rate on the control topic")
            page.get_by_text("50,000 tx/s =").first.wait_for(timeout=10_000)
            settle(page)
            slider = page.locator('[data-testid="stSlider"]').first.inner_text()
            assert "50000" in slider.replace(",", ""), slider  # the widget follows the new desired state
            page.screenshot(path=str(artifacts / "dashboard-storm_control-live.png"), full_page=True)
            assert page.locator('[data-testid="stException"]').count() == 0
        finally:
            page.close()


def test_live_sales_draws_the_window_still_filling_differently(app_url, browser, artifacts):
    """The newest window is a hatched, faded bar and a dashed line segment, with the note; the rest solid."""
    page = browser.new_page(viewport={"width": 1440, "height": 1100})
    try:
        page.goto(f"{app_url}/live_sales", wait_until="domcontentloaded")
        page.get_by_text("is still filling", exact=False).first.wait_for(timeout=30_000)
        page.locator(".js-plotly-plot").first.wait_for(timeout=30_000)
        settle(page, charts=True)
        traces = page.evaluate("""() => {
            const plot = [...document.querySelectorAll('.js-plotly-plot')].find(p => p.data && p.data.length >= 5);
            return plot.data.map(t => ({name: t.name, type: t.type, n: (t.x || []).length,
                                        pattern: t.marker && t.marker.pattern ? t.marker.pattern.shape : null,
                                        dash: t.line ? t.line.dash || null : null, opacity: t.opacity}));
        }""")
        filling = [t for t in traces if t["name"] == "still filling"]
        solid = [t for t in traces if t["name"] != "still filling"]
        bar = next(t for t in filling if t["type"] == "bar")
        assert bar["n"] == 1 and bar["pattern"] == "/" and bar["opacity"] < 1, traces
        assert all(t["dash"] == "dash" for t in filling if t["type"] == "scatter"), traces
        assert all(t["pattern"] is None and t["dash"] in (None, "solid") and t["n"] > 1 for t in solid), traces
        # the partial bar is really visible: as wide as a complete one (a one-bar trace once drew hairline-thin)
        widths = page.evaluate("""() => {
            const plot = [...document.querySelectorAll('.js-plotly-plot')].find(p => p.data && p.data.length >= 5);
            return [...plot.querySelectorAll('g.trace.bars')].map(g => Math.max(0, ...[...g.querySelectorAll('path')]
                .map(b => b.getBBox().width)));
        }""")
        assert len(widths) == 2 and widths[1] >= 0.5 * widths[0] > 0, widths
        # the shaded band is drawn in the chart itself, labelled
        assert page.locator(".js-plotly-plot .annotation-text", has_text="still filling").count() >= 1
        page.screenshot(path=str(artifacts / "dashboard-live_sales-partial.png"), full_page=True)
    finally:
        page.close()


def _job_card(page) -> str:
    card = page.locator('[data-testid="stVerticalBlock"]').filter(
        has=page.get_by_role("heading", name="Job")).last
    return card.inner_text()


def test_job_card_says_starting_then_down(browser, artifacts, tmp_path):
    """Before the first batch with the job process alive the card says STARTING; once it is gone, DOWN."""
    write_demo_tables(tmp_path, high_value_rows=200, days=1, agg_minutes=30, metrics_minutes=0)
    (tmp_path / "run").mkdir()
    job = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()", "-m", "pipeline", "job"],
                           stdin=subprocess.PIPE)
    (tmp_path / "run" / "job.pid").write_text(str(job.pid))
    try:
        with running_app(tmp_path) as url:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            try:
                page.goto(url, wait_until="domcontentloaded")
                page.get_by_text("STARTING", exact=True).first.wait_for(timeout=30_000)
                settle(page)
                card = _job_card(page)
                assert "STARTING" in card and f"pid {job.pid}" in card and "DOWN" not in card, card
                page.screenshot(path=str(artifacts / "dashboard-overview-job-starting.png"), full_page=True)
                job.stdin.close()
                job.wait(10)
                # the Overview refreshes by itself (every 10 s, health cached 5 s): the card turns DOWN
                page.get_by_text("No streaming job is running", exact=False).first.wait_for(timeout=40_000)
                card = _job_card(page)
                assert "DOWN" in card and "STARTING" not in card, card
                page.screenshot(path=str(artifacts / "dashboard-overview-job-down.png"), full_page=True)
            finally:
                page.close()
    finally:
        if job.poll() is None:
            job.stdin.close()
            job.wait(10)


def test_first_visit_of_a_page_url_is_routed_by_the_entry_script(browser, tmp_path):
    """A fresh server whose first visitor opens a page URL shows that page inside the app's navigation."""
    write_demo_tables(tmp_path, high_value_rows=200, days=1, agg_minutes=30, metrics_minutes=30)
    with running_app(tmp_path) as url:
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        try:
            page.goto(f"{url}/explorer", wait_until="domcontentloaded")
            page.get_by_text("matching transactions", exact=False).first.wait_for(timeout=30_000)
            settle(page)
            nav = page.locator('[data-testid="stSidebarNav"]').inner_text()
            assert "Overview" in nav and "Live sales" in nav and "common" not in nav, nav
            assert page.get_by_role("heading", name="Explorer").count() >= 1
        finally:
            page.close()


@pytest.mark.integration
def test_live_page_shows_a_sale_produced_to_the_live_topic(browser, artifacts, stack, tmp_path):
    """A high-value sale written to the live topic appears in the Live page's ticker (polled, never slept on)."""
    import json
    import time
    import uuid

    from confluent_kafka import Producer

    from pipeline.kafka.topic import ensure_live_topic

    s = stack.replace(live_topic=f"live-{uuid.uuid4().hex[:8]}")
    ensure_live_topic(s)
    merchant = f"M-BROWSER-{uuid.uuid4().hex[:6]}"
    with running_app(tmp_path, bootstrap_servers=s.bootstrap_servers, live_topic=s.live_topic) as url:
        page = browser.new_page(viewport={"width": 1440, "height": 1100})
        try:
            page.goto(f"{url}/live", wait_until="domcontentloaded")
            page.get_by_text("No high-value sale on the live topic", exact=False).first.wait_for(timeout=60_000)
            doc = {"transaction_id": f"tx-{merchant}", "merchant_id": merchant, "amount": 4321.5,
                   "merchant_category": "travel", "country": "ES", "person_id": "P1",
                   "event_time": "2026-11-24T19:12:03.123456Z", "source_timestamp": int(time.time() * 1000)}
            p = Producer({"bootstrap.servers": s.bootstrap_servers})
            p.produce(s.live_topic, json.dumps(doc).encode(), key=doc["transaction_id"].encode())
            assert p.flush(30) == 0
            page.get_by_text(merchant).first.wait_for(timeout=30_000)  # the page refreshes every second
            assert "4,321.50" in page.inner_text("body")
            page.screenshot(path=str(artifacts / "dashboard-live.png"), full_page=True)
            assert page.locator('[data-testid="stException"]').count() == 0
        finally:
            page.close()
