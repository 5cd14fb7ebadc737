"""The job's metrics endpoint after real batches: the session broker and Spark session, one catch-up run."""

from __future__ import annotations

import json
import logging
import time

import pytest

from pipeline.contract.tables import BATCH_METRICS, HIGH_VALUE, QUARANTINE, SALES_AGG, SALES_HOURLY
from pipeline.job.runner import run_job
from pipeline.metrics import ports
from pipeline.metrics.job import JobMetrics, first_timestamps
from pipeline.metrics.serve import serve
from tests.support.metrics import promtool_check, samples, scrape, value
from tests.support.ports import port_run
from tests.support.stack import produce, tx

pytestmark = pytest.mark.integration
HV, HOURLY = "high_value", "sales_hourly"


class Recording(JobMetrics):
    """JobMetrics that also keeps each progress document it counted (to look at the real shape)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.progress: list[dict] = []

    def observe_progress(self, progress: dict) -> bool:
        counted = super().observe_progress(progress)
        if counted:
            self.progress.append(progress)
        return counted


def test_job_endpoint_carries_every_series_after_a_batch(stack, spark_session, artifacts):
    settings = stack.replace(metrics_port=port_run(ports.SPAN))
    metrics = Recording(settings)
    endpoint = serve(settings, ports.JOB, metrics.registry, logging.getLogger("test"))
    assert endpoint is not None and endpoint.port == settings.metrics_port
    values = [tx("m-1", 2000), tx("m-2", 1600), tx("m-3", 10), tx("m-2", 1600), "not json", tx("m-4", -1)]
    started = time.time()
    try:
        produce(settings, values)
        run_job(settings, once=True, metrics=metrics)
        text = scrape(endpoint.url)
    finally:
        endpoint.close()
    (artifacts / "job-progress.json").write_text(json.dumps(metrics.progress, indent=1))
    promtool_check(text)
    found = samples(text)
    assert value(found, "tormenta_job_input_rows_total", query=HV) == len(values)
    assert value(found, "tormenta_job_rows_written_total", query=HV, table=HIGH_VALUE) == 2
    assert value(found, "tormenta_job_rows_written_total", query=HV, table=QUARANTINE) == 2
    assert value(found, "tormenta_job_rows_written_total", query=HV, table=BATCH_METRICS) >= 1
    assert value(found, "tormenta_job_rows_written_total", query=HV, table=SALES_AGG) >= 1
    assert value(found, "tormenta_job_rows_written_total", query=HOURLY, table=SALES_HOURLY) >= 1
    assert value(found, "tormenta_job_quarantined_rows_total", query=HV) == 2
    assert value(found, "tormenta_job_duplicates_dropped_total", query=HV) == 1
    assert value(found, "tormenta_job_batch_duration_seconds_count", query=HV) >= 1
    assert 0 < value(found, "tormenta_job_batch_duration_seconds_sum", query=HV) < 600
    assert value(found, "tormenta_job_batch_duration_seconds_count", query=HOURLY) >= 1
    assert value(found, "tormenta_job_trigger_interval_seconds", query=HV) == settings.trigger_interval
    assert value(found, "tormenta_job_trigger_interval_seconds", query=HOURLY) == settings.summary_interval
    for query in (HV, HOURLY):
        assert started < value(found, "tormenta_job_last_batch_timestamp_seconds", query=query) <= time.time()
    for part in range(3):  # caught up: nothing behind on any partition
        assert value(found, "tormenta_job_offsets_behind_latest", query=HV, topic=settings.topic,
                     partition=str(part)) == 0
    # The dedupe's state: its memory always; its row count only while Spark counts it (the job
    # turns RocksDB's row tracking off for speed, and then the series is absent, not a false 0).
    assert value(found, "tormenta_job_state_bytes", query=HV) > 0
    assert ("tormenta_job_state_rows", frozenset({("query", HV)})) not in found
    # The event times are from 2026-11-24: the lag is the time since then.
    assert value(found, "tormenta_job_event_time_lag_seconds", query=HV) > 60
    assert value(found, "tormenta_job_oldest_unprocessed_age_seconds", query=HV) == 0
    assert value(found, "tormenta_topic_retention_seconds", topic=settings.topic) == settings.retention
    assert value(found, "process_resident_memory_bytes") > 0


def test_first_timestamps_reads_the_record_at_each_offset(stack):
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": stack.bootstrap_servers})
    stamps = {}
    for part in range(3):
        for i, ms in enumerate((1_700_000_000_000 + part, 1_700_000_100_000 + part)):
            p.produce(stack.topic, json.dumps(tx(f"t-{part}-{i}", 10)).encode(), partition=part, timestamp=ms)
            stamps[(stack.topic, part, i)] = ms
    assert p.flush(30) == 0
    found = first_timestamps(stack, {(stack.topic, part): 1 for part in range(3)})
    assert found == {(stack.topic, part): stamps[(stack.topic, part, 1)] for part in range(3)}
    assert first_timestamps(stack, {(stack.topic, 0): 0}) == {(stack.topic, 0): stamps[(stack.topic, 0, 0)]}
