"""The job on a real Spark standalone cluster gives the same rows as in local mode.

A master and one worker (1 core, 1 GiB) from pyspark's own distribution, on loopback; the
job runs as `python -m pipeline job --once --query high_value` with
TORMENTA_SPARK_MASTER=spark://..., against crafted messages on the session broker, and
again in local mode over the same topic; then through spark-submit the way the README
shows. Also the settings and the spark-submit pieces that need no cluster.
"""

import os
import shlex
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from deltalake import DeltaTable

from pipeline.errors import SettingsError
from pipeline.job.spark import JIT_OPTIONS, package_zip, spark_submit_args
from pipeline.procs.jvm import service_heap_options
from pipeline.settings import Settings
from tests.support.spark_standalone import StandaloneCluster, spark_home
from tests.support.stack import produce, tx

ROOT = Path(__file__).resolve().parents[2]
HV_COLUMNS = ["transaction_id", "amount", "event_time", "kafka_partition", "kafka_offset", "ingest_time"]
Q_COLUMNS = ["reason", "raw_value", "kafka_partition", "kafka_offset", "wire_format"]


def crafted() -> list:
    return [
        tx("at-threshold", 1500.00), tx("just-above", 1500.01), tx("low", 99.99),
        tx("big", 25000, timestamp="2026-11-24T20:12:03+01:00"),
        tx("dup", 1800), tx("dup", 1800),                              # a retried message
        tx("dup", 1800, timestamp="2026-11-24T23:00:00Z"),             # same id hours later: a new sale
        tx("string-amount", "2000"), "garbage{", tx("neg", -5),
    ] + [tx(f"many-{i}", 1600 + i, person_id=f"P{i % 7}") for i in range(40)]


def job_env(settings: Settings, data_dir: Path, master: str) -> dict[str, str]:
    env = {**os.environ, "TORMENTA_BOOTSTRAP_SERVERS": settings.bootstrap_servers, "TORMENTA_TOPIC": settings.topic,
           "TORMENTA_DATA_DIR": str(data_dir), "TORMENTA_SPARK_MASTER": master, "TORMENTA_DRIVER_MEMORY": "1g",
           "TORMENTA_EXECUTOR_MEMORY": "1g", "TORMENTA_COMPACT_EVERY": "0", "PYSPARK_PYTHON": sys.executable}
    env.pop("PYSPARK_GATEWAY_PORT", None)
    return env


def run_once(settings: Settings, data_dir: Path, master: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", "job", "--once", "--query", "high_value"],
                          cwd=ROOT, env=job_env(settings, data_dir, master), capture_output=True, timeout=400)


def rows(data_dir: Path, table: str, cols: list[str]) -> list[tuple]:
    df = DeltaTable(str(data_dir / "delta" / table)).to_pandas(columns=cols)
    return sorted(tuple(str(v) for v in r) for r in df.itertuples(index=False))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A standalone master and one worker (1 core, 1 GiB) for this module, stopped at the end."""
    with StandaloneCluster(tmp_path_factory.mktemp("spark-standalone"), cores=1, memory="1g") as c:
        yield c


def apps_during(cluster: StandaloneCluster, run) -> tuple[object, list[tuple]]:
    """Run `run()`; the (name, state, cores) of the applications the master completed meanwhile."""
    before = {a["id"] for a in cluster.state()["completedapps"]}
    result = run()
    after = cluster.state()["completedapps"]
    return result, [(a["name"], a["state"], a["cores"]) for a in after if a["id"] not in before]


@pytest.mark.integration
def test_cluster_and_local_mode_write_the_same_rows(stack, cluster, tmp_path):
    produce(stack, crafted())
    local_dir, cluster_dir = tmp_path / "local", tmp_path / "cluster"
    local = run_once(stack, local_dir, "local[1]")
    assert local.returncode == 0, local.stderr.decode(errors="replace")[-3000:]
    on_cluster, apps = apps_during(cluster, lambda: run_once(stack, cluster_dir, cluster.url))
    assert on_cluster.returncode == 0, on_cluster.stderr.decode(errors="replace")[-3000:]
    # The job really ran as an application of the standalone master, on its one worker core.
    assert apps == [("tormenta-job", "FINISHED", 1)]

    hv = rows(cluster_dir, "high_value", HV_COLUMNS)
    assert hv == rows(local_dir, "high_value", HV_COLUMNS)
    assert sorted({r[0] for r in hv}) == sorted({"just-above", "big", "dup"} | {f"many-{i}" for i in range(40)})
    assert [r[0] for r in hv].count("dup") == 2 and len(hv) == 44
    q = rows(cluster_dir, "quarantine", Q_COLUMNS)
    assert q == rows(local_dir, "quarantine", Q_COLUMNS)
    assert sorted(r[0] for r in q) == ["amount is not a number", "amount must be greater than 0", "value is not JSON"]


@pytest.mark.integration
def test_spark_submit_runs_the_job_on_the_cluster(stack, cluster, tmp_path):
    """The README's form: spark-submit --master ... $(python -m pipeline spark-submit-args) submit.py job.
    Run outside the checkout, so `pipeline` can only come from the --py-files zip."""
    produce(stack, crafted()[:10])
    env = job_env(stack, tmp_path / "data", "local[1]")  # spark-submit's --master wins over the setting
    printed = subprocess.run([sys.executable, "-m", "pipeline", "spark-submit-args"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=60)
    assert printed.returncode == 0, printed.stderr
    cmd = [str(spark_home() / "bin" / "spark-submit"), "--master", cluster.url, "--deploy-mode", "client",
           *shlex.split(printed.stdout), str(ROOT / "pipeline" / "job" / "submit.py"),
           "job", "--once", "--query", "high_value"]
    done, apps = apps_during(cluster, lambda: subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True,
                                                             text=True, timeout=400))
    assert done.returncode == 0, done.stderr[-3000:]
    assert apps == [("tormenta-job", "FINISHED", 1)]
    hv = rows(tmp_path / "data", "high_value", HV_COLUMNS)
    assert sorted(r[0] for r in hv) == ["big", "dup", "dup", "just-above"]


def test_spark_master_forms():
    base = {"TORMENTA_DATA_DIR": "/tmp/x", "TORMENTA_JOB_CORES": "3"}
    assert Settings.from_env(base).spark_master_url == "local[3]"
    for master in ("local[*]", "local[2]", "spark://10.0.0.5:7077", "spark://m1:7077,m2:7077", "yarn",
                   "k8s://https://kube.internal:6443"):
        assert Settings.from_env({**base, "TORMENTA_SPARK_MASTER": master}).spark_master_url == master
    for bad in ("mesos://m:5050", "spark://nohost", "k8s://kube:6443", "local[two]", "cluster"):
        with pytest.raises(SettingsError, match="allowed: local, local\\[N\\], spark://host:port, yarn or k8s://"):
            Settings.from_env({**base, "TORMENTA_SPARK_MASTER": bad})


def test_a_bad_master_is_refused_in_one_line_with_exit_2(tmp_path):
    env = {**os.environ, "TORMENTA_DATA_DIR": str(tmp_path), "TORMENTA_SPARK_MASTER": "mesos://m:5050"}
    done = subprocess.run([sys.executable, "-m", "pipeline", "job", "--once"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=20)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "TORMENTA_SPARK_MASTER='mesos://m:5050' is not a Spark master; allowed:" in done.stderr


def test_package_zip_and_spark_submit_args(tmp_path):
    settings = Settings.from_env({"TORMENTA_DATA_DIR": str(tmp_path)})
    with zipfile.ZipFile(package_zip(settings)) as z:
        names = set(z.namelist())
    assert {"pipeline/__init__.py", "pipeline/job/runner.py", "pipeline/contract/spark.py"} <= names
    assert not any("__pycache__" in n for n in names)
    args = spark_submit_args(settings)
    jars = args[args.index("--jars") + 1].split(",")
    assert any("spark-sql-kafka" in j for j in jars) and not any("hadoop-aws" in j for j in jars)
    assert args[args.index("--py-files") + 1] == str(tmp_path / "spark-pyfiles" / "pipeline.zip")
    assert args[args.index("--driver-java-options") + 1] == f"{JIT_OPTIONS} {service_heap_options(settings.driver_memory)}"
    s3 = spark_submit_args(settings.replace(storage_uri="s3a://bucket/tormenta"))
    assert any("hadoop-aws" in j for j in s3[s3.index("--jars") + 1].split(","))
