"""A real `python -m pipeline emulate` against the session broker: its endpoint while it runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from pipeline.metrics import ports
from pipeline.settings import PROJECT_ROOT
from tests.support.metrics import promtool_check, samples, scrape, value
from tests.support.ports import port_run
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration
RATE = 2000


def _env(settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TORMENTA_")}
    env.update({"TORMENTA_BOOTSTRAP_SERVERS": settings.bootstrap_servers, "TORMENTA_TOPIC": settings.topic,
                "TORMENTA_DATA_DIR": str(settings.data_dir), "TORMENTA_CONTROLLER_PORT": str(settings.controller_port),
                "TORMENTA_METRICS_PORT": str(settings.metrics_port)})
    return env


def _scrape_when(url: str, ready) -> dict:
    """The endpoint's samples once `ready(samples)` holds (None until it answers)."""
    try:
        found = samples(scrape(url, timeout=2))
    except OSError:
        return {}
    return found if ready(found) else {}


def test_emulate_serves_rate_counts_latency_and_librdkafka_statistics(stack):
    settings = stack.replace(metrics_port=port_run(ports.SPAN))
    url = f"http://127.0.0.1:{ports.port_of(settings.metrics_port, ports.EMULATOR)}/metrics"
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    log = settings.data_dir / "emulate.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "pipeline", "emulate", "--rate", str(RATE), "--no-control",
                                 "--duration", "300", "--quiet"], cwd=PROJECT_ROOT, env=_env(settings), stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def ready(f: dict) -> bool:
            # librdkafka's statistics come every 5 s; the broker's round trip is there once one arrived
            return (f.get(("tormenta_emulator_delivered_total", frozenset()), 0) > RATE
                    and any(k[0] == "tormenta_emulator_broker_rtt_seconds" for k in f))
        wait_for(lambda: _scrape_when(url, ready), 120, f"deliveries and statistics on {url}", process=proc, log=log,
                 every=0.5)
        text = scrape(url)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(60)
    promtool_check(text)
    f = samples(text)
    assert value(f, "tormenta_emulator_running") == 1
    assert value(f, "tormenta_emulator_target_transactions_per_second") == RATE
    assert 0.5 * RATE < value(f, "tormenta_emulator_achieved_transactions_per_second") < 1.5 * RATE
    sent, delivered = value(f, "tormenta_emulator_sent_total"), value(f, "tormenta_emulator_delivered_total")
    assert sent >= delivered > RATE
    assert value(f, "tormenta_emulator_delivery_failed_total") == 0
    assert value(f, "tormenta_emulator_delivery_latency_seconds_count") > 0
    assert 0 < value(f, "tormenta_emulator_delivery_latency_seconds_sum") / value(
        f, "tormenta_emulator_delivery_latency_seconds_count") < 5
    assert value(f, "tormenta_emulator_producer_queue_messages") >= 0
    assert 0 <= value(f, "tormenta_emulator_broker_rtt_seconds", broker="1") < 5
    assert proc.returncode == 0, log.read_text()[-2000:]
