"""The soak's browser stands for a user's browser on another machine: Chromium and every process it
forks run at a lower CPU priority than the product (real Chromium)."""

from __future__ import annotations

import os

import psutil
import pytest

from pipeline.loadtest.soak_browser import BROWSER_NICENESS, BrowserRounds, lower_priority
from tests.support.ports import free_port
from tests.support.waiting import wait_for

pytestmark = pytest.mark.browser


def _chromium_nice_values() -> list[int]:
    out = []
    for p in psutil.Process(os.getpid()).children(recursive=True):
        try:
            if p.name().startswith("chrom"):
                out.append(p.nice())
        except psutil.Error:
            continue
    return out


def test_the_soak_browser_runs_chromium_at_a_lower_priority():
    why = BrowserRounds.available()
    assert why is None, why
    rounds = BrowserRounds(url="http://127.0.0.1:9", app_up=lambda: False, every=0.5).start()
    try:
        wait_for(lambda: rounds.launched or rounds.error, 60, "Chromium launched")
        assert not rounds.error, rounds.error
        wait_for(lambda: rounds.skipped_rounds >= 1, 30, "a round skipped while the app is down")
        # Chromium raises its own browser and GPU processes (-8 as root); a visit's sweep lowers them
        wait_for(lambda: len(_chromium_nice_values()) >= 3, 30, "Chromium's processes")
        # Chromium starts helper processes lazily: sweep until a sweep finds nothing left to lower
        wait_for(lambda: lower_priority(os.getpid(), BROWSER_NICENESS) == 0
                 and min(_chromium_nice_values()) >= BROWSER_NICENESS, 30, "every Chromium process lowered")
        values = _chromium_nice_values()
        assert len(values) >= 3 and min(values) >= BROWSER_NICENESS, values
        assert os.nice(0) < BROWSER_NICENESS   # the test (the product's side) keeps its own priority
    finally:
        rounds.stop()
    assert not _chromium_nice_values()


def _rounds_until(rounds: BrowserRounds, visits: int) -> None:
    rounds.start()
    try:
        wait_for(lambda: len(rounds.visits) >= visits or rounds.error, 240, f"{visits} visits")
    finally:
        rounds.stop()
    assert not rounds.error, rounds.error


def test_one_tab_visits_every_page_of_a_real_app_round_after_round(tmp_path):
    """A user's browser stays open: the rounds load each page from its URL in one tab (the app's
    script bundle from the browser's cache), and every visit of a real app loads and settles."""
    from tests.support.app_fixtures import running_app, write_demo_tables

    data = tmp_path / "data"
    write_demo_tables(data, high_value_rows=200, days=1)
    pages = ["", "explorer", "sql"]
    with running_app(data) as url:
        rounds = BrowserRounds(url=url, app_up=lambda: True, every=0.5, pages=pages)
        _rounds_until(rounds, 2 * len(pages))
        fresh = BrowserRounds(url=url, app_up=lambda: True, every=0.5, pages=pages, reuse_tab=False)
        _rounds_until(fresh, len(pages))
    assert [v.page for v in rounds.visits[:6]] == ["overview", "explorer", "sql"] * 2
    assert all(v.ok for v in rounds.visits), [v.as_dict() for v in rounds.visits if not v.ok]
    assert rounds.tabs_opened == 1, rounds.tabs_opened
    assert rounds.summary()["tabs_opened"] == 1
    # the way of the soaks up to 6 December, kept for the bench: a tab per visit
    assert all(v.ok for v in fresh.visits) and fresh.tabs_opened == len(fresh.visits)


def test_a_failed_visit_gives_the_next_one_a_new_tab():
    rounds = BrowserRounds(url=f"http://127.0.0.1:{free_port()}", app_up=lambda: True, every=0.5, pages=["", "sql"])
    _rounds_until(rounds, 3)   # nothing listens: every visit fails
    assert rounds.visits and not any(v.ok for v in rounds.visits)
    assert all("ERR_CONNECTION_REFUSED" in v.problem for v in rounds.visits), rounds.visits[0].problem
    assert rounds.tabs_opened == len(rounds.visits)
