"""Java and the locally cached Maven jars.

`make jars` resolves two POMs under ``jvm/`` into ``<jars_dir>/broker`` (the Kafka 4
broker and Kafka's tools) and ``<jars_dir>/spark`` (Kafka connector + Delta). This module
checks that Java is there and new enough, and lists the jars each JVM needs, so a running
product never touches the network.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from pathlib import Path

from pipeline.errors import JarsMissingError, JavaError

MIN_JAVA = 17


def java_version(java: str = "java") -> int:
    """Major version of `java` on PATH; raises JavaError when missing or too old."""
    exe = shutil.which(java)
    if exe is None:
        raise JavaError(
            f"Java {MIN_JAVA}+ is required but `java` is not on PATH; install a JDK/JRE {MIN_JAVA} "
            "(e.g. `apt-get install openjdk-17-jre-headless`)"
        )
    out = subprocess.run([exe, "-version"], capture_output=True, text=True, timeout=30)
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not m:
        raise JavaError(f"could not read the Java version from `java -version`: {out.stderr.strip()[:200]}")
    major = int(m.group(1))
    if major == 1 and m.group(2):  # "1.8.0" style
        major = int(m.group(2))
    if major < MIN_JAVA:
        raise JavaError(
            f"Java {major} found, but Kafka 4 and Spark 4 need Java {MIN_JAVA} or newer; "
            f"install e.g. openjdk-{MIN_JAVA}-jre-headless and put it first on PATH"
        )
    return major


def _jar_dir(jars_dir: Path, name: str) -> Path:
    folder = jars_dir / name
    if not folder.is_dir() or not any(folder.glob("*.jar")):
        raise JarsMissingError(f"the {name} jars are not in {folder}; run `make jars` to resolve them from Maven")
    return folder


def broker_classpath(jars_dir: Path) -> str:
    return str(_jar_dir(jars_dir, "broker") / "*")


def _artifact(jar_name: str) -> str:
    """'kafka-clients-3.9.2.jar' -> 'kafka-clients'."""
    return re.sub(r"-\d[\w.+-]*$", "", jar_name[:-4])


# The S3A connector and what it brings (the AWS SDK v2 bundle alone is ~690 MB): on the
# classpath only when tables or checkpoints are on object storage.
S3_ARTIFACTS = ("hadoop-aws", "bundle", "analyticsaccelerator-s3", "wildfly-openssl")


def spark_extra_jars(jars_dir: Path, *, s3: bool = False) -> list[str]:
    """Connector and Delta jars that the pyspark wheel does not already ship (+ S3A if `s3`).

    Maven also resolves Spark's own transitive libraries (Jackson, Hadoop, Parquet, Scala)
    in versions that differ from pyspark's; putting those on the classpath twice breaks
    Spark, so every artifact pyspark already has is left out. hadoop-aws needs the Hadoop
    client pyspark ships (3.5.0), which is why the POM pins that version.
    """
    import pyspark

    folder = _jar_dir(jars_dir, "spark")
    shipped = {_artifact(p.name) for p in (Path(pyspark.__file__).parent / "jars").glob("*.jar")}
    if not s3:
        shipped.update(S3_ARTIFACTS)
    jars = sorted(str(p) for p in folder.glob("*.jar") if _artifact(p.name) not in shipped)
    for needed in ("spark-sql-kafka", "spark-avro", "delta-spark") + (("hadoop-aws", "bundle") if s3 else ()):
        if not any(Path(j).name.startswith(needed) for j in jars):
            raise JarsMissingError(f"{needed} jar missing in {folder}; run `make jars`")
    return jars


NATIVE_TRIM_MS = 60_000   # how often a service JVM gives freed C-heap memory back (JDK 17.0.9+)


@functools.cache
def java_accepts(option: str, java: str = "java") -> bool:
    """Whether the local `java` starts with `option` (a flag that only newer updates know)."""
    exe = shutil.which(java)
    if exe is None:
        return False
    try:
        return subprocess.run([exe, option, "-version"], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def service_heap_options(heap: str) -> str:
    """A long-running JVM's memory options.

    * The heap is committed and touched at start (as Kafka's start script fixes -Xms =
      -Xmx): G1 otherwise commits regions as it first needs them, so the process's RSS
      climbed towards the cap for an hour (the soak read that as growth) and a machine could
      be overcommitted hours after start. From the first minute the RSS is the working size.
    * An explicit GC (Spark's context cleaner asks for one every
      `spark.cleaner.periodicGC.interval`) runs as a concurrent cycle, not a stop-the-world
      full GC: it still unloads the classes of evicted generated code and runs the cleaners
      of dead objects that hold C memory (zlib, compression codecs), without a pause.
    * Freed C-heap memory goes back to the system every minute (`TrimNativeHeapInterval`,
      where the JDK has it): glibc otherwise keeps it, and the RSS only ever went up."""
    trim = f"-XX:TrimNativeHeapInterval={NATIVE_TRIM_MS}"
    return " ".join([f"-Xms{heap}", "-XX:+AlwaysPreTouch", "-XX:+ExplicitGCInvokesConcurrent",
                     *([trim] if java_accepts(trim) else [])])
