"""The alerts of each load-test step, cut from Prometheus' ``ALERTS`` history (pipeline.loadtest.alerts).

saved/alerts_query_range.json is a real answer of Prometheus 2.42 to
``query_range ALERTS{alertstate=~"firing|pending"}`` (step 5 s), taken while
tests/monitoring/test_broker_alerts.py had killed Kafka node 2: TormentaBrokerDown for node 2
pending at ...340 then firing from ...345; TormentaUnderReplicatedPartitions for nodes 1 and 3
pending at ...355, firing at ...360. It is served by a loopback HTTP server so that it goes
through the real client (`PrometheusClient.query_range`).
"""

from __future__ import annotations

import dataclasses
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pipeline.loadtest.alerts import QUERY, StepAlerts, alert_rows, per_step, step_cell, why_off
from pipeline.loadtest.plan import StepWindow
from pipeline.loadtest.report import build_report, verdict_rows
from pipeline.metrics import ports
from pipeline.monitoring.client import PrometheusClient
from pipeline.monitoring.config import RULES_FILE
from tests.support.loadtest_fixtures import synthetic_result
from tests.support.ports import port_run
from tests.support.stack import make_settings

SAVED = Path(__file__).parent / "saved" / "alerts_query_range.json"
T = 1796433300          # a little before the first point of the capture
DOWN, URP = "TormentaBrokerDown", "TormentaUnderReplicatedPartitions"


def window(i: int, label: str, start: float, end: float) -> StepWindow:
    return StepWindow(i, label, "steady", 1000.0, 1000.0, start, end)


WINDOWS = [window(0, "quiet", T, T + 39), window(1, "node down", T + 40, T + 52),
           window(2, "urp pending", T + 53, T + 57), window(3, "both firing", T + 58, T + 70)]


@pytest.fixture
def prometheus():
    """A loopback server answering every query_range with the saved answer; yields (url, queries asked)."""
    body, asked = SAVED.read_bytes(), []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            asked.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", asked
    finally:
        server.shutdown()
        server.server_close()


def test_each_step_gets_the_alerts_seen_inside_its_window(prometheus):
    url, _ = prometheus
    steps = per_step(PrometheusClient(url).query_range(QUERY, T, T + 70, 5), WINDOWS)
    assert [s["step"] for s in steps] == ["quiet", "node down", "urp pending", "both firing"]
    assert steps[0]["alerts"] == []
    (down,) = steps[1]["alerts"]
    assert (down["name"], down["state"], down["severity"], down["labels"]["node"]) == (DOWN, "firing", "critical", "2")
    assert (down["first"], down["last"]) == (T + 40, T + 50)       # pending at +40, firing at +45 and +50
    assert set(down["labels"]) == {"instance", "job", "node"}
    by_name = {(a["name"], a["labels"].get("node")): a["state"] for a in steps[2]["alerts"]}
    assert by_name == {(DOWN, "2"): "firing", (URP, "1"): "pending", (URP, "3"): "pending"}
    assert {(a["name"], a["labels"]["node"], a["state"]) for a in steps[3]["alerts"]} == {
        (DOWN, "2", "firing"), (URP, "1", "firing"), (URP, "3", "firing")}


def test_the_cells_and_rows_of_the_report(prometheus):
    url, _ = prometheus
    found = {"state": "on", "steps": per_step(PrometheusClient(url).query_range(QUERY, T, T + 70, 5), WINDOWS)}
    assert [step_cell(found, w.label) for w in WINDOWS] == [
        "none", DOWN, f"{DOWN}, {URP} (pending)", f"{DOWN}, {URP}"]
    assert step_cell({"state": "off", "note": "monitoring is off"}, "quiet") == "–"
    rows = alert_rows(found, T)
    assert ("node down", DOWN, "firing", "critical", "instance=127.0.0.1:43844, job=tormenta-broker, node=2",
            "40", "50") in rows
    assert len(rows) == 1 + 3 + 3


def test_collect_queries_alerts_over_the_steps(prometheus):
    url, asked = prometheus
    monitor = StepAlerts(child=object(), url=url)   # a stand-in child: collect only queries
    found = monitor.collect(WINDOWS)
    assert found["state"] == "on" and [len(s["alerts"]) for s in found["steps"]] == [0, 1, 3, 3]
    (path,) = asked
    assert path.startswith("/api/v1/query_range?") and "ALERTS" in path and f"start={T - 5}" in path


def test_without_monitoring_nothing_starts_and_the_report_says_why(tmp_path):
    rs = make_settings(tmp_path)                    # TORMENTA_METRICS_PORT=0
    assert why_off(rs).startswith("monitoring is off")
    events: list[str] = []
    monitor = StepAlerts.start(rs, tmp_path / "monitoring", 1, events.append)
    assert monitor.child is None and not (tmp_path / "monitoring").exists()
    assert monitor.collect(WINDOWS) == {"state": "off", "note": why_off(rs)}
    assert events == [f"no alerts in the report: {why_off(rs)}"]
    assert why_off(rs.replace(metrics_port=9800), binary="/nonexistent/prometheus").endswith("(make monitoring)")


def test_report_lists_the_alerts_per_step(prometheus):
    url, _ = prometheus
    result, samples = synthetic_result()
    labels = [s.label for s in result.steps]
    quiet, broke = labels[0], labels[-1]
    src = json.loads(SAVED.read_text())["data"]["result"]
    series = [{"metric": s["metric"], "values": [(float(t), float(v)) for t, v in s["values"]]} for s in src]
    found = {"state": "on", "steps": [{"step": quiet, "alerts": []},
                                      {"step": broke, "alerts": per_step(series, [WINDOWS[3]])[0]["alerts"]}]}
    with_alerts = dataclasses.replace(result, alerts=found, t0=T)
    rows = {r["step"]: r["alerts"] for r in verdict_rows(with_alerts)}
    assert rows[quiet] == "none" and rows[broke] == f"{DOWN}, {URP}"
    text = build_report(with_alerts, samples)
    assert 'id="alerts"' in text and text.count(f"<td>{URP}</td>") == 2
    off = build_report(dataclasses.replace(result, alerts={"state": "off", "note": "monitoring is off (x)"}), samples)
    assert "No alerts to show: monitoring is off (x)" in off
    assert 'id="alerts"' not in build_report(result, samples)  # a result saved before: no section


def test_a_prometheus_that_does_not_start_is_a_line_in_the_report_not_a_failed_run(tmp_path):
    fake = tmp_path / "prometheus"
    fake.write_text("#!/bin/sh\necho 'bad flag' >&2\nexit 1\n")
    fake.chmod(0o755)
    base = port_run(ports.SPAN)
    rs = make_settings(tmp_path / "data", metrics_port=base)
    events: list[str] = []
    monitor = StepAlerts.start(rs, tmp_path / "monitoring", 3, events.append, binary=str(fake))
    assert monitor.child is None and monitor.collect(WINDOWS)["state"] == "off"
    assert events == [f"no alerts in the report: Prometheus did not start (see {tmp_path / 'monitoring' / 'prometheus.log'})"]
    config = json.loads((tmp_path / "monitoring" / "prometheus.yml").read_text())
    assert "alerting" not in config and config["rule_files"] == [str(RULES_FILE)]
    jobs = {j["job_name"]: [t for c in j["static_configs"] for t in c["targets"]] for j in config["scrape_configs"]}
    assert jobs == {"tormenta-job": [f"127.0.0.1:{base}"], "tormenta-live": [f"127.0.0.1:{base + 1}"],
                    "tormenta-emulator": [f"127.0.0.1:{base + 2}"],
                    "tormenta-broker": [f"127.0.0.1:{base + 10 + i}" for i in range(3)],
                    "prometheus": [f"127.0.0.1:{base + 20}"]}
