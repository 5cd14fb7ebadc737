"""SparkSession factory for the job and the tools that need Spark (never the dashboard).

Jars come as local paths from the Maven cache (`spark.jars`), so a running job never
needs the network. The session runs in UTC so contract timestamps with any offset are
normalised the same way everywhere.
"""

from __future__ import annotations

import logging
import os
import sys

from pipeline.kafka.jvm import java_version, spark_extra_jars
from pipeline.settings import Settings

log = logging.getLogger(__name__)


def build_spark(settings: Settings, app_name: str = "tormenta-job", *, extra_conf: dict[str, str] | None = None):
    """Create (or return the running) SparkSession configured for Tormenta."""
    java_version()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # never bind or advertise a non-loopback address
    from pyspark.sql import SparkSession

    jars = spark_extra_jars(settings.jars_dir)
    shuffle = settings.effective_shuffle_partitions
    local_dir = settings.data_dir / "spark-tmp"
    local_dir.mkdir(parents=True, exist_ok=True)
    builder = (
        SparkSession.builder.appName(app_name)
        .master(f"local[{settings.job_cores}]")
        .config("spark.jars", ",".join(jars))
        .config("spark.driver.memory", settings.driver_memory)
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.local.dir", str(local_dir))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", str(shuffle))
        .config("spark.default.parallelism", str(shuffle))
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
        # The batch summary collects the high-value rows per group; keep that aggregate
        # hash-based instead of falling back to a sort of the whole batch.
        .config("spark.sql.objectHashAggregate.sortBased.fallbackThreshold", "100000")
        # Rebuilding a table snapshot after each commit is a small Spark job; with its own
        # default partitioning it schedules dozens of tasks per commit on a 2-core box.
        .config("spark.databricks.delta.snapshotPartitions", str(max(1, settings.job_cores)))
        .config("spark.sql.warehouse.dir", str(settings.data_dir / "warehouse"))
        .config("spark.sql.streaming.stateStore.providerClass",
                "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider")
        # The dedupe state is written every batch: commit a changelog of the changed keys
        # rather than a RocksDB snapshot.
        .config("spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled", "true")
        # Tables must stay readable by delta-rs (the dashboard): no deletion vectors,
        # classic checkpoints, no column mapping.
        .config("spark.databricks.delta.properties.defaults.enableDeletionVectors", "false")
        .config("spark.databricks.delta.properties.defaults.checkpointPolicy", "classic")
        .config("spark.databricks.delta.properties.defaults.columnMapping.mode", "none")
        .config("spark.databricks.delta.retentionDurationCheck.enabled", "false")
        .config("spark.driver.extraJavaOptions", "-XX:+UseG1GC -Dio.netty.tryReflectionSetAccessible=true")
    )
    for k, v in (extra_conf or {}).items():
        builder = builder.config(k, v)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    log.info("spark session: local[%d], shuffle partitions %d (cores x 2.5), driver memory %s",
             settings.job_cores, shuffle, settings.driver_memory)
    return spark
