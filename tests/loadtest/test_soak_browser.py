"""The soak's browser stands for a user's browser on another machine: Chromium and every process it
forks run at a lower CPU priority than the product (real Chromium)."""

from __future__ import annotations

import os

import psutil
import pytest

from pipeline.loadtest.soak_browser import BROWSER_NICENESS, BrowserRounds, lower_priority
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
