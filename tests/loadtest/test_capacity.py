"""Capacity calculator maths (no broker): disk, batch sizes, parallelism, warnings, CLI."""

from __future__ import annotations

import json

import pytest

from pipeline.cli import main
from pipeline.errors import SettingsError
from pipeline.loadtest.capacity import (
    CapacityInput,
    capacity,
    compression_ratio_for,
    human_bytes,
    measured_inputs,
    sample_record_bytes,
)
from pipeline.settings import Settings
from tests.support.loadtest_fixtures import synthetic_result


def test_disk_and_batch_figures_follow_the_stated_formulas():
    p = capacity(CapacityInput(rate=50_000, record_bytes=220, key_bytes=8, overhead_bytes=12, replication=3,
                               brokers=3, retention_s=86400, trigger_s=10, partitions=6, cores=2,
                               segment_bytes=100_000_000, disk_margin=0.25, dedupe_window_s=0))
    assert p.bytes_per_record_on_disk == 240
    assert p.ingress_bytes_per_s == 50_000 * 240 == 12_000_000
    assert p.retained_bytes_one_copy == 12_000_000 * 86400
    assert p.segment_slack_bytes == 6 * 3 * 100_000_000
    expected_total = (12_000_000 * 86400 * 3 + 6 * 3 * 100_000_000) * 1.25
    assert p.disk_total_bytes == pytest.approx(expected_total)
    assert p.disk_per_broker_bytes == pytest.approx(expected_total / 3)
    assert p.records_per_batch == 500_000 and p.bytes_per_batch_raw == 500_000 * 228
    assert (p.tasks_per_batch, p.task_waves, p.idle_cores_during_read) == (6, 3, 0)
    assert p.records_per_task == pytest.approx(500_000 / 6)
    assert p.partition_bytes_per_s == 2_000_000
    assert p.warnings == [] and any("segment" in a for a in p.assumptions)


def test_compression_and_measured_throughput():
    p = capacity(CapacityInput(rate=100_000, record_bytes=220, compression_ratio=4, trigger_s=10, partitions=3,
                               cores=2, job_throughput=80_000, dedupe_window_s=0))
    assert p.bytes_per_record_on_disk == 60
    assert p.est_batch_s == pytest.approx(1_000_000 / 80_000)
    assert p.max_rate_for_trigger == 80_000
    text = " ".join(p.warnings)
    assert "batches run back to back" in text and "exceeds the measured job throughput" in text
    assert "last of 2 waves leaves 1 core(s) idle" in text
    assert compression_ratio_for(220, 60) == 4.0 and compression_ratio_for(220, None) == 1.0


def test_the_dedupe_state_eviction_scan_limits_the_rate_a_short_trigger_can_take():
    """Spark reads every dedupe key in every batch: at 50,000 tx/s a 10-minute window holds
    30 M keys, whose scan takes most of a 10 s trigger (the 10-minute hold of run
    20261206-022504-6335 broke that way) but a modest share of a one-minute one."""
    short = capacity(CapacityInput(rate=50_000, trigger_s=10, cores=2, partitions=6, job_throughput=90_000))
    assert short.dedupe_state_keys == 30_000_000
    assert short.eviction_s_per_batch == pytest.approx(30_000_000 * 0.6e-6 / 2)   # 9 s
    assert short.est_batch_s == pytest.approx(500_000 / 90_000 + 9.0)
    assert short.max_rate_for_trigger == pytest.approx(10 / (10 / 90_000 + 600 * 0.3e-6))
    assert 30_000 < short.max_rate_for_trigger < 50_000
    text = " ".join(short.warnings)
    assert "30,000,000 keys" in text and "batches run back to back" in text
    assert any("Eviction scan" in figure for figure, _ in short.rows())
    assert any("every key each batch" in a for a in short.assumptions)

    minute = capacity(CapacityInput(rate=50_000, trigger_s=60, cores=2, partitions=6, job_throughput=90_000))
    assert minute.est_batch_s == pytest.approx(3_000_000 / 90_000 + 9.0) and minute.est_batch_s < 60
    assert minute.max_rate_for_trigger > 50_000 and not any("keys" in w for w in minute.warnings)
    # without the dedupe (a window of 0) the scan disappears and the throughput is the limit again
    none = capacity(CapacityInput(rate=50_000, trigger_s=10, cores=2, job_throughput=90_000, dedupe_window_s=0))
    assert none.eviction_s_per_batch == 0 and none.max_rate_for_trigger == 90_000
    with pytest.raises(SettingsError, match="dedupe_window_s"):
        capacity(CapacityInput(rate=1, dedupe_window_s=-1))


def test_warnings_for_capped_batches_and_idle_cores():
    p = capacity(CapacityInput(rate=200_000, trigger_s=60, partitions=1, cores=4, max_offsets_per_trigger=6_000_000))
    assert p.records_per_batch == 12_000_000 and p.records_per_batch_capped == 6_000_000
    text = " ".join(p.warnings)
    assert "maxOffsetsPerTrigger" in text and "3 core(s) idle while reading Kafka" in text
    assert p.idle_cores_during_read == 3


def test_bad_inputs_are_refused():
    with pytest.raises(SettingsError, match="replication"):
        capacity(CapacityInput(rate=1, replication=3, brokers=1))
    with pytest.raises(SettingsError, match="compression_ratio"):
        capacity(CapacityInput(rate=1, compression_ratio=0.5))
    with pytest.raises(SettingsError, match="rate"):
        capacity(CapacityInput(rate=-1))


def test_helpers():
    assert human_bytes(999) == "999 B" and human_bytes(1_500_000) == "1.50 MB" and human_bytes(2e12) == "2.00 TB"
    size = sample_record_bytes(Settings().sample_file)
    assert size is not None and 150 < size < 300
    assert measured_inputs(None) == {}
    result, _ = synthetic_result()
    for step, throughput in zip(result.steps, (1000.4, 52_000.2, None)):
        step.job_throughput = throughput
    result.steps = result.steps[:3]
    result.topic.bytes_per_record_on_disk = 61.5
    assert measured_inputs(result) == {"job_throughput": 52_000, "bytes_per_record_on_disk": 61.5}


def test_capacity_cli(capsys):
    assert main(["capacity", "--rate", "50000", "--trigger", "10s", "--partitions", "4", "--cores", "2",
                 "--record-bytes", "220", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["records_per_batch"] == 500_000 and out["tasks_per_batch"] == 4
    assert main(["capacity", "--rate", "50000", "--replication", "3"]) == 0
    text = capsys.readouterr().out
    assert "Broker disk needed, per broker" in text and "assumptions:" in text
    assert main(["capacity", "--rate", "10", "--replication", "2", "--brokers", "1"]) == 2
