"""The dashboard's endpoint through AppTest (the real entry script, in this process): up, and each page's build time."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from pipeline.metrics import app as app_metrics
from pipeline.metrics import ports
from tests.support.apptest import APP, assert_clean, use_env
from tests.support.metrics import promtool_check, samples, scrape, value
from tests.support.ports import port_run


@pytest.fixture
def base(monkeypatch, demo_dir):
    port = port_run(ports.SPAN)
    use_env(monkeypatch, demo_dir, metrics_port=str(port))
    yield port
    app_metrics.stop_all()


def test_app_serves_up_and_page_build_times(base):
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert_clean(at)
    at.switch_page("pages/explorer.py")
    at.run()
    assert_clean(at)
    at.run()                                         # a rerun of the same page: the same endpoint, one more run
    url = f"http://127.0.0.1:{ports.port_of(base, ports.APP)}/metrics"
    text = scrape(url)
    promtool_check(text)
    found = samples(text)
    assert value(found, "tormenta_app_up") == 1
    assert value(found, "tormenta_app_page_build_seconds_count", page="Overview") == 1
    assert value(found, "tormenta_app_page_build_seconds_count", page="Explorer") == 2
    assert 0 < value(found, "tormenta_app_page_build_seconds_sum", page="Explorer") < 120


def test_no_endpoint_when_metrics_are_off(monkeypatch, demo_dir):
    use_env(monkeypatch, demo_dir)                   # TORMENTA_METRICS_PORT=0
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert_clean(at)
    assert app_metrics._BY_PORT == {}
