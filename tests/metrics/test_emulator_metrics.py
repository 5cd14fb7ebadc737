"""The emulator's metrics without a broker: the real loop on an in-memory sink, and librdkafka's statistics JSON."""

from __future__ import annotations

import json
import math

import pytest
from prometheus_client import generate_latest

from pipeline.emulator.sources import EmulatorSource
from pipeline.emulator.storm import StormEmulator
from pipeline.metrics.emulator import EmulatorMetrics
from pipeline.settings import Settings
from tests.support.memory import MemorySink
from tests.support.metrics import promtool_check, samples, value

# The shape librdkafka's statistics callback hands over (STATISTICS.md): a bootstrap entry
# (nodeid -1) and the brokers of the cluster, rtt a window in microseconds.
STATS = {
    "name": "rdkafka#producer-1", "client_id": "rdkafka", "type": "producer", "ts": 5_130_512_401, "time": 1796430500,
    "age": 10_002_113, "replyq": 0, "msg_cnt": 1234, "msg_size": 150_321, "msg_max": 500_000,
    "msg_size_max": 268_435_456, "tx": 40, "txmsgs": 52_000,
    "brokers": {
        "127.0.0.1:9092/bootstrap": {"name": "127.0.0.1:9092/bootstrap", "nodeid": -1, "nodename": "127.0.0.1:9092",
                                     "state": "UP", "rtt": {"min": 0, "max": 0, "avg": 0, "p99": 0, "cnt": 0}},
        "127.0.0.1:9092/1": {"name": "127.0.0.1:9092/1", "nodeid": 1, "nodename": "127.0.0.1:9092", "state": "UP",
                             "rtt": {"min": 812, "max": 20_411, "avg": 2_750, "p50": 2_300, "p99": 19_000, "cnt": 37}},
        "127.0.0.1:9093/2": {"name": "127.0.0.1:9093/2", "nodeid": 2, "nodename": "127.0.0.1:9093", "state": "UP",
                             "rtt": {"min": 900, "max": 9_000, "avg": 4_100, "cnt": 12}},
    },
    "topics": {},
}


def found(m: EmulatorMetrics) -> dict:
    text = generate_latest(m.registry).decode()
    promtool_check(text)
    return samples(text)


def test_statistics_callback_sets_queue_and_rtt_per_broker():
    m = EmulatorMetrics()
    m.on_stats(json.dumps(STATS))
    f = found(m)
    assert value(f, "tormenta_emulator_producer_queue_messages") == 1234
    assert value(f, "tormenta_emulator_broker_rtt_seconds", broker="1") == pytest.approx(0.00275)
    assert value(f, "tormenta_emulator_broker_rtt_seconds", broker="2") == pytest.approx(0.0041)
    assert not [k for k in f if k[0] == "tormenta_emulator_broker_rtt_seconds" and ("broker", "-1") in k[1]]
    m.on_stats("{not json")                          # never raises into the producer
    assert value(found(m), "tormenta_emulator_producer_queue_messages") == 1234


class SampledSink(MemorySink):
    """A memory sink that samples a latency per send, as StormProducer does per chunk."""

    def __init__(self):
        super().__init__()
        from collections import deque

        self.latencies, self.latency_samples = deque(maxlen=4), 0

    def send(self, batch) -> int:
        self.latencies.append(0.004 * (1 + self.latency_samples % 3))
        self.latency_samples += 1
        return super().send(batch)


@pytest.fixture(scope="module")
def settings():
    return Settings()


def test_the_loop_feeds_rate_counts_and_latency(settings, samples):
    m, sink = EmulatorMetrics(), SampledSink()
    source = EmulatorSource(settings.sample_file, settings.threshold, seed=1, samples=samples[:2000])
    statuses = []
    summary = StormEmulator(settings, source, control=False, sink=sink, metrics=m, changes={"rate": 4000},
                            wire_format="json", status_interval=0.1, on_status=statuses.append,
                            chunk_max=500).run(max_records=3000)
    f = found(m)
    assert value(f, "tormenta_emulator_sent_total") == summary["sent"] == 3000
    assert value(f, "tormenta_emulator_delivered_total") == summary["delivered"] == 3000
    assert value(f, "tormenta_emulator_delivery_failed_total") == 0
    # Every sample the sink took is observed once, even those the small buffer already dropped
    # between two statuses are not invented: at most what the buffer held each time.
    observed = value(f, "tormenta_emulator_delivery_latency_seconds_count")
    assert 0 < observed <= sink.latency_samples
    assert value(f, "tormenta_emulator_delivery_latency_seconds_bucket", le="0.005") <= observed
    mean = value(f, "tormenta_emulator_delivery_latency_seconds_sum") / observed
    assert 0.004 <= mean <= 0.012                               # the sink's samples are 4, 8 and 12 ms
    assert value(f, "tormenta_emulator_running") == 0          # the final status says stopped
    assert value(f, "tormenta_emulator_target_transactions_per_second") == 0
    assert any(s["state"] == "running" for s in statuses)


def test_status_mapping_running_full_speed_and_a_second_run():
    m = EmulatorMetrics()
    m.on_status({"state": "running", "target_rate": 5000.0, "achieved_rate": 4980.5, "sent": 100, "delivered": 90,
                 "failed": 2})
    m.on_status({"state": "running", "target_rate": None, "achieved_rate": 9000.0, "sent": 300, "delivered": 280,
                 "failed": 2})
    f = found(m)
    assert value(f, "tormenta_emulator_running") == 1
    assert math.isnan(value(f, "tormenta_emulator_target_transactions_per_second"))   # full speed: no target
    assert value(f, "tormenta_emulator_achieved_transactions_per_second") == 9000
    assert value(f, "tormenta_emulator_sent_total") == 300
    assert value(f, "tormenta_emulator_delivery_failed_total") == 2
    m.on_status({"state": "paused", "target_rate": 0.0, "achieved_rate": 0.0, "sent": 50, "delivered": 50,
                 "failed": 0})                                # a new run in the same process starts at 0
    f = found(m)
    assert value(f, "tormenta_emulator_sent_total") == 350 and value(f, "tormenta_emulator_running") == 0
