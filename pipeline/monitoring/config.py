"""The generated configuration of Prometheus and Alertmanager for one Tormenta run.

    paths = write_configs(settings)          # <data_dir>/monitoring/prometheus.yml, alertmanager.yml

Prometheus scrapes every part on its loopback port (`pipeline.metrics.ports`), one scrape
job per part (``tormenta-job``, ``tormenta-live``, ``tormenta-emulator``, ``tormenta-app``,
``tormenta-run``, ``tormenta-broker`` with one target per node), plus itself and Alertmanager;
it evaluates the project's rules (``monitoring/alerts.yaml``) and sends alerts to the local
Alertmanager. Alertmanager posts to ``TORMENTA_ALERT_WEBHOOK`` when it is set (Alertmanager's
webhook JSON; a Slack incoming-webhook address gets Slack's message format), else to a
receiver that sends nothing (the alerts still show in Prometheus and on the dashboard).

Both files are written as JSON, which is YAML too: no YAML writer is needed, and the
webhook URL is quoted whatever it holds.
"""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path
from typing import NamedTuple

from pipeline.metrics import ports
from pipeline.settings import PROJECT_ROOT, Settings

RULES_FILE = PROJECT_ROOT / "monitoring" / "alerts.yaml"
SCRAPE_INTERVAL = "5s"
EVALUATION_INTERVAL = "5s"
# scrape job of each part; the alert rules select on these names
JOB_NAMES = {ports.JOB: "tormenta-job", ports.LIVE: "tormenta-live", ports.EMULATOR: "tormenta-emulator",
             ports.APP: "tormenta-app", ports.RUN: "tormenta-run", ports.BROKER: "tormenta-broker",
             ports.PROMETHEUS: "prometheus", ports.ALERTMANAGER: "alertmanager"}
NULL_RECEIVER, WEBHOOK_RECEIVER = "null", "webhook"


class ConfigPaths(NamedTuple):
    prometheus: Path
    alertmanager: Path


def monitoring_dir(settings: Settings) -> Path:
    return settings.data_dir / "monitoring"


def _target(port: int) -> str:
    return f"127.0.0.1:{port}"


def scrape_configs(base: int, nodes: int, parts: tuple[str, ...] | None = None) -> list[dict]:
    """One scrape job per part (`parts` None: every part), the broker job with one target per node."""
    wanted = parts if parts is not None else (ports.JOB, ports.LIVE, ports.EMULATOR, ports.APP, ports.RUN, ports.BROKER)
    jobs = []
    for part in wanted:
        if part == ports.BROKER:
            static = [{"targets": [_target(ports.port_of(base, ports.BROKER, i))], "labels": {"node": str(i)}}
                      for i in range(1, nodes + 1)]
        else:
            static = [{"targets": [_target(ports.port_of(base, part))]}]
        jobs.append({"job_name": JOB_NAMES[part], "static_configs": static})
    for part in (ports.PROMETHEUS, ports.ALERTMANAGER):  # the monitors watch each other
        jobs.append({"job_name": JOB_NAMES[part], "static_configs": [{"targets": [_target(ports.port_of(base, part))]}]})
    return jobs


def prometheus_config(base: int, nodes: int, rule_files: list[Path] | None = None,
                      parts: tuple[str, ...] | None = None) -> dict:
    """prometheus.yml as a dict: scrape every part of a run on base port `base` with `nodes` broker nodes."""
    return {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": EVALUATION_INTERVAL,
                   "scrape_timeout": "4s", "external_labels": {"product": "tormenta"}},
        "rule_files": [str(p) for p in (rule_files if rule_files is not None else [RULES_FILE])],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [_target(ports.port_of(base, ports.ALERTMANAGER))]}]}]},
        "scrape_configs": scrape_configs(base, nodes, parts),
    }


def alertmanager_config(webhook: str, *, group_wait: str = "5s", group_interval: str = "30s",
                        repeat_interval: str = "4h") -> dict:
    """alertmanager.yml as a dict: every alert to the webhook (resolved ones too), or to nobody."""
    receivers: list[dict] = [{"name": NULL_RECEIVER}]
    if webhook and _is_slack(webhook):  # Slack's incoming webhooks want Slack's message format
        receivers.append({"name": WEBHOOK_RECEIVER, "slack_configs": [{
            "api_url": webhook, "send_resolved": True,
            "title": '{{ .Status | toUpper }}: {{ .CommonLabels.alertname }}',
            "text": '{{ range .Alerts }}{{ .Annotations.summary }} ({{ .Annotations.runbook_url }})\n{{ end }}'}]})
    elif webhook:
        receivers.append({"name": WEBHOOK_RECEIVER, "webhook_configs": [{"url": webhook, "send_resolved": True}]})
    return {
        "route": {"receiver": WEBHOOK_RECEIVER if webhook else NULL_RECEIVER, "group_by": ["alertname", "query"],
                  "group_wait": group_wait, "group_interval": group_interval, "repeat_interval": repeat_interval},
        "receivers": receivers,
    }


def _is_slack(url: str) -> bool:
    host = urllib.parse.urlsplit(url).hostname or ""
    return host == "hooks.slack.com"


def write_file(path: Path, content: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, indent=2) + "\n")
    return path


def write_configs(settings: Settings, nodes: int | None = None, parts: tuple[str, ...] | None = None) -> ConfigPaths:
    """Write both files under ``<data_dir>/monitoring/`` for this run's settings (scraping `parts`,
    None: every part); returns their paths."""
    base = settings.metrics_port
    nodes = nodes if nodes is not None else settings.broker_nodes
    folder = monitoring_dir(settings)
    return ConfigPaths(write_file(folder / "prometheus.yml", prometheus_config(base, nodes, parts=parts)),
                       write_file(folder / "alertmanager.yml", alertmanager_config(settings.alert_webhook)))
