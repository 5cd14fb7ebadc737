"""The Delta tables the job writes and the app reads: every column, its type and order.

Columns are declared once here (the record's columns come from `fields`); the job's
CREATE TABLE statements, the Spark selects, the dashboard's readers, the load test's
reconciliation and the test fixtures all take their column lists from this module.
"""

from __future__ import annotations

from pipeline.contract.fields import FIELDS, KAFKA_COLUMNS, SUM_SQL_TYPE

Columns = tuple[tuple[str, str], ...]

# Table names: every module names a table through these.
HIGH_VALUE = "high_value"
QUARANTINE = "quarantine"
SALES_AGG = "sales_agg"
SALES_HOURLY = "sales_hourly"
BATCH_METRICS = "batch_metrics"
DATABASE = "tormenta"  # the Spark SQL database the tables are registered in: tormenta.<name>

# The job's streaming queries (also the `query` column of batch_metrics and the name of
# each query's checkpoint): the per-batch query writes high_value, quarantine, sales_agg
# and batch_metrics; the hourly query writes sales_hourly.
HIGH_VALUE_QUERY = HIGH_VALUE
SALES_HOURLY_QUERY = SALES_HOURLY
QUERIES = (HIGH_VALUE_QUERY, SALES_HOURLY_QUERY)

_RECORD: Columns = tuple((f.column, f.sql_type) for f in FIELDS)
_KAFKA: Columns = (("kafka_partition", "INT"), ("kafka_offset", "BIGINT"), ("ingest_time", "TIMESTAMP"))
assert tuple(c for c, _ in _KAFKA) == KAFKA_COLUMNS
_SALES: Columns = (
    ("window_start", "TIMESTAMP"), ("window_end", "TIMESTAMP"), ("merchant_category", "STRING"),
    ("country", "STRING"), ("sales_count", "BIGINT"), ("sales_amount", SUM_SQL_TYPE.upper()),
    ("high_value_count", "BIGINT"), ("high_value_amount", SUM_SQL_TYPE.upper()),
    ("batch_id", "BIGINT"), ("processing_time", "TIMESTAMP"),
)

TABLES: dict[str, Columns] = {
    HIGH_VALUE: (*_RECORD, *_KAFKA, ("processing_time", "TIMESTAMP"), ("batch_id", "BIGINT"),
                   ("event_date", "DATE")),
    QUARANTINE: (("raw_value", "STRING"), ("raw_key", "STRING"), ("topic", "STRING"),
                   ("kafka_partition", "INT"), ("kafka_offset", "BIGINT"), ("ingest_time", "TIMESTAMP"),
                   ("arrival_time", "TIMESTAMP"), ("reason", "STRING"), ("batch_id", "BIGINT"),
                   ("wire_format", "STRING"), ("raw_bytes", "BINARY")),
    SALES_AGG: _SALES,
    SALES_HOURLY: _SALES,
    BATCH_METRICS: (
        ("query", "STRING"), ("batch_id", "BIGINT"), ("trigger_time", "TIMESTAMP"), ("duration_s", "DOUBLE"),
        ("trigger_interval_s", "DOUBLE"), ("input_rows", "BIGINT"), ("valid_rows", "BIGINT"),
        ("high_value_rows", "BIGINT"), ("quarantined_rows", "BIGINT"), ("agg_rows", "BIGINT"),
        ("offsets_behind", "BIGINT"), ("event_lag_s", "DOUBLE"), ("max_event_time", "TIMESTAMP"),
        ("end_offsets", "STRING"), ("duplicates_dropped", "BIGINT"), ("avro_rows", "BIGINT"),
    ),
}
TABLE_NAMES = tuple(TABLES)
PARTITIONS = {HIGH_VALUE: "event_date"}
# Columns added after the first release: an existing table gets them on its next write.
ADDED_COLUMNS = {QUARANTINE: ("wire_format", "raw_bytes"),
                 BATCH_METRICS: ("duplicates_dropped", "avro_rows")}


def columns(table: str) -> tuple[str, ...]:
    """The column names of a table, in order."""
    return tuple(name for name, _ in TABLES[table])


def ddl(table: str) -> str:
    """The table's schema as SQL DDL ('a STRING, b BIGINT, ...')."""
    return ", ".join(f"{name} {type_}" for name, type_ in TABLES[table])


RECORD_COLUMNS = tuple(c for c, _ in _RECORD)
HIGH_VALUE_ROW = (*RECORD_COLUMNS, *KAFKA_COLUMNS)  # what the job carries per high-value row
SALES_MEASURES = ("sales_count", "sales_amount", "high_value_count", "high_value_amount")
