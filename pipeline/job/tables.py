"""Delta tables written by the job: names, schemas, properties, SQL registration, upkeep.

Default locations live under ``<data_dir>/delta/<name>``; the SQL names are
``tormenta.<name>``. Every table keeps the properties delta-rs needs to read it (no
deletion vectors, classic checkpoints, no column mapping) so the dashboard never needs
a JVM.
"""

from __future__ import annotations

import logging

from pipeline.settings import Settings

log = logging.getLogger(__name__)

DATABASE = "tormenta"
TABLE_PROPERTIES = {
    "delta.enableDeletionVectors": "false",
    "delta.checkpointPolicy": "classic",
    "delta.columnMapping.mode": "none",
    "delta.logRetentionDuration": "interval 2 days",
    "delta.deletedFileRetentionDuration": "interval 2 hours",
    "delta.appendOnly": "false",
}

SCHEMAS: dict[str, str] = {
    "high_value": """
        transaction_id STRING, person_id STRING, merchant_id STRING, amount DECIMAL(18,2),
        currency STRING, event_time TIMESTAMP, merchant_category STRING, country STRING,
        channel STRING, kafka_partition INT, kafka_offset BIGINT, ingest_time TIMESTAMP,
        processing_time TIMESTAMP, batch_id BIGINT, event_date DATE""",
    "quarantine": """
        raw_value STRING, raw_key STRING, topic STRING, kafka_partition INT, kafka_offset BIGINT,
        ingest_time TIMESTAMP, arrival_time TIMESTAMP, reason STRING, batch_id BIGINT""",
    "sales_agg": """
        window_start TIMESTAMP, window_end TIMESTAMP, merchant_category STRING, country STRING,
        sales_count BIGINT, sales_amount DECIMAL(28,2), high_value_count BIGINT,
        high_value_amount DECIMAL(28,2), batch_id BIGINT, processing_time TIMESTAMP""",
    "sales_hourly": """
        window_start TIMESTAMP, window_end TIMESTAMP, merchant_category STRING, country STRING,
        sales_count BIGINT, sales_amount DECIMAL(28,2), high_value_count BIGINT,
        high_value_amount DECIMAL(28,2), batch_id BIGINT, processing_time TIMESTAMP""",
    "batch_metrics": """
        query STRING, batch_id BIGINT, trigger_time TIMESTAMP, duration_s DOUBLE,
        trigger_interval_s DOUBLE, input_rows BIGINT, valid_rows BIGINT, high_value_rows BIGINT,
        quarantined_rows BIGINT, agg_rows BIGINT, offsets_behind BIGINT, event_lag_s DOUBLE,
        max_event_time TIMESTAMP, end_offsets STRING""",
}
PARTITIONS = {"high_value": "event_date"}


def create_tables(spark, settings: Settings) -> None:
    """Create every Delta table if missing and register it under the `tormenta` database."""
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {DATABASE}")
    props = ", ".join(f"'{k}' = '{v}'" for k, v in TABLE_PROPERTIES.items())
    for name, schema in SCHEMAS.items():
        path = settings.table_path(name)
        part = f"PARTITIONED BY ({PARTITIONS[name]})" if name in PARTITIONS else ""
        spark.sql(
            f"CREATE TABLE IF NOT EXISTS delta.`{path}` ({schema}) USING DELTA {part} TBLPROPERTIES ({props})"
        )
        register(spark, name, str(path))


def register(spark, name: str, path: str) -> None:
    """Point `tormenta.<name>` at the table's location (dropping an external entry never deletes data)."""
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {DATABASE}")
    spark.sql(f"DROP TABLE IF EXISTS {DATABASE}.{name}")
    spark.sql(f"CREATE TABLE {DATABASE}.{name} USING DELTA LOCATION '{path}'")


def register_all(spark, settings: Settings) -> list[str]:
    """Register every existing table for SQL (used by `python -m pipeline sql`)."""
    names = []
    for name in SCHEMAS:
        path = settings.table_path(name)
        if (path / "_delta_log").is_dir():
            register(spark, name, str(path))
            names.append(f"{DATABASE}.{name}")
    return names


def upkeep(spark, settings: Settings, retain_hours: float = 2.0) -> None:
    """Compact small files and vacuum old ones, so a day of one-minute commits stays readable."""
    from delta.tables import DeltaTable

    for name in SCHEMAS:
        path = str(settings.table_path(name))
        try:
            table = DeltaTable.forPath(spark, path)
            table.optimize().executeCompaction()
            table.vacuum(retain_hours)
        except Exception as exc:  # noqa: BLE001 - upkeep must never stop the job
            log.warning("upkeep of %s failed: %s", name, str(exc).splitlines()[0])
