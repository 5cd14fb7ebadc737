"""The contract as Spark column expressions: Kafka rows of either wire format -> typed records.

`decode_messages` turns the Kafka source's rows into the record's columns (from
`fields`), a quarantine `reason` (NULL when valid), the wire format of each message, the
raw bytes and the Kafka coordinates. The format is chosen per message by its first byte:
0 = Avro in the Confluent framing (see `avro`), anything else = JSON, so one topic may
carry both. Tests check these expressions against the Python validator (`validate`) on
every contract case, in both formats.

JSON takes two paths that give the same answer. The fast path is one typed `from_json`
plus cheap checks that the required values were written as JSON strings and numbers the
way well-formed producers write them. A row that fails any fast check takes the strict
path: the message is parsed again into VARIANT values, which keep the JSON type of every
value (a quoted "1600" stays a string), and every rule is applied in order, which also
names the reason. Valid messages never pay for the strict path.

Avro fixes the types, so only the framing (header, schema id, a body that decodes with
no bytes left over) and the value rules (lengths, amount range) remain to check.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from pipeline.contract import avro
from pipeline.contract.fields import (
    AMOUNT_SCALE,
    AMOUNT_SQL_TYPE,
    BY_NAME,
    FIELDS,
    ID_FIELDS,
    MAX_AMOUNT,
    MAX_ID_LENGTH,
    OPTIONAL_FIELDS,
    REQUIRED_FIELDS,
    TIMESTAMP_PATTERN,
)
from pipeline.contract.wire import AVRO, JSON

WIDE_DECIMAL = "decimal(38,10)"
_WIRE_NAMES = tuple(BY_NAME)
_NUMBER_NAMES = ("TINYINT", "SMALLINT", "INT", "BIGINT", "FLOAT", "DOUBLE")
_TYPED_SCHEMA = "struct<" + ", ".join(
    f"{n}: {WIDE_DECIMAL if BY_NAME[n].kind == 'amount' else 'string'}" for n in _WIRE_NAMES) + ">"
_VARIANT_SCHEMA = "struct<" + ", ".join(f"{n}: variant" for n in _WIRE_NAMES) + ">"
_TS_NORMALISED = ("coalesce(try_cast({ts} AS timestamp), try_cast(regexp_replace(upper({ts}), "
                  "'([+-][0-9]{{2}})([0-9]{{2}})$', '$1:$2') AS timestamp))")
_MAX = int(MAX_AMOUNT)  # compared as a literal column
KAFKA_OUT = ("raw_value", "raw_key", "raw_bytes", "wire_format", "topic", "kafka_partition", "kafka_offset",
             "ingest_time")


def high_value_condition(threshold: Decimal, amount: Column | None = None) -> Column:
    """The business rule (`fields.is_high_value`) as a column: amount strictly above the threshold."""
    amount = F.col("amount") if amount is None else amount
    return amount > F.lit(Decimal(threshold)).cast(WIDE_DECIMAL)


def decode_messages(raw: DataFrame) -> DataFrame:
    """Kafka rows (key, value, topic, partition, offset, timestamp) -> decoded rows.

    Output: the record columns (typed, event_time in UTC), `reason` (NULL when valid) and
    `KAFKA_OUT` (raw text and bytes, wire format, Kafka coordinates)."""
    is_avro = F.expr("substring(value, 1, 1) = X'00'")
    df = raw.select(
        F.col("value").alias("raw_bytes"),
        F.col("value").cast("string").alias("raw_value"),  # as read; made printable below
        F.col("key").cast("string").alias("raw_key"),
        F.col("topic"),
        F.col("partition").cast("int").alias("kafka_partition"),
        F.col("offset").alias("kafka_offset"),
        F.col("timestamp").alias("ingest_time"),
        F.when(is_avro, F.lit(AVRO)).otherwise(F.lit(JSON)).alias("wire_format"),
    )
    df = df.select("*", _schema_id().alias("_sid"))
    df = df.select(
        "*",
        F.when(F.col("wire_format") == JSON, F.from_json("raw_value", _TYPED_SCHEMA)).alias("j"),
        F.when(F.col("_sid").isin(*avro.SCHEMAS), _from_avro()).alias("a"),
    )
    df = df.select("*", F.expr(_TS_NORMALISED.format(ts="j.timestamp")).alias("_json_time"))
    df = df.select("*", ((F.col("wire_format") == JSON) & _json_fast_ok()).alias("_fast"))
    # The strict path's VARIANT parses, computed once per row that needs them (and
    # referenced by name below, which keeps the plan small).
    strict = (F.col("wire_format") == JSON) & ~F.col("_fast")
    df = df.select("*", F.when(strict, F.from_json("raw_value", _VARIANT_SCHEMA)).alias("_v"),
                   F.when(strict, F.call_function("try_parse_json", F.col("raw_value"))).alias("_full"))
    avro_rows = F.col("wire_format") == AVRO

    def pick(avro_value: Column, json_value: Column) -> Column:
        return F.when(avro_rows, avro_value).otherwise(json_value)

    out = [pick(F.col(f"a.{n}"), F.col(f"j.{n}")).alias(n) for n in ID_FIELDS]
    out.append(pick(F.col("a.amount").cast(AMOUNT_SQL_TYPE), F.col("j.amount").cast(AMOUNT_SQL_TYPE)).alias("amount"))
    out.append(pick(F.col("a.timestamp"), F.col("_json_time")).alias("event_time"))
    out += [_optional(pick(F.col(f"a.{f.name}"), F.col(f"j.{f.name}")), f).alias(f.column) for f in OPTIONAL_FIELDS]
    reason = pick(_avro_reason(), F.when(F.col("_fast"), F.lit(None).cast("string")).otherwise(_json_strict_reason()))
    # The raw text kept for quarantine must be valid UTF-8 (Delta readers refuse anything
    # else); an Avro message is shown as hex. raw_bytes always holds the exact bytes.
    printable = pick(F.concat(F.lit("0x"), F.lower(F.hex("raw_bytes"))),
                     F.call_function("make_valid_utf8", F.col("raw_value")))
    return df.select(*out, reason.alias("reason"), *(printable.alias(c) if c == "raw_value" else c for c in KAFKA_OUT))


def _optional(value: Column, field) -> Column:
    if field.pattern:
        value = F.when(value.rlike(field.pattern), value)
    if field.allowed:
        value = F.when(value.isin(*field.allowed), value)
    if field.default is not None:
        value = F.coalesce(value, F.lit(field.default))
    return value


# ---- Avro ------------------------------------------------------------------------------

def _schema_id() -> Column:
    """Bytes 2-5 of a framed message as a big-endian int (NULL for JSON or a short message)."""
    return F.when(
        (F.col("wire_format") == AVRO) & (F.length("raw_bytes") >= avro.HEADER_SIZE),
        F.conv(F.hex(F.substring("raw_bytes", 2, 4)), 16, 10).cast("long"),
    )


def _body() -> Column:
    return F.expr(f"substring(raw_bytes, {avro.HEADER_SIZE + 1})")


def _from_avro() -> Column:
    from pyspark.sql.avro.functions import from_avro

    # PERMISSIVE: a body that does not decode gives NULL (a quarantine reason), not a failed batch.
    return from_avro(_body(), avro.SCHEMA_JSON, {"mode": "PERMISSIVE"})


def _non_null_required(a: Column) -> Column:
    """The decoded struct with its required fields typed NOT NULL, as the Avro schema has
    them (the re-encoding only counts for rows whose fields decoded; a NULL there is
    caught first). Without it Spark's Avro writer warns about the nullability mismatch
    on every task."""
    filler = {"id": F.lit(""), "amount": F.lit(Decimal(0)).cast(AMOUNT_SQL_TYPE),
              "timestamp": F.lit(datetime(1970, 1, 1))}
    return F.struct(*[(F.coalesce(a.getField(f.name), filler[f.kind]) if f.required else a.getField(f.name))
                      .alias(f.name) for f in FIELDS])


def _avro_reason() -> Column:
    """The framing, then the value rules, in order; NULL when the Avro message is valid."""
    from pyspark.sql.avro.functions import to_avro

    a = F.col("a")
    # Avro has no end marker, so a body with bytes left over decodes all the same;
    # re-encoding what was decoded tells how many bytes it used. (Computing that length
    # with column arithmetic instead measured slower: docs/PERFORMANCE.md.)
    used = F.length(to_avro(_non_null_required(a), avro.SCHEMA_JSON))
    reason = (
        F.when(F.length("raw_bytes") < avro.HEADER_SIZE, F.lit("avro message shorter than its 5-byte header"))
        .when(~F.col("_sid").isin(*avro.SCHEMAS),
              F.concat(F.lit("unknown avro schema id "), F.col("_sid").cast("string")))
        # PERMISSIVE gives a struct of NULLs for a body that does not decode; the first
        # field is non-nullable in the schema, so NULL there means "did not decode".
        .when(a.isNull() | a.getField(ID_FIELDS[0]).isNull(), F.lit("avro body does not decode"))
        .when(used != F.length("raw_bytes") - avro.HEADER_SIZE, F.lit("avro body has trailing bytes"))
    )
    for n in ID_FIELDS:
        reason = reason.when(~F.length(a.getField(n)).between(1, MAX_ID_LENGTH),
                             F.lit(f"{n} must be 1..{MAX_ID_LENGTH} characters"))
    amount = a.getField("amount")
    return (reason.when(amount <= 0, F.lit("amount must be greater than 0"))
            .when(amount > F.lit(_MAX), F.lit(f"amount exceeds {MAX_AMOUNT:,}")))


# ---- JSON ------------------------------------------------------------------------------

def _json_fast_ok() -> Column:
    c, rv = F.col, F.col("raw_value")
    ok = F.lit(True)
    for name in ID_FIELDS:
        # The typed parse turns a number into text, so check the value was really quoted.
        # (The timestamp needs no such scan: no JSON number, literal, object or array
        # reads as text matching the ISO pattern checked below.)
        ok = ok & rv.contains(f'"{name}":"') & F.length(c(f"j.{name}")).between(1, MAX_ID_LENGTH)
    amount = c("j.amount")
    return (
        # The typed parse reads a quoted "1600" as a decimal, so that one form is looked
        # for in the text; true/false/objects/arrays already parse to NULL.
        ok & ~rv.contains('"amount":"')
        & amount.isNotNull() & (amount > 0) & (amount <= F.lit(_MAX)) & (amount == F.round(amount, AMOUNT_SCALE))
        & c("j.timestamp").rlike(TIMESTAMP_PATTERN) & c("_json_time").isNotNull()
    )


def _json_strict_reason() -> Column:
    """The contract's rules in order on a VARIANT parse of raw_value; NULL when valid.

    Only evaluated for rows that failed the fast path (the CASE branch is lazy)."""
    v = F.col("_v")

    def t(name: str) -> Column:  # JSON type of a field: 'STRING', 'BIGINT', 'DECIMAL(6,2)', 'VOID', NULL
        return F.call_function("schema_of_variant", v.getField(name))

    def get(name: str, type_: str) -> Column:
        return F.call_function("try_variant_get", v.getField(name), F.lit("$"), F.lit(type_))

    missing = {n: t(n).isNull() | (t(n) == "VOID") for n in REQUIRED_FIELDS}
    reason = _json_shape_reason(missing)
    for n in REQUIRED_FIELDS:
        reason = reason.when(missing[n], F.lit(f"missing required field {n}"))
    for n in ID_FIELDS:
        reason = reason.when(t(n) != "STRING", F.lit(f"{n} is not a string"))
        reason = reason.when(~F.length(get(n, "string")).between(1, MAX_ID_LENGTH),
                             F.lit(f"{n} must be 1..{MAX_ID_LENGTH} characters"))
    amount_t, amount_d, amount_w = t("amount"), get("amount", "double"), get("amount", WIDE_DECIMAL)
    ts = get("timestamp", "string")
    return (
        reason.when(~(amount_t.isin(*_NUMBER_NAMES) | amount_t.startswith("DECIMAL(")), F.lit("amount is not a number"))
        .when(amount_d.isNull() | F.isnan(amount_d) | (F.abs(amount_d) == float("inf")),
              F.lit("amount is not a finite number"))
        .when(amount_d <= 0, F.lit("amount must be greater than 0"))
        .when(amount_w.isNull() | (amount_w > F.lit(_MAX)), F.lit(f"amount exceeds {MAX_AMOUNT:,}"))
        .when(amount_w != F.round(amount_w, AMOUNT_SCALE), F.lit(f"amount has more than {AMOUNT_SCALE} decimals"))
        .when(t("timestamp") != "STRING", F.lit("timestamp is not a string"))
        .when(~ts.rlike(TIMESTAMP_PATTERN), F.lit("timestamp is not ISO-8601 with an offset or Z"))
        .when(F.expr(_TS_NORMALISED.format(ts="try_variant_get(_v.timestamp, '$', 'string')")).isNull(),
              F.lit("timestamp is not a valid date-time"))
    )


def _json_shape_reason(missing: dict[str, Column]) -> Column:
    """'not JSON' / 'not a JSON object', asked only when a required field seems missing."""
    full = F.col("_full")
    any_missing = F.lit(False)
    for n in REQUIRED_FIELDS:
        any_missing = any_missing | missing[n]
    return (F.when(any_missing & full.isNull(), F.lit("value is not JSON"))
            .when(any_missing & ~F.call_function("schema_of_variant", full).startswith("OBJECT"),
                  F.lit("value is not a JSON object")))

