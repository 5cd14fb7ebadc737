"""The temp folder of the job and the live lane (pipeline.job.scratch): where it is, what a
start empties (and what it never touches), the lock that keeps a second process out, and
the options that point the driver JVM and Spark at it."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.errors import JobError
from pipeline.job import scratch
from pipeline.job.spark import driver_scratch, launch_conf, session_conf, spark_submit_args
from tests.support.stack import make_settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def claimed():
    """Folders claimed by a test, released at its end (a process keeps its lock for life)."""
    folders: list[Path] = []
    yield folders
    for folder in folders:
        scratch.release(folder)


def test_each_part_has_its_own_folder_under_the_data_folder(tmp_path):
    assert scratch.scratch_dir(tmp_path, "job") == tmp_path / "tmp" / "job"
    assert scratch.scratch_dir(tmp_path, "live") == tmp_path / "tmp" / "live"
    assert scratch.scratch_dir(Path("rel"), "job").is_absolute()
    with pytest.raises(ValueError, match="unknown part 'app'"):
        scratch.scratch_dir(tmp_path, "app")


def test_a_start_empties_what_a_dead_one_left_and_nothing_outside(tmp_path, claimed):
    folder = tmp_path / "data" / "tmp" / "job"
    (folder / "blockmgr-1" / "0c").mkdir(parents=True)
    (folder / "blockmgr-1" / "0c" / "shuffle_0_1_0.data").write_bytes(b"x" * 100)
    (folder / "librocksdbjni123.so").write_bytes(b"y" * 1000)
    outside = tmp_path / "elsewhere"
    (outside / "keep").mkdir(parents=True)
    (outside / "keep" / "file").write_text("mine")
    (outside / "lib.so").write_text("not ours")
    (folder / "link-to-dir").symlink_to(outside / "keep", target_is_directory=True)
    (folder / "link-to-file").symlink_to(outside / "lib.so")

    got = scratch.claim(tmp_path / "data", "job")
    claimed.append(got)
    assert got == folder and folder.is_dir() and list(folder.iterdir()) == []
    assert (outside / "keep" / "file").read_text() == "mine" and (outside / "lib.so").read_text() == "not ours"
    assert (folder.parent / "job.lock").read_text() == str(os.getpid())


def test_the_folder_is_made_when_missing_and_left_alone_by_a_second_call_of_the_same_process(tmp_path, claimed):
    folder = scratch.claim(tmp_path, "live")
    claimed.append(folder)
    assert folder.is_dir()
    (folder / "librocksdbjni9.so").write_text("in use by this process's JVM")
    assert scratch.claim(tmp_path, "live") == folder
    assert (folder / "librocksdbjni9.so").exists()
    assert scratch.empty(folder) == (1, len("in use by this process's JVM"))


HOLD = """
import sys
from pathlib import Path
from pipeline.job import scratch
folder = scratch.claim(Path(sys.argv[1]), "job")
(folder / "librocksdbjni777.so").write_text("the first one's library")
print("held", flush=True)
sys.stdin.read()
"""


def test_a_second_process_is_refused_while_the_first_holds_the_folder_and_cleans_up_after_its_kill(
        tmp_path, claimed):
    first = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], cwd=ROOT, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline().strip() == "held"
        with pytest.raises(JobError, match=rf"another streaming job \(pid {first.pid}\) is running on the data "
                                           rf"folder .*one per data folder"):
            scratch.claim(tmp_path, "job")
        assert (tmp_path / "tmp" / "job" / "librocksdbjni777.so").exists()  # refused: nothing removed
        # the live lane's folder is another one
        claimed.append(scratch.claim(tmp_path, "live"))
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(30)
        first.stdin.close()
        first.stdout.close()
    folder = scratch.claim(tmp_path, "job")  # the kernel dropped the dead one's lock
    claimed.append(folder)
    assert list(folder.iterdir()) == []


def test_the_driver_jvm_and_spark_scratch_point_at_the_folder(tmp_path):
    settings = make_settings(tmp_path / "data")
    folder = tmp_path / "data" / "tmp" / "job"
    options = launch_conf(settings, service=True, tmp_dir=folder)["spark.driver.extraJavaOptions"].split()
    assert f"-Djava.io.tmpdir={folder}" in options and "-XX:-DontCompileHugeMethods" in options
    assert not any("java.io.tmpdir" in o for o in launch_conf(settings)["spark.driver.extraJavaOptions"].split())
    assert session_conf(settings, local_dir=folder)["spark.local.dir"] == str(folder)
    assert session_conf(settings)["spark.local.dir"] == str(tmp_path / "data" / "spark-tmp")
    # spark-submit owns its driver JVM: the printed options stay as DEPLOY.md shows them
    assert not any("java.io.tmpdir" in a for a in spark_submit_args(settings))


@pytest.mark.parametrize(("folder", "option"), [
    ("/srv/data/tmp/job", "-Djava.io.tmpdir=/srv/data/tmp/job"),
    ("/srv/my data/tmp/job", '"-Djava.io.tmpdir=/srv/my data/tmp/job"'),
    ('/srv/a"b\\c/tmp/job', '"-Djava.io.tmpdir=/srv/a\\"b\\\\c/tmp/job"'),
])
def test_the_option_is_one_word_of_sparks_option_string(folder, option):
    assert scratch.java_option(Path(folder)) == option


def test_only_a_process_that_launches_the_jvm_of_a_part_claims_a_folder(tmp_path, monkeypatch, claimed):
    from pyspark import SparkContext

    settings = make_settings(tmp_path / "data")
    monkeypatch.setattr(SparkContext, "_gateway", None)
    monkeypatch.delenv("PYSPARK_GATEWAY_PORT", raising=False)
    assert driver_scratch(settings, None) is None  # sql, the class archive, tests: Spark's defaults
    monkeypatch.setenv("PYSPARK_GATEWAY_PORT", "12345")  # under spark-submit
    assert driver_scratch(settings, "job") is None
    assert not (tmp_path / "data" / "tmp").exists()
    monkeypatch.delenv("PYSPARK_GATEWAY_PORT")
    folder = driver_scratch(settings, "job")
    claimed.append(folder)
    assert folder == tmp_path / "data" / "tmp" / "job" and folder.is_dir()
    monkeypatch.setattr(SparkContext, "_gateway", object())  # a JVM this process started before keeps its options
    assert driver_scratch(settings, "live") is None
