"""Pure DataFrame transforms of the streaming job (no I/O: each takes and returns a DataFrame).

Extract -> transform -> load: `pipeline.contract.spark.decode_messages` turns Kafka rows
into records (or quarantine reasons), `dedupe` drops redelivered transactions with
Spark's streaming state, `batch_summary` reduces a micro-batch to one small DataFrame in
one pass, and `summary_sales` / `summary_rows` / `hourly_rollup` shape what is appended
to each Delta table.
"""

from __future__ import annotations

from decimal import Decimal

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from pipeline.contract.fields import (
    AMOUNT,
    COUNTRY,
    EVENT_TIME,
    INGEST_TIME,
    KAFKA_COLUMNS,
    KAFKA_OFFSET,
    KAFKA_PARTITION,
    MERCHANT_CATEGORY,
    SUM_SQL_TYPE,
    TRANSACTION_ID,
)
from pipeline.contract.spark import KAFKA_OUT, high_value_condition
from pipeline.contract.tables import HIGH_VALUE_ROW, QUARANTINE, RECORD_COLUMNS, SALES_MEASURES, columns
from pipeline.contract.wire import AVRO

QUARANTINE_ROW = tuple(c for c in columns(QUARANTINE) if c in (*KAFKA_OUT, "reason"))
DECODE_BOUNDARY = "decoded"  # the observed metric that ends the decode's generated stage (`dedupe`)
DEDUPE_SPAN = 6  # dedupe windows per event-time span of the dedupe key (one hour at 10 minutes)


def dedupe(decoded: DataFrame, window_seconds: float, threshold: Decimal) -> DataFrame:
    """Drop redelivered transactions with Spark's streaming state (RocksDB).

    The key is the transaction_id plus the event-time span of `DEDUPE_SPAN` windows it
    falls in: a redelivery (same id, same event time) is always dropped, in the same
    micro-batch or a later one, and the same id used again hours apart stays a separate
    transaction. (Spark compares keys, not time distances: two messages of one id whose
    event times are within the window but fall in adjacent spans both count; two that
    are more than the window but less than a span apart count once. See ARCHITECTURE.)
    The state remembers a key for the window of arrival time, and not twice that: Spark
    keeps a key until the watermark (the newest clock seen, minus the watermark delay)
    passes the key's clock plus that delay, i.e. for two delays of the stream's clock, so
    the delay is half the window (`watermark_delay_seconds`). The clock is the arrival
    time, never earlier than (batch time - delay), so no row can fall behind the
    watermark: a late event is never dropped as late.

    Quarantined rows keep their own keys and are never merged. To keep the shuffle small,
    a valid row below the threshold carries only what the sales aggregates need; only
    high-value rows carry the whole record and only quarantined rows the raw bytes.
    """
    delay = f"{int(watermark_delay_seconds(window_seconds) * 1000)} milliseconds"
    slim = _slim(decoded, window_seconds, threshold)
    keys = ["dedupe_key", "dedupe_span"]
    if decoded.isStreaming:
        # The clock holds the batch time, which Spark writes into the generated Java code
        # as a number. Beside the decode it made every micro-batch generate, compile and
        # JIT-compile the decode's stage (one of the largest methods of the job) afresh and
        # run it interpreted until the JIT caught up. `observe` (a narrow operator outside
        # whole-stage code generation, one task per input partition, no data moved) ends
        # that stage before the clock: the decode's code is then the same from batch to
        # batch and Spark's code cache reuses it; only the small stage after it changes.
        clock = F.greatest(F.col("arrival"), F.current_timestamp() - F.expr(f"INTERVAL {delay}"))
        kept = (slim.observe(DECODE_BOUNDARY, F.count(F.lit(1)).alias("rows"))
                .select("*", clock.alias("dedupe_clock"))
                .withWatermark("dedupe_clock", delay).dropDuplicatesWithinWatermark(keys))
    else:  # a batch DataFrame (tests, backfills): the same keys, no state to keep
        kept = slim.dropDuplicates(keys)
    return kept.drop(*keys, "dedupe_clock", "arrival")


def watermark_delay_seconds(window_seconds: float) -> float:
    """The dedupe's watermark delay for a dedupe window: half of it.

    `dropDuplicatesWithinWatermark` stores a key with an expiry of (its clock + delay) and
    evicts it once the watermark (newest clock - delay) reaches that expiry: a key lives
    for two delays of the stream's clock. A delay of the whole window kept every key for
    two windows (twice the state, the eviction scan and the changelogs: issue 19)."""
    return window_seconds / 2


def _slim(decoded: DataFrame, window_seconds: float, threshold: Decimal) -> DataFrame:
    """What crosses the dedupe shuffle: for a valid sale below the threshold only the key
    (its id), event time, amount, category, country and format; the whole record only for
    high-value rows, the raw message and coordinates only for quarantined ones."""
    valid = F.col("reason").isNull()
    high = valid & high_value_condition(threshold)
    kept_for_sales = {AMOUNT, EVENT_TIME, MERCHANT_CATEGORY, COUNTRY}
    key = F.when(valid, F.col(TRANSACTION_ID)).otherwise(
        F.concat(F.lit("~"), F.col(KAFKA_PARTITION).cast("string"), F.lit(":"), F.col(KAFKA_OFFSET).cast("string")))
    return decoded.select(
        *(c if c in kept_for_sales else F.when(high, F.col(c)).alias(c) for c in RECORD_COLUMNS),
        "reason",
        *(F.when(high | ~valid, F.col(c)).alias(c) if c in KAFKA_COLUMNS else F.when(~valid, F.col(c)).alias(c)
          for c in KAFKA_OUT),
        (F.col("wire_format") == AVRO).alias("is_avro"),
        key.alias("dedupe_key"),
        F.floor(F.unix_micros(EVENT_TIME) / int(window_seconds * DEDUPE_SPAN * 1_000_000)).alias("dedupe_span"),
        F.col(INGEST_TIME).alias("arrival"),
    )


def batch_summary(rows: DataFrame, threshold: Decimal, window_seconds: float) -> DataFrame:
    """Everything one micro-batch produces, in ONE pass over its (deduplicated) rows.

    Grouped by (window, merchant category, country): the sales counts and
    sums, the batch statistics and, as lists, the few rows that leave the aggregate: the
    high-value transactions and the invalid messages. Caching this small result instead
    of the whole batch is what keeps a 3-million-row batch from being computed twice.
    """
    us = int(window_seconds * 1_000_000)
    valid = F.col("reason").isNull()
    hv = valid & high_value_condition(threshold)
    return (
        rows.withColumn("window_start", F.expr(f"timestamp_micros(floor(unix_micros({EVENT_TIME}) / {us}) * {us})"))
        .groupBy(
            "window_start",
            F.coalesce(MERCHANT_CATEGORY, F.lit("unknown")).alias(MERCHANT_CATEGORY),
            F.coalesce(COUNTRY, F.lit("??")).alias(COUNTRY),
        )
        .agg(
            F.count(F.lit(1)).alias("rows"),
            F.count(F.when(valid, 1)).alias("sales_count"),
            F.coalesce(F.sum(F.when(valid, F.col(AMOUNT))), F.lit(0)).cast(SUM_SQL_TYPE).alias("sales_amount"),
            F.count(F.when(hv, 1)).alias("high_value_count"),
            F.coalesce(F.sum(F.when(hv, F.col(AMOUNT))), F.lit(0)).cast(SUM_SQL_TYPE).alias("high_value_amount"),
            F.count(F.when(F.col("is_avro"), 1)).alias("avro_rows"),
            F.min(F.when(valid, F.col(EVENT_TIME))).alias("min_event_time"),
            F.max(F.when(valid, F.col(EVENT_TIME))).alias("max_event_time"),
            F.collect_list(F.when(hv, F.struct(*HIGH_VALUE_ROW))).alias("high_value_rows"),
            F.collect_list(F.when(~valid, F.struct(*QUARANTINE_ROW))).alias("quarantine_rows"),
        )
    )


def summary_sales(summary: DataFrame, window_seconds: float) -> DataFrame:
    """Per-window sales aggregates (partial for this batch) from a batch summary."""
    return _sales_shape(
        summary.where(F.col("window_start").isNotNull())
        .groupBy("window_start", MERCHANT_CATEGORY, COUNTRY)
        .agg(*(F.sum(c).alias(c) for c in SALES_MEASURES)),
        window_seconds,
    )


def summary_rows(summary: DataFrame, column: str) -> DataFrame:
    """Explode the high_value_rows or quarantine_rows lists of a batch summary back into rows."""
    return summary.select(F.explode(column).alias("r")).select("r.*")


def hourly_rollup(sales: DataFrame) -> DataFrame:
    """Hourly sales per category and country from rows of the sales_agg table.

    The windows of sales_agg divide an hour, so summing them by the hour they start in is
    exact, and sales_agg already counts each sale once."""
    return _sales_shape(
        sales.groupBy(F.date_trunc("hour", "window_start").alias("window_start"), MERCHANT_CATEGORY, COUNTRY)
        .agg(*(F.sum(c).alias(c) for c in SALES_MEASURES)),
        3600,
    )


def _sales_shape(agg: DataFrame, window_seconds: float) -> DataFrame:
    return agg.select(
        "window_start",
        (F.col("window_start") + F.expr(f"make_dt_interval(0, 0, 0, {float(window_seconds)})")).alias("window_end"),
        MERCHANT_CATEGORY, COUNTRY,
        F.col("sales_count").cast("long"), F.col("sales_amount").cast(SUM_SQL_TYPE),
        F.col("high_value_count").cast("long"), F.col("high_value_amount").cast(SUM_SQL_TYPE),
    )
