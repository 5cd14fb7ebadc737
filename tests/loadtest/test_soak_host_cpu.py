"""The soak's machine CPU: busy, steal and what ran outside the product's parts (pipeline.loadtest.soak_sampling).

The arithmetic with readings that must give known figures; then a real process that spins one
core while the sampler watches no part: the machine's busy time and `host_other` both see it."""

from __future__ import annotations

import subprocess
import sys
from collections import namedtuple

import pytest

from pipeline.loadtest.soak_sampling import SoakSampler, host_cpu

Times = namedtuple("Times", "user nice system idle iowait irq softirq steal guest guest_nice")


def test_busy_and_steal_in_percent_of_one_core():
    before = Times(100, 0, 50, 1000, 10, 0, 0, 5, 0, 0)
    # 10 s of two cores: 6 s user, 2 s system, 1 s steal, 10 s idle, 1 s I/O wait; guest time is inside user
    after = Times(106, 0, 52, 1010, 11, 0, 0, 6, 3, 0)
    got = host_cpu(before, after, cores=2)
    assert got == {"host_cpu": pytest.approx(90.0), "host_steal": pytest.approx(10.0)}
    # a machine that did nothing
    assert host_cpu(after, after, cores=2) == {"host_cpu": 0.0, "host_steal": 0.0}
    # all four cores busy in user time
    busy = Times(140, 0, 50, 1000, 10, 0, 0, 5, 0, 0)
    assert host_cpu(before, busy, cores=4)["host_cpu"] == pytest.approx(400.0)


def test_a_spinning_process_outside_the_parts_shows_as_host_other(tmp_path):
    (tmp_path / "run").mkdir()     # no parts.json: the sampler watches no part
    sampler = SoakSampler(data_dir=tmp_path, topic="none", kafka={"bootstrap.servers": "127.0.0.1:1"})
    sampler.offsets = lambda now: {}   # no broker here: only the CPU is under test
    spin = subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 4\nwhile time.time() < end: pass"])
    try:
        spin.wait(30)
        s = sampler.sample()
    finally:
        spin.kill()
    assert s["host_cpu"] >= 50, s          # one core spun for most of the interval
    assert s["host_other"] == s["host_cpu"] and not any(k.startswith("cpu_") for k in s)
