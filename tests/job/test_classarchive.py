"""The JVM class archive: which sessions map it (unit), and that the job's JVM really does (integration)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from pipeline.job import classarchive, jvmoptions
from pipeline.settings import PROJECT_ROOT, Settings
from tests.support.stack import make_settings


@pytest.fixture
def fake_jars(tmp_path, monkeypatch):
    """A jars folder whose listing the test controls (no Maven, no Java)."""
    jars = [str(tmp_path / "jars" / "spark" / "delta-spark_2.13-4.0.jar")]
    monkeypatch.setattr("pipeline.procs.jvm.spark_extra_jars", lambda folder, s3=False: list(jars))
    monkeypatch.setattr("pipeline.procs.jvm.java_version", lambda java="java": 17)
    return jars


def test_options_only_when_on_local_and_the_archive_is_there(tmp_path, fake_jars):
    settings = make_settings(tmp_path / "data", jars_dir=tmp_path / "jars")
    assert jvmoptions.java_options(settings) == ""  # not built yet
    path = jvmoptions.archive_path(settings)
    assert path.parent == tmp_path / "jvm-archive" and path.name.startswith("spark-")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"x")
    options = jvmoptions.java_options(settings)
    assert options.startswith(f"-XX:SharedArchiveFile={path} ") and "-Xshare:auto" in options
    assert jvmoptions.java_options(settings.replace(jvm_archive=False)) == ""
    assert jvmoptions.java_options(settings.replace(spark_master="spark://10.0.0.5:7077")) == ""


def test_the_key_follows_the_jars(tmp_path, fake_jars):
    settings = make_settings(tmp_path / "data", jars_dir=tmp_path / "jars")
    before = jvmoptions.archive_path(settings)
    fake_jars.append(str(tmp_path / "jars" / "spark" / "spark-sql-kafka-0-10_2.13-4.2.0.jar"))
    assert jvmoptions.archive_path(settings) != before


def test_a_bad_flag_is_refused_with_what_is_allowed(tmp_path):
    done = subprocess.run([sys.executable, "-m", "pipeline", "job", "--once"], cwd=PROJECT_ROOT,
                          env={"PATH": "/usr/bin:/bin", "TORMENTA_DATA_DIR": str(tmp_path),
                               "TORMENTA_JVM_ARCHIVE": "sometimes"}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "TORMENTA_JVM_ARCHIVE" in done.stderr and "allowed: true/false" in done.stderr


PROBE = textwrap.dedent("""
    import sys
    from pipeline.job.spark import build_spark, launch_conf
    from pipeline.settings import Settings
    settings = Settings.from_env()
    options = launch_conf(settings)["spark.driver.extraJavaOptions"]
    print("OPTIONS", options)
    spark = build_spark(settings, "probe", extra_conf={
        "spark.driver.extraJavaOptions": options + " -Xlog:class+load=info:file=" + sys.argv[1]})
    spark.sql("CREATE TABLE t (x INT) USING DELTA LOCATION '" + sys.argv[2] + "'")
    spark.stop()
""")


@pytest.mark.integration
def test_the_jobs_jvm_maps_the_built_archive(tmp_path):
    """The archive `make install` built (`make test` installs first; built here when missing, as
    `jvm-archive --if-missing` does: a second build is ~50 s of a shared box), then start the job's
    SparkSession: Spark's and Delta's classes come from the archive ("shared objects file")."""
    env_settings = {"TORMENTA_DATA_DIR": str(tmp_path / "data")}
    settings = Settings.from_env(env_settings)
    path = jvmoptions.archive_path(settings)
    if not path.is_file():
        built, _ = classarchive.build(settings)
        assert built == path
    assert path.is_file() and path.stat().st_size > 10e6
    assert not list(path.parent.glob(".*.tmp")) and list(path.parent.glob("spark-*.jsa")) == [path]
    log = tmp_path / "classes.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TORMENTA_")} | env_settings | {"TORMENTA_METRICS_PORT": "0"}
    done = subprocess.run([sys.executable, "-c", PROBE, str(log), str(tmp_path / "t")], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"-XX:SharedArchiveFile={path}" in done.stdout
    loaded = {line.split()[1]: line for line in log.read_text().splitlines() if " source: " in line}
    for cls in ("org.apache.spark.SparkContext", "org.apache.spark.sql.delta.DeltaLog"):
        assert "shared objects file" in loaded[cls], loaded.get(cls)
    assert not [line for line in done.stdout.splitlines() if "[cds" in line]  # the JVM printed nothing about it
