"""Child: start with its log in its own process group, poll, exit code and uptime, stop, start again."""

from __future__ import annotations

import os
import signal
import sys
import time

import pytest

from pipeline.procs.child import Child
from tests.support.waiting import wait_for

SAYS = "import sys; print('out', sys.argv[1], flush=True); print('err', sys.argv[1], file=sys.stderr, flush=True)"


def _ended(child: Child, timeout: float = 20.0) -> int:
    child.wait(timeout)
    code = child.poll()
    assert code is not None
    return code


def test_output_and_errors_go_to_the_log_and_a_restart_appends(tmp_path):
    log = tmp_path / "c.log"
    child = Child("c", [sys.executable, "-c", SAYS + "; sys.exit(3)", "one"], log)
    assert child.poll() is None and child.pid is None and child.uptime() is None  # not started yet
    child.start()
    assert child.pid is not None and os.getpgid(child.pid) == child.pid  # leads its own process group
    assert _ended(child) == 3 and child.returncode == 3 and not child.alive()
    up = child.uptime()
    assert up is not None and 0 < up < 20
    time.sleep(0.05)
    assert child.uptime() == up  # an ended run's uptime stops growing
    first_pid = child.pid
    child.cmd[-1] = "two"
    child.start()
    assert _ended(child) == 3 and child.starts == 2 and child.pid != first_pid
    assert sorted(log.read_text().splitlines()) == ["err one", "err two", "out one", "out two"]
    assert child.tail(2, indent="> ").splitlines()[0].startswith("> ")


def test_a_separate_output_file_env_and_pid_file(tmp_path):
    out, pid_file = tmp_path / "out.json", tmp_path / "c.pid"
    child = Child("c", [sys.executable, "-c", "import os; print(os.environ['ANSWER'])"], tmp_path / "c.log",
                  env=dict(os.environ, ANSWER="42"), stdout=out, pid_file=pid_file).start()
    assert pid_file.read_text() == str(child.pid)
    assert _ended(child) == 0 and out.read_text() == "42\n" and (tmp_path / "c.log").read_text() == ""
    child.stop()
    assert not pid_file.exists()


def test_start_refuses_while_running_and_stop_ends_the_group(tmp_path):
    child = Child("sleeper", [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(600)"],
                  tmp_path / "s.log").start()
    try:
        wait_for(lambda: "up" in child.log_path.read_text(), 20, "the child's own log to say it runs",
                 process=child.proc, log=child.log_path)
        assert child.alive()
        with pytest.raises(RuntimeError, match="still running"):
            child.start()
        code = child.stop(10, linger=2)
        assert code == -signal.SIGTERM and not child.alive()  # ended by stop's SIGTERM to its group
        with pytest.raises(ProcessLookupError):
            os.killpg(child.pid, 0)
    finally:
        if child.alive():
            os.killpg(child.pid, 9)


def test_a_child_never_started_cannot_be_waited_for(tmp_path):
    child = Child("never", [sys.executable, "-c", "pass"], tmp_path / "n.log")
    assert child.stop() is None and child.returncode is None and child.tail() == "(no log)"
    with pytest.raises(RuntimeError, match="never started"):
        child.wait(1)


def test_product_env_caps_glibc_arenas_unless_the_environment_chose():
    from pipeline.procs.child import product_env

    env = product_env({"PATH": "/bin"}, TORMENTA_BOOTSTRAP_SERVERS="127.0.0.1:1")
    assert env == {"PATH": "/bin", "MALLOC_ARENA_MAX": "2", "TORMENTA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    assert product_env({"MALLOC_ARENA_MAX": "8"})["MALLOC_ARENA_MAX"] == "8"   # the user's choice stays
    assert product_env({"X": "1"}, MALLOC_ARENA_MAX="4")["MALLOC_ARENA_MAX"] == "4"
