"""Benchmark: the job's processing of one Christmas minute against Spark's own floor.

    .venv/bin/python bench/bench_job.py [--records 3000000]

Loads N contract messages (default 3,000,000 = one minute at 50,000 tx/s) into a fresh
topic on a local broker with the storm emulator, then, in the same run and the same
SparkSession, times:

  noop  Spark reading the same offsets through the Kafka connector into the `noop` sink
        (the floor: what reading alone costs), run before and after ours;
  ours  the high-value query processing that single batch (parse + validate, quarantine,
        MERGE into high_value, sales aggregates, metrics) with availableNow.

Before the measured batch the same writer processes a small batch, as a running job
would have (warm JIT, cached Delta snapshots). Prints both times, the ratio noop/ours
(goal >= 0.6) and the per-stage split of our batch.
Everything it starts (broker, Spark) is stopped at the end.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.kafka.broker import EmbeddedBroker
from pipeline.kafka.topic import ensure_topic, log_end_offsets  # noqa: E402
from pipeline.settings import Settings  # noqa: E402
from tests.support.ports import free_port  # noqa: E402


def load(settings: Settings, records: int) -> float:
    from pipeline.emulator.storm import StormEmulator

    t = time.perf_counter()
    summary = StormEmulator(settings, control=False, full_speed=True).run(max_records=records)
    took = time.perf_counter() - t
    if summary.get("failed"):
        raise SystemExit(f"load failed: {summary}")
    return took


def noop_time(spark, settings: Settings, ckpt: Path) -> float:
    from pipeline.job.runner import kafka_stream

    shutil.rmtree(ckpt, ignore_errors=True)
    t = time.perf_counter()
    q = (kafka_stream(spark, settings).writeStream.format("noop").trigger(availableNow=True)
         .option("checkpointLocation", str(ckpt)).start())
    q.awaitTermination()
    return time.perf_counter() - t


def ours_time(spark, settings: Settings, writer) -> tuple[float, dict, float]:
    """Catch up once with the job's own batch writer; the time of that (single) batch."""
    from pipeline.job import runner

    t = time.perf_counter()
    q = (runner.high_value_input(spark, settings).writeStream.foreachBatch(writer).trigger(availableNow=True)
         .option("checkpointLocation", str(settings.checkpoint_dir / "high_value")).start())
    q.awaitTermination()
    took = time.perf_counter() - t
    batch = sum(writer.last_timings.values())
    return took, writer.last_timings, batch


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=3_000_000)
    args = ap.parse_args()
    if args.records <= 0:
        ap.error("--records must be positive")
    logging.basicConfig(level=logging.WARNING)
    tmp = Path(tempfile.mkdtemp(prefix="tormenta-bench-job-"))
    settings = Settings.from_env({
        "TORMENTA_DATA_DIR": str(tmp), "TORMENTA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        "TORMENTA_CONTROLLER_PORT": str(free_port()), "TORMENTA_TOPIC": "bench-job",
        "TORMENTA_MAX_OFFSETS_PER_TRIGGER": str(max(args.records * 2, 1000)), "TORMENTA_COMPACT_EVERY": "0",
        "TORMENTA_DRIVER_MEMORY": "3g",
    })
    broker = EmbeddedBroker(settings)
    broker.start()
    spark = None
    try:
        ensure_topic(settings)
        from pipeline.job import runner
        from pipeline.job.spark import build_spark
        from pipeline.job.tables import create_tables

        # A running job has warm JVM code and cached Delta snapshots: process a small
        # first batch with the same writer before the measured one.
        spark = build_spark(settings, "tormenta-bench-job")
        create_tables(spark, settings)
        writer = runner.HighValueBatchWriter(settings)
        load(settings, 20_000)
        ours_time(spark, settings, writer)
        took = load(settings, args.records)
        n = sum(log_end_offsets(settings).values())
        print(f"loaded {args.records:,} messages in {took:.1f} s ({args.records / took:,.0f} msg/s); topic holds {n:,}")
        noop_time(spark, settings, tmp / "warm")
        noop1 = noop_time(spark, settings, tmp / "noop1")
        ours, stages, batch = ours_time(spark, settings, writer)
        noop2 = noop_time(spark, settings, tmp / "noop2")
        noop = (noop1 + noop2) / 2
        print(f"noop sink (Spark reading the same offsets): {noop1:.2f} s / {noop2:.2f} s (mean {noop:.2f} s)")
        print(f"our job, one batch of {args.records:,}: {ours:.2f} s query ({batch:.2f} s inside foreachBatch)")
        print("  stages: " + ", ".join(f"{k} {v:.2f} s" for k, v in stages.items()))
        print(f"ratio noop/ours = {noop / ours:.2f} (goal >= 0.6); batch time goal <= 10 s: "
              f"{'met' if ours <= 10 else 'not met'}")
    finally:
        if spark is not None:
            spark.stop()
        broker.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
