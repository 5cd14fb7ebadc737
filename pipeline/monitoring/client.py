"""A small client of Prometheus' HTTP API (urllib, short timeouts) and what the dashboard shows from it.

    client = PrometheusClient("http://127.0.0.1:9420")
    client.alerts()                           # [Alert(name, state, severity, since, summary, runbook), ...]
    client.query_range('sum(tormenta_job_offsets_behind_latest)', start, end, step=15)

    view = alerts_view(settings)              # state "off" | "unreachable" | "up", the alerts, one sentence

Every failure to reach Prometheus is a `MonitoringUnreachable` (a TormentaError: one line
that says where and what to do); monitoring turned off is a `MonitoringOff`.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pipeline.errors import TormentaError
from pipeline.metrics import ports
from pipeline.settings import Settings

TIMEOUT_S = 2.0


class MonitoringOff(TormentaError):
    """Prometheus is not part of this run (TORMENTA_MONITORING=false or TORMENTA_METRICS_PORT=0)."""


class MonitoringUnreachable(TormentaError):
    """Prometheus does not answer, or answers with an error."""


@dataclass(frozen=True)
class Alert:
    name: str
    state: str                 # firing | pending
    severity: str
    since: datetime | None     # when the rule's condition began to hold (activeAt)
    summary: str
    runbook: str
    labels: dict = field(default_factory=dict)

    @classmethod
    def from_api(cls, item: dict) -> Alert:
        labels, notes = item.get("labels", {}), item.get("annotations", {})
        return cls(name=labels.get("alertname", "?"), state=item.get("state", "?"),
                   severity=labels.get("severity", ""), since=_parse_time(item.get("activeAt")),
                   summary=notes.get("summary", ""), runbook=notes.get("runbook_url", ""),
                   labels={k: v for k, v in labels.items() if k not in ("alertname", "severity")})


def ready(url: str) -> bool:
    """Whether the Prometheus or Alertmanager at `url` answers its readiness endpoint (/-/ready)."""
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as resp:
            return resp.status == 200
    except OSError:
        return False


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    head = text.rstrip("Z").split(".")[0]  # RFC 3339 with nanoseconds: seconds are enough here
    try:
        return datetime.fromisoformat(head).replace(tzinfo=UTC)
    except ValueError:
        return None


class PrometheusClient:
    """Prometheus' HTTP API at `url` (http://127.0.0.1:<port>), each call at most `timeout` seconds."""

    def __init__(self, url: str, timeout: float = TIMEOUT_S):
        self.url = url.rstrip("/")
        self.timeout = timeout

    @classmethod
    def for_settings(cls, settings: Settings, timeout: float = TIMEOUT_S) -> PrometheusClient:
        if not settings.monitoring or settings.metrics_port == 0:
            raise MonitoringOff("monitoring is off (TORMENTA_MONITORING=false or TORMENTA_METRICS_PORT=0); "
                                "turn it on and restart `make run` to see alerts")
        return cls(f"http://127.0.0.1:{ports.port_of(settings.metrics_port, ports.PROMETHEUS)}", timeout)

    def _get(self, path: str, params: dict | None = None):
        address = f"{self.url}{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
        try:
            with urllib.request.urlopen(address, timeout=self.timeout) as resp:
                body = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            raise MonitoringUnreachable(f"Prometheus at {self.url} refused {path}: HTTP {exc.code} "
                                        f"{_error_text(exc)}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise MonitoringUnreachable(f"Prometheus does not answer at {self.url} ({reason}); "
                                        "is `make run` running with monitoring on?") from None
        if body.get("status") != "success":
            raise MonitoringUnreachable(f"Prometheus at {self.url} answered {path} with an error: {body.get('error')}")
        return body["data"]

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=self.timeout) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def alerts(self) -> list[Alert]:
        """Firing and pending alerts, firing first, the oldest first within each."""
        found = [Alert.from_api(a) for a in self._get("/api/v1/alerts").get("alerts", [])]
        epoch = datetime.min.replace(tzinfo=UTC)
        return sorted(found, key=lambda a: (a.state != "firing", a.since or epoch, a.name))

    def query(self, expr: str) -> list[dict]:
        return self._get("/api/v1/query", {"query": expr})["result"]

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict]:
        """Each series: {"metric": labels, "values": [(unix seconds, float), ...]}."""
        data = self._get("/api/v1/query_range", {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}",
                                                 "step": f"{max(step, 1.0):g}"})
        return [{"metric": s.get("metric", {}), "values": [(float(t), float(v)) for t, v in s.get("values", [])]}
                for s in data["result"]]


def _error_text(exc: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(exc.read()).get("error", ""))[:200]
    except (ValueError, OSError):
        return ""


@dataclass(frozen=True)
class AlertsView:
    state: str                          # off | unreachable | up
    alerts: list[Alert]
    message: str = ""

    @property
    def firing(self) -> list[Alert]:
        return [a for a in self.alerts if a.state == "firing"]

    @property
    def pending(self) -> list[Alert]:
        return [a for a in self.alerts if a.state == "pending"]

    def sentence(self) -> str:
        """One line for the Overview: how many fire, or why there is nothing to count."""
        if self.state == "off":
            return "monitoring off"
        if self.state == "unreachable":
            return "monitoring unreachable"
        if not self.alerts:
            return "no alerts"
        pending = f", {len(self.pending)} pending" if self.pending else ""
        return f"{len(self.firing)} firing{pending}"

    def rows(self, now: datetime | None = None) -> list[dict]:
        """The table of the Alerts panel."""
        now = now or datetime.now(UTC)
        return [{"alert": a.name, "state": a.state, "severity": a.severity,
                 "since": a.since.strftime("%Y-%m-%d %H:%M:%S") if a.since else "–",
                 "for": _age(now, a.since), "summary": a.summary,
                 "where": ", ".join(f"{k}={v}" for k, v in sorted(a.labels.items()) if k not in ("product",)),
                 "runbook": a.runbook} for a in self.alerts]


def _age(now: datetime, since: datetime | None) -> str:
    if since is None:
        return "–"
    s = max(0, int((now - since).total_seconds()))
    return f"{s // 3600}h {s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m {s % 60:02d}s"


def alerts_view(settings: Settings, client: PrometheusClient | None = None) -> AlertsView:
    """What the dashboard shows: the alerts, or that monitoring is off or does not answer (never raises)."""
    try:
        client = client or PrometheusClient.for_settings(settings)
        return AlertsView("up", client.alerts())
    except MonitoringOff as exc:
        return AlertsView("off", [], str(exc))
    except MonitoringUnreachable as exc:
        return AlertsView("unreachable", [], str(exc))


def last_hour(now: float | None = None, minutes: int = 60) -> tuple[float, float, float]:
    """(start, end, step) of a query_range over the last `minutes`, about 240 points."""
    end = now if now is not None else time.time()
    return end - minutes * 60, end, max(5.0, minutes * 60 / 240)
