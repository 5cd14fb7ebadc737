"""Wire the streaming queries: Kafka -> decode -> dedupe -> Delta, one checkpoint per query.

- ``high_value`` (processing interval, default one minute): decode every message (JSON or
  Avro), drop redelivered transactions with streaming state (RocksDB), then per
  micro-batch append the quarantined messages, the high-value transactions, the
  per-window sales aggregates and one metrics row, as four concurrent Delta appends.
- ``sales_hourly`` (default one hour): rolls the sales_agg table up by the hour, reading
  it as a Delta stream, so it counts exactly what sales_agg counts.

Exactly once: the Kafka offsets of each micro-batch and the dedupe state are fixed in
the checkpoint before the batch's outputs are written; on a restart the same batch is
replayed against the same state. Every append is marked with its batch id, and a
restarted query skips a table that already holds the replayed batch
(``pipeline.job.commits``): a crash between two of the batch's commits writes nothing
twice.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

from pipeline.contract.fields import COUNTRY, EVENT_TIME, MERCHANT_CATEGORY
from pipeline.contract.spark import decode_messages
from pipeline.contract.tables import (
    BATCH_METRICS,
    HIGH_VALUE,
    HIGH_VALUE_QUERY,
    QUARANTINE,
    QUERIES,
    SALES_AGG,
    SALES_HOURLY,
    SALES_HOURLY_QUERY,
    TABLES,
    columns,
    ddl,
)
from pipeline.errors import JobError, SettingsError
from pipeline.job import commits, tables, transforms
from pipeline.kafka.security import check_read_access, spark_source_options
from pipeline.kafka.topic import describe_topic, log_end_offsets
from pipeline.settings import Settings, spark_interval

log = logging.getLogger(__name__)
CRASH_EXIT_CODE = 86  # `job --crash-after-commit`: the process died on purpose
ROWS_PER_FILE = 250_000
# A fetch at the end of a partition waits on the broker this long for more data, and the
# next task that borrows the same cached consumer waits for that fetch first: with
# Kafka's default (500 ms) one task in two of a small batch idled half a second.
FETCH_MAX_WAIT_MS = 20


def kafka_stream(spark, settings: Settings):
    return (
        spark.readStream.format("kafka")
        # Servers and the job's identity (TLS, SASL: user "job" of a secured broker).
        .options(**spark_source_options(settings, "job"))
        .option("groupIdPrefix", "tormenta-job")
        .option("subscribe", settings.topic)
        .option("startingOffsets", "earliest")
        .option("maxOffsetsPerTrigger", str(settings.max_offsets_per_trigger))
        .option("failOnDataLoss", str(settings.fail_on_data_loss).lower())
        # 3 Kafka partitions on 2 cores would leave one core idle for a third of the
        # batch; splitting the offset ranges into cores x 3 tasks keeps both busy.
        .option("minPartitions", str(settings.job_cores * 3))
        .option("kafka.client.id", "tormenta-job")
        .option("kafka.fetch.max.wait.ms", str(FETCH_MAX_WAIT_MS))
        .load()
    )


def high_value_input(spark, settings: Settings):
    """The high-value query's input: decoded, deduplicated rows (a streaming DataFrame)."""
    return transforms.dedupe(decode_messages(kafka_stream(spark, settings)), settings.dedup_window,
                            settings.threshold)


def _files(rows: int) -> int:
    """Files (write tasks) for `rows` rows of one batch: one per ROWS_PER_FILE started, so
    a small batch commits one file rather than one per summary partition."""
    return 1 + rows // ROWS_PER_FILE


@dataclass(frozen=True)
class BatchStats:
    """What one micro-batch held, from its cached summary."""

    rows: int
    valid: int
    high_value: int
    avro: int
    windows: int
    min_event_time: datetime | None
    max_event_time: datetime | None

    @property
    def quarantined(self) -> int:
        return self.rows - self.valid

    @classmethod
    def of(cls, summary) -> BatchStats:
        from pyspark.sql import functions as F

        s = summary.agg(
            F.sum("rows").alias("n"), F.sum("sales_count").alias("valid"), F.sum("high_value_count").alias("hv"),
            F.sum("avro_rows").alias("avro"),
            F.count_distinct("window_start", MERCHANT_CATEGORY, COUNTRY).alias("windows"),
            F.min("min_event_time").alias("min_et"), F.max("max_event_time").alias("max_et"),
        ).first()
        return cls(int(s["n"] or 0), int(s["valid"] or 0), int(s["hv"] or 0), int(s["avro"] or 0),
                   int(s["windows"] or 0), s["min_et"], s["max_et"])


class HighValueBatchWriter:
    """foreachBatch body of the high-value query (one call per micro-batch)."""

    query_name = HIGH_VALUE_QUERY

    def __init__(self, settings: Settings, *, crash_after: tuple[str, int] | None = None,
                 replayable_upto: int | None = None):
        self.settings = settings
        # Fault injection: die right after this table's commit in the K-th batch with data.
        self.crash_after = crash_after
        self.paths = {n: settings.table_uri(n) for n in TABLES}
        self.app = f"tormenta-{self.query_name}"
        self.appender = commits.OnceAppender(self.app, replayable_upto)
        self.batches_done = 0
        self.last_end_offsets: dict[int, int] = {}
        self.last_timings: dict[str, float] = {}  # seconds per stage of the last batch (bench, logs)
        self.upkeep = tables.UpkeepPlan(TABLES, settings.compact_every)  # at most one table's step per batch
        self.metrics = None  # pipeline.metrics.job.JobMetrics of the job process, when it serves metrics

    def __call__(self, batch_df, batch_id: int) -> None:
        s, started = self.settings, time.perf_counter()
        trigger_time = datetime.now(UTC).replace(tzinfo=None)
        # One pass over the batch: decode, dedupe, summarise; only the small summary is
        # cached for the several outputs.
        summary = transforms.batch_summary(batch_df, s.threshold, s.agg_window).persist()
        try:
            stats = BatchStats.of(summary)
            if not stats.rows:
                return  # a no-data batch: Spark only moved the dedupe watermark on
            offsets = self._offsets(batch_df.sparkSession, batch_id)
            self.last_timings = {"read+decode+dedupe+summarise": time.perf_counter() - started}
            written = self._write_all(summary, stats, offsets, batch_id, trigger_time, started)
            self.last_timings["writes (appends)"] = time.perf_counter() - started - sum(self.last_timings.values())
        finally:
            summary.unpersist()
        log.info("batch %d: %d in, %d high-value, %d quarantined, %d duplicates, %.1fs, %s behind (%s)",
                 batch_id, stats.rows, stats.high_value, stats.quarantined, offsets.duplicates(stats.rows),
                 time.perf_counter() - started, offsets.behind,
                 ", ".join(f"{k} {v:.2f}s" for k, v in self.last_timings.items()))
        self.batches_done += 1
        if self.metrics is not None:
            self._count(stats, offsets, written, trigger_time)
        if step := self.upkeep.after_batch(batch_id):
            tables.upkeep_step(batch_df.sparkSession, s, *step)

    def _count(self, stats: BatchStats, offsets: BatchOffsets, written: dict[str, bool], trigger_time) -> None:
        """The batch's figures to the job's metrics: rows of each table it appended (a replay it skipped adds none)."""
        rows = {QUARANTINE: stats.quarantined, HIGH_VALUE: stats.high_value, SALES_AGG: stats.windows, BATCH_METRICS: 1}
        lag = (trigger_time - stats.max_event_time).total_seconds() if stats.max_event_time else None
        self.metrics.batch_written(self.query_name, {t: n for t, n in rows.items() if written.get(t)},
                                   quarantined=stats.quarantined if written.get(QUARANTINE) else 0,
                                   duplicates=offsets.duplicates(stats.rows), event_lag_s=lag)

    def _offsets(self, spark, batch_id: int) -> BatchOffsets:
        offsets = BatchOffsets.read(spark, self.settings.checkpoint_uri(self.query_name), batch_id,
                                    self.settings.topic)
        self.last_end_offsets = dict(offsets.end)
        return offsets

    def _write_all(self, summary, stats: BatchStats, offsets: BatchOffsets, batch_id: int, trigger_time,
                   started: float) -> dict[str, bool]:
        """The four outputs are independent and each is idempotent on its own, so they run
        as concurrent Spark jobs: one table's commit overlaps another's compute."""
        from pyspark.sql import functions as F

        now = F.lit(trigger_time).cast("timestamp")
        batch = F.lit(batch_id).cast("long")
        jobs = {BATCH_METRICS: lambda: self._write_metrics(summary.sparkSession, stats, offsets, batch_id, trigger_time,
                                                       started)}
        if stats.quarantined:
            jobs[QUARANTINE] = lambda: self._write(
                QUARANTINE, transforms.summary_rows(summary, "quarantine_rows").select(
                    "*", now.alias("arrival_time"), batch.alias("batch_id")).coalesce(_files(stats.quarantined)),
                batch_id)
        if stats.high_value:
            jobs[HIGH_VALUE] = lambda: self._write(
                HIGH_VALUE, transforms.summary_rows(summary, "high_value_rows").select(
                    "*", now.alias("processing_time"), batch.alias("batch_id"),
                    F.to_date(EVENT_TIME).alias("event_date")).coalesce(_files(stats.high_value)), batch_id)
        if stats.valid:
            jobs[SALES_AGG] = lambda: self._write(
                SALES_AGG, transforms.summary_sales(summary, self.settings.agg_window).select(
                    "*", batch.alias("batch_id"), now.alias("processing_time")).coalesce(1), batch_id)
        if self.crash_after and self.crash_after[1] == self.batches_done + 1:
            self._write_then_crash(jobs)
            return {}
        with ThreadPoolExecutor(max_workers=len(jobs), thread_name_prefix="tormenta-write") as pool:
            futures = {name: pool.submit(fn) for name, fn in jobs.items()}
            return {name: bool(future.result()) for name, future in futures.items()}

    def _write_then_crash(self, jobs: dict) -> None:
        """Fault injection (`job --crash-after-commit TABLE`): commit the outputs one by one
        and kill the process the moment the named table has committed, as a crash
        between two of the batch's commits would."""
        import os

        for name in (QUARANTINE, HIGH_VALUE, SALES_AGG, BATCH_METRICS):
            if name in jobs:
                jobs[name]()
                if name == self.crash_after[0]:
                    log.warning("fault injection: exiting right after the %s commit", name)
                    os._exit(CRASH_EXIT_CODE)

    def _write(self, table: str, df, batch_id: int) -> bool:
        return self.appender.append(df.select(*columns(table)), self.paths[table], table, batch_id)

    def _write_metrics(self, spark, stats: BatchStats, offsets: BatchOffsets, batch_id: int, trigger_time,
                       started: float) -> bool:
        # How far the topic is ahead: a round trip to the brokers, so it runs here, beside
        # the other appends, rather than before them.
        offsets.behind = self._offsets_behind()
        lag = (trigger_time - stats.max_event_time).total_seconds() if stats.max_event_time else None
        row = (self.query_name, batch_id, trigger_time, time.perf_counter() - started,
               float(self.settings.trigger_interval), offsets.messages if offsets.end else stats.rows, stats.valid, stats.high_value, stats.quarantined,
               stats.windows, offsets.behind, lag, stats.max_event_time,
               json.dumps({str(k): v for k, v in sorted(offsets.end.items())}), offsets.duplicates(stats.rows),
               stats.avro)
        metrics = spark.createDataFrame([row], schema=ddl(BATCH_METRICS))
        return self.appender.append(metrics.coalesce(1), self.paths[BATCH_METRICS], BATCH_METRICS, batch_id)

    def _offsets_behind(self) -> int | None:
        try:
            ends = log_end_offsets(self.settings, timeout=5, role="job")
        except Exception as exc:  # noqa: BLE001 - a metric, never a reason to fail a batch
            log.warning("could not read log-end offsets: %s", exc)
            return None
        return sum(max(0, end - self.last_end_offsets.get(p, 0)) for p, end in ends.items())


@dataclass
class BatchOffsets:
    """The Kafka offset range of one micro-batch, as the checkpoint's offset log fixed it."""

    start: dict[int, int]
    end: dict[int, int]
    behind: int | None = None

    @property
    def messages(self) -> int:
        return sum(max(0, e - self.start.get(p, 0)) for p, e in self.end.items())

    def duplicates(self, rows_out: int) -> int | None:
        """Messages of the batch that the dedupe dropped (None when the range is unknown)."""
        return max(0, self.messages - rows_out) if self.end else None

    @classmethod
    def read(cls, spark, checkpoint: str, batch_id: int, topic: str) -> BatchOffsets:
        end = _topic_offsets(_read_text(spark, f"{checkpoint}/offsets/{batch_id}"), topic)
        before = (_read_text(spark, f"{checkpoint}/offsets/{batch_id - 1}") if batch_id > 0
                  else _read_text(spark, f"{checkpoint}/sources/0/0"))
        return cls(_topic_offsets(before, topic), end)


def _topic_offsets(text: str | None, topic: str) -> dict[int, int]:
    """{partition: offset} of one topic from an offset-log file (its last JSON line)."""
    for line in reversed((text or "").splitlines()):
        line = line.strip("\x00 ")
        if line.startswith("{") and topic in line:
            try:
                return {int(p): int(o) for p, o in json.loads(line).get(topic, {}).items()}
            except (ValueError, AttributeError):
                return {}
    return {}


def _hadoop(spark, path: str):
    """(FileSystem, Path) of `path` through Hadoop: local disk or object storage alike."""
    jvm = spark.sparkContext._jvm
    p = jvm.org.apache.hadoop.fs.Path(path)
    return p.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), p


def _read_text(spark, path: str) -> str | None:
    """A small file of the checkpoint."""
    fs, p = _hadoop(spark, path)
    if not fs.exists(p):
        return None
    stream = fs.open(p)
    try:
        return bytes(spark.sparkContext._jvm.org.apache.commons.io.IOUtils.toByteArray(stream)).decode(
            "utf-8", "replace")
    finally:
        stream.close()


def last_planned_batch(spark, checkpoint: str) -> int:
    """The newest batch id in a streaming checkpoint's offset log (-1 when there is none):
    the only batches a restarted query may replay (`commits.OnceAppender`)."""
    fs, folder = _hadoop(spark, f"{checkpoint}/offsets")
    if not fs.exists(folder):
        return -1
    ids = [int(n) for n in (st.getPath().getName() for st in fs.listStatus(folder)) if n.isdigit()]
    return max(ids, default=-1)


class HourlyRollupWriter:
    """foreachBatch body of the hourly sales query (its input is the sales_agg Delta table)."""

    query_name = SALES_HOURLY_QUERY

    def __init__(self, settings: Settings, replayable_upto: int | None = None):
        self.path = settings.table_uri(SALES_HOURLY)
        self.appender = commits.OnceAppender("tormenta", replayable_upto)
        self.metrics = None  # pipeline.metrics.job.JobMetrics of the job process, when it serves metrics

    def __call__(self, batch_df, batch_id: int) -> None:
        from pyspark.sql import functions as F

        agg = transforms.hourly_rollup(batch_df).select(
            "*", F.lit(batch_id).cast("long").alias("batch_id"), F.current_timestamp().alias("processing_time"))
        if self.metrics is None:
            self.appender.append(agg.coalesce(1), self.path, SALES_HOURLY, batch_id)
            return
        # With metrics: the rollup's rows are counted once, then written from the cache (one hourly batch).
        agg = agg.coalesce(1).persist()
        try:
            rows = agg.count()
            if self.appender.append(agg, self.path, SALES_HOURLY, batch_id):
                self.metrics.batch_written(self.query_name, {SALES_HOURLY: rows})
        finally:
            agg.unpersist()


def check_source(settings: Settings) -> None:
    """Fail early, with the command that fixes it, when the broker or topic is missing."""
    from pipeline.errors import TopicError

    if 3600 % settings.agg_window:
        raise SettingsError(f"TORMENTA_AGG_WINDOW={settings.agg_window:g}s must divide one hour "
                            "(e.g. 10s, 1m, 5m, 15m, 1h), so the hourly rollup is exact")
    try:
        describe_topic(settings, timeout=10, role="job")
        # A refused password, certificate or ACL stops the job here in one line; the Java
        # client would retry it for ever inside Spark.
        check_read_access(settings, "job", settings.topic, timeout=15)
    except TopicError as exc:
        raise JobError(str(exc)) from None


def start_query(spark, settings: Settings, name: str, *, once: bool = False,
                crash_after: tuple[str, int] | None = None, metrics=None):
    """Start one streaming query by name; returns its StreamingQuery handle."""
    # Batches the checkpoint planned before this start are the only ones a table may hold.
    planned = last_planned_batch(spark, settings.checkpoint_uri(name))
    if name == HIGH_VALUE_QUERY:
        source, writer, interval = high_value_input(spark, settings), \
            HighValueBatchWriter(settings, crash_after=crash_after, replayable_upto=planned), settings.trigger_interval
    else:
        source = spark.readStream.format("delta").load(settings.table_uri(SALES_AGG))
        writer, interval = HourlyRollupWriter(settings, planned), settings.summary_interval
    if metrics is not None:  # pipeline.metrics.job.JobMetrics
        writer.metrics = metrics
        metrics.query_started(name, interval)
    stream = source.writeStream.queryName(name).foreachBatch(writer)
    stream = stream.option("checkpointLocation", settings.checkpoint_uri(name))
    stream = stream.trigger(availableNow=True) if once else stream.trigger(processingTime=spark_interval(interval))
    log.info("query %s started (%s)", name, "catch-up once" if once else f"every {spark_interval(interval)}")
    return stream.start()


def run_job(settings: Settings, *, once: bool = False, stop_event: threading.Event | None = None,
            queries: tuple[str, ...] = QUERIES, stop_spark: bool = False,
            crash_after: tuple[str, int] | None = None, metrics=None) -> None:
    """Run the job until stopped (or, with once=True, until the topic is caught up).

    With once=True the queries run one after the other, so the hourly rollup sees every
    row the high-value query wrote. stop_spark: stop the SparkSession at the end (the
    job's own process does; tests that share one session do not). metrics: a
    `pipeline.metrics.job.JobMetrics` fed with each query's progress and batch counts."""
    from pipeline.job.spark import build_spark

    check_source(settings)
    # a one-shot catch-up is no service: no heap reserved and touched at start
    spark = build_spark(settings, service=not once, part="job")
    tables.create_tables(spark, settings)
    handles = []
    try:
        if once:
            for name in queries:
                handles.append(start_query(spark, settings, name, once=True, crash_after=crash_after, metrics=metrics))
                _watch(handles[-1:], stop_event, metrics)
        else:
            handles = [start_query(spark, settings, name, crash_after=crash_after, metrics=metrics) for name in queries]
            _watch(handles, stop_event, metrics)
    finally:
        _shutdown(spark, handles, stop_spark)


def _watch(handles, stop_event: threading.Event | None, metrics=None) -> None:
    while True:
        for h in handles:
            if not h.isActive and h.exception() is not None:
                raise JobError(f"query {h.name} failed: {str(h.exception()).splitlines()[0]}")
        ended = all(not h.isActive for h in handles)
        for h in handles:
            if metrics is not None:
                metrics.poll(h)  # the query's newest progress (one JSON); after its end too
        if ended:
            return
        if stop_event is not None and stop_event.is_set():
            return
        # Waits on a running query itself: returns as soon as it ends, or after 0.5 s to
        # look at the stop flag again.
        # A query may end between the look above and this one: then the loop looks again.
        running = next((h for h in handles if h.isActive), None)
        if running is not None:
            running.awaitTermination(0.5)


def _between_batches(handles, timeout: float = 120.0) -> None:
    """Wait (bounded) until no query is inside a micro-batch, so a stop never interrupts
    a batch half-written: it would be replayed anyway, but the interrupted Spark jobs
    print errors on the way down."""
    deadline = time.monotonic() + timeout
    for h in handles:
        while time.monotonic() < deadline:
            try:
                if not h.isActive or not h.status.get("isTriggerActive"):
                    break
            except Exception:  # noqa: BLE001 - the query may be going away already
                break
            time.sleep(0.2)


def _shutdown(spark, handles, stop_spark: bool) -> None:
    _between_batches(handles)
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
