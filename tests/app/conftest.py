"""Fixtures of the dashboard's browser tests: one headless Chromium per test module."""

from __future__ import annotations

import pytest

from tests.support.app_fixtures import launched_chromium


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium, launched once for the module's tests and closed after them."""
    with launched_chromium() as b:
        yield b
