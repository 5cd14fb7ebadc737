"""Progress JSON -> job metrics: real progress documents of the job's two queries (captured from a
run of tests/metrics/test_job_metrics_integration.py), and the figures the batch writer hands over."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from pipeline.metrics.job import JobMetrics, progress_figures
from tests.support.metrics import promtool_check, samples, value
from tests.support.stack import make_settings

PROGRESS = json.loads((Path(__file__).parent / "job_progress.json").read_text())
HV_FIRST, HV_SECOND, HOURLY = PROGRESS
TOPIC = next(iter(HV_FIRST["sources"][0]["endOffset"]))


class Lookups:
    """Stands in for the Kafka lookup of the first unprocessed records' timestamps."""

    def __init__(self, ms: int | None = None):
        self.ms, self.asked = ms, []

    def __call__(self, settings, at):
        self.asked.append(dict(at))
        return {} if self.ms is None else {k: self.ms + i for i, k in enumerate(sorted(at))}


@pytest.fixture
def lookups() -> Lookups:
    return Lookups()


@pytest.fixture
def metrics(tmp_path, lookups) -> JobMetrics:
    return JobMetrics(make_settings(tmp_path, topic=TOPIC, retention="2d"), find_timestamps=lookups)


def found(m: JobMetrics) -> dict:
    text = generate_latest(m.registry).decode()
    promtool_check(text)
    return samples(text)


def test_progress_figures_of_a_kafka_batch():
    fig = progress_figures(HV_FIRST)
    assert fig.query == "high_value" and fig.ran_batch
    assert fig.input_rows == 6
    assert fig.duration_s == pytest.approx(79.473)
    assert fig.finished_at == pytest.approx(1796430219.068 + 79.473)   # 2026-12-05T00:23:39.068Z + trigger
    assert fig.offsets == {TOPIC: {0: (5, 5), 1: (0, 0), 2: (1, 1)}}
    assert fig.state_bytes == 10680
    assert fig.state_rows is None      # rows were added, Spark counted none: tracking is off


def test_progress_figures_of_the_delta_source_query():
    fig = progress_figures(HOURLY)
    assert fig.query == "sales_hourly" and fig.input_rows == 1 and fig.offsets == {}
    assert fig.state_rows is None and fig.state_bytes == 0   # no state operator: no rows to report, not "0 rows"


def test_offsets_behind_per_partition_and_as_json_strings():
    doc = copy.deepcopy(HV_FIRST)
    doc["sources"][0]["latestOffset"] = json.dumps({TOPIC: {"0": 9, "1": 0, "2": 4}})   # older Sparks: a string
    assert progress_figures(doc).behind() == {(TOPIC, 0): 4, (TOPIC, 1): 0, (TOPIC, 2): 3}


def test_counters_add_up_once_per_progress(metrics):
    assert metrics.observe_progress(HV_FIRST)
    assert not metrics.observe_progress(HV_FIRST)        # the same progress polled again
    assert metrics.observe_progress(HV_SECOND)
    assert metrics.observe_progress(HOURLY)
    f = found(metrics)
    assert value(f, "tormenta_job_input_rows_total", query="high_value") == 6
    assert value(f, "tormenta_job_input_rows_total", query="sales_hourly") == 1
    assert value(f, "tormenta_job_batch_duration_seconds_count", query="high_value") == 2
    durations = [p["durationMs"]["triggerExecution"] / 1000 for p in (HV_FIRST, HV_SECOND)]
    assert value(f, "tormenta_job_batch_duration_seconds_sum", query="high_value") == pytest.approx(sum(durations))
    assert value(f, "tormenta_job_batch_duration_seconds_bucket", query="high_value", le="60.0") == 1  # 79 s is not
    assert value(f, "tormenta_job_last_batch_timestamp_seconds", query="high_value") == pytest.approx(
        progress_figures(HV_SECOND).finished_at)
    assert value(f, "tormenta_job_offsets_behind_latest", query="high_value", topic=TOPIC, partition="2") == 0
    assert value(f, "tormenta_job_state_bytes", query="high_value") == 10680
    assert ("tormenta_job_state_rows", frozenset({("query", "high_value")})) not in f
    assert not [k for k in f if k[0] == "tormenta_job_state_rows"]   # neither query has a counted state
    assert value(f, "tormenta_topic_retention_seconds", topic=TOPIC) == 2 * 86400


def test_a_zero_from_an_empty_batch_is_dropped_once_the_rows_prove_untracked(metrics):
    """An empty batch first (0 rows added, 0 counted) looks like an empty state; the next batch adds
    rows that Spark does not count: the earlier 0 must not stay exported as the state's size."""
    metrics.observe_progress(HV_SECOND)
    assert value(found(metrics), "tormenta_job_state_rows", query="high_value") == 0
    later = copy.deepcopy(HV_FIRST)
    later["batchId"] = HV_SECOND["batchId"] + 1
    later["timestamp"] = "2026-12-05T00:30:00.000Z"
    assert metrics.observe_progress(later)
    assert ("tormenta_job_state_rows", frozenset({("query", "high_value")})) not in found(metrics)


def test_a_restarted_query_keeps_the_counters_growing(metrics):
    metrics.observe_progress(HV_FIRST)
    restarted = copy.deepcopy(HV_FIRST)           # same batch id, a new run: a replay after a restart
    restarted["runId"] = "00000000-0000-0000-0000-000000000001"
    assert metrics.observe_progress(restarted)
    assert value(found(metrics), "tormenta_job_input_rows_total", query="high_value") == 12


def test_oldest_unprocessed_age_from_the_first_record_after_the_end_offsets(metrics, lookups):
    import time

    lookups.ms = int((time.time() - 3600) * 1000)      # the oldest record behind is an hour old
    behind = batch(0, 10)
    behind["sources"][0]["latestOffset"] = {TOPIC: {"0": 9, "1": 0, "2": 4}}
    metrics.observe_progress(behind)
    metrics._lookup.join(5)
    assert lookups.asked == [{(TOPIC, 0): 5, (TOPIC, 2): 1}]   # only the partitions behind, at their end offsets
    assert 3590 < value(found(metrics), "tormenta_job_oldest_unprocessed_age_seconds", query="high_value") < 3700
    metrics.observe_progress(batch(1, 10))                   # caught up: nothing unprocessed
    assert value(found(metrics), "tormenta_job_oldest_unprocessed_age_seconds", query="high_value") == 0
    assert len(lookups.asked) == 1


def test_an_idle_trigger_is_not_a_batch(metrics):
    idle = copy.deepcopy(HV_SECOND)
    idle["timestamp"], idle["numInputRows"] = "2026-12-05T00:30:00.000Z", 0
    idle["durationMs"] = {"latestOffset": 3, "triggerExecution": 3}
    idle["sources"][0]["latestOffset"] = {TOPIC: {"0": 7, "1": 0, "2": 1}}
    metrics.observe_progress(HV_FIRST)
    metrics.observe_progress(idle)
    f = found(metrics)
    assert value(f, "tormenta_job_batch_duration_seconds_count", query="high_value") == 1
    assert value(f, "tormenta_job_last_batch_timestamp_seconds", query="high_value") == pytest.approx(
        progress_figures(HV_FIRST).finished_at)
    assert value(f, "tormenta_job_last_progress_timestamp_seconds", query="high_value") == pytest.approx(
        1796430600.003)
    assert value(f, "tormenta_job_offsets_behind_latest", query="high_value", topic=TOPIC, partition="0") == 2


def test_batch_writer_figures(metrics):
    metrics.query_started("high_value", 60.0)
    metrics.batch_written("high_value", {"high_value": 2, "quarantine": 2, "batch_metrics": 1}, quarantined=2,
                          duplicates=1, event_lag_s=4.5)
    metrics.batch_written("high_value", {"high_value": 3, "batch_metrics": 1}, duplicates=None, event_lag_s=None)
    f = found(metrics)
    assert value(f, "tormenta_job_rows_written_total", query="high_value", table="high_value") == 5
    assert value(f, "tormenta_job_rows_written_total", query="high_value", table="batch_metrics") == 2
    assert value(f, "tormenta_job_quarantined_rows_total", query="high_value") == 2
    assert value(f, "tormenta_job_duplicates_dropped_total", query="high_value") == 1
    assert value(f, "tormenta_job_event_time_lag_seconds", query="high_value") == 4.5   # the last known lag stays
    assert value(f, "tormenta_job_trigger_interval_seconds", query="high_value") == 60


class FakeQuery:
    """lastProgress / recentProgress as pyspark hands them out (objects with a .json string)."""

    class P:
        def __init__(self, doc):
            self.json = json.dumps(doc)

    def __init__(self, docs):
        self.docs = docs

    @property
    def lastProgress(self):
        return self.P(self.docs[-1]) if self.docs else None

    @property
    def recentProgress(self):
        return [self.P(d) for d in self.docs]


def batch(n: int, rows: int) -> dict:
    doc = copy.deepcopy(HV_FIRST)
    doc["batchId"], doc["numInputRows"] = n, rows
    doc["timestamp"] = f"2026-12-05T00:{30 + n:02d}:00.000Z"
    return doc


def test_poll_catches_up_on_batches_between_two_polls(metrics):
    q = FakeQuery([batch(0, 10)])
    metrics.poll(q)
    q.docs += [batch(1, 20), batch(2, 30), batch(3, 40)]    # three batches before the next poll
    metrics.poll(q)
    metrics.poll(q)                                        # nothing new
    assert value(found(metrics), "tormenta_job_input_rows_total", query="high_value") == 100
    metrics.poll(FakeQuery([]))                            # a query with no progress yet: nothing, no error
    metrics.poll(object())                                 # not a query at all: never raises


def test_the_state_summary_adds_up_every_state_store_and_skips_what_spark_did_not_report():
    from pipeline.metrics.job import state_summary

    assert state_summary([]) is None
    ops = [{"numRowsUpdated": 6_000_000, "numRowsRemoved": 10, "commitTimeMs": 1500,
            "customMetrics": {"rocksdbGetLatency": 40_000, "rocksdbWriterStallLatencyMs": 7}},
           {"numRowsUpdated": 5, "numRowsRemoved": 0, "commitTimeMs": 500, "customMetrics": {}}]
    assert state_summary(ops) == ("updated 6,000,005, evicted 10, commit_ms 2,000, get_ms 40,000, stall_ms 7")
    # the captured progress of a real job batch (RocksDB, one dedupe operator)
    line = state_summary(PROGRESS[0]["stateOperators"])
    assert line.startswith("updated 5, evicted 0, updates_ms 3,479, evictions_ms 138, commit_ms 362")
