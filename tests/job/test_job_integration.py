"""The streaming job on the real broker and real Spark: exact ids, quarantine, dedupe, exactly-once."""

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from deltalake import DeltaTable

from pipeline.contract.tables import TABLES
from pipeline.job import tables
from pipeline.job.runner import run_job
from pipeline.kafka.topic import log_end_offsets
from pipeline.procs.group import stop_group
from tests.support.stack import produce, tx
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def avro_tx(tid: str, amount: str) -> bytes:
    from datetime import UTC, datetime
    from decimal import Decimal

    from pipeline.contract import avro

    return avro.encode_reference({"transaction_id": tid, "person_id": "P1", "merchant_id": "M1",
                                  "amount": Decimal(amount), "timestamp": datetime(2026, 11, 24, 19, 12, 3, tzinfo=UTC)})


def table(settings, name):
    return DeltaTable(str(settings.table_path(name))).to_pandas()


def test_exact_ids_quarantine_and_dedupe(stack, spark_session):
    values = [
        tx("at-threshold", 1500.00),
        tx("just-above", 1500.01),
        tx("low", 99.99),
        tx("big", 25000, timestamp="2026-11-24T20:12:03+01:00"),
        tx("dup", 1800),
        tx("dup", 1800),                                         # retry of the same message
        tx("dup", 1800, timestamp="2026-11-24T19:20:00Z"),       # same id within 10 minutes
        tx("dup", 1800, timestamp="2026-11-24T23:00:00Z"),       # same id hours later: a new transaction
        tx("string-amount", "2000"),
        "garbage{",
        tx("neg", -5),
        avro_tx("avro-big", "4200.50"),
        avro_tx("avro-big", "4200.50"),                          # a redelivered Avro message
        avro_tx("avro-low", "12.00"),
        avro_tx("avro-bad", "10.00")[:-3],                        # a truncated Avro body
    ]
    produce(stack, values)
    run_job(stack, once=True)

    hv = table(stack, "high_value")
    assert sorted(zip(hv.transaction_id, hv.event_time.dt.hour)) == [
        ("avro-big", 19), ("big", 19), ("dup", 19), ("dup", 23), ("just-above", 19)]
    assert str(hv.loc[hv.transaction_id == "just-above", "amount"].iloc[0]) == "1500.01"
    assert {"kafka_partition", "kafka_offset", "ingest_time", "processing_time"} <= set(hv.columns)

    q = table(stack, "quarantine")
    assert sorted(q.reason) == ["amount is not a number", "amount must be greater than 0", "avro body does not decode",
                                "value is not JSON"]
    assert "garbage{" in set(q.raw_value)
    assert bytes(q.loc[q.wire_format == "avro", "raw_bytes"].iloc[0]) == values[-1]
    assert q.kafka_offset.notna().all()

    metrics = table(stack, "batch_metrics")
    assert metrics.input_rows.sum() == len(values)
    assert metrics.quarantined_rows.sum() == 4
    assert metrics.duplicates_dropped.sum() == 3 and metrics.avro_rows.sum() == 3
    # Each valid sale once: the retried "dup", the "dup" within 10 minutes and the
    # redelivered Avro message are not counted again; "dup" hours later is a new sale.
    sales = ["at-threshold", "just-above", "low", "big", "dup", "dup", "avro-big", "avro-low"]
    agg = table(stack, "sales_agg")
    assert agg.sales_count.sum() == len(sales)
    assert agg.high_value_count.sum() == len(hv)
    assert str(agg.sales_amount.sum()) == "35912.50"
    for name in TABLES:  # every table is readable without a JVM
        DeltaTable(str(stack.table_path(name))).to_pyarrow_table()

    # A second catch-up run over the same topic writes nothing twice.
    produce(stack, [tx("dup", 1800), tx("late-comer", 3000)])
    run_job(stack, once=True)
    hv2 = table(stack, "high_value")
    assert sorted(hv2.transaction_id) == ["avro-big", "big", "dup", "dup", "just-above", "late-comer"]
    # The planted redelivery in the second run is not counted again in the sales either.
    assert table(stack, "sales_agg").sales_count.sum() == len(sales) + 1

    # SQL on top: the tables are registered under the tormenta database.
    assert "tormenta.high_value" in tables.register_all(spark_session, stack)
    assert spark_session.sql("SELECT count(*) FROM tormenta.high_value WHERE amount > 1500").first()[0] == 6

    # Upkeep compacts the small per-batch files; the tables stay readable by delta-rs.
    path = str(stack.table_path("high_value"))
    before = len(DeltaTable(path).file_uris())
    tables.upkeep(spark_session, stack, retain_hours=0)
    after = DeltaTable(path)
    assert len(after.file_uris()) < before and len(after.file_uris()) == hv2.event_date.nunique()
    assert sorted(after.to_pandas().transaction_id) == sorted(hv2.transaction_id)
    config = after.metadata().configuration
    assert config["delta.enableDeletionVectors"] == "false" and config["delta.checkpointPolicy"] == "classic"


def _rows(path) -> int:
    """Rows in a Delta table that may not exist yet (the job creates it while we look)."""
    try:
        return len(DeltaTable(str(path)).to_pyarrow_table())
    except Exception:  # noqa: BLE001 - "not there yet" comes in several error types
        return 0


def _caught_up(settings, ends: dict[int, int]) -> bool:
    import json

    try:
        m = DeltaTable(str(settings.table_path("batch_metrics"))).to_pyarrow_table(columns=["end_offsets"])
    except Exception:  # noqa: BLE001 - not there yet
        return False
    for text in m.column("end_offsets").to_pylist():
        done = {int(k): v for k, v in json.loads(text or "{}").items()}
        if all(done.get(p, 0) >= e for p, e in ends.items()):
            return True
    return False


def _env(settings):
    env = os.environ.copy()
    env.update({
        "TORMENTA_BOOTSTRAP_SERVERS": settings.bootstrap_servers, "TORMENTA_TOPIC": settings.topic,
        "TORMENTA_DATA_DIR": str(settings.data_dir), "TORMENTA_TRIGGER_INTERVAL": "2s",
        "TORMENTA_COMPACT_EVERY": "0", "TORMENTA_DRIVER_MEMORY": "1g",
    })
    return env


def test_kill_minus_nine_then_restart_is_exactly_once(stack, spark_session):
    """... and the restarted job keeps its query's upkeep turns: with a 5-batch cycle of the
    tables' 10 steps (one step after every batch from batch 5 on), the restarted process runs
    a step after its first batch, whose id is past the killed one's (a per-process count would
    start again at 1 and, restarted more often than once a cycle, never compact)."""
    n_rounds, per_round = 4, 300
    env = {**_env(stack), "TORMENTA_COMPACT_EVERY": "5"}
    expected = set()
    first = [tx(f"r0-{i}", 1501 + i) for i in range(per_round)]
    expected |= {v["transaction_id"] for v in first}
    produce(stack, first)
    first_log = stack.data_dir / "first-job.log"
    first_log.parent.mkdir(parents=True, exist_ok=True)
    with open(first_log, "wb") as out:
        job = subprocess.Popen([sys.executable, "-m", "pipeline", "job", "--query", "high_value"], cwd=ROOT,
                               env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        metrics = stack.table_path("batch_metrics")
        wait_for(lambda: _rows(metrics) >= 1, 180, "a first batch", process=job, log=first_log, every=0.3)
        # Keep producing while the job runs, each round after the job has committed one
        # more batch, then kill it mid-stream without warning.
        for r in range(1, n_rounds):
            batch = [tx(f"r{r}-{i}", 1600 + i) for i in range(per_round)] + [tx(f"low{r}-{i}", 5) for i in range(50)]
            expected |= {f"r{r}-{i}" for i in range(per_round)}
            done = _rows(metrics)
            produce(stack, batch)
            wait_for(lambda d=done: _rows(metrics) > d, 120, "the next batch", process=job, log=first_log, every=0.3)
        os.killpg(job.pid, signal.SIGKILL)
        job.wait(30)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait(30)
    # Restart as a long-running job, let it catch up, then stop it the way `make run` and
    # the load test do (`stop_group`): it must shut down cleanly: exit 0, no traceback.
    log = stack.data_dir / "restarted-job.log"
    with open(log, "wb") as out:
        job = subprocess.Popen([sys.executable, "-m", "pipeline", "job", "--query", "high_value"], cwd=ROOT,
                               env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        # More data after the restart, so the restarted job surely commits batches of its
        # own; caught up = a committed batch whose end offsets are the topic's log-end
        # offsets: anything extra (a duplicate) would be in the table by then.
        last = [tx(f"after-{i}", 1700 + i) for i in range(per_round)]
        expected |= {v["transaction_id"] for v in last}
        produce(stack, last)
        ends = log_end_offsets(stack)
        wait_for(lambda: _caught_up(stack, ends), 300, "the restarted job to catch up", process=job, log=log,
                 every=0.3)
    finally:
        rc = stop_group(job, 90)
    text = log.read_text(errors="replace")
    assert rc == 0 and "Traceback" not in text, text[-3000:]
    assert re.search(r"upkeep \w+: (optimize|vacuum)", text), text[-3000:]
    ids = list(table(stack, "high_value").transaction_id)
    assert len(ids) == len(set(ids)), "duplicated rows after kill -9 and restart"
    assert set(ids) == expected


@pytest.mark.parametrize("crash_after", ["high_value", "sales_agg"])
def test_crash_between_two_commits_of_a_batch_writes_nothing_twice(stack, crash_after):
    """The process dies right after one of the batch's commits; the restart replays the
    batch: the committed table is skipped (txnVersion), the others are written once."""
    values = [tx(f"hv-{i}", 2000 + i) for i in range(20)] + [tx(f"lo-{i}", 10) for i in range(30)]
    values += [tx("hv-0", 2000), "not json", tx("neg", -1)]
    produce(stack, values)
    cmd = [sys.executable, "-m", "pipeline", "job", "--once", "--query", "high_value"]
    crashed = subprocess.run([*cmd, "--crash-after-commit", crash_after], cwd=ROOT, env=_env(stack),
                             capture_output=True, timeout=300)
    assert crashed.returncode == 86, crashed.stderr.decode(errors="replace")[-2000:]
    assert _rows(stack.table_path(crash_after)) > 0  # that commit happened...
    assert _rows(stack.table_path("batch_metrics")) == 0  # ...and the batch did not finish
    done = subprocess.run(cmd, cwd=ROOT, env=_env(stack), capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]

    hv = table(stack, "high_value")
    assert sorted(hv.transaction_id) == sorted(f"hv-{i}" for i in range(20))
    agg = table(stack, "sales_agg")
    assert (agg.sales_count.sum(), agg.high_value_count.sum()) == (50, 20)
    assert sorted(table(stack, "quarantine").reason) == ["amount must be greater than 0", "value is not JSON"]
    metrics = table(stack, "batch_metrics")
    assert list(metrics.batch_id) == [0] and metrics.duplicates_dropped.iloc[0] == 1


def test_crash_in_a_later_batch_of_a_run_writes_nothing_twice(stack):
    """A run commits batch 0, then dies right after the high_value commit of batch 1. Only
    a restart's first batch is checked against the table (its commit markers), so this is
    the case where the check must find a marker that a run's later batch left; Delta's
    own txnVersion, set on a run's first append only, would say batch 0 and let batch 1 in
    twice."""
    # One key, so one partition and batches of exactly the cap: 1,000 + 1,000 + 500.
    values = [tx(f"hv-{i}" if i % 5 == 0 else f"lo-{i}", 2000 if i % 5 == 0 else 10) for i in range(2500)]
    produce(stack, values)
    env = {**_env(stack), "TORMENTA_MAX_OFFSETS_PER_TRIGGER": "1000"}
    cmd = [sys.executable, "-m", "pipeline", "job", "--once", "--query", "high_value"]
    crashed = subprocess.run([*cmd, "--crash-after-commit", "high_value@2"], cwd=ROOT, env=env,
                             capture_output=True, timeout=300)
    assert crashed.returncode == 86, crashed.stderr.decode(errors="replace")[-2000:]
    assert list(table(stack, "batch_metrics").batch_id) == [0]  # batch 1 did not finish...
    assert len(table(stack, "high_value")) == 400  # ...after its high_value commit (200 + 200)
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]

    ids = list(table(stack, "high_value").transaction_id)
    assert len(ids) == len(set(ids)) == 500
    assert table(stack, "sales_agg").sales_count.sum() == 2500
    assert sorted(table(stack, "batch_metrics").batch_id) == [0, 1, 2]


def test_the_driver_jvm_lets_the_jit_compile_the_generated_decode(spark_session):
    """Without -XX:-DontCompileHugeMethods HotSpot leaves the whole-stage-codegen method of
    the decode (well over 8,000 bytes of bytecode) interpreted: ~40 % of a 1M-message
    decode (docs/PERFORMANCE.md). The flag must reach the JVM that runs the job."""
    from pipeline.job.spark import JIT_OPTIONS

    jvm = spark_session.sparkContext._jvm
    args = list(jvm.java.lang.management.ManagementFactory.getRuntimeMXBean().getInputArguments())
    assert JIT_OPTIONS in args, args
    flag = jvm.java.lang.management.ManagementFactory.getPlatformMXBean(
        jvm.java.lang.Class.forName("com.sun.management.HotSpotDiagnosticMXBean")).getVMOption("DontCompileHugeMethods")
    assert flag.getValue() == "false"
    assert JIT_OPTIONS in spark_session.sparkContext.getConf().get("spark.executor.extraJavaOptions")
    # and the dedupe state does not pay a RocksDB read per message to count its rows
    assert spark_session.conf.get("spark.sql.streaming.stateStore.rocksdb.trackTotalNumberOfRows") == "false"
    # and the checkpoint on a local disk is written without a forked chmod per file
    from pipeline.job.spark import LOCAL_DISK_CONF

    for k, v in LOCAL_DISK_CONF.items():
        assert spark_session.conf.get(k) == v
