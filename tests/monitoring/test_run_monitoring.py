"""The whole product with monitoring (`python -m pipeline run`), real processes end to end.

`run --no-app --no-emulator` with the live lane off starts the broker, the job, Prometheus and
Alertmanager; Prometheus scrapes the run, the broker's JMX exporter, the job and Alertmanager.
The job is then frozen (SIGSTOP: its metrics endpoint stops answering while the supervisor,
which sees a running process, leaves it alone): the real TormentaJobDown rule (for 1 m) fires,
Alertmanager posts it to a webhook receiver of the test; SIGCONT brings the endpoint back and
the receiver gets the resolution. Ctrl-C (SIGINT) stops every part, Prometheus and Alertmanager too.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.monitoring.client import PrometheusClient
from pipeline.procs.group import signal_reaches
from pipeline.settings import PROJECT_ROOT
from tests.support.monitoring import WebhookReceiver
from tests.support.ports import port_run
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _parts(data: Path) -> dict[str, dict]:
    try:
        return {p["name"]: p for p in json.loads((data / "run" / "parts.json").read_text())["parts"]}
    except (OSError, ValueError, KeyError):
        return {}


def _up(prom: PrometheusClient, job: str) -> bool:
    try:
        return bool(prom.query(f'up{{job="{job}"}} == 1'))
    except Exception:  # noqa: BLE001 - not ready yet
        return False


@pytest.mark.timeout(1200)
def test_run_with_monitoring_alerts_on_a_frozen_job_and_resolves(tmp_path):
    base = port_run(26)            # broker, controller, then metrics base + 4 .. base + 25
    metrics = base + 4
    receiver = WebhookReceiver()
    data, out = tmp_path / "data", tmp_path / "run.out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TORMENTA_")}
    env.update({"TORMENTA_DATA_DIR": str(data), "TORMENTA_BOOTSTRAP_SERVERS": f"127.0.0.1:{base}",
                "TORMENTA_CONTROLLER_PORT": str(base + 1), "TORMENTA_METRICS_PORT": str(metrics),
                "TORMENTA_LIVE": "false", "TORMENTA_TRIGGER_INTERVAL": "5s", "TORMENTA_DRIVER_MEMORY": "1g",
                "TORMENTA_COMPACT_EVERY": "0", "TORMENTA_ALERT_WEBHOOK": receiver.url, "PYTHONUNBUFFERED": "1"})
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "run", "--no-app", "--no-emulator"], cwd=PROJECT_ROOT,
                            env=env, stdout=open(out, "wb"), stderr=subprocess.STDOUT, start_new_session=True)
    prom = PrometheusClient(f"http://127.0.0.1:{metrics + 20}", timeout=2)
    seen: set[int] = set()

    def wait(cond, timeout, what):
        return wait_for(cond, timeout, what, process=proc, log=out, every=0.5)

    try:
        parts = wait(lambda: (p := _parts(data)) and {"prometheus", "alertmanager", "job"} <= set(p)
                     and all(x["state"] == "running" for x in p.values()) and p, 300, "every part running")
        seen.update(p["pid"] for p in parts.values() if p["pid"])
        wait(lambda: f"Prometheus http://127.0.0.1:{metrics + 20}" in out.read_text(), 60, "the Prometheus URL printed")
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
        assert _parts(data)["job"]["restarts"] == 0
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGINT)
        try:
            code = proc.wait(240)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
        receiver.close()
    assert code == 0, out.read_text()[-3000:]
    assert [p for p in seen if signal_reaches(os.kill, p)] == [], "parts left running after Ctrl-C"
