"""Real-browser test of the SQL page: pick a ready question in headless Chromium, see its table and
its chart drawn by Plotly, and the query in the page address; a typed query runs on Run and an error
shows in one line. `streamlit run` on a free loopback port over a generated Delta folder."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from pipeline.sql.questions import BY_KEY
from tests.support.app_fixtures import CHROMIUM, running_app, settle, write_demo_tables

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium: `make browser`")]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    data = tmp_path_factory.mktemp("sql-browser-data")
    write_demo_tables(data, high_value_rows=2_000, days=2, agg_minutes=600, dims=20)
    with running_app(data) as url:
        yield url


def _plots(page) -> list[dict]:
    return page.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')].map(p => ({
        traces: (p.data || []).map(t => ({type: t.type, n: (t.x || []).length, x: (t.x || []).slice(0, 50)})),
        xtitle: p._fullLayout && p._fullLayout.xaxis ? p._fullLayout.xaxis.title.text : null}))""")


def test_a_ready_question_draws_its_chart(app_url, browser, artifacts):
    question = BY_KEY["high_value_share_by_country"]
    page = browser.new_page(viewport={"width": 1440, "height": 1300})
    try:
        page.goto(f"{app_url}/sql", wait_until="domcontentloaded")
        page.get_by_text("Ready questions").first.wait_for(timeout=30_000)
        settle(page)
        page.get_by_role("combobox", name="Ready questions").fill(question.title)  # typing filters the options
        page.get_by_role("option", name=question.title).click()
        page.get_by_text("Delta version read: sales_agg v0").first.wait_for(timeout=30_000)
        page.wait_for_function("() => [...document.querySelectorAll('.js-plotly-plot')].some("
                               "p => p._fullLayout && p._fullLayout.xaxis && p._fullLayout.xaxis.title.text === 'country')",
                               timeout=30_000)
        settle(page, charts=True)
        page.screenshot(path=str(artifacts / "dashboard-sql.png"), full_page=True)
        bars = [p for p in _plots(page) if p["xtitle"] == "country"][0]["traces"]
        assert len(bars) == 1 and bars[0]["type"] == "bar" and bars[0]["n"] == 20  # the demo's 20 countries
        assert parse_qs(urlparse(page.url).query)["q"] == [question.sql]  # the address carries the question
        assert page.locator('[data-testid="stException"]').count() == 0
        assert page.locator('[data-testid="stAlertContentError"]').count() == 0
        assert "SQL" in page.locator('[data-testid="stSidebarNav"]').inner_text()
    finally:
        page.close()


def test_a_shared_link_reopens_the_query_and_an_error_is_one_line(app_url, browser, artifacts):
    page = browser.new_page(viewport={"width": 1440, "height": 1100})
    try:
        page.goto(f"{app_url}/sql?q=SELECT%20nope%20FROM%20tormenta.high_value", wait_until="domcontentloaded")
        error = page.locator('[data-testid="stAlertContentError"]').first
        error.wait_for(timeout=30_000)
        settle(page)
        text = error.locator('[data-testid="stMarkdownContainer"]').first.inner_text()  # the message, not the icon
        assert "No field named nope" in text and "Traceback" not in page.inner_text("body")
        assert text.strip().count("\n") == 0, text
        page.screenshot(path=str(artifacts / "dashboard-sql-error.png"), full_page=True)
    finally:
        page.close()
