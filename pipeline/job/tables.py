"""Delta tables written by the job: names, schemas, properties, SQL registration, upkeep.

Locations come from ``settings.table_uri(name)``: ``<data_dir>/delta/<name>`` by default,
or ``s3a://bucket/prefix/delta/<name>`` on object storage; the SQL names are
``tormenta.<name>``. Every table keeps the properties delta-rs needs to read it (no
deletion vectors, classic checkpoints, no column mapping) so the dashboard never needs
a JVM.
"""

from __future__ import annotations

import logging

from pipeline.contract.tables import ADDED_COLUMNS, PARTITIONS, TABLES, ddl
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


def create_tables(spark, settings: Settings) -> None:
    """Create every Delta table if missing and register it under the `tormenta` database.

    A missing table is created and registered by one statement (CREATE TABLE ... LOCATION);
    an existing one gets the columns added since its release, then its catalog entry.
    On a cold JVM every statement costs a few hundred milliseconds, so this is a visible
    part of a cold start (docs/PERFORMANCE.md)."""
    from delta.tables import DeltaTable

    spark.sql(f"CREATE DATABASE IF NOT EXISTS {DATABASE}")
    props = ", ".join(f"'{k}' = '{v}'" for k, v in TABLE_PROPERTIES.items())
    for name in TABLES:
        path = settings.table_uri(name)
        if DeltaTable.isDeltaTable(spark, path):  # local disk or object storage alike
            _add_missing_columns(spark, name, path)
            register(spark, name, path, ensured=True)
            continue
        part = f"PARTITIONED BY ({PARTITIONS[name]})" if name in PARTITIONS else ""
        spark.sql(f"DROP TABLE IF EXISTS {DATABASE}.{name}")  # an entry left pointing at a deleted table
        spark.sql(f"CREATE TABLE {DATABASE}.{name} ({ddl(name)}) USING DELTA {part} LOCATION '{path}' "
                  f"TBLPROPERTIES ({props})")


def _add_missing_columns(spark, name: str, path: str) -> None:
    """Tables made by an earlier release get the columns added since (nullable, no rewrite)."""
    added = ADDED_COLUMNS.get(name)
    if not added:
        return
    have = set(spark.read.format("delta").load(path).columns)
    types = dict(TABLES[name])
    missing = [c for c in added if c not in have]
    if missing:
        cols = ", ".join(f"{c} {types[c]}" for c in missing)
        spark.sql(f"ALTER TABLE delta.`{path}` ADD COLUMNS ({cols})")


def register(spark, name: str, path: str, *, ensured: bool = False) -> None:
    """Point `tormenta.<name>` at the table's location (dropping an external entry never deletes data)."""
    if not ensured:
        spark.sql(f"CREATE DATABASE IF NOT EXISTS {DATABASE}")
    spark.sql(f"DROP TABLE IF EXISTS {DATABASE}.{name}")
    spark.sql(f"CREATE TABLE {DATABASE}.{name} USING DELTA LOCATION '{path}'")


def register_all(spark, settings: Settings) -> list[str]:
    """Register every existing table for SQL (used by `python -m pipeline sql`)."""
    from delta.tables import DeltaTable

    names = []
    for name in TABLES:
        path = settings.table_uri(name)
        if DeltaTable.isDeltaTable(spark, path):  # local disk or object storage alike
            register(spark, name, path)
            names.append(f"{DATABASE}.{name}")
    return names


def upkeep(spark, settings: Settings, retain_hours: float = 2.0) -> None:
    """Compact small files and vacuum old ones, so a day of one-minute commits stays readable."""
    from delta.tables import DeltaTable

    for name in TABLES:
        path = settings.table_uri(name)
        try:
            table = DeltaTable.forPath(spark, path)
            table.optimize().executeCompaction()
            table.vacuum(retain_hours)
        except Exception as exc:  # noqa: BLE001 - upkeep must never stop the job
            log.warning("upkeep of %s failed: %s", name, str(exc).splitlines()[0])
