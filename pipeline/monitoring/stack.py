"""The two monitoring children of `python -m pipeline run`: Prometheus and Alertmanager.

    for name, cmd in parts(settings):        # [] when TORMENTA_MONITORING=false or TORMENTA_METRICS_PORT=0
        start(name, cmd)
    print(prometheus_url(settings))

`parts()` writes the configuration (`pipeline.monitoring.config`) and returns the command
lines; both listen on 127.0.0.1 only (Alertmanager's gossip port is turned off, it would
bind 0.0.0.0:9094) and keep their data under ``<data_dir>/monitoring/``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

from pipeline.errors import TormentaError
from pipeline.metrics import ports
from pipeline.monitoring.config import ConfigPaths, monitoring_dir, write_configs
from pipeline.procs.net import port_open
from pipeline.settings import Settings

PROMETHEUS_BIN = "/usr/bin/prometheus"
ALERTMANAGER_BIN = "/usr/bin/prometheus-alertmanager"
TSDB_RETENTION = "2d"          # the dashboard shows the last hour; two days is room for a weekend
ALERTMANAGER_RETENTION = "24h"


class MonitoringError(TormentaError):
    """Prometheus or Alertmanager cannot be started."""


def enabled(settings: Settings) -> bool:
    return settings.monitoring and settings.metrics_port != 0


def prometheus_url(settings: Settings) -> str:
    return f"http://127.0.0.1:{ports.port_of(settings.metrics_port, ports.PROMETHEUS)}"


def alertmanager_url(settings: Settings) -> str:
    return f"http://127.0.0.1:{ports.port_of(settings.metrics_port, ports.ALERTMANAGER)}"


def prometheus_command(config: Path, port: int, data: Path, binary: str = PROMETHEUS_BIN) -> list[str]:
    return [binary, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}",
            f"--storage.tsdb.path={data}", f"--storage.tsdb.retention.time={TSDB_RETENTION}"]


def alertmanager_command(config: Path, port: int, data: Path, binary: str = ALERTMANAGER_BIN) -> list[str]:
    return [binary, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=", f"--storage.path={data}", f"--data.retention={ALERTMANAGER_RETENTION}"]


def commands(paths: ConfigPaths, base: int, folder: Path) -> list[tuple[str, list[str]]]:
    """(name, command) of Prometheus and Alertmanager for configuration `paths` and base port `base`."""
    return [("prometheus", prometheus_command(paths.prometheus, ports.port_of(base, ports.PROMETHEUS), folder / "tsdb")),
            ("alertmanager", alertmanager_command(paths.alertmanager, ports.port_of(base, ports.ALERTMANAGER),
                                                  folder / "alertmanager"))]


def _taken(port: int) -> bool:
    return port_open("127.0.0.1", port)


def check_ready(settings: Settings) -> None:
    """Both programs installed and both ports free, else one MonitoringError saying what to do."""
    for binary in (PROMETHEUS_BIN, ALERTMANAGER_BIN):
        if shutil.which(binary) is None:
            raise MonitoringError(f"{binary} is not installed; run `make monitoring` "
                                  "(or set TORMENTA_MONITORING=false to run without Prometheus and Alertmanager)")
    for part in (ports.PROMETHEUS, ports.ALERTMANAGER):
        port = ports.port_of(settings.metrics_port, part)
        if _taken(port):
            raise MonitoringError(f"port {port} ({part}) is taken (is another run's {part} still running?); "
                                  "stop it, or set TORMENTA_METRICS_PORT to another base port")


def parts(settings: Settings, started: Iterable[str] | None = None, nodes: int | None = None) -> list[tuple[str, list[str]]]:
    """The monitoring children of a run, configuration written; [] when monitoring is off.

    `started`: the names of the run's other parts (job, live, emulator, app); Prometheus scrapes
    those, the run itself and every broker node (None: every part)."""
    if not enabled(settings):
        return []
    check_ready(settings)
    folder = monitoring_dir(settings).resolve()
    scraped = None if started is None else tuple(
        p for p in (ports.JOB, ports.LIVE, ports.EMULATOR, ports.APP) if p in set(started)) + (ports.RUN, ports.BROKER)
    written = write_configs(settings, nodes, scraped)
    paths = ConfigPaths(written.prometheus.resolve(), written.alertmanager.resolve())
    return commands(paths, settings.metrics_port, folder)
