"""One part's metrics endpoint: prometheus_client's HTTP server on 127.0.0.1 with the part's own registry.

    endpoint = serve(settings, ports.JOB, registry, log)   # None when metrics are off or the port is taken
    ...
    endpoint.close()

Each part builds its metrics in its own `CollectorRegistry` (not the library's global one),
so several parts can live in one process (the tests do). A taken port costs one warning
line in the part's log and nothing else: metrics are never worth losing the pipeline.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, ProcessCollector, disable_created_metrics, start_http_server

from pipeline.metrics import ports
from pipeline.settings import Settings

HOST = "127.0.0.1"
# No `<name>_created` series beside each counter and histogram: no rule of ours reads them,
# and they double the series count (process-wide, as prometheus_client allows).
disable_created_metrics()


def new_registry() -> CollectorRegistry:
    """A registry with the process' CPU, memory and open files (process_*), as the default one has."""
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    return registry


@dataclass
class Endpoint:
    part: str
    port: int
    _server: object
    _thread: object

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/metrics"

    def close(self) -> None:
        self._server.shutdown()      # type: ignore[attr-defined]
        self._server.server_close()  # type: ignore[attr-defined]


def serve(settings: Settings, part: str, registry: CollectorRegistry, log: logging.Logger,
          node: int = 1) -> Endpoint | None:
    """Serve `registry` at the part's port (`ports.port_of`); None when TORMENTA_METRICS_PORT=0
    or when the port cannot be bound (one warning line; the part runs on without metrics)."""
    if settings.metrics_port == 0:
        return None
    port = ports.port_of(settings.metrics_port, part, node)
    try:
        server, thread = start_http_server(port, addr=HOST, registry=registry)
    except OSError as exc:
        log.warning("metrics of the %s are off: cannot serve on %s:%d (%s); set TORMENTA_METRICS_PORT to a "
                    "free base port or 0", part, HOST, port, exc.strerror or exc)
        return None
    log.info("metrics of the %s on http://%s:%d/metrics", part, HOST, port)
    return Endpoint(part, port, server, thread)
