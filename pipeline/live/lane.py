"""The live lane: Kafka transactions -> high-value sales on the live topic, by Spark's Real-time Mode.

    python -m pipeline live            run until Ctrl-C / SIGTERM

A second Spark application next to the micro-batch job. Its one query reads the
transactions topic, decodes each message with the contract's own Spark expressions
(`pipeline.contract.spark.decode_messages`: JSON or Avro in Confluent framing, chosen per
message by its first byte), keeps the valid ones above the threshold and writes each as
JSON to ``TORMENTA_LIVE_TOPIC`` (key = transaction_id; fields: `pipeline.contract.live`).
Malformed or invalid messages are skipped here: the micro-batch lane quarantines them.

Real-time Mode (``trigger(realTime=...)``, ``outputMode("update")``) runs one
long-running task per Kafka partition that passes records on as they arrive; the trigger
duration is how often the offsets are checkpointed, not a latency. It takes stateless
plans of Spark expressions only (no Python UDF, no dedupe), and it needs a task slot for
every partition at once: locally the lane runs ``local[P]`` with P = the transactions
topic's partitions (threads, not cores); a smaller ``local[N]`` or a cluster with fewer
slots is refused in one line, since Spark would silently read nothing from the partitions
left without a slot.

Delivery is at least once: the Kafka sink may write a record again after a crash (the
batch since the last checkpoint is replayed); readers drop duplicates by transaction_id.
The checkpoint lives in ``<data_dir>/checkpoints/live`` (always on the local disk: the
lane writes no table). A brand-new checkpoint starts at the records of the
`START_LOOKBACK_S` seconds before the process started, not at the beginning of the topic:
the lane is about now.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from decimal import Decimal
from pathlib import Path

from pipeline.contract.live import LIVE_FIELDS, LIVE_KEY, LIVE_QUERY, LIVE_TIMESTAMP_FORMAT, SOURCE_TIMESTAMP
from pipeline.contract.spark import decode_messages, high_value_condition
from pipeline.errors import JobError, SettingsError, TopicError
from pipeline.kafka.security import check_read_access, spark_source_options
from pipeline.kafka.topic import describe_topic
from pipeline.metrics.live import LaneMetrics
from pipeline.settings import PREFIX, Settings

log = logging.getLogger(__name__)
ROLE = "live"                 # the Kafka identity (user tormenta-live on a secured broker)
BATCH_DURATION_S = 300        # RTM checkpoint interval (Spark's default; its minimum is 5 s). Each batch
                              # boundary pauses the stream for the commit and the next batch's start
                              # (seconds on a busy box): at 15 s they made p95/p99 (bench_live).
HEARTBEAT_S = 5.0             # how often the lane touches run/live.running while all its tasks run
START_LOOKBACK_S = 60         # a new checkpoint starts this far back in the topic
# Stateless, a handful of rows in flight: the heap's live set is ~70 MiB of old generation
# (jstat in a 10k soak). The heap is reserved at start (a service JVM), so its size is RSS:
# at 1g the lane's RSS was ~1.6 GiB, over its 1.5 GiB budget.
DRIVER_MEMORY = "512m"
GROUP_PREFIX = "tormenta-live"
_LOCAL_N = re.compile(r"local\[(\d+)\]")


# ---- transform (pure: DataFrame in, DataFrame out) ----------------------------------------
def live_records(decoded, threshold: Decimal):
    """Decoded Kafka rows -> (key, value) of the live topic: valid rows above the threshold only.

    `value` is a JSON object of `LIVE_FIELDS`; `source_timestamp` is the input record's Kafka
    timestamp in epoch ms. No `timestamp` column: the sink then stamps each record with the
    moment it is written, which is what the lane's latency is measured against."""
    from pyspark.sql import functions as F

    kept = decoded.where(F.col("reason").isNull() & high_value_condition(threshold))
    fields = [F.unix_millis("ingest_time").alias(SOURCE_TIMESTAMP) if f == SOURCE_TIMESTAMP else F.col(f)
              for f in LIVE_FIELDS]
    return kept.select(F.col(LIVE_KEY).alias("key"),
                       F.to_json(F.struct(*fields), {"timestampFormat": LIVE_TIMESTAMP_FORMAT, "ignoreNullFields": "false"}).alias("value"))


# ---- checks before Spark starts -----------------------------------------------------------
def local_master(settings: Settings, partitions: int) -> str | None:
    """The local master the lane runs with, or None on a cluster master.

    ``local`` becomes ``local[P]``; ``local[N]`` with N < P (or ``local[*]`` on a machine with
    fewer cores) is refused: each partition's task must hold a slot for the whole batch."""
    master = settings.spark_master
    if master == "local":
        return f"local[{partitions}]"
    if not master.startswith("local"):
        return None
    match = _LOCAL_N.fullmatch(master)
    import os

    slots = int(match.group(1)) if match else (os.cpu_count() or 1)
    if slots < partitions:
        raise SettingsError(too_few_slots(master, slots, partitions, settings.topic))
    return master


def too_few_slots(master: str, slots: int, partitions: int, topic: str) -> str:
    return (f"the live lane needs a task slot per partition of {topic} ({partitions}) but {PREFIX}SPARK_MASTER="
            f"{master} gives {slots}; use local (= local[{partitions}]) or a cluster with {partitions}+ cores")


def check_lane(settings: Settings) -> int:
    """Both topics there and the lane's user allowed on them; returns the input's partition count.

    TopicError/KafkaAccessError in one line: the Java client inside Spark would retry a
    refused password or ACL for ever."""
    info = describe_topic(settings, settings.topic, timeout=10, role=ROLE)
    try:
        describe_topic(settings, settings.live_topic, timeout=10, role=ROLE)
    except TopicError:
        raise TopicError(f"live topic {settings.live_topic} does not exist; create it with "
                         "`python -m pipeline topic create`") from None
    check_read_access(settings, ROLE, settings.topic, timeout=15, group=f"{GROUP_PREFIX}-access-check")
    return info.partitions


def checkpoint_path(settings: Settings) -> Path:
    return settings.checkpoint_dir / LIVE_QUERY


# ---- the query ----------------------------------------------------------------------------
def kafka_source(spark, settings: Settings, now_ms: int | None = None):
    # RTM refuses maxOffsetsPerTrigger and minPartitions: one task reads one partition.
    start = (now_ms if now_ms is not None else int(time.time() * 1000)) - START_LOOKBACK_S * 1000
    return (spark.readStream.format("kafka")
            .options(**spark_source_options(settings, ROLE))
            .option("subscribe", settings.topic)
            .option("groupIdPrefix", GROUP_PREFIX)
            .option("startingTimestamp", str(start))
            # A partition with nothing newer than that starts at its end instead of failing.
            .option("startingOffsetsByTimestampStrategy", "latest")
            .option("failOnDataLoss", "false")  # the lane is provisional: expired records are the record's loss, not ours
            .option("kafka.client.id", "tormenta-live")
            .load())


def start_lane(spark, settings: Settings, started_ms: int | None = None):
    """Start the RTM query; returns its StreamingQuery (a new checkpoint starts at `started_ms` - lookback)."""
    out = live_records(decode_messages(kafka_source(spark, settings, started_ms)), settings.threshold)
    query = (out.writeStream.queryName(LIVE_QUERY).format("kafka")
             .options(**spark_source_options(settings, ROLE))
             .option("topic", settings.live_topic)
             .option("kafka.client.id", "tormenta-live-sink")
             .option("kafka.linger.ms", "0")
             .option("checkpointLocation", str(checkpoint_path(settings)))
             .outputMode("update")
             .trigger(realTime=f"{BATCH_DURATION_S} seconds")  # type: ignore[call-overload]  # no typing overload in 4.2
             .start())
    log.info("live lane query started: %s -> %s (Real-time Mode, checkpoint every %d s)",
             settings.topic, settings.live_topic, BATCH_DURATION_S)
    return query


def session_slots(spark) -> int:
    """Task slots the running session has: N of local[N], else what the cluster gives this
    application (spark.cores.max, else the cores registered now). Under spark-submit the
    command line's master is the one that counts."""
    import os

    sc = spark.sparkContext
    master = sc.master
    if master.startswith("local"):
        match = _LOCAL_N.fullmatch(master)
        return int(match.group(1)) if match else (os.cpu_count() or 1) if master == "local[*]" else 1
    conf = sc.getConf()
    cores_max = conf.get("spark.cores.max", None)
    per_task = int(conf.get("spark.task.cpus", "1") or 1)
    slots = int(cores_max) if cores_max else sc.defaultParallelism
    return slots // max(1, per_task)


def run_lane(settings: Settings, stop: threading.Event | None = None) -> None:
    """Check, start Spark, run the query until `stop` is set or the query fails (JobError)."""
    from pipeline.job.spark import build_spark

    # The lookback counts from the process's start, not the query's: Spark's start takes
    # a minute or more on a busy box, and records written meanwhile must not be skipped.
    started_ms = int(time.time() * 1000)
    partitions = check_lane(settings)
    master = local_master(settings, partitions)
    lane_settings = settings.replace(driver_memory=DRIVER_MEMORY, **({} if master is None else {"spark_master": master}))
    checkpoint_path(settings).parent.mkdir(parents=True, exist_ok=True)
    metrics = LaneMetrics.start(settings)  # latency and records out, read off the live topic (None: metrics off)
    spark = build_spark(lane_settings, "tormenta-live", service=True, part="live", extra_conf={
        # One long task per partition, nothing shuffled: no speculative copies, no AQE.
        "spark.speculation": "false",
        "spark.sql.adaptive.enabled": "false",
    })
    query = None
    try:
        if (slots := session_slots(spark)) < partitions:
            raise SettingsError(too_few_slots(spark.sparkContext.master, slots, partitions, settings.topic))
        query = start_lane(spark, settings, started_ms)
        announced, beat = False, 0.0
        while stop is None or not stop.is_set():
            if not query.isActive:
                exc = query.exception()
                raise JobError(f"live lane query failed: {_first_line(exc)}" if exc else "live lane query stopped")
            if time.monotonic() - beat >= HEARTBEAT_S and all_tasks_running(spark, partitions):
                beat = time.monotonic()
                heartbeat(settings)
                if not announced:
                    announced = True
                    log.info("live lane running: high-value sales of %s go to %s", settings.topic, settings.live_topic)
            query.awaitTermination(0.5)
    finally:
        if query is not None:
            try:
                query.stop()
            except Exception:  # noqa: BLE001 - best effort at shutdown
                pass
        try:
            spark.stop()
        except Exception:  # noqa: BLE001 - best effort at shutdown
            pass
        if metrics is not None:
            metrics.close()


def all_tasks_running(spark, partitions: int) -> bool:
    """A stage of this application runs at least one task per Kafka partition right now: Real-time
    Mode's long-running tasks are all up, so the lane passes records on as they come."""
    tracker = spark.sparkContext.statusTracker()
    for stage in tracker.getActiveStageIds():
        info = tracker.getStageInfo(stage)
        if info is not None and info.numActiveTasks >= partitions:
            return True
    return False


def running_path(settings: Settings) -> Path:
    """The lane's heartbeat: touched every `HEARTBEAT_S` while every one of its tasks runs."""
    return settings.run_dir / "live.running"


def heartbeat(settings: Settings) -> None:
    """Touch the lane's heartbeat file (`pipeline.live.health.last_running` reads it)."""
    path = running_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{time.time():.3f}\n")


def _first_line(exc) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:400] if text else type(exc).__name__
