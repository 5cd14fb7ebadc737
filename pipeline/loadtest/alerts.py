"""The alerts of monitoring/alerts.yaml during each step of a load test.

    monitor = StepAlerts.start(run_settings, run_dir / "monitoring", nodes=3, event=progress.event)
    ...                                       # the steps run; Prometheus scrapes job, emulator, broker nodes
    found = monitor.collect(windows)          # {"state": "on", "steps": [{"step", "alerts": [...]}, ...]}
    monitor.stop()

When monitoring is on (TORMENTA_MONITORING and a metrics base port) and Prometheus is
installed, the load test runs its own Prometheus (no Alertmanager: Prometheus evaluates the
rules itself, and its ``ALERTS`` series keeps their history) on the run's metrics base,
its storage in the run's folder. After the steps, ``ALERTS`` over the run is cut into the
steps' windows: each alert that was firing (or only pending: its condition held, but not yet
for the rule's `for`) at some evaluation inside a step. Otherwise `collect` says why there is
nothing (state ``off``), and the run goes on without it.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.errors import TormentaError
from pipeline.loadtest.plan import StepWindow
from pipeline.metrics import ports
from pipeline.monitoring.client import PrometheusClient, ready
from pipeline.monitoring.config import JOB_NAMES, prometheus_config, write_file
from pipeline.monitoring.stack import PROMETHEUS_BIN, enabled, prometheus_command
from pipeline.procs.child import Child
from pipeline.procs.net import port_open
from pipeline.settings import Settings

READY_TIMEOUT_S = 60.0
QUERY = 'ALERTS{alertstate=~"firing|pending"}'
STEP_S = 5.0          # Prometheus' evaluation interval (pipeline.monitoring.config)
_HIDDEN = ("__name__", "alertname", "alertstate", "severity", "product")


def per_step(series: list[dict], windows: list[StepWindow]) -> list[dict[str, Any]]:
    """Cut a query_range answer of ``ALERTS`` (`PrometheusClient.query_range`'s shape) into the steps.

    Per step, each alert (name and labels) seen inside its window, ``firing`` if it fired there at
    least once, else ``pending``; with the first and last evaluation (epoch s) it was seen at."""
    out = []
    for w in windows:
        found: dict[tuple, dict[str, Any]] = {}
        for s in series:
            times = [t for t, v in s["values"] if w.start <= t <= w.end and v > 0]
            if not times:
                continue
            m = s["metric"]
            labels = {k: v for k, v in sorted(m.items()) if k not in _HIDDEN}
            key = (m.get("alertname", "?"), tuple(labels.items()))
            a = found.setdefault(key, {"name": key[0], "severity": m.get("severity", ""), "state": "pending",
                                       "labels": labels, "first": min(times), "last": max(times)})
            a["first"], a["last"] = min(a["first"], *times), max(a["last"], *times)
            if m.get("alertstate") == "firing":
                a["state"] = "firing"
        alerts = sorted(found.values(), key=lambda a: (a["state"] != "firing", a["first"], a["name"]))
        out.append({"step": w.label, "alerts": alerts})
    return out


def step_cell(found: dict[str, Any], label: str) -> str:
    """One step's alerts as a table cell: "TormentaJobFallingBehind (pending), ..." or "none";
    "–" when the run had no monitoring."""
    if found.get("state") != "on":
        return "–"
    step = next((s for s in found.get("steps", []) if s["step"] == label), None)
    if step is None:
        return "–"
    names = []
    for a in step["alerts"]:
        text = a["name"] if a["state"] == "firing" else f"{a['name']} (pending)"
        if text not in names:
            names.append(text)
    return ", ".join(names) or "none"


def alert_rows(found: dict[str, Any], t0: float) -> list[tuple]:
    """Every alert of every step as a table row; times in seconds since the run's first sample `t0`."""
    if found.get("state") != "on":
        return []
    return [(s["step"], a["name"], a["state"], a["severity"], ", ".join(f"{k}={v}" for k, v in a["labels"].items()),
             f"{a['first'] - t0:.0f}", f"{a['last'] - t0:.0f}") for s in found.get("steps", []) for a in s["alerts"]]


def _taken(port: int) -> bool:
    return port_open("127.0.0.1", port)


def why_off(settings: Settings, binary: str = PROMETHEUS_BIN) -> str | None:
    """Why the run cannot have its own Prometheus, or None when it can."""
    if not enabled(settings):
        return "monitoring is off (TORMENTA_MONITORING=false or TORMENTA_METRICS_PORT=0)"
    if shutil.which(binary) is None:
        return f"{binary} is not installed (make monitoring)"
    port = ports.port_of(settings.metrics_port, ports.PROMETHEUS)
    if _taken(port):
        return f"port {port} is taken (another run's Prometheus?); set TORMENTA_METRICS_PORT to another base"
    return None


class StepAlerts:
    """The run's Prometheus (None when monitoring is off: then `off` says why)."""

    def __init__(self, child: Child | None, url: str = "", off: str = ""):
        self.child, self.url, self.off = child, url, off
        self.started = time.time()

    @classmethod
    def start(cls, rs: Settings, folder: Path, nodes: int, event: Callable[[str], None],
              binary: str = PROMETHEUS_BIN) -> StepAlerts:
        """Prometheus scraping the run's job, live lane, emulator and broker nodes, with the project's rules."""
        why = why_off(rs, binary)
        if why:
            event(f"no alerts in the report: {why}")
            return cls(None, off=why)
        parts = (ports.JOB, *((ports.LIVE,) if rs.live else ()), ports.EMULATOR, ports.BROKER)
        config = prometheus_config(rs.metrics_port, nodes, parts=parts)
        config.pop("alerting")              # no Alertmanager in a load test: nobody is notified
        config["scrape_configs"] = [j for j in config["scrape_configs"] if j["job_name"] != JOB_NAMES[ports.ALERTMANAGER]]
        path = write_file(folder / "prometheus.yml", config)
        port = ports.port_of(rs.metrics_port, ports.PROMETHEUS)
        url = f"http://127.0.0.1:{port}"
        child = Child("prometheus", prometheus_command(path.resolve(), port, (folder / "tsdb").resolve(), binary),
                      folder / "prometheus.log").start()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not ready(url):
            if not child.alive() or time.monotonic() > deadline:
                child.stop(10)
                why = f"Prometheus did not start (see {folder / 'prometheus.log'})"
                event(f"no alerts in the report: {why}")
                return cls(None, off=why)
            time.sleep(0.5)
        event(f"Prometheus (pid {child.pid}) at {url} evaluates monitoring/alerts.yaml for the report")
        return cls(child, url)

    def collect(self, windows: list[StepWindow]) -> dict[str, Any]:
        """The alerts of each step; {"state": "off"|"error", "note": why} when there are none to show."""
        if self.child is None:
            return {"state": "off", "note": self.off}
        if not windows:
            return {"state": "on", "steps": []}
        try:
            series = PrometheusClient(self.url, timeout=10).query_range(
                QUERY, min(w.start for w in windows) - STEP_S, max(w.end for w in windows) + STEP_S, STEP_S)
        except TormentaError as exc:
            return {"state": "error", "note": str(exc)}
        return {"state": "on", "steps": per_step(series, windows)}

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop(15)
