"""The real job keeps its temp files in ``<data_dir>/tmp/job``: the RocksDB library its driver
JVM unpacks is mapped from there (not /tmp), a kill -9 leaves it behind, the next start
empties the folder before its own JVM starts, a second job on the same data folder is
refused while one runs, and a clean stop leaves no library behind (pipeline.job.scratch)."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.procs.group import stop_group
from tests.support.stack import produce, tx
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
LIBRARY = "librocksdbjni"


def _env(settings) -> dict[str, str]:
    env = os.environ.copy()
    env.update({"TORMENTA_BOOTSTRAP_SERVERS": settings.bootstrap_servers, "TORMENTA_TOPIC": settings.topic,
                "TORMENTA_DATA_DIR": str(settings.data_dir), "TORMENTA_TRIGGER_INTERVAL": "1s",
                "TORMENTA_COMPACT_EVERY": "0", "TORMENTA_DRIVER_MEMORY": "1g", "TORMENTA_METRICS_PORT": "0"})
    return env


def _start(settings, name: str) -> tuple[subprocess.Popen, Path]:
    log = settings.data_dir.parent / f"{name}.log"
    with open(log, "wb") as out:
        job = subprocess.Popen([sys.executable, "-m", "pipeline", "job", "--query", "high_value"], cwd=ROOT,
                               env=_env(settings), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return job, log


def _group(pgid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == pgid:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def _mapped_library(pgid: int) -> tuple[int, Path] | None:
    """(pid, path) of the RocksDB library a process of the group has mapped, or None yet."""
    for pid in _group(pgid):
        try:
            maps = Path(f"/proc/{pid}/maps").read_text()
        except OSError:
            continue
        for line in maps.splitlines():
            fields = line.split(None, 5)
            if len(fields) == 6 and LIBRARY in fields[5]:
                return pid, Path(fields[5])
    return None


def _cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")


def test_a_killed_jobs_temp_files_stay_in_its_folder_and_go_at_the_next_start(stack):
    folder = stack.data_dir / "tmp" / "job"
    produce(stack, [tx(f"first-{i}", 2000 + i) for i in range(20)])  # a batch with state: RocksDB loads
    first, first_log = _start(stack, "first")
    try:
        jvm, library = wait_for(lambda: _mapped_library(first.pid), 300, "the first job's JVM to load RocksDB",
                                process=first, log=first_log, every=0.3)
        assert library.parent == folder, library  # not /tmp
        assert f"-Djava.io.tmpdir={folder}" in _cmdline(jvm)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(30)
    wait_for(lambda: not _group(first.pid), 30, "the killed job's process group to be gone")
    left = set(os.listdir(folder))
    assert library.name in left, left  # what a kill -9 leaves: the JVM deletes it only at a normal exit

    produce(stack, [tx(f"second-{i}", 3000 + i) for i in range(20)])
    second, second_log = _start(stack, "second")
    try:
        jvm, again = wait_for(lambda: _mapped_library(second.pid), 300, "the second job's JVM to load RocksDB",
                              process=second, log=second_log, every=0.3)
        assert again.parent == folder and again.name != library.name
        assert not left & set(os.listdir(folder)), sorted(left & set(os.listdir(folder)))
        # one job per data folder: a second one is refused while this one runs, and removes nothing
        third = subprocess.run([sys.executable, "-m", "pipeline", "job", "--once", "--query", "high_value"], cwd=ROOT,
                               env=_env(stack), capture_output=True, text=True, timeout=120)
        assert third.returncode == 1 and f"another streaming job (pid {second.pid})" in third.stderr, third.stderr
        assert again.exists()
    finally:
        rc = stop_group(second, 90)
    text = second_log.read_text(errors="replace")
    assert rc == 0 and "Traceback" not in text, text[-3000:]
    assert not list(folder.glob(f"{LIBRARY}*")), os.listdir(folder)  # a clean stop deletes its own
