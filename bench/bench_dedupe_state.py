"""Benchmark: what the job's dedupe costs per batch as its state fills (issue 19, catch-up).

    nice -n 5 .venv/bin/python bench/bench_dedupe_state.py [--rows 3000000] [--batches 8] [--keys emulator]
        [--window 600] [--memory-mb 256] [--conf KEY=VALUE ...] [--out FILE.json]

Spark alone, no broker: a `rate-micro-batch` source hands the stream `--rows` new ids per
micro-batch as fast as the job takes them, and the same streaming dedupe as the job's
(`dropDuplicatesWithinWatermark` on an id (`--keys`) and a span, the clock of
`pipeline.job.transforms.dedupe`, a 10-minute window) keeps them in RocksDB with the job's
own session settings (`pipeline.job.spark.session_conf`). With the default window nothing
expires within the run, so after batch k the state holds k x rows keys, and every batch
still reads all of them to evict (Spark's dedupe scans its whole state each batch). A short
`--window` (e.g. 90 s, batches back to back) brings the steady state of a long run within
minutes: every key expires that many seconds after it came, and from then on a batch evicts
about as many keys as it adds, as the job does at a constant rate.

For each batch it prints the rows held, the batch duration, the records per second, and
what the state store reported: updates and evictions (task time, summed over partitions),
RocksDB get/put, flush, compaction, write stalls, SST bytes, memory. `--memory-mb` and
`--conf` change the state store's settings, so two runs side by side compare them; the
figures to compare are the ratios between runs made in the same hour, never the absolute
times (the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.job.transforms import watermark_delay_seconds  # noqa: E402
from pipeline.metrics.job import STATE_FIGURES  # noqa: E402
from pipeline.settings import Settings  # noqa: E402

WINDOW_S = 600


def conf_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--conf wants KEY=VALUE, got {text!r}")
    return key, value


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=3_000_000, help="new ids per micro-batch (default 3,000,000)")
    p.add_argument("--batches", type=int, default=8, help="micro-batches to run (default 8)")
    p.add_argument("--source-partitions", type=int, default=3,
                   help="partitions of the source, as the topic's (default 3)")
    p.add_argument("--keys", choices=("emulator", "random"), default="emulator",
                   help="ids as the emulator makes them (a run token and a counter: each batch's keys lie "
                        "side by side in RocksDB) or in random order as a real source's UUIDs (default emulator)")
    p.add_argument("--window", type=int, default=WINDOW_S,
                   help=f"the dedupe window in seconds of wall time (default {WINDOW_S}: nothing expires)")
    p.add_argument("--memory-mb", type=int, default=None,
                   help="the state store's memory budget (default: the job's, pipeline.job.spark.STATE_MEMORY_MB)")
    p.add_argument("--conf", type=conf_pair, action="append", default=[], metavar="KEY=VALUE",
                   help="a Spark setting on top of the job's (repeatable)")
    p.add_argument("--out", type=Path, help="also write the figures as JSON")
    args = p.parse_args(argv)
    if args.rows < 1 or args.batches < 1 or args.source_partitions < 1 or args.window < 2:
        p.error("--rows, --batches and --source-partitions must be at least 1, --window at least 2")
    if args.memory_mb is not None and args.memory_mb < 16:
        p.error("--memory-mb must be at least 16")
    return args


def state_figures(progress: dict) -> dict[str, int]:
    """Sum each figure of STATE_FIGURES over the progress's state operators."""
    out: dict[str, int] = {}
    for op in progress.get("stateOperators") or []:
        for key, label in STATE_FIGURES:
            value = op.get(key, (op.get("customMetrics") or {}).get(key))
            if isinstance(value, (int, float)):
                out[label] = out.get(label, 0) + int(value)
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    from pyspark.sql import functions as F

    from pipeline.job.spark import build_spark

    with tempfile.TemporaryDirectory(prefix="tormenta-bench-dedupe-") as tmp:
        settings = Settings.from_env(data_dir=Path(tmp))
        extra = dict(args.conf)
        if args.memory_mb is not None:
            extra["spark.sql.streaming.stateStore.rocksdb.maxMemoryUsageMB"] = str(args.memory_mb)
        spark = build_spark(settings, "tormenta-bench-dedupe", extra_conf=extra)
        delay = f"{int(watermark_delay_seconds(args.window) * 1000)} milliseconds"
        source = (spark.readStream.format("rate-micro-batch")
                  .option("rowsPerBatch", args.rows).option("numPartitions", args.source_partitions).load())
        if args.keys == "emulator":  # the emulator's ids: a run token and a counter
            key = F.format_string("E3f9a0c21-%d", F.col("value"))
        else:  # 36 characters in random order, as a real source's UUIDs
            key = F.format_string("tx-%016x-%016x", F.xxhash64("value"), F.xxhash64("value", F.lit(7)))
        clock = F.greatest(F.col("timestamp"), F.current_timestamp() - F.expr(f"INTERVAL {delay}"))
        deduped = (source.select(key.alias("dedupe_key"), F.lit(0).cast("long").alias("dedupe_span"),
                                 clock.alias("dedupe_clock"))
                   .withWatermark("dedupe_clock", delay)
                   .dropDuplicatesWithinWatermark(["dedupe_key", "dedupe_span"]))
        query = (deduped.writeStream.format("noop").queryName("bench_dedupe")
                 .option("checkpointLocation", str(Path(tmp) / "checkpoint"))
                 .trigger(processingTime="0 seconds").start())
        rows: list[dict] = []
        seen: set[int] = set()
        try:
            while len(rows) < args.batches:
                if query.exception() is not None:
                    raise SystemExit(f"the stream failed: {query.exception()}")
                for progress in query.recentProgress:
                    batch = int(progress["batchId"])
                    if batch in seen or not progress.get("numInputRows"):
                        continue
                    seen.add(batch)
                    duration = float(progress["durationMs"]["triggerExecution"]) / 1000
                    figures = {"batch": batch, "keys_before": len(rows) * args.rows,
                               "input": int(progress["numInputRows"]), "duration_s": round(duration, 2),
                               "rows_per_s": round(int(progress["numInputRows"]) / duration), **state_figures(progress)}
                    rows.append(figures)
                    print(json.dumps(figures), flush=True)
                time.sleep(0.5)
        finally:
            query.stop()
            spark.stop()
    first, last = rows[0], rows[-1]
    print(f"state {last['keys_before']:,} keys before the last batch: {last['duration_s']} s for {args.rows:,} rows "
          f"({last['rows_per_s']:,}/s; first batch {first['rows_per_s']:,}/s); evictions "
          f"{last.get('evictions_ms', 0):,} ms, updates {last.get('updates_ms', 0):,} ms of task time")
    if args.out:
        args.out.write_text(json.dumps({"args": {"rows": args.rows, "batches": args.batches, "keys": args.keys, "window": args.window,
                                                 "memory_mb": args.memory_mb, "conf": dict(args.conf)},
                                        "batches": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
