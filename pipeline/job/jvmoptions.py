"""The driver JVM options this package sets when it launches Spark itself.

- `JIT_OPTIONS`: let HotSpot compile the decode's huge generated method,
- `java_options(settings)`: map the class-data-sharing archive, when it is built and this
  process launches a ``local`` JVM; `archive_path(settings)` is where that archive lives.

The archive is built by `pipeline.job.classarchive` (``python -m pipeline jvm-archive``),
which runs the job's own code; this module only names the file and the options, so the
session factory (`pipeline.job.spark`) does not depend on the builder.

The file name holds a key of what decides the classes and where they come from (the
Java and pyspark versions and every jar path), so an upgrade or a checkout in another
folder never maps a stale archive: it runs without one until the archive is rebuilt.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

from pipeline.procs import jvm
from pipeline.settings import Settings

# Whole-stage codegen turns the decode (both wire formats, every contract rule) into one
# Java method of well over 8,000 bytes of bytecode, and HotSpot never JIT-compiles a
# method that large by default: it ran interpreted, ~40 % of a 1M-message decode
# (docs/PERFORMANCE.md). Letting the JIT compile it keeps codegen and its speed.
JIT_OPTIONS = "-XX:-DontCompileHugeMethods"
# The JVM reports an archive it cannot map (or classes it skipped while dumping) on
# stdout; neither is an error here, so neither is printed.
QUIET = "-Xshare:auto -Xlog:cds=off -Xlog:cds+dynamic=off"


def archive_path(settings: Settings) -> Path:
    """Where the archive for this Java, this pyspark and these jars lives (it may not exist)."""
    import pyspark

    parts = [f"java {jvm.java_version()}", f"pyspark {pyspark.__version__}", str(Path(pyspark.__file__).parent),
             *jvm.spark_extra_jars(settings.jars_dir), sys.version.split()[0]]
    key = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
    return settings.jars_dir.parent / "jvm-archive" / f"spark-{key}.jsa"


def java_options(settings: Settings) -> str:
    """The driver JVM options that map the archive, or "" (off, missing, or not ours to launch)."""
    if not settings.jvm_archive or not settings.spark_master_url.startswith("local"):
        return ""
    try:
        path = archive_path(settings)
    except Exception:  # noqa: BLE001 - no Java or no jars: build_spark reports that itself
        return ""
    return f"-XX:SharedArchiveFile={path} {QUIET}" if path.is_file() else ""
