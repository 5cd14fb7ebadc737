"""End to end: a part's metrics endpoint stops, the job-down rule of monitoring/alerts.yaml fires in a
real Prometheus, reaches a real Alertmanager, and a webhook receiver of the test gets the
notification; the endpoint comes back and the receiver gets the resolution.

Prometheus and Alertmanager run with the product's own generated configuration and command lines
(`pipeline.monitoring`), scrape and evaluate every second; the rule is TormentaJobDown taken from
monitoring/alerts.yaml as it is, with its `for` shortened from 1 m to 2 s. The job is played by a
prometheus_client endpoint on the job's port (base + 0)."""

from __future__ import annotations

import json
import shutil
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from pipeline.metrics import ports
from tests.support.monitoring import WebhookReceiver, project_rules, running_alertmanager, running_prometheus
from tests.support.ports import port_run
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("prometheus") is None or shutil.which("prometheus-alertmanager") is None,
                                 reason="prometheus/alertmanager are not installed (make monitoring)")]


class FakeJob:
    """The job's metrics endpoint on its port; stop() closes the port, start() opens it again."""

    def __init__(self, port: int):
        self.port, self.registry = port, CollectorRegistry()
        Gauge("tormenta_job_trigger_interval_seconds", "trigger", ["query"], registry=self.registry).labels("high_value").set(60)
        self.server = None

    def start(self):
        self.server, _ = start_http_server(self.port, addr="127.0.0.1", registry=self.registry)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.server = None


def _alertmanager_alerts(url: str) -> list[dict]:
    with urllib.request.urlopen(f"{url}/api/v2/alerts", timeout=2) as resp:
        return json.loads(resp.read())


def test_job_down_fires_reaches_the_webhook_and_resolves(tmp_path):
    base = port_run(ports.SPAN)
    receiver, job = WebhookReceiver(), FakeJob(ports.port_of(base, ports.JOB))
    job.start()
    try:
        with running_alertmanager(tmp_path / "am", base, receiver.url) as am_url, \
                running_prometheus(tmp_path / "prom", base, project_rules("TormentaJobDown"), parts=(ports.JOB,)) as prom:
            wait_for(lambda: prom.query('up{job="tormenta-job"} == 1'), 30, "Prometheus scrapes the job")
            assert prom.alerts() == [] and receiver.posts == []

            job.stop()
            firing = wait_for(lambda: [a for a in prom.alerts() if a.state == "firing"], 30,
                              "TormentaJobDown firing in Prometheus")
            assert [(a.name, a.severity, a.labels["job"]) for a in firing] == [("TormentaJobDown", "critical",
                                                                                 "tormenta-job")]
            assert firing[0].runbook == "docs/RUNBOOK.md#tormentajobdown"
            wait_for(lambda: any(a["labels"]["alertname"] == "TormentaJobDown" for a in _alertmanager_alerts(am_url)),
                     30, "the alert in Alertmanager")
            note = wait_for(lambda: receiver.got("TormentaJobDown", "firing"), 30, "the firing notification at the webhook")
            alert = next(a for a in note["alerts"] if a["labels"]["alertname"] == "TormentaJobDown")
            assert alert["labels"]["instance"] == f"127.0.0.1:{ports.port_of(base, ports.JOB)}"
            assert alert["annotations"]["summary"] == "The streaming job does not answer"
            assert receiver.got("TormentaJobDown", "resolved") is None

            job.start()
            wait_for(lambda: receiver.got("TormentaJobDown", "resolved"), 30, "the resolved notification at the webhook")
            assert prom.alerts() == []
    finally:
        receiver.close()
        if job.server is not None:
            job.stop()
