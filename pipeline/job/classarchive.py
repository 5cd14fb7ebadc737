"""A class-data-sharing archive for the job's JVM: a cold start that skips most class loading.

A cold ``job --once`` is CPU-bound for seconds on finding, loading and linking the
classes of Spark, Delta and the connectors. HotSpot can instead map the classes an
earlier JVM loaded from an archive file (application class-data sharing:
``-XX:ArchiveClassesAtExit`` writes it, ``-XX:SharedArchiveFile`` maps it; JDK 13+).
Measured on the 2-core box: a SparkSession plus the five tables in 6.5 s instead of 8.7 s.

``python -m pipeline jvm-archive`` (run by ``make install``) starts the job's own
SparkSession once on a throw-away data folder, creates the tables, decodes messages of
both wire formats and appends them to Delta, and lets that JVM write what it loaded.
Every later SparkSession this package launches itself (``local`` master, outside
spark-submit) maps the archive when ``TORMENTA_JVM_ARCHIVE`` is on (the default): the
options that do it, and the archive's path, are in `pipeline.job.jvmoptions`, which the
session factory imports; this module is the builder, which runs the job's own code.

The file name holds a key of what decides the classes and where they come from (the
Java and pyspark versions and every jar path), so an upgrade or a checkout in another
folder never maps a stale archive: it runs without one until the archive is rebuilt.
An archive that cannot be used is ignored by the JVM (``-Xshare:auto``), never fatal.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pipeline.errors import JobError
from pipeline.job.jvmoptions import QUIET, archive_path
from pipeline.settings import PREFIX, Settings

log = logging.getLogger(__name__)
BUILD_TIMEOUT_S = 600.0


def build(settings: Settings, *, timeout: float = BUILD_TIMEOUT_S) -> tuple[Path, float]:
    """Write the archive (replacing one with another key); returns its path and the seconds it took."""
    target = archive_path(settings)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tormenta-jvm-archive-") as work:
        env = {k: v for k, v in os.environ.items() if not k.startswith(PREFIX)}
        env.update({f"{PREFIX}DATA_DIR": work, f"{PREFIX}JARS_DIR": str(settings.jars_dir),
                    f"{PREFIX}JVM_ARCHIVE": "false", f"{PREFIX}SPARK_MASTER": "local"})
        try:
            done = subprocess.run([sys.executable, "-m", "pipeline.job.classarchive", str(tmp)], env=env,
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            tmp.unlink(missing_ok=True)
            raise JobError(f"building the JVM class archive took more than {timeout:g} s") from None
    if done.returncode != 0 or not tmp.is_file() or tmp.stat().st_size == 0:
        tmp.unlink(missing_ok=True)
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise JobError(f"building the JVM class archive failed (exit {done.returncode}): {last[:300]}")
    os.replace(tmp, target)  # atomic: a job starting meanwhile maps the old file or the new one
    for old in target.parent.glob("spark-*.jsa"):
        if old != target:
            old.unlink(missing_ok=True)
    return target, time.perf_counter() - started


def _workload(spark, settings: Settings) -> None:
    """What a first micro-batch does: tables, decode of both formats, dedupe, summary, appends."""
    from datetime import UTC, datetime

    from pipeline.contract.spark import decode_messages
    from pipeline.contract.wire import WIRE_FORMATS
    from pipeline.emulator.binarizer import make_binarizer
    from pipeline.emulator.sources import load_samples
    from pipeline.job import runner, tables, transforms

    tables.create_tables(spark, settings)
    records = load_samples(settings.sample_file)[:200]
    values = [make_binarizer(fmt).encode_record(r) for r in records for fmt in WIRE_FORMATS]
    values += [b"not json", b"\x00\x00\x00\x00\x01\x02"]  # quarantine: both formats' rules
    now = datetime.now(UTC).replace(tzinfo=None)
    raw = spark.createDataFrame([(None, v, settings.topic, i % 3, i, now) for i, v in enumerate(values)],
                                "key binary, value binary, topic string, partition int, offset long, "
                                "timestamp timestamp")
    rows = transforms.dedupe(decode_messages(raw), settings.dedup_window, settings.threshold)
    summary = transforms.batch_summary(rows, settings.threshold, settings.agg_window).persist()
    writer = runner.HighValueBatchWriter(settings)
    stats = runner.BatchStats.of(summary)
    writer._write_all(summary, stats, runner.BatchOffsets({}, {}), 0, now, time.perf_counter())
    summary.unpersist()


def _dump(out: str) -> int:
    """Child process: the job's SparkSession with ArchiveClassesAtExit, the workload, a clean JVM exit."""
    from pyspark import SparkContext

    from pipeline.job.spark import build_spark, launch_conf

    settings = Settings.from_env()
    options = launch_conf(settings)["spark.driver.extraJavaOptions"] + f" -XX:ArchiveClassesAtExit={out} {QUIET}"
    spark = build_spark(settings, "tormenta-jvm-archive", extra_conf={"spark.driver.extraJavaOptions": options})
    _workload(spark, settings)
    spark.stop()
    # The JVM writes the archive as it exits: ask it to exit (EOF on its stdin) and wait.
    proc = SparkContext._gateway.proc
    SparkContext._gateway.shutdown()
    proc.stdin.close()
    return proc.wait(timeout=BUILD_TIMEOUT_S)


def archive_cmd(settings: Settings, args) -> int:
    """`python -m pipeline jvm-archive`: build it (or with --remove, delete it)."""
    if args.remove:
        folder = archive_path(settings).parent
        shutil.rmtree(folder, ignore_errors=True)
        print(f"removed {folder}")
        return 0
    if args.if_missing and archive_path(settings).is_file():
        print(f"JVM class archive: {archive_path(settings)} (exists)")
        return 0
    path, took = build(settings)
    print(f"JVM class archive: {path} ({path.stat().st_size / 1e6:.0f} MB, built in {took:.0f} s); "
          f"the job's SparkSession maps it while {PREFIX}JVM_ARCHIVE is true")
    return 0


def register(sub) -> None:
    p = sub.add_parser("jvm-archive", help="build the JVM class archive that shortens the job's cold start",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--if-missing", action="store_true", help="do nothing when the archive for this Java, pyspark "
                   "and these jars exists (what `make install` runs)")
    p.add_argument("--remove", action="store_true", help="delete the archive instead")
    p.set_defaults(func=archive_cmd)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    raise SystemExit(_dump(sys.argv[1]))
