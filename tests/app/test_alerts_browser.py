"""Real-browser test of the Alerts panel: the app (`streamlit run`) and a real Prometheus with one
firing and one pending alert, the Pipeline page and the Overview opened in headless Chromium."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support.app_fixtures import CHROMIUM, running_app, settle, write_demo_tables
from tests.support.monitoring import ALWAYS_FIRES, running_prometheus
from tests.support.ports import port_run
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium: `make browser`"),
              pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus is not installed (make monitoring)")]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    data = tmp_path_factory.mktemp("alerts-browser")
    write_demo_tables(data, high_value_rows=1_000, days=1)
    base = port_run(22)
    with running_prometheus(data / "prom", base, ALWAYS_FIRES) as client:
        wait_for(lambda: {a.state for a in client.alerts()} == {"firing", "pending"}, 30, "one firing, one pending")
        with running_app(data, metrics_port=str(base)) as url:
            yield url


def test_pipeline_page_shows_the_alerts_panel(app_url, browser, artifacts):
    page = browser.new_page(viewport={"width": 1440, "height": 1200})
    try:
        page.goto(f"{app_url}/pipeline_health", wait_until="domcontentloaded")
        page.get_by_text("Runbook: TormentaJobDown", exact=False).first.wait_for(timeout=30_000)
        settle(page)
        body = page.inner_text("body")
        assert "1 firing, 1 pending" in body
        assert "Runbook: TormentaJobFallingBehind (docs/RUNBOOK.md#tormentajobfallingbehind)" in body
        # the runbook section is in the page, folded in its expander (the fragment's reruns fold it again)
        assert "Prometheus has not been able to read the Spark job" in page.content()
        page.screenshot(path=str(artifacts / "dashboard-alerts.png"), full_page=True, timeout=90_000)  # a busy box is slow
        assert page.locator('[data-testid="stException"]').count() == 0
        assert "Traceback" not in page.inner_text("body")
    finally:
        page.close()


def test_overview_counts_the_alerts(app_url, browser):
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    try:
        page.goto(app_url, wait_until="domcontentloaded")
        page.get_by_text("1 firing, 1 pending", exact=False).first.wait_for(timeout=30_000)
        settle(page)
        assert page.locator('[data-testid="stException"]').count() == 0
    finally:
        page.close()
