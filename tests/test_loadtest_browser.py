"""Real-browser test of the load-test report: the saved HTML opens from disk in headless Chromium
(no network, no server), every chart draws and the verdict shows; screenshot in test-artifacts/."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.loadtest.report import write_report
from tests.test_loadtest_unit import synthetic_result

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium: `make browser`")]


def open_report(path: Path, screenshot: Path) -> dict:
    """Open a report file in headless Chromium, wait for every Plotly chart, screenshot it;
    returns what the page showed (charts drawn, headline texts, console errors)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            # Any request leaving the file would mean the report is not self-contained.
            page.route("http*://**", lambda route: (errors.append("network: " + route.request.url), route.abort()))
            page.goto(path.as_uri(), wait_until="load")
            page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot .main-svg').length >= 12",
                                   timeout=60_000)
            page.wait_for_timeout(500)
            page.screenshot(path=str(screenshot), full_page=True)
            return {"charts": page.locator(".js-plotly-plot").count(),
                    "max_rate": page.locator("#max-rate").inner_text(),
                    "stage": page.locator("#limiting-stage").inner_text(),
                    "reconciliation": page.locator("#reconciliation-verdict").inner_text(),
                    "verdict_rows": page.locator("table.verdicts tbody tr").count(),
                    "errors": errors}
        finally:
            browser.close()


def test_report_opens_offline_in_chromium(tmp_path, artifacts):
    result, samples = synthetic_result()
    path = write_report(tmp_path, result, samples)
    seen = open_report(path, artifacts / "loadtest-report-synthetic.png")
    assert seen["errors"] == []
    assert seen["charts"] >= 12
    assert seen["max_rate"] == f"{result['summary']['max_sustainable_rate']:,.0f} tx/s"
    assert seen["stage"] == "job" and seen["reconciliation"] == "0 lost / 0 duplicated"
    assert seen["verdict_rows"] == len(result["steps"])
