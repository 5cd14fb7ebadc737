"""The dashboard's metrics: it is up, and how long each page takes to build.

Streamlit runs the entry script again on every interaction, in one long-lived process:
`for_process(settings)` starts the endpoint (TORMENTA_METRICS_PORT + 3) the first time and
hands back the same `AppMetrics` on every later run (a module-level guard, per port).
pages/common.py times each page run (`tormenta_app_page_build_seconds{page}`); this
module does not import streamlit.
"""

from __future__ import annotations

import logging
import threading

from prometheus_client import CollectorRegistry, Gauge, Histogram

from pipeline.metrics import ports
from pipeline.metrics.serve import Endpoint, new_registry, serve
from pipeline.settings import Settings

log = logging.getLogger("tormenta.app")
# 10 ms .. 1 min: a cached rerun is milliseconds, a cold Delta read seconds
PAGE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)


class AppMetrics:
    """tormenta_app_* of one app process, in its own registry."""

    def __init__(self, registry: CollectorRegistry | None = None):
        r = self.registry = registry if registry is not None else new_registry()
        self.up = Gauge("tormenta_app_up", "1 while the dashboard's process serves", registry=r)
        self.up.set(1)
        self.page_build = Histogram("tormenta_app_page_build_seconds", "Time one run of a page takes to build",
                                    ["page"], buckets=PAGE_BUCKETS, registry=r)
        self.endpoint: Endpoint | None = None

    def observe_page(self, page: str, seconds: float) -> None:
        self.page_build.labels(page).observe(seconds)


_LOCK = threading.Lock()
_BY_PORT: dict[int, AppMetrics] = {}


def for_process(settings: Settings) -> AppMetrics | None:
    """The process' AppMetrics, its endpoint started on the first call; None when metrics are off."""
    if settings.metrics_port == 0:
        return None
    port = ports.port_of(settings.metrics_port, ports.APP)
    with _LOCK:
        found = _BY_PORT.get(port)
        if found is None:
            found = _BY_PORT[port] = AppMetrics()
            found.endpoint = serve(settings, ports.APP, found.registry, log)
        return found


def stop_all() -> None:
    """Close every endpoint this process started (tests)."""
    with _LOCK:
        for metrics in _BY_PORT.values():
            if metrics.endpoint is not None:
                metrics.endpoint.close()
        _BY_PORT.clear()
