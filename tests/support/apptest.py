"""Helpers and fixtures for the AppTest page tests (no browser): the app's entry, its environment,
what a page showed, and one generated Delta data folder shared by the whole session.

The fixtures (`demo_dir`, `release_cached_clients`) reach every test through `pytest_plugins`
in tests/conftest.py.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.support.app_fixtures import write_demo_tables

APP = str(Path(__file__).resolve().parents[2] / "streamlit_app.py")
DEMO_HIGH_VALUE_ROWS = 3_000  # high-value rows in `demo_dir`, over two days


def closed_port() -> int:
    """A loopback port nothing listens on (a broker that is down)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the socket goes: nothing listens there


def use_env(monkeypatch, data_dir: Path, bootstrap: str | None = None, **more: str) -> None:
    """The app's TORMENTA_* environment (no broker unless `bootstrap`, no metrics endpoint unless
    `metrics_port`) and empty Streamlit caches."""
    import streamlit as st

    monkeypatch.setenv("TORMENTA_DATA_DIR", str(data_dir))
    monkeypatch.setenv("TORMENTA_METRICS_PORT", str(more.pop("metrics_port", "0")))
    monkeypatch.setenv("TORMENTA_BOOTSTRAP_SERVERS", bootstrap or f"127.0.0.1:{closed_port()}")
    for k, v in more.items():
        monkeypatch.setenv(f"TORMENTA_{k.upper()}", v)
    st.cache_data.clear()
    st.cache_resource.clear()


def texts(at) -> str:
    """Every info, warning, success, markdown, caption and subheader text of an AppTest run, one per line."""
    parts = [e.value for kind in ("info", "warning", "success", "markdown", "caption", "subheader")
             for e in getattr(at, kind)]
    return "\n".join(str(p) for p in parts)


def failures(at) -> list[dict]:
    """The reads that failed in the last run, as the page layer's guard() recorded them."""
    from pages.common import FAILURES

    return list(at.session_state[FAILURES]) if FAILURES in at.session_state else []


def assert_clean(at, allowed: tuple[str, ...] = ()) -> None:
    """No exception, no error box, and no read on the page failed (except of the `allowed` kinds)."""
    from pages.common import FAILURES

    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert FAILURES in at.session_state, "the entry script did not run: no failure record"
    bad = [f for f in failures(at) if f["error"] not in allowed]
    assert not bad, bad


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory) -> Path:
    """A data folder with the four tables of the job, 3,000 high-value rows over two days; read only."""
    d = tmp_path_factory.mktemp("demo")
    write_demo_tables(d, high_value_rows=DEMO_HIGH_VALUE_ROWS, days=2)
    return d


@pytest.fixture
def release_cached_clients():
    """Empty Streamlit's caches before and after a test: the cached EmulatorControl is closed
    (on_release) before its broker goes, and no test sees another's cached reads."""
    import streamlit as st

    st.cache_data.clear()
    st.cache_resource.clear()
    yield
    st.cache_resource.clear()
