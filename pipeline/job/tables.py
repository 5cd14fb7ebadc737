"""Delta tables written by the job: names, schemas, properties, SQL registration, upkeep.

Locations come from ``settings.table_uri(name)``: ``<data_dir>/delta/<name>`` by default,
or ``s3a://bucket/prefix/delta/<name>`` on object storage; the SQL names are
``tormenta.<name>``. Every table keeps the properties delta-rs needs to read it (no
deletion vectors, classic checkpoints, no column mapping) so the dashboard never needs
a JVM.
"""

from __future__ import annotations

import logging
import time

from pipeline.contract.tables import ADDED_COLUMNS, DATABASE, PARTITIONS, TABLES, ddl
from pipeline.settings import Settings

log = logging.getLogger(__name__)

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


UPKEEP_OPS = ("optimize", "vacuum")
VACUUM_RETAIN_HOURS = 2.0


class UpkeepPlan:
    """When the job compacts and vacuums which table: at most one step after any batch.

    Every `every` batches, each table's compaction and vacuum fall due; the steps are spread
    over the cycle, one (one table, one operation) every `every // steps` batches, so no
    micro-batch waits for more than one table's OPTIMIZE or VACUUM. (All of them after one
    batch held the stream for minutes: issue 19.)

    The turns follow the query's batch id, which the checkpoint keeps, not a count of the
    batches this process ran: a job restarted more often than once a cycle (the chaos hour
    20261207-011537-f198 killed it at batches ~30 and ~52, a cycle is 57) otherwise starts
    the count afresh each time and never compacts at all. A step whose turn fell on a batch
    id without data (no batch to run it after) is queued and runs after the next batch with
    data; a batch that a restart runs again may run its step again, which is harmless
    (compaction and vacuum are idempotent)."""

    def __init__(self, names, every: int):
        self.every = every
        self.steps = [(name, op) for name in names for op in UPKEEP_OPS]
        self.gap = max(1, every // max(1, len(self.steps)))
        self.queue: list[tuple[str, str]] = []
        self.last_id: int | None = None

    def batches_to_first_cycle(self) -> int:
        """How many batches after the query's first one every table has been compacted and
        vacuumed once (0: upkeep is off). Before that a table's file count only grows."""
        if not self.every or not self.steps:
            return 0
        return self.every + (len(self.steps) - 1) * self.gap

    def due_at(self, batch_id: int) -> tuple[str, str] | None:
        """Pure: the step whose turn is batch `batch_id` (ids from 0; batch n = id + 1), if any.

        From batch `every` on, step k of each cycle comes `k * gap` batches into it; with more
        steps than batches in a cycle, one step every batch, round the list."""
        n = batch_id + 1
        if not self.every or not self.steps or n < self.every:
            return None
        if len(self.steps) > self.every:
            return self.steps[(n - self.every) % len(self.steps)]
        k, rest = divmod(n % self.every, self.gap)
        return self.steps[k] if rest == 0 and k < len(self.steps) else None

    def after_batch(self, batch_id: int) -> tuple[str, str] | None:
        """After the batch `batch_id` with data: the (table, operation) to run now, or None."""
        if not self.every or not self.steps:
            return None
        # the turns since the last batch this process ran (no-data batches have ids too), at most a cycle
        first = batch_id if self.last_id is None else max(self.last_id + 1, batch_id - self.batches_to_first_cycle())
        for b in range(first, batch_id + 1):
            if (step := self.due_at(b)) is not None and step not in self.queue:
                self.queue.append(step)
        self.last_id = batch_id if self.last_id is None else max(self.last_id, batch_id)
        return self.queue.pop(0) if self.queue else None


def upkeep_step(spark, settings: Settings, name: str, op: str, retain_hours: float = VACUUM_RETAIN_HOURS) -> None:
    """Compact one table's small files (optimize) or delete its files unreferenced for
    `retain_hours` (vacuum). Never raises: upkeep must never stop the job."""
    from delta.tables import DeltaTable

    path = settings.table_uri(name)
    t = time.perf_counter()
    try:
        table = DeltaTable.forPath(spark, path)
        if op == "optimize":
            table.optimize().executeCompaction()
        else:
            table.vacuum(retain_hours)
    except Exception as exc:  # noqa: BLE001 - upkeep must never stop the job
        log.warning("upkeep of %s (%s) failed: %s", name, op, str(exc).splitlines()[0])
        return
    log.info("upkeep %s: %s %.1fs", name, op, time.perf_counter() - t)


def upkeep(spark, settings: Settings, retain_hours: float = VACUUM_RETAIN_HOURS) -> None:
    """Compact and vacuum every table now, one after the other (tests, maintenance by hand)."""
    for name in TABLES:
        for op in UPKEEP_OPS:
            upkeep_step(spark, settings, name, op, retain_hours)
