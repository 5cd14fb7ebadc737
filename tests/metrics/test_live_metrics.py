"""The live lane's metrics from its output records (what the lane's sink writes; no broker needed)."""

from __future__ import annotations

import json

import pytest
from prometheus_client import generate_latest

from pipeline.metrics.live import LiveMetrics, source_ms
from tests.support.metrics import promtool_check, samples, value

RECORD = {"transaction_id": "t-1", "amount": 1600.0, "event_time": "2026-11-24T19:12:03.123456Z",
          "kafka_partition": 2, "kafka_offset": 17, "source_timestamp": 1_796_430_000_123}


def test_source_timestamp_is_read_off_the_bytes():
    assert source_ms(json.dumps(RECORD).encode()) == 1_796_430_000_123
    assert source_ms(json.dumps(RECORD, separators=(",", ":")).encode()) == 1_796_430_000_123
    assert source_ms(b'{"transaction_id": "x"}') is None
    assert source_ms(b'{"source_timestamp": null}') is None
    assert source_ms(None) is None and source_ms(b"") is None


def test_each_record_is_counted_with_its_latency():
    m = LiveMetrics()
    value_bytes = json.dumps(RECORD).encode()
    m.observe(RECORD["source_timestamp"] + 250, value_bytes)     # written 250 ms after the input record
    m.observe(RECORD["source_timestamp"] + 1500, value_bytes)
    m.observe(1_796_430_000_000, b"not a live record")          # counted out, no latency
    text = generate_latest(m.registry).decode()
    promtool_check(text)
    f = samples(text)
    assert value(f, "tormenta_live_records_out_total") == 3
    assert value(f, "tormenta_live_latency_seconds_count") == 2
    assert value(f, "tormenta_live_latency_seconds_sum") == pytest.approx(1.75)
    assert value(f, "tormenta_live_latency_seconds_bucket", le="0.25") == 1
    assert value(f, "tormenta_live_latency_seconds_bucket", le="1.0") == 1
    assert value(f, "tormenta_live_latency_seconds_bucket", le="1.5") == 2
