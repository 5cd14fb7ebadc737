"""The whole product with monitoring (`python -m pipeline run`), real processes end to end.

The run is the one the session shares (``product_run``, tests/support/product_run.py): `run --no-app`
starts the broker, the job, the live lane, the emulator, Prometheus and Alertmanager (posting to a
webhook receiver of the tests); Prometheus scrapes the run, the broker's JMX exporter, the job and
Alertmanager. The job is then frozen (SIGSTOP: its metrics endpoint stops answering while the
supervisor, which sees a running process, leaves it alone): the real TormentaJobDown rule (for 1 m)
fires, Alertmanager posts it to the receiver; SIGCONT brings the endpoint back and the receiver gets
the resolution. The run's Ctrl-C (SIGINT) stops every part, Prometheus and Alertmanager too, with
`Run.stop`'s checks (exit code 0, no process of any part left) after the last test that shares it.
"""

from __future__ import annotations

import os
import signal

import pytest

from pipeline.monitoring.client import PrometheusClient
from tests.support.product_run import SharedRun

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _up(prom: PrometheusClient, job: str) -> bool:
    try:
        return bool(prom.query(f'up{{job="{job}"}} == 1'))
    except Exception:  # noqa: BLE001 - not ready yet
        return False


@pytest.mark.timeout(1200)
def test_run_with_monitoring_alerts_on_a_frozen_job_and_resolves(product_run: SharedRun):
    run, prom, receiver = product_run.run, product_run.prom, product_run.receiver

    def wait(cond, timeout, what):
        return run.wait(cond, timeout, what, every=0.5)

    parts = product_run.ready(300)
    assert {"prometheus", "alertmanager", "job"} <= set(parts)
    wait(lambda: f"Prometheus http://127.0.0.1:{product_run.prometheus_port}" in run.text(), 60,
         "the Prometheus URL printed")
    for job in ("tormenta-run", "tormenta-broker", "tormenta-job", "alertmanager", "prometheus"):
        wait(lambda j=job: _up(prom, j), 120, f"Prometheus scrapes {job}")
    assert receiver.got("TormentaJobDown", "firing") is None

    job_pid = parts["job"]["pid"]
    os.kill(job_pid, signal.SIGSTOP)
    try:
        wait(lambda: [a for a in prom.alerts() if a.name == "TormentaJobDown" and a.state == "firing"],
             60 + 5 + 60, "TormentaJobDown firing (for 1 m, 5 s scrapes, slack for a busy box)")
        note = wait(lambda: receiver.got("TormentaJobDown", "firing"), 60, "the firing notification")
        assert note["alerts"][0]["annotations"]["runbook_url"] == "docs/RUNBOOK.md#tormentajobdown"
    finally:
        os.kill(job_pid, signal.SIGCONT)
    wait(lambda: receiver.got("TormentaJobDown", "resolved"), 120, "the resolved notification")
    assert run.parts()["job"]["restarts"] == 0
