"""Pure DataFrame transforms of the streaming job (no I/O: each takes and returns a DataFrame).

The contract rules (see `pipeline.contract`) are written as Spark column expressions on a
VARIANT parse of the message, which keeps the JSON types: a string "1600" is not an
amount, 1500.00 and 1500.01 stay exact decimals. Every row gets either a normalised
record or a quarantine reason; nothing is dropped.
"""

from __future__ import annotations

from decimal import Decimal

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.window import Window

AMOUNT_TYPE = "decimal(18,2)"
_WIDE = "decimal(38,10)"
_NUMBER_TYPES = r"^(TINYINT|SMALLINT|INT|BIGINT|FLOAT|DOUBLE|DECIMAL\(\d+,\d+\))$"
_TS_RE = r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?([Zz]|[+-]\d{2}:?\d{2})$"
REQUIRED_STRINGS = ("transaction_id", "person_id", "merchant_id")

CONTRACT_COLUMNS = ("transaction_id", "person_id", "merchant_id", "amount", "currency", "event_time",
                    "merchant_category", "country", "channel")


_FIELDS = ("transaction_id", "person_id", "merchant_id", "amount", "timestamp", "currency",
           "merchant_category", "country", "channel")
# Each known field is parsed as a VARIANT: one pass over the text, JSON types kept.
_PARSE_SCHEMA = "struct<" + ", ".join(f"{f}: variant" for f in _FIELDS) + ">"


def _field(name: str) -> Column:
    return F.col(f"j.{name}")


def _type(name: str) -> Column:
    return F.expr(f"schema_of_variant(j.{name})")


def _string(name: str) -> Column:
    return F.expr(f"try_variant_get(j.{name}, '$', 'string')")


def _missing(name: str) -> Column:
    return _field(name).isNull() | F.expr(f"is_variant_null(j.{name})")


def parse_messages(raw: DataFrame) -> DataFrame:
    """Kafka rows (key, value, topic, partition, offset, timestamp) -> parsed rows.

    Output: the contract columns (typed, event_time in UTC), `reason` (NULL when valid),
    the raw text and the Kafka coordinates.

    The fast path is one `from_json` into VARIANT fields (about 20x cheaper than a full
    `try_parse_json` plus path look-ups); only rows that lack a required field are parsed
    a second time, to tell "not JSON" from "not an object" from "missing field".
    """
    df = raw.select(
        F.col("value").cast("string").alias("raw_value"),
        F.col("key").cast("string").alias("raw_key"),
        F.col("topic"),
        F.col("partition").cast("int").alias("kafka_partition"),
        F.col("offset").alias("kafka_offset"),
        F.col("timestamp").alias("ingest_time"),
    ).withColumn("j", F.from_json("raw_value", _PARSE_SCHEMA))

    # Stage 1: every value the rules need, computed once per row (materialised columns,
    # so the rules below do not re-extract the same variant several times).
    df = df.select(
        "raw_value", "raw_key", "topic", "kafka_partition", "kafka_offset", "ingest_time",
        *(_type(n).alias(f"{n}__t") for n in (*REQUIRED_STRINGS, "amount", "timestamp")),
        *(_string(n).alias(n) for n in (*REQUIRED_STRINGS, "timestamp")),
        F.expr(f"try_variant_get(j.amount, '$', '{_WIDE}')").alias("amount_wide"),
        F.expr("try_variant_get(j.amount, '$', 'double')").alias("amount_double"),
        *(F.when(_type(n) == "STRING", _string(n)).alias(n) for n in ("currency", "merchant_category", "country", "channel")),
    ).withColumn(
        "event_time",
        F.expr("try_cast(regexp_replace(upper(timestamp), '([+-][0-9]{2})([0-9]{2})$', '$1:$2') AS timestamp)"),
    )
    c = F.col
    # A missing field and a JSON null both show as a NULL type here.
    required = (*REQUIRED_STRINGS, "amount", "timestamp")
    any_missing = F.lit(False)
    for name in required:
        any_missing = any_missing | c(f"{name}__t").isNull() | (c(f"{name}__t") == "VOID")
    reason = F.when(any_missing, _missing_reason())
    for name in REQUIRED_STRINGS:
        reason = reason.when(c(f"{name}__t") != "STRING", F.lit(f"{name} is not a string"))
        reason = reason.when(~F.length(c(name)).between(1, 64), F.lit(f"{name} must be 1..64 characters"))
    reason = (
        reason.when(~c("amount__t").rlike(_NUMBER_TYPES), F.lit("amount is not a number"))
        .when(c("amount_double").isNull() | F.isnan("amount_double") | (F.abs("amount_double") == float("inf")),
              F.lit("amount is not a finite number"))
        .when(c("amount_double") <= 0, F.lit("amount must be greater than 0"))
        .when(c("amount_wide").isNull() | (c("amount_wide") > F.lit(10_000_000)), F.lit("amount exceeds 10,000,000"))
        .when(c("amount_wide") != F.round("amount_wide", 2), F.lit("amount has more than 2 decimals"))
        .when(c("timestamp__t") != "STRING", F.lit("timestamp is not a string"))
        .when(~c("timestamp").rlike(_TS_RE), F.lit("timestamp is not ISO-8601 with an offset or Z"))
        .when(c("event_time").isNull(), F.lit("timestamp is not a valid date-time"))
    )
    return df.select(
        *REQUIRED_STRINGS,
        c("amount_wide").cast(AMOUNT_TYPE).alias("amount"),
        F.coalesce(F.when(c("currency").rlike(r"^[A-Z]{3}$"), c("currency")), F.lit("USD")).alias("currency"),
        "event_time",
        "merchant_category",
        F.when(c("country").rlike(r"^[A-Z]{2}$"), c("country")).alias("country"),
        F.when(c("channel").isin("pos", "online", "atm"), c("channel")).alias("channel"),
        reason.alias("reason"),
        "raw_value", "raw_key", "topic", "kafka_partition", "kafka_offset", "ingest_time",
    )


def _missing_reason() -> Column:
    """For a row that lacks a required field: is it not JSON, not an object, or which field?"""
    full = F.expr("try_parse_json(raw_value)")
    out = F.when(full.isNull(), F.lit("value is not JSON"))
    out = out.when(~F.expr("schema_of_variant(try_parse_json(raw_value))").startswith("OBJECT"),
                   F.lit("value is not a JSON object"))
    for name in (*REQUIRED_STRINGS, "amount", "timestamp"):
        out = out.when(F.col(f"{name}__t").isNull() | (F.col(f"{name}__t") == "VOID"),
                       F.lit(f"missing required field {name}"))
    return out


def valid_rows(parsed: DataFrame) -> DataFrame:
    return parsed.where(F.col("reason").isNull()).drop("reason", "raw_value", "raw_key")


def quarantine_rows(parsed: DataFrame, processing_time: Column | None = None) -> DataFrame:
    return parsed.where(F.col("reason").isNotNull()).select(
        "raw_value", "raw_key", "topic", "kafka_partition", "kafka_offset", "ingest_time",
        (processing_time if processing_time is not None else F.current_timestamp()).alias("arrival_time"),
        "reason",
    )


def high_value(valid: DataFrame, threshold: Decimal) -> DataFrame:
    """The business rule: amount strictly greater than the threshold (exact decimals)."""
    return valid.where(F.col("amount") > F.lit(threshold).cast(_WIDE))


def dedupe_within_batch(df: DataFrame, window_seconds: float) -> DataFrame:
    """Keep one row per transaction_id among rows whose event times are within the window.

    Rows of one id are ordered by event time (then offset); a row is dropped when it lies
    within `window_seconds` of the previous row of the same id.
    """
    w = Window.partitionBy("transaction_id").orderBy("event_time", "kafka_partition", "kafka_offset")
    prev = F.lag("event_time").over(w)
    gap = F.col("event_time").cast("double") - prev.cast("double")
    return df.withColumn("_gap", gap).where(F.col("_gap").isNull() | (F.col("_gap") > window_seconds)).drop("_gap")


def sales_aggregates(valid: DataFrame, threshold: Decimal, window_seconds: float) -> DataFrame:
    """Count and sum of all valid sales and of high-value ones per tumbling window,
    merchant category and country (partial per micro-batch; readers sum over batches)."""
    size = f"{int(window_seconds)} seconds"
    hv = F.col("amount") > F.lit(threshold).cast(_WIDE)
    return (
        valid.groupBy(
            F.window("event_time", size).alias("w"),
            F.coalesce("merchant_category", F.lit("unknown")).alias("merchant_category"),
            F.coalesce("country", F.lit("??")).alias("country"),
        )
        .agg(
            F.count(F.lit(1)).alias("sales_count"),
            F.sum("amount").cast("decimal(28,2)").alias("sales_amount"),
            F.sum(F.when(hv, 1).otherwise(0)).cast("long").alias("high_value_count"),
            F.coalesce(F.sum(F.when(hv, F.col("amount"))), F.lit(0)).cast("decimal(28,2)").alias("high_value_amount"),
        )
        .select(
            F.col("w.start").alias("window_start"),
            F.col("w.end").alias("window_end"),
            "merchant_category", "country", "sales_count", "sales_amount", "high_value_count", "high_value_amount",
        )
    )
