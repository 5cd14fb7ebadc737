"""SparkSession factory for the job and the tools that need Spark (never the dashboard).

Spark runs where ``TORMENTA_SPARK_MASTER`` says: ``local[N]`` by default, or a cluster
(``spark://host:port``, ``yarn``, ``k8s://https://...``). Jars come as local paths from
the Maven cache (``spark.jars``), so a running job never needs the network; on a cluster
the driver serves them to the executors, and the ``pipeline`` package is shipped to them
as a zip (``addPyFile``). Under ``spark-submit`` (see ``pipeline/job/submit.py``) the
command line's ``--master``, ``--jars`` and ``--py-files`` are used as given.

Tables and checkpoints live under ``TORMENTA_STORAGE_URI``: the data folder, or
``s3a://bucket/prefix`` through Hadoop's S3A connector. The storage is checked before
Spark starts (credentials present, endpoint answering, bucket there) so a bad location is
refused in seconds with one line. Credentials go into the Hadoop configuration of the
running session, never onto a command line or into a log. The session runs in UTC so
contract timestamps with any offset are normalised the same way everywhere.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from pipeline.errors import JobError
from pipeline.job import jvmoptions, scratch
from pipeline.job.jvmoptions import JIT_OPTIONS
from pipeline.procs.jvm import java_version, service_heap_options, spark_extra_jars
from pipeline.settings import PREFIX, Settings

log = logging.getLogger(__name__)
STORAGE_TIMEOUT_S = 5.0


# Spark's default writer of the streaming checkpoint (offset and commit logs, every state
# store changelog) goes through Hadoop's FileContext, which on a local disk without
# Hadoop's native library forks `chmod` and `readlink` for each file: ~35 ms per file
# against ~10 ms through the FileSystem API, and a thread of the job was forking in 28 %
# of samples of a 10k batch. Only the job writes its checkpoint, so the FileSystem
# writer's check-then-rename is safe there. Object storage keeps Spark's default.
LOCAL_DISK_CONF = {
    "spark.sql.streaming.checkpointFileManagerClass":
        "org.apache.spark.sql.execution.streaming.checkpointing.FileSystemBasedCheckpointFileManager",
}


# What keeps a job that runs for days flat (issue 19; docs/PERFORMANCE.md, "Steady state").
# RocksDB's one memory budget in the job's JVM (block cache, memtables charged to it, the
# state files' index and filter blocks). 256 MB held a steady hour, but in a catch-up the
# 6M-record batches filled the memtables, pushed the filter blocks out and every lookup of
# a new id read them again: a 6M batch in 83-149 s on a 6-12M key state. 1 GB cured that
# (16-20 s) but at 10,000 tx/s the memtables between two snapshots kept filling it for
# 25 minutes (job RSS +1.1 GiB after minute 10, run 20261206-062629-94ad). 384 MB: 6M
# batches in 16-41 s up to 30M keys (bench/bench_dedupe_state.py --rows 6000000 --batches 6,
# docs/PERFORMANCE.md), and a steady 10,000 tx/s reaches it by about minute 12 (in the 1 GB
# run the state's memory passed 384 MB between batches 9 and 12), not after half an hour.
STATE_MEMORY_MB = 384
# The state folder's history. Spark keeps the newest STATE_HISTORY_BATCHES versions and
# deletes older changelogs only behind a snapshot, and only once at least
# STATE_HISTORY_BATCHES x STATE_EXTRA_RATIO stale versions have gathered; RocksDB snapshots
# every STATE_SNAPSHOT_EVERY batches. A restart replays one batch from the newest snapshot
# plus its changelogs, so ten versions are plenty.
STATE_HISTORY_BATCHES = 10
STATE_SNAPSHOT_EVERY = 5
STATE_EXTRA_RATIO = 0.3


def state_folder_batches() -> int:
    """How many batches of changelogs the state folder can hold at most before a clean-up:
    after that many batches its size saw-tooths around a level instead of growing."""
    return STATE_HISTORY_BATCHES + STATE_SNAPSHOT_EVERY + math.ceil(STATE_HISTORY_BATCHES * STATE_EXTRA_RATIO)


STEADY_STATE_CONF = {
    # RocksDB's memtables (64 MB, two per state partition by default), its block caches
    # and the index and filter blocks of every state file live outside the heap, unbounded
    # by default: the driver's RSS grew far past its heap. One budget for every instance,
    # the filter and index blocks inside it.
    "spark.sql.streaming.stateStore.rocksdb.boundedMemoryUsage": "true",
    "spark.sql.streaming.stateStore.rocksdb.maxMemoryUsageMB": str(STATE_MEMORY_MB),
    # Spark's context cleaner asks for a GC every 30 min by default; until one runs, the
    # metaspace of generated classes that left the code-gen cache and the C memory held by
    # dead zlib and codec objects stay (a 10-min steady run: metaspace +83 MiB, RSS outside
    # the JVM's own accounting +204 MiB; one GC gave back 43 MiB, a trim 56 more). Every
    # 5 min, as a concurrent cycle (pipeline.procs.jvm.service_heap_options).
    "spark.cleaner.periodicGC.interval": "5min",
    # The checkpoint keeps this many batches of offsets, commits and state changelogs
    # (Spark's default 100, plus 30 % before a clean-up: over two hours of every dedupe
    # key written and evicted at a one-minute trigger). With 20 and a snapshot every 10
    # batches (Spark's default) the state folder grew for 46 batches before its first
    # clean-up (the one-hour soak); 10 and 5 level it off after 18.
    "spark.sql.streaming.minBatchesToRetain": str(STATE_HISTORY_BATCHES),
    "spark.sql.streaming.stateStore.minDeltasForSnapshot": str(STATE_SNAPSHOT_EVERY),
    "spark.sql.streaming.ratioExtraSpaceAllowedInCheckpoint": str(STATE_EXTRA_RATIO),
    # The status store behind the Spark UI listens even with the UI off (the SQL listener
    # and the job/stage/task listener are always attached) and keeps 1,000 SQL executions
    # with their plans and metrics, 1,000 jobs and 1,000 stages: heap that grows with every
    # batch. Nothing of this package reads it (query progress is kept apart).
    "spark.sql.ui.retainedExecutions": "50",
    "spark.ui.retainedJobs": "200",
    "spark.ui.retainedStages": "200",
    "spark.ui.retainedTasks": "10000",
    # OPTIMIZE rewrites every file smaller than this (Delta's default: 1 GB), so each
    # compaction rewrote a whole day's partition again; files past 64 MB are left as they are.
    "spark.databricks.delta.optimize.minFileSize": str(64 * 2**20),
}


def submitted() -> bool:
    """True inside spark-submit: its JVM is already up, with the command line's master and jars."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def build_spark(settings: Settings, app_name: str = "tormenta-job", *, extra_conf: dict[str, str] | None = None,
                service: bool = False, part: str | None = None):
    """Create (or return the running) SparkSession configured for Tormenta.

    `service`: a process that runs for hours (the job, the live lane) takes its whole heap
    at start (`pipeline.procs.jvm.service_heap_options`). `part` ("job", "live"): when this
    process launches the driver JVM, its temp files and Spark's scratch go to the part's own
    folder, emptied first (`driver_scratch`)."""
    java_version()
    check_storage(settings)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # never bind or advertise a non-loopback address
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app_name)
    tmp_dir = driver_scratch(settings, part)
    conf = session_conf(settings, local_dir=tmp_dir)
    if not submitted():
        conf.update(launch_conf(settings, service=service, tmp_dir=tmp_dir))
        builder = builder.master(settings.spark_master_url)
    for k, v in {**conf, **(extra_conf or {})}.items():
        builder = builder.config(k, v)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    master = spark.sparkContext.master
    if not master.startswith("local"):
        ship_package(spark, settings)
    if settings.on_object_storage:
        open_storage(spark, settings)
    log.info("spark session: %s, shuffle partitions %d, driver memory %s, tables and checkpoints in %s%s",
             master, settings.effective_shuffle_partitions, settings.driver_memory,
             settings.storage_uri if settings.on_object_storage else settings.data_dir,
             f", temp files in {tmp_dir}" if tmp_dir else "")
    return spark


def launches_jvm() -> bool:
    """True when the next session of this process starts a driver JVM (not under spark-submit,
    no JVM started earlier: PySpark keeps its first one for every later session)."""
    from pyspark import SparkContext

    return not submitted() and SparkContext._gateway is None


def driver_scratch(settings: Settings, part: str | None) -> Path | None:
    """The part's temp folder, locked and emptied (`pipeline.job.scratch`), when this process
    launches the part's driver JVM; else None (Spark's defaults: /tmp, the data folder's spark-tmp).

    Under spark-submit the driver JVM and its options are the command line's."""
    if part is None or not launches_jvm():
        return None
    return scratch.claim(settings.data_dir, part)


def launch_conf(settings: Settings, *, service: bool = False, tmp_dir: Path | None = None) -> dict[str, str]:
    """What only counts when this process launches the JVM (spark-submit passes its own).

    `tmp_dir`: the driver's java.io.tmpdir (the part's temp folder); ahead of the archive's
    options, so none of ours overrides it."""
    jars = spark_extra_jars(settings.jars_dir)
    conf = {
        "spark.driver.memory": settings.driver_memory,
        "spark.executor.memory": settings.executor_memory,
        "spark.driver.extraJavaOptions": " ".join(filter(None, (
            f"-XX:+UseG1GC -Dio.netty.tryReflectionSetAccessible=true {JIT_OPTIONS}",
            service_heap_options(settings.driver_memory) if service else "",
            scratch.java_option(tmp_dir) if tmp_dir is not None else "", jvmoptions.java_options(settings)))),
    }
    if settings.on_object_storage:
        s3 = [j for j in spark_extra_jars(settings.jars_dir, s3=True) if j not in jars]
        if settings.spark_master_url.startswith("local"):
            # One JVM: on its classpath from the start, instead of spark.jars copying the
            # ~690 MB AWS bundle into the local dir of every run.
            conf["spark.driver.extraClassPath"] = os.pathsep.join(s3)
        else:
            jars += s3  # the executors fetch them from the driver
    conf["spark.jars"] = ",".join(jars)
    return conf


def session_conf(settings: Settings, *, local_dir: Path | None = None) -> dict[str, str]:
    """The job's Spark configuration (no secrets: those go to the Hadoop configuration later).

    `local_dir`: Spark's scratch on the driver (the part's temp folder); else the data
    folder's ``spark-tmp``."""
    shuffle = str(settings.effective_shuffle_partitions)
    local_dir = local_dir or settings.data_dir / "spark-tmp"
    local_dir.mkdir(parents=True, exist_ok=True)
    delta = "spark.databricks.delta."
    return {
        "spark.driver.host": settings.driver_host,
        "spark.driver.bindAddress": settings.driver_host,
        "spark.ui.enabled": "false",
        # Executors of a cluster run the same generated decode (the driver's own options
        # are set where its JVM is launched: launch_conf or --driver-java-options).
        "spark.executor.extraJavaOptions": JIT_OPTIONS,
        "spark.ui.showConsoleProgress": "false",
        "spark.local.dir": str(local_dir),  # a cluster manager's own local dirs take precedence on workers
        "spark.sql.session.timeZone": "UTC",
        # The Kafka source's options carry the job's SASL login (sasl.jaas.config): anything that
        # prints options or plans (logs, UI, EXPLAIN) shows these keys redacted.
        "spark.sql.redaction.options.regex": "(?i)url|jaas|password|secret|ssl\\.key|keystore",
        "spark.redaction.regex": "(?i)secret|password|token|access[.]?key|jaas",
        "spark.sql.shuffle.partitions": shuffle,
        # Delta's VACUUM lists a table's files in a Spark job of this many tasks (Spark's
        # default: 10,000): ~160 s per VACUUM of a small table on a 2-core box (issue 19).
        "spark.sql.sources.parallelPartitionDiscovery.parallelism": shuffle,
        "spark.default.parallelism": shuffle,
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        # The batch summary collects the high-value rows per group; keep that aggregate
        # hash-based instead of falling back to a sort of the whole batch.
        "spark.sql.objectHashAggregate.sortBased.fallbackThreshold": "100000",
        # Rebuilding a table snapshot after each commit is a small Spark job; with its own
        # default partitioning it schedules dozens of tasks per commit on a 2-core box.
        delta + "snapshotPartitions": str(max(1, settings.job_cores)),
        "spark.sql.warehouse.dir": str(settings.data_dir / "warehouse"),
        "spark.sql.streaming.stateStore.providerClass":
            "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider",
        # The dedupe state is written every batch: commit a changelog of the changed keys
        # rather than a RocksDB snapshot.
        "spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled": "true",
        # Counting the state's rows costs a RocksDB read before every write (one per
        # message): ~3 s of a 3M batch. Nothing reads that count.
        "spark.sql.streaming.stateStore.rocksdb.trackTotalNumberOfRows": "false",
        # Tables must stay readable by delta-rs (the dashboard): no deletion vectors,
        # classic checkpoints, no column mapping.
        delta + "properties.defaults.enableDeletionVectors": "false",
        delta + "properties.defaults.checkpointPolicy": "classic",
        delta + "properties.defaults.columnMapping.mode": "none",
        delta + "retentionDurationCheck.enabled": "false",
        **STEADY_STATE_CONF,
        **({} if settings.on_object_storage else LOCAL_DISK_CONF),
    }


# ---- the pipeline package on the executors ------------------------------------------------
def package_zip(settings: Settings) -> Path:
    """A zip of the `pipeline` package in the data folder (what `--py-files` takes)."""
    import pipeline

    root = Path(pipeline.__file__).resolve().parent
    out = settings.data_dir / "spark-pyfiles" / "pipeline.zip"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".pipeline.{os.getpid()}.zip")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted(root.rglob("*")):
            if f.is_file() and "__pycache__" not in f.parts:
                z.write(f, f.relative_to(root.parent).as_posix())
    os.replace(tmp, out)  # atomic: two processes building it never leave half a zip
    return out


def spark_submit_args(settings: Settings) -> list[str]:
    """The spark-submit options that ship what the job needs (local paths on this machine)."""
    return ["--jars", ",".join(spark_extra_jars(settings.jars_dir, s3=settings.on_object_storage)),
            "--py-files", str(package_zip(settings)),
            "--driver-memory", settings.driver_memory,
            "--driver-java-options", f"{JIT_OPTIONS} {service_heap_options(settings.driver_memory)}",
            "--conf", f"spark.executor.memory={settings.executor_memory}"]


def ship_package(spark, settings: Settings) -> None:
    """Executors import `pipeline` from a zip the driver serves (unless spark-submit shipped it)."""
    given = spark.sparkContext.getConf().get("spark.submit.pyFiles", "") or ""
    if "pipeline.zip" in given:
        return
    spark.sparkContext.addPyFile(str(package_zip(settings)))


# ---- object storage -------------------------------------------------------------------------
def storage_endpoint(settings: Settings) -> str:
    return settings.storage_endpoint or f"https://s3.{settings.storage_region}.amazonaws.com"


def _bucket(settings: Settings) -> str:
    return settings.storage_uri[len("s3a://"):].split("/")[0]


def check_storage(settings: Settings, timeout: float = STORAGE_TIMEOUT_S) -> None:
    """Before Spark starts: credentials present, endpoint answering, bucket there (one line if not)."""
    if not settings.on_object_storage:
        return
    settings.storage_keys()  # SettingsError (bad input) when a key is missing
    endpoint, bucket = storage_endpoint(settings), _bucket(settings)
    # An unsigned HEAD: any answer but 404 (403 for a private bucket) means it is there.
    # No proxy from the environment: S3A does not use one either.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        opener.open(urllib.request.Request(f"{endpoint}/{bucket}", method="HEAD"), timeout=timeout).close()
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise JobError(f"bucket {bucket!r} does not exist at {endpoint}; create it or fix "
                           f"{PREFIX}STORAGE_URI") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise JobError(f"object storage endpoint {endpoint} did not answer within {timeout:g} s ({reason}); "
                       f"check {PREFIX}STORAGE_ENDPOINT and that the storage is up") from None


def s3a_conf(settings: Settings) -> dict[str, str]:
    """Hadoop S3A settings for the storage location, credentials included (never log this)."""
    access, secret = settings.storage_keys()
    endpoint = storage_endpoint(settings)
    return {
        "fs.s3a.endpoint": endpoint,
        "fs.s3a.endpoint.region": settings.storage_region,
        "fs.s3a.connection.ssl.enabled": str(endpoint.startswith("https://")).lower(),
        "fs.s3a.path.style.access": str(settings.storage_path_style).lower(),
        "fs.s3a.aws.credentials.provider": "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
        "fs.s3a.access.key": access,
        "fs.s3a.secret.key": secret,
    }


def open_storage(spark, settings: Settings) -> None:
    """Give the session's Hadoop configuration the S3A settings and look at the location once."""
    hadoop = spark.sparkContext._jsc.hadoopConfiguration()
    conf = s3a_conf(settings)
    for k, v in conf.items():
        hadoop.set(k, v)
    jvm = spark.sparkContext._jvm
    try:
        root = jvm.org.apache.hadoop.fs.Path(settings.storage_uri + "/")
        root.getFileSystem(hadoop).exists(root)
    except Exception as exc:  # noqa: BLE001 - py4j wraps every Java error; report it in one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        for secret in (conf["fs.s3a.access.key"], conf["fs.s3a.secret.key"]):
            first = first.replace(secret, "***")
        spark.stop()
        raise JobError(f"cannot use {settings.storage_uri}: {first[:300]}") from None
