"""The soak's machine CPU: busy, steal and what ran outside the product's parts (pipeline.loadtest.soak_sampling).

The arithmetic with readings that must give known figures; then a real process that spins one
core while the sampler watches no part: the machine's busy time and `host_other` both see it."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import namedtuple

import pytest

from pipeline.loadtest.soak_sampling import SoakSampler, host_cpu, other_name
from tests.support.waiting import wait_for

Times = namedtuple("Times", "user nice system idle iowait irq softirq steal guest guest_nice")


def test_busy_and_steal_in_percent_of_one_core():
    before = Times(100, 0, 50, 1000, 10, 0, 0, 5, 0, 0)
    # 10 s of two cores: 6 s user, 2 s system, 1 s steal, 10 s idle, 1 s I/O wait; guest time is inside user
    after = Times(106, 0, 51, 1010, 11, 0.5, 0.5, 6, 3, 0)
    got = host_cpu(before, after, cores=2)
    assert got == {"host_cpu": pytest.approx(90.0), "host_steal": pytest.approx(10.0), "host_irq": pytest.approx(10.0),
                   "host_iowait": pytest.approx(10.0)}
    # a machine that did nothing
    assert host_cpu(after, after, cores=2) == {"host_cpu": 0.0, "host_steal": 0.0, "host_irq": 0.0, "host_iowait": 0.0}
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


def test_process_names_as_sample_keys():
    assert [other_name(n) for n in ("kworker/u4:2-events", "chromium", "chrome_crashpad", "python3.11", "ksoftirqd/1",
                                    "java", "?!")] == ["kworker", "browser", "browser", "python3-11", "ksoftirqd", "java",
                                                       "unnamed"]


def test_who_was_busy_outside_the_parts_by_name(tmp_path):
    import psutil

    (tmp_path / "run").mkdir()
    sampler = SoakSampler(data_dir=tmp_path, topic="none", kafka={"bootstrap.servers": "127.0.0.1:1"})
    sampler.offsets = lambda now: {}
    spinner = tmp_path / "tormenta-spin"   # the process's name is its executable's: its own here
    spinner.symlink_to(sys.executable)
    spin = subprocess.Popen([str(spinner), "-c", "while True: pass"])
    try:
        watched = psutil.Process(spin.pid)
        cpu = lambda: sum(watched.cpu_times()[:2])  # noqa: E731 - user + system seconds of the spinner
        t0, c0 = time.monotonic(), cpu()
        sampler.sample()   # the first reading of every process: CPU is counted from here
        wait_for(lambda: cpu() - c0 >= 1.5, 60, "the spinner's CPU time")
        s = sampler.sample()
        spun = 100 * (cpu() - c0) / (time.monotonic() - t0)   # its share over a span that holds the interval
    finally:
        spin.kill()
        spin.wait(30)
    got = s.get("other_tormenta-spin", 0)
    assert got >= 0.5 * spun and got > 5, (spun, {k: v for k, v in s.items() if k.startswith(("other_", "host_"))})
    assert not any(k.startswith("cpu_") for k in s)


def test_a_process_that_exits_while_it_is_listed_is_left_out_not_a_failed_sample():
    import os

    import psutil

    from pipeline.loadtest.soak_sampling import GroupWatch

    class Racy(GroupWatch):   # the race: listed as a member, gone when its start time is read
        def _cached(self, p):
            if p.pid != os.getpid():
                raise psutil.NoSuchProcess(p.pid)
            return super()._cached(p)

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        watch = Racy()
        assert [p.pid for p in watch.members(os.getpid())] == [os.getpid()]
        assert watch.measure(os.getpid())["rss"] > 0
    finally:
        child.kill()
        child.wait(30)
