"""Real-browser test of the load-test report: the saved HTML opens from disk in headless Chromium
(no network, no server), every chart draws and the verdict shows; screenshot in test-artifacts/."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.loadtest.report import write_report
from tests.support.app_fixtures import CHROMIUM, launched_chromium, open_report, running_app
from tests.support.loadtest_fixtures import synthetic_result

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium: `make browser`")]


def test_report_opens_offline_in_chromium(tmp_path, artifacts):
    result, samples = synthetic_result()
    path = write_report(tmp_path, result, samples)
    seen = open_report(path, artifacts / "loadtest-report-synthetic.png")
    assert seen["errors"] == []
    assert seen["charts"] >= 12
    assert seen["max_rate"] == f"{result.summary.max_sustainable_rate:,.0f} tx/s"
    assert seen["stage"] == "job" and seen["reconciliation"] == "0 lost / 0 duplicated"
    assert seen["verdict_rows"] == len(result.steps)


def test_load_test_page_in_chromium(tmp_path, artifacts):
    """The app's Load test page with a saved run: verdict, calculator and the report download button."""
    result, samples = synthetic_result()
    result.run_id = "20261124-191200-abcd"
    write_report(tmp_path / "loadtests" / result.run_id, result, samples)
    with running_app(tmp_path) as url, launched_chromium() as browser:
        page = browser.new_page(viewport={"width": 1440, "height": 1100})
        page.goto(f"{url}/load_test", wait_until="domcontentloaded")
        page.get_by_text("No load test is running").first.wait_for(timeout=30_000)
        page.get_by_role("tab", name="Results").click()
        page.get_by_text("Maximum sustainable rate").first.wait_for(timeout=30_000)
        page.get_by_role("button", name="Download the HTML report").wait_for(timeout=30_000)
        page.locator(".js-plotly-plot").first.wait_for(timeout=30_000)
        page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')",
                               timeout=30_000)
        page.locator(".js-plotly-plot .main-svg").first.wait_for(timeout=30_000)
        page.screenshot(path=str(artifacts / "dashboard-load_test.png"), full_page=True)
        page.get_by_role("tab", name="Capacity calculator").click()
        # st.dataframe draws on a canvas; its accessible grid cells exist but are not "visible"
        page.get_by_text("Broker disk needed, per broker").first.wait_for(state="attached", timeout=30_000)
        assert page.locator('[data-testid="stException"]').count() == 0
        assert "Load test" in page.locator('[data-testid="stSidebarNav"]').inner_text()
