"""Real Prometheus and Alertmanager processes for tests, started from the product's own config and command lines.

    with running_prometheus(folder, base, rules=ALWAYS_FIRES) as client:   # PrometheusClient, ready
        wait_for(lambda: client.alerts(), 20, "the alert")

`base` is the metrics base port: Prometheus listens on base + 20, Alertmanager on base + 21
(`pipeline.metrics.ports`). The rules and scrape jobs are the test's; everything else
(loopback, storage under `folder`, the command lines) is what `make run` uses. Both run with
a 1 s scrape and evaluation interval so a test waits seconds, not minutes.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

from pipeline.metrics import ports
from pipeline.monitoring.client import PrometheusClient, ready
from pipeline.monitoring.config import RULES_FILE, alertmanager_config, prometheus_config, write_file
from pipeline.monitoring.stack import alertmanager_command, prometheus_command
from pipeline.procs.child import Child
from tests.support.ports import free_port
from tests.support.waiting import wait_for

# a rule that fires at the first evaluation, and one that stays pending for an hour
ALWAYS_FIRES = """
groups:
  - name: test
    rules:
      - alert: TormentaJobDown
        expr: vector(1) > 0
        labels: {severity: critical}
        annotations:
          summary: The streaming job does not answer
          description: a test rule that always fires
          runbook_url: docs/RUNBOOK.md#tormentajobdown
      - alert: TormentaJobFallingBehind
        expr: vector(1) > 0
        for: 1h
        labels: {severity: warning}
        annotations:
          summary: Records behind latest keep growing
          description: a test rule that stays pending
          runbook_url: docs/RUNBOOK.md#tormentajobfallingbehind
"""
NEVER_FIRES = """
groups:
  - name: test
    rules:
      - alert: TormentaJobDown
        expr: vector(1) < 0
        labels: {severity: critical}
        annotations: {summary: never, description: never, runbook_url: docs/RUNBOOK.md#tormentajobdown}
"""


def project_rules(*names: str, for_: str = "2s") -> str:
    """The rules `names` of monitoring/alerts.yaml, unchanged but for their `for` (YAML text for
    `running_prometheus`): a test waits seconds for an alert whose real `for` is minutes."""
    rules = {r["alert"]: r for g in yaml.safe_load(RULES_FILE.read_text())["groups"] for r in g["rules"]}
    missing = [n for n in names if n not in rules]
    assert not missing, f"no rule {missing} in {RULES_FILE}"
    return yaml.safe_dump({"groups": [{"name": "test", "rules": [{**rules[n], "for": for_} for n in names]}]})


@contextlib.contextmanager
def running_process(name: str, cmd: list[str], folder: Path, url: str) -> Iterator[Child]:
    log = folder / f"{name}.log"
    child = Child(name, cmd, log).start()
    try:
        wait_for(lambda: ready(url), 30, f"{name} ready at {url}", process=child, log=log)
        yield child
    finally:
        child.stop(10.0)


def fast_prometheus_config(base: int, rules: Path, scrape: list[dict] | None = None,
                           parts: tuple[str, ...] = (), nodes: int = 1) -> dict:
    config = prometheus_config(base, nodes, rule_files=[rules], parts=parts)
    config["global"].update(scrape_interval="1s", evaluation_interval="1s", scrape_timeout="1s")
    config["scrape_configs"] = [*(scrape or []), *config["scrape_configs"]]
    return config


@contextlib.contextmanager
def running_prometheus(folder: Path, base: int, rules: str, scrape: list[dict] | None = None,
                       parts: tuple[str, ...] = (), nodes: int = 1) -> Iterator[PrometheusClient]:
    """Prometheus on base + 20 with `rules` (YAML text), the scrape jobs of `parts` as `make run` writes
    them (the broker job with `nodes` targets) and the extra `scrape` jobs; yields its client."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "rules.yaml").write_text(rules)
    config = write_file(folder / "prometheus.yml", fast_prometheus_config(base, folder / "rules.yaml", scrape, parts, nodes))
    port = ports.port_of(base, ports.PROMETHEUS)
    url = f"http://127.0.0.1:{port}"
    with running_process("prometheus", prometheus_command(config, port, folder / "tsdb"), folder, url):
        yield PrometheusClient(url, timeout=2)


@contextlib.contextmanager
def running_alertmanager(folder: Path, base: int, webhook: str) -> Iterator[str]:
    """Alertmanager on base + 21 posting to `webhook` within a second of an alert; yields its URL."""
    folder.mkdir(parents=True, exist_ok=True)
    config = write_file(folder / "alertmanager.yml",
                        alertmanager_config(webhook, group_wait="1s", group_interval="1s", repeat_interval="1h"))
    port = ports.port_of(base, ports.ALERTMANAGER)
    url = f"http://127.0.0.1:{port}"
    with running_process("alertmanager", alertmanager_command(config, port, folder / "am"), folder, url):
        yield url


class WebhookReceiver:
    """A webhook receiver on loopback that keeps every notification Alertmanager posts to `url`."""

    def __init__(self):
        self.posts: list[dict] = []
        posts = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                posts.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def got(self, alert: str, status: str) -> dict | None:
        """The first notification with `status` (firing, resolved) that carries `alert`."""
        return next((p for p in list(self.posts) if p["status"] == status
                     and any(a["labels"]["alertname"] == alert for a in p["alerts"])), None)

    def close(self):
        self.server.shutdown()
        self.server.server_close()
