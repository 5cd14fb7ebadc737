"""AppTest tests of the Alerts panel (Pipeline page) and the Overview's alert count: with a real
Prometheus that has a firing and a pending alert, with one where nothing fires, with monitoring
off and with Prometheus unreachable. With the job's series in Prometheus, the batch-duration and
backlog charts come from it."""

from __future__ import annotations

import shutil

import pytest
from prometheus_client import CollectorRegistry, Gauge, Histogram, start_http_server
from streamlit.testing.v1 import AppTest

from tests.support.apptest import APP, assert_clean, texts, use_env
from tests.support.monitoring import ALWAYS_FIRES, NEVER_FIRES, running_prometheus
from tests.support.ports import free_port, port_run
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.usefixtures("release_cached_clients"),
              pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus is not installed (make monitoring)")]


def open_page(page: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    if page != "pages/overview.py":
        at.switch_page(page)
        at.run()
    return at


def chart_titles(at) -> list[str]:
    import json

    layouts = [json.loads(c.proto.spec)["layout"] for c in at.get("plotly_chart")]
    return [lay["title"]["text"] for lay in layouts if "title" in lay]


@pytest.fixture(scope="module")
def job_endpoint():
    """A metrics endpoint standing in for the job: batches of 45 s on a 60 s trigger, 1,200 records behind."""
    registry = CollectorRegistry()
    batches = Histogram("tormenta_job_batch_duration_seconds", "batch duration", ["query"], registry=registry,
                        buckets=(1, 10, 30, 60, 120))
    Gauge("tormenta_job_trigger_interval_seconds", "trigger", ["query"], registry=registry).labels("high_value").set(60)
    Gauge("tormenta_job_offsets_behind_latest", "behind", ["query", "topic", "partition"],
          registry=registry).labels("high_value", "transactions", "0").set(1200)
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    yield port, batches.labels("high_value")
    server.shutdown()
    thread.join(5)


@pytest.fixture(scope="module")
def firing(tmp_path_factory, job_endpoint):
    base = port_run(22)
    port, batches = job_endpoint
    scrape = [{"job_name": "tormenta-job", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}]
    with running_prometheus(tmp_path_factory.mktemp("prom-firing"), base, ALWAYS_FIRES, scrape) as client:
        wait_for(lambda: {a.state for a in client.alerts()} == {"firing", "pending"}, 30, "one firing, one pending")

        def batch_count_grew():  # a batch ends between scrapes until Prometheus has seen the count grow
            batches.observe(45)
            return client.query("sum(rate(tormenta_job_batch_duration_seconds_count[1m])) > 0")

        wait_for(batch_count_grew, 30, "Prometheus sees batches of the job", every=0.5)
        yield base


def test_panel_shows_firing_and_pending_alerts_with_their_runbook(monkeypatch, demo_dir, firing):
    use_env(monkeypatch, demo_dir, metrics_port=str(firing))
    at = open_page("pages/pipeline_health.py")
    assert_clean(at)
    assert "Alerts" in [s.value for s in at.subheader]
    table = next(d.value for d in at.dataframe if "alert" in d.value.columns)
    assert dict(zip(table["alert"], table["state"])) == {"TormentaJobDown": "firing",
                                                          "TormentaJobFallingBehind": "pending"}
    assert list(table["runbook"]) == ["docs/RUNBOOK.md#tormentajobdown", "docs/RUNBOOK.md#tormentajobfallingbehind"]
    assert "1 firing, 1 pending" in texts(at)
    labels = [e.label for e in at.expander]
    assert "Runbook: TormentaJobDown (docs/RUNBOOK.md#tormentajobdown)" in labels
    assert "**Means:** Prometheus has not been able to read the Spark job's metrics" in texts(at)
    titles = chart_titles(at)
    assert "Batch duration vs trigger interval, last hour (Prometheus)" in titles
    assert "Records behind latest, last hour (Prometheus)" in titles


def test_overview_counts_the_firing_alerts(monkeypatch, demo_dir, firing):
    use_env(monkeypatch, demo_dir, metrics_port=str(firing))
    at = open_page("pages/overview.py")
    assert_clean(at)
    assert [m.value for m in at.metric if m.label == "Alerts"] == ["1 firing, 1 pending"]


def test_panel_with_nothing_firing(monkeypatch, demo_dir, tmp_path):
    base = port_run(22)
    with running_prometheus(tmp_path / "prom", base, NEVER_FIRES) as client:
        wait_for(lambda: client.query("prometheus_rule_group_last_evaluation_timestamp_seconds > 0"), 30,
                 "the first rule evaluation")
        use_env(monkeypatch, demo_dir, metrics_port=str(base))
        at = open_page("pages/pipeline_health.py")
        assert_clean(at)
        assert [s.value for s in at.success if "No alerts fire" in s.value]
        assert not [d for d in at.dataframe if "alert" in d.value.columns]
        # Prometheus has no job series: the charts come from the batch_metrics table
        assert "Batch duration vs trigger interval" in chart_titles(at)
        at = open_page("pages/overview.py")
        assert [m.value for m in at.metric if m.label == "Alerts"] == ["no alerts"]


@pytest.mark.parametrize("env, words, count", [
    ({"monitoring": "false"}, "Monitoring off.", "monitoring off"),
    ({"metrics_port": "0"}, "Monitoring off.", "monitoring off"),
    ("unreachable", "Monitoring unreachable.", "monitoring unreachable")])
def test_panel_without_prometheus(monkeypatch, demo_dir, env, words, count):
    more = {"metrics_port": str(port_run(22))} if env == "unreachable" else env
    use_env(monkeypatch, demo_dir, **more)
    at = open_page("pages/pipeline_health.py")
    assert_clean(at)
    assert words in texts(at)
    assert "Batch duration vs trigger interval" in chart_titles(at)   # the table's charts still show
    at = open_page("pages/overview.py")
    assert_clean(at)
    assert [m.value for m in at.metric if m.label == "Alerts"] == [count]
