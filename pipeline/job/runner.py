"""Wire the streaming queries: Kafka -> transforms -> Delta, one checkpoint per query.

Two projects share the transactions topic, each with its own trigger and checkpoint:

- ``high_value`` (processing interval, default one minute): parse and validate every
  message, quarantine the invalid ones, MERGE the high-value transactions into the
  high-value table (insert-only, keyed by transaction_id within the dedupe window),
  append per-window sales aggregates and one metrics row per batch.
- ``sales_hourly`` (default one hour): hourly sales summary per category and country.

Exactly-once: the Kafka offsets of each micro-batch are fixed in the checkpoint before
the batch runs; on a restart the same batch is replayed. The MERGE inserts only ids that
are not there yet and every append carries ``txnAppId``/``txnVersion`` (= batch id), so a
replay writes nothing twice.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from pipeline.contract.tables import TABLES, ddl
from pipeline.errors import JobError
from pipeline.job import tables, transforms
from pipeline.kafka.topic import describe_topic, log_end_offsets
from pipeline.settings import Settings, spark_interval

log = logging.getLogger(__name__)


def kafka_stream(spark, settings: Settings):
    return (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", settings.bootstrap_servers)
        .option("subscribe", settings.topic)
        .option("startingOffsets", "earliest")
        .option("maxOffsetsPerTrigger", str(settings.max_offsets_per_trigger))
        .option("failOnDataLoss", str(settings.fail_on_data_loss).lower())
        # 3 Kafka partitions on 2 cores would leave one core idle for a third of the
        # batch; splitting the offset ranges into cores x 3 tasks keeps both busy.
        .option("minPartitions", str(settings.job_cores * 3))
        .option("kafka.client.id", "tormenta-job")
        .load()
    )


def _append(df, path: str, app_id: str, batch_id: int) -> None:
    (df.write.format("delta").mode("append")
     .option("txnAppId", app_id).option("txnVersion", batch_id).save(path))


class HighValueBatchWriter:
    """foreachBatch body of the high-value query (one call per micro-batch)."""

    query_name = "high_value"

    def __init__(self, settings: Settings):
        self.settings = settings
        self.paths = {n: str(settings.table_path(n)) for n in TABLES}
        self.batches_done = 0
        self.last_end_offsets: dict[int, int] = {}
        self.last_timings: dict[str, float] = {}  # seconds per stage of the last batch (bench, logs)

    def __call__(self, batch_df, batch_id: int) -> None:
        from delta.tables import DeltaTable
        from pyspark.sql import functions as F

        s = self.settings
        started = time.time()
        trigger_time = datetime.now(UTC)
        spark = batch_df.sparkSession
        timings = self.last_timings = {}
        mark = [time.perf_counter()]

        def lap(stage: str) -> None:
            now_ = time.perf_counter()
            timings[stage] = now_ - mark[0]
            mark[0] = now_

        # One pass over the batch: parse, validate and summarise (see batch_summary); only
        # the small summary is cached for the several outputs.
        summary = transforms.batch_summary(transforms.parse_messages(batch_df), s.threshold, s.agg_window).persist()
        try:
            now = F.lit(trigger_time.replace(tzinfo=None)).cast("timestamp")
            stats = summary.agg(
                F.sum("rows").alias("n"), F.sum("sales_count").alias("valid"),
                F.sum("high_value_count").alias("hv"),
                F.min("min_event_time").alias("min_et"), F.max("max_event_time").alias("max_et"),
            ).first()
            ends = {r["kafka_partition"]: r["end"] for r in
                    summary.groupBy("kafka_partition").agg((F.max("max_offset") + 1).alias("end")).collect()}
            n, valid_n = int(stats["n"] or 0), int(stats["valid"] or 0)
            bad = n - valid_n
            app = f"tormenta-{self.query_name}"
            lap("read+parse+summarise")

            def write_quarantine() -> int:
                if not bad:
                    return 0
                q = transforms.summary_rows(summary, "quarantine_rows").select(
                    *[c for c in transforms.QUARANTINE_FIELDS if c != "reason"], now.alias("arrival_time"), "reason",
                    F.lit(batch_id).cast("long").alias("batch_id"))
                _append(q, self.paths["quarantine"], f"{app}-quarantine", batch_id)
                return bad

            def write_high_value() -> int:
                if not stats["hv"]:
                    return 0
                hv = transforms.dedupe_within_batch(transforms.summary_rows(summary, "high_value_rows"), s.dedup_window)
                hv = hv.select(
                    *transforms.HIGH_VALUE_FIELDS, now.alias("processing_time"),
                    F.lit(batch_id).cast("long").alias("batch_id"), F.to_date("event_time").alias("event_date"),
                ).persist()
                try:
                    rows = hv.count()
                    self._merge_high_value(spark, DeltaTable, hv, stats["min_et"], stats["max_et"])
                finally:
                    hv.unpersist()
                return rows

            def write_sales() -> int:
                if not valid_n:
                    return 0
                agg = transforms.summary_sales(summary, s.agg_window).select(
                    "*", F.lit(batch_id).cast("long").alias("batch_id"), now.alias("processing_time"))
                agg = agg.coalesce(1).persist()
                try:
                    rows = agg.count()
                    _append(agg, self.paths["sales_agg"], f"{app}-sales_agg", batch_id)
                finally:
                    agg.unpersist()
                return rows

            # The three outputs are independent and each is idempotent on its own, so they
            # run as concurrent Spark jobs: one table's commit overlaps another's compute.
            with ThreadPoolExecutor(max_workers=3, thread_name_prefix="tormenta-write") as pool:
                futures = {name: pool.submit(fn) for name, fn in
                           (("quarantine", write_quarantine), ("high_value", write_high_value),
                            ("sales_agg", write_sales))}
                results = {name: f.result() for name, f in futures.items()}
            hv_rows, agg_rows = results["high_value"], results["sales_agg"]
            lap("writes (quarantine, high_value, sales_agg)")

            self.last_end_offsets.update(ends)
            behind = self._offsets_behind()
            max_et = stats["max_et"]
            lag = (trigger_time.replace(tzinfo=None) - max_et).total_seconds() if max_et else None
            metrics = spark.createDataFrame(
                [(self.query_name, batch_id, trigger_time.replace(tzinfo=None), time.time() - started,
                  float(s.trigger_interval), n, valid_n, hv_rows, bad, agg_rows, behind, lag, max_et,
                  json.dumps({str(k): v for k, v in sorted(self.last_end_offsets.items())}), None, None)],
                schema=ddl("batch_metrics"),
            )
            _append(metrics.coalesce(1), self.paths["batch_metrics"], f"{app}-metrics", batch_id)
            lap("metrics")
            log.info("batch %d: %d in, %d high-value, %d quarantined, %.1fs, %s behind (%s)",
                     batch_id, n, hv_rows, bad, time.time() - started, behind,
                     ", ".join(f"{k} {v:.2f}s" for k, v in timings.items()))
        finally:
            summary.unpersist()
        self.batches_done += 1
        if s.compact_every and self.batches_done % s.compact_every == 0:
            tables.upkeep(spark, s)

    def _merge_high_value(self, spark, DeltaTable, hv, min_et, max_et) -> None:
        # Literal bounds let Delta prune partitions and skip files by event_time stats;
        # the id + time-distance condition is the contract's dedupe rule.
        w = self.settings.dedup_window
        lo = (min_et - timedelta(seconds=w)) if min_et else None
        hi = (max_et + timedelta(seconds=w)) if max_et else None
        cond = (
            "t.transaction_id = s.transaction_id"
            f" AND abs(unix_micros(t.event_time) - unix_micros(s.event_time)) <= {int(w * 1_000_000)}"
        )
        if lo and hi:
            cond += (f" AND t.event_date BETWEEN DATE'{lo.date()}' AND DATE'{hi.date()}'"
                     f" AND t.event_time BETWEEN TIMESTAMP'{lo}' AND TIMESTAMP'{hi}'")
        target = DeltaTable.forPath(spark, self.paths["high_value"])
        target.alias("t").merge(hv.alias("s"), cond).whenNotMatchedInsertAll().execute()

    def _offsets_behind(self) -> int | None:
        try:
            ends = log_end_offsets(self.settings, timeout=5)
        except Exception as exc:  # noqa: BLE001 - a metric, never a reason to fail a batch
            log.warning("could not read log-end offsets: %s", exc)
            return None
        return sum(max(0, end - self.last_end_offsets.get(p, 0)) for p, end in ends.items())


class SummaryBatchWriter:
    """foreachBatch body of the hourly sales summary query."""

    query_name = "sales_hourly"

    def __init__(self, settings: Settings):
        self.settings = settings
        self.path = str(settings.table_path("sales_hourly"))

    def __call__(self, batch_df, batch_id: int) -> None:
        from pyspark.sql import functions as F

        s = self.settings
        valid = transforms.valid_rows(transforms.parse_messages(batch_df))
        agg = transforms.sales_aggregates(valid, s.threshold, 3600).select(
            "*", F.lit(batch_id).cast("long").alias("batch_id"), F.current_timestamp().alias("processing_time"))
        _append(agg.coalesce(1), self.path, "tormenta-sales_hourly", batch_id)


def check_source(settings: Settings) -> None:
    """Fail early, with the command that fixes it, when the broker or topic is missing."""
    from pipeline.errors import TopicError

    try:
        describe_topic(settings, timeout=10)
    except TopicError as exc:
        raise JobError(str(exc)) from None


def start_queries(spark, settings: Settings, *, once: bool = False, queries: tuple[str, ...] = ("high_value", "sales_hourly")):
    """Start the streaming queries; returns the StreamingQuery handles."""
    tables.create_tables(spark, settings)
    handles = []
    writers = {"high_value": (HighValueBatchWriter(settings), settings.trigger_interval),
               "sales_hourly": (SummaryBatchWriter(settings), settings.summary_interval)}
    for name in queries:
        writer, interval = writers[name]
        stream = kafka_stream(spark, settings).writeStream.queryName(name).foreachBatch(writer)
        stream = stream.option("checkpointLocation", str(settings.checkpoint_dir / name))
        stream = stream.trigger(availableNow=True) if once else stream.trigger(processingTime=spark_interval(interval))
        handles.append(stream.start())
        log.info("query %s started (%s)", name, "catch-up once" if once else f"every {spark_interval(interval)}")
    return handles


def run_job(settings: Settings, *, once: bool = False, stop_event: threading.Event | None = None,
            queries: tuple[str, ...] = ("high_value", "sales_hourly"), stop_spark: bool = False) -> None:
    """Run the job until stopped (or, with once=True, until the topic is caught up).

    stop_spark: stop the SparkSession at the end (the job's own process does; tests that
    share one session do not)."""
    from pipeline.job.spark import build_spark

    check_source(settings)
    spark = build_spark(settings)
    handles = start_queries(spark, settings, once=once, queries=queries)
    try:
        while True:
            for h in handles:
                if not h.isActive and h.exception() is not None:
                    raise JobError(f"query {h.name} failed: {str(h.exception()).splitlines()[0]}")
            if all(not h.isActive for h in handles):
                break
            if stop_event is not None and stop_event.is_set():
                break
            time.sleep(0.5)
    finally:
        for h in handles:
            try:
                h.stop()
            except Exception:  # noqa: BLE001 - best effort at shutdown
                pass
        failed = [h for h in handles if h.exception() is not None]
        if stop_spark:
            try:
                spark.stop()  # the JVM shuts down while Python still owns it (no py4j errors at exit)
            except Exception:  # noqa: BLE001 - best effort at shutdown
                pass
        if failed:
            h = failed[0]
            raise JobError(f"query {h.name} failed: {str(h.exception()).splitlines()[0]}")
