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
_NUMBER_NAMES = ("TINYINT", "SMALLINT", "INT", "BIGINT", "FLOAT", "DOUBLE")
_TS_RE = r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?([Zz]|[+-]\d{2}:?\d{2})$"
REQUIRED_STRINGS = ("transaction_id", "person_id", "merchant_id")

CONTRACT_COLUMNS = ("transaction_id", "person_id", "merchant_id", "amount", "currency", "event_time",
                    "merchant_category", "country", "channel")


_FIELDS = ("transaction_id", "person_id", "merchant_id", "amount", "timestamp", "currency",
           "merchant_category", "country", "channel")
# Fast path: plain typed parse. Strict path: each known field as a VARIANT, which keeps
# the JSON type of every value (a quoted "1600" stays a string).
_TYPED_SCHEMA = ("struct<transaction_id: string, person_id: string, merchant_id: string, "
                 f"amount: {_WIDE}, timestamp: string, currency: string, merchant_category: string, "
                 "country: string, channel: string>")
_VARIANT_SCHEMA = "struct<" + ", ".join(f"{f}: variant" for f in _FIELDS) + ">"
_REQUIRED = (*REQUIRED_STRINGS, "amount", "timestamp")
_TS_NORMALISED = ("coalesce(try_cast({ts} AS timestamp), try_cast(regexp_replace(upper({ts}), "
                  "'([+-][0-9]{{2}})([0-9]{{2}})$', '$1:$2') AS timestamp))")


def parse_messages(raw: DataFrame) -> DataFrame:
    """Kafka rows (key, value, topic, partition, offset, timestamp) -> parsed rows.

    Output: the contract columns (typed, event_time in UTC), `reason` (NULL when valid),
    the raw text and the Kafka coordinates.

    Two paths give the same answer (the contract tests check it). The fast path is one
    typed `from_json` plus cheap checks that the required values were written as JSON
    strings and numbers the way well-formed producers write them. A row that fails any
    fast check takes the strict path: the message is parsed again into VARIANT values and
    every rule of the contract is applied in order, which also names the reason. Valid
    messages (nearly all of them) never pay for the strict path.
    """
    df = raw.select(
        F.col("value").cast("string").alias("raw_value"),
        F.col("key").cast("string").alias("raw_key"),
        F.col("topic"),
        F.col("partition").cast("int").alias("kafka_partition"),
        F.col("offset").alias("kafka_offset"),
        F.col("timestamp").alias("ingest_time"),
    ).withColumn("j", F.from_json("raw_value", _TYPED_SCHEMA))
    df = df.select("*", F.expr(_TS_NORMALISED.format(ts="j.timestamp")).alias("event_time"))

    c, rv = F.col, F.col("raw_value")
    amount = c("j.amount")
    fast_ok = F.lit(True)
    for name in REQUIRED_STRINGS:
        # The typed parse turns a number into text, so check the value was really quoted.
        # (The timestamp needs no such scan: no JSON number, literal, object or array
        # reads as text matching the ISO pattern checked below.)
        fast_ok = fast_ok & rv.contains(f'"{name}":"') & F.length(c(f"j.{name}")).between(1, 64)
    fast_ok = (
        # The typed parse reads a quoted "1600" as a decimal, so that one form is looked
        # for in the text; true/false/objects/arrays already parse to NULL.
        fast_ok & ~rv.contains('"amount":"')
        & amount.isNotNull() & (amount > 0) & (amount <= F.lit(10_000_000)) & (amount == F.round(amount, 2))
        & c("j.timestamp").rlike(_TS_RE) & c("event_time").isNotNull()
    )

    def optional(name: str, pattern: str | None = None, allowed: tuple[str, ...] = ()) -> Column:
        text = c(f"j.{name}")
        if pattern:
            text = F.when(text.rlike(pattern), text)
        if allowed:
            text = F.when(text.isin(*allowed), text)
        return text

    return df.select(
        *(c(f"j.{n}").alias(n) for n in REQUIRED_STRINGS),
        amount.cast(AMOUNT_TYPE).alias("amount"),
        F.coalesce(optional("currency", r"^[A-Z]{3}$"), F.lit("USD")).alias("currency"),
        "event_time",
        optional("merchant_category").alias("merchant_category"),
        optional("country", r"^[A-Z]{2}$").alias("country"),
        optional("channel", allowed=("pos", "online", "atm")).alias("channel"),
        F.when(fast_ok, F.lit(None).cast("string")).otherwise(_strict_reason()).alias("reason"),
        "raw_value", "raw_key", "topic", "kafka_partition", "kafka_offset", "ingest_time",
    )


def _strict_reason() -> Column:
    """The contract's rules in order on a VARIANT parse of raw_value; NULL when valid.

    Only evaluated for rows that failed the fast path (the CASE branch is lazy)."""
    v = F.from_json("raw_value", _VARIANT_SCHEMA)

    def t(name: str) -> Column:  # JSON type of a field: 'STRING', 'BIGINT', 'DECIMAL(6,2)', 'VOID', NULL
        return F.call_function("schema_of_variant", v.getField(name))

    def get(name: str, type_: str) -> Column:
        return F.call_function("try_variant_get", v.getField(name), F.lit("$"), F.lit(type_))

    full = F.call_function("try_parse_json", F.col("raw_value"))
    missing = {n: t(n).isNull() | (t(n) == "VOID") for n in _REQUIRED}
    any_missing = F.lit(False)
    for n in _REQUIRED:
        any_missing = any_missing | missing[n]
    reason = F.when(any_missing & full.isNull(), F.lit("value is not JSON"))
    reason = reason.when(any_missing & ~F.call_function("schema_of_variant", full).startswith("OBJECT"),
                         F.lit("value is not a JSON object"))
    for n in _REQUIRED:
        reason = reason.when(missing[n], F.lit(f"missing required field {n}"))
    for n in REQUIRED_STRINGS:
        reason = reason.when(t(n) != "STRING", F.lit(f"{n} is not a string"))
        reason = reason.when(~F.length(get(n, "string")).between(1, 64), F.lit(f"{n} must be 1..64 characters"))
    amount_t, amount_d, amount_w = t("amount"), get("amount", "double"), get("amount", _WIDE)
    ts = get("timestamp", "string")
    return (
        reason.when(~(amount_t.isin(*_NUMBER_NAMES) | amount_t.startswith("DECIMAL(")), F.lit("amount is not a number"))
        .when(amount_d.isNull() | F.isnan(amount_d) | (F.abs(amount_d) == float("inf")),
              F.lit("amount is not a finite number"))
        .when(amount_d <= 0, F.lit("amount must be greater than 0"))
        .when(amount_w.isNull() | (amount_w > F.lit(10_000_000)), F.lit("amount exceeds 10,000,000"))
        .when(amount_w != F.round(amount_w, 2), F.lit("amount has more than 2 decimals"))
        .when(t("timestamp") != "STRING", F.lit("timestamp is not a string"))
        .when(~ts.rlike(_TS_RE), F.lit("timestamp is not ISO-8601 with an offset or Z"))
        .when(F.expr(_TS_NORMALISED.format(ts="try_variant_get(from_json(raw_value, '"
                                           + _VARIANT_SCHEMA + "').timestamp, '$', 'string')")).isNull(),
              F.lit("timestamp is not a valid date-time"))
    )


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


HIGH_VALUE_FIELDS = (*CONTRACT_COLUMNS, "kafka_partition", "kafka_offset", "ingest_time")
QUARANTINE_FIELDS = ("raw_value", "raw_key", "topic", "kafka_partition", "kafka_offset", "ingest_time", "reason")
SUMMARY_KEYS = ("window_start", "merchant_category", "country", "kafka_partition")


def batch_summary(parsed: DataFrame, threshold: Decimal, window_seconds: float) -> DataFrame:
    """Everything one micro-batch produces, in ONE pass over the parsed rows.

    Grouped by (window, merchant category, country, Kafka partition): the sales counts and
    sums, the batch statistics (rows, quarantined, offsets, event-time range) and, as lists,
    the few rows that leave the aggregate: the high-value transactions and the invalid
    messages. Caching this small result instead of the whole batch is what keeps a
    3-million-row batch from being materialised twice.
    """
    us = int(window_seconds * 1_000_000)
    valid = F.col("reason").isNull()
    hv = valid & (F.col("amount") > F.lit(threshold).cast(_WIDE))
    return (
        parsed.withColumn("window_start", F.expr(f"timestamp_micros(floor(unix_micros(event_time) / {us}) * {us})"))
        .groupBy(
            "window_start",
            F.coalesce("merchant_category", F.lit("unknown")).alias("merchant_category"),
            F.coalesce("country", F.lit("??")).alias("country"),
            "kafka_partition",
        )
        .agg(
            F.count(F.lit(1)).alias("rows"),
            F.count(F.when(valid, 1)).alias("sales_count"),
            F.coalesce(F.sum(F.when(valid, F.col("amount"))), F.lit(0)).cast("decimal(28,2)").alias("sales_amount"),
            F.count(F.when(hv, 1)).alias("high_value_count"),
            F.coalesce(F.sum(F.when(hv, F.col("amount"))), F.lit(0)).cast("decimal(28,2)").alias("high_value_amount"),
            F.max("kafka_offset").alias("max_offset"),
            F.min(F.when(valid, F.col("event_time"))).alias("min_event_time"),
            F.max(F.when(valid, F.col("event_time"))).alias("max_event_time"),
            F.collect_list(F.when(hv, F.struct(*HIGH_VALUE_FIELDS))).alias("high_value_rows"),
            F.collect_list(F.when(~valid, F.struct(*QUARANTINE_FIELDS))).alias("quarantine_rows"),
        )
    )


def summary_sales(summary: DataFrame, window_seconds: float) -> DataFrame:
    """Per-window sales aggregates (partial for this batch) from a batch summary."""
    return (
        summary.where(F.col("window_start").isNotNull())
        .groupBy("window_start", "merchant_category", "country")
        .agg(*(F.sum(c).alias(c) for c in ("sales_count", "sales_amount", "high_value_count", "high_value_amount")))
        .select(
            "window_start",
            (F.col("window_start") + F.expr(f"make_dt_interval(0, 0, 0, {float(window_seconds)})")).alias("window_end"),
            "merchant_category", "country",
            F.col("sales_count").cast("long"), F.col("sales_amount").cast("decimal(28,2)"),
            F.col("high_value_count").cast("long"), F.col("high_value_amount").cast("decimal(28,2)"),
        )
    )


def summary_rows(summary: DataFrame, column: str) -> DataFrame:
    """Explode the high_value_rows or quarantine_rows lists of a batch summary back into rows."""
    return summary.select(F.explode(column).alias("r")).select("r.*")
