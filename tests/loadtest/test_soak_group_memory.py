"""The soak's memory reading of a process group, on real processes: a page shared by a forked
child is counted twice by summed RSS and once by summed PSS (what the verdict judges)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

from pipeline.loadtest.soak_sampling import GroupWatch
from tests.support.waiting import wait_for

MIB = 1024 * 1024
# a parent that fills 200 MiB, then forks a child that keeps the pages shared (copy-on-write)
PARENT = textwrap.dedent("""
    import os, sys, time
    block = bytearray(200 * 1024 * 1024)
    for i in range(0, len(block), 4096):
        block[i] = 1
    if os.fork() == 0:
        time.sleep(600)
        os._exit(0)
    print("forked", flush=True)
    time.sleep(600)
""")


def test_summed_pss_counts_the_pages_a_forked_child_shares_once():
    proc = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, start_new_session=True)
    try:
        assert proc.stdout.readline().strip() == b"forked"
        watch = GroupWatch()
        wait_for(lambda: len(watch.members(proc.pid)) == 2, 30, "the forked child in the group")
        m = watch.measure(proc.pid)
        assert m["rss"] > 380, m          # both processes map the 200 MiB
        assert 190 < m["pss"] < 280, m    # shared: counted once
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
