"""Where each part of Tormenta serves its metrics: one base port, a fixed offset per part.

``TORMENTA_METRICS_PORT`` (default 9400) is the base; 0 turns every endpoint off. Each part
serves Prometheus' text format on ``http://127.0.0.1:<port>/metrics`` and nothing binds
beyond loopback. The table is the one place the offsets are written; the README
settings table lists them and `python -m pipeline run` prints them.
"""

from __future__ import annotations

import socket
from typing import NamedTuple

from pipeline.errors import SettingsError

# part -> offset from the base port (broker node i serves on BROKER + i - 1, i = 1..9)
JOB, LIVE, EMULATOR, APP, RUN = "job", "live", "emulator", "app", "run"
BROKER = "broker"
PROMETHEUS, ALERTMANAGER = "prometheus", "alertmanager"
OFFSETS: dict[str, int] = {JOB: 0, LIVE: 1, EMULATOR: 2, APP: 3, RUN: 4, BROKER: 10, PROMETHEUS: 20, ALERTMANAGER: 21}
MAX_BROKER_NODES = 9
SPAN = OFFSETS[ALERTMANAGER] + 1  # base .. base + SPAN - 1 are Tormenta's


class Endpoint(NamedTuple):
    part: str      # job, live, emulator, app, run, broker-<i>, prometheus, alertmanager
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"


def port_of(base: int, part: str, node: int = 1) -> int:
    """The port of `part` (broker: of node `node`, 1-based) for base port `base` (> 0)."""
    if base <= 0:
        raise SettingsError("metrics are off (TORMENTA_METRICS_PORT=0); allowed: a base port 1024..65500 to turn them on")
    if part not in OFFSETS:
        raise ValueError(f"unknown part {part!r}; allowed: {', '.join(OFFSETS)}")
    if part == BROKER and not 1 <= node <= MAX_BROKER_NODES:
        raise ValueError(f"broker node {node} is out of range; allowed: 1..{MAX_BROKER_NODES}")
    return base + OFFSETS[part] + (node - 1 if part == BROKER else 0)


def endpoints(base: int, *, nodes: int = 1, parts: tuple[str, ...] = (JOB, LIVE, EMULATOR, APP, RUN)) -> list[Endpoint]:
    """Every scrape target of a run: the Python parts, then each broker node."""
    if base <= 0:
        return []
    found = [Endpoint(p, port_of(base, p)) for p in parts]
    return found + [Endpoint(f"{BROKER}-{i}", port_of(base, BROKER, i)) for i in range(1, nodes + 1)]


def bindable(port: int) -> bool:
    """Whether `port` is free on loopback now (nothing bound to 127.0.0.1:`port`)."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
