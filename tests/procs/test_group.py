"""stop_group: the child first, then whatever it left in its process group."""

import os
import signal
import subprocess
import sys
import time

import pytest

from pipeline.procs.group import stop_group

# A leader that exits cleanly on SIGTERM but leaves a grandchild behind, and writes a
# marker only if it got the signal before its group did (the order the job relies on).
LEADER = r"""
import os, signal, subprocess, sys, time
marker = sys.argv[1]
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
def term(*_):
    with open(marker, "w") as f:
        f.write(str(child.poll()))   # None: the grandchild was still running
    sys.exit(0)
signal.signal(signal.SIGTERM, term)
print(child.pid, flush=True)
time.sleep(600)
"""


def _alive(pgid):
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def test_child_first_then_the_rest_of_its_group(tmp_path):
    marker = tmp_path / "marker"
    proc = subprocess.Popen([sys.executable, "-c", LEADER, str(marker)], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        grandchild = int(proc.stdout.readline())
        assert _alive(proc.pid)
        rc = stop_group(proc, 10, linger=5)
        assert rc == 0
        assert marker.read_text() == "None"  # the leader was asked first, its grandchild still up
        deadline = time.monotonic() + 5
        while _alive(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(proc.pid)
        with pytest.raises(ProcessLookupError):
            os.kill(grandchild, 0)
    finally:
        if _alive(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)


def test_a_child_that_ignores_sigterm_is_killed(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                             "print(1, flush=True); time.sleep(600)"], stdout=subprocess.PIPE, start_new_session=True)
    proc.stdout.readline()
    t = time.monotonic()
    rc = stop_group(proc, 1, linger=1)
    assert rc == -signal.SIGKILL and time.monotonic() - t < 10
    assert not _alive(proc.pid)
