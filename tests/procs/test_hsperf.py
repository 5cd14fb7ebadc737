"""The JVM's own counters, read from its performance-data file: the format on bytes built here
(both byte orders, broken files), the figures and shares, and a real JVM that collects garbage."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import pytest

from pipeline.procs import hsperf
from pipeline.procs.hsperf import parse, share, stats
from tests.support.waiting import wait_for


def perf_bytes(counters: dict[str, int | str], order: str = "<") -> bytes:
    """A version-2 performance-data file holding `counters` (longs and strings), as HotSpot lays it out."""
    entries = b""
    for name, value in counters.items():
        raw_name = name.encode() + b"\0"
        name_at = 20
        data_at = name_at + len(raw_name)
        data_at += -data_at % 8
        if isinstance(value, int):
            data, kind, vector = struct.pack(order + "q", value), ord("J"), 0
        else:
            data, kind, vector = value.encode() + b"\0", ord("B"), len(value) + 1
        body = raw_name + b"\0" * (data_at - name_at - len(raw_name)) + data
        length = 20 + len(body)
        length += -length % 8
        entry = struct.pack(order + "iiiBBBBi", length, name_at, vector, kind, 0, 0, 0, data_at) + body
        entries += entry + b"\0" * (length - len(entry))
    prologue = hsperf.MAGIC + bytes([1 if order == "<" else 0, 2, 0, 1]) + struct.pack(
        order + "iiqii", 32 + len(entries), 0, 0, 32, len(counters))
    return prologue + entries


G1 = {"sun.os.hrt.frequency": 1_000_000_000, "sun.os.hrt.ticks": 60 * 10**9,
      "sun.gc.collector.0.name": "G1 young collection pauses", "sun.gc.collector.0.time": 3 * 10**9,
      "sun.gc.collector.0.invocations": 40, "sun.gc.collector.1.time": 0, "sun.gc.collector.1.invocations": 0,
      "sun.gc.collector.2.time": 10**9, "sun.gc.collector.2.invocations": 4,
      "sun.gc.generation.0.space.0.used": 100 * 2**20, "sun.gc.generation.1.space.0.used": 300 * 2**20,
      "sun.gc.generation.1.space.0.capacity": 1024 * 2**20, "sun.gc.metaspace.used": 64 * 2**20,
      "java.cls.loadedClasses": 20_000, "java.cls.sharedLoadedClasses": 5_000, "java.cls.unloadedClasses": 500,
      "java.ci.totalTime": 6 * 10**9, "sun.rt.safepointTime": 2 * 10**9}


@pytest.mark.parametrize("order", ["<", ">"])
def test_the_file_format_in_both_byte_orders(order):
    got = parse(perf_bytes(G1, order))
    assert got == G1


def test_files_that_are_not_performance_data_are_refused():
    good = perf_bytes(G1)
    for bad in (b"", b"\x00" * 64, good[:3], b"\xca\xfe\xc0\xc0\x01\x01" + good[6:], good[:60]):
        with pytest.raises(ValueError):
            parse(bad)


def test_figures_of_one_reading_and_the_share_of_an_interval():
    s = stats(G1)
    assert (s["gc_pause_s"], s["gc_count"], s["full_gc_count"]) == (4.0, 44.0, 0.0)
    assert (s["old_used_mb"], s["heap_used_mb"], s["metaspace_mb"], s["classes"]) == (300.0, 400.0, 64.0, 24_500.0)
    assert (s["jit_s"], s["safepoint_s"], s["uptime_s"]) == (6.0, 2.0, 60.0)
    later = stats(G1 | {"sun.os.hrt.ticks": 90 * 10**9, "sun.gc.collector.0.time": 9 * 10**9})
    assert share(s, later, "gc_pause_s") == pytest.approx(20.0)   # 6 s of pauses in 30 s
    assert share(s, later, "jit_s") == 0.0
    restarted = stats(G1 | {"sun.os.hrt.ticks": 5 * 10**9, "sun.gc.collector.0.time": 10**8})
    assert share(s, restarted, "gc_pause_s") is None and share(s, s, "gc_pause_s") is None


SPIN = """
public class Spin {
    public static void main(String[] args) throws Exception {
        java.util.List<byte[]> keep = new java.util.ArrayList<>();
        while (true) {
            for (int i = 0; i < 2000; i++) { keep.add(new byte[1024]); }
            if (keep.size() > 40000) { keep.clear(); System.gc(); }
            Thread.sleep(1);
        }
    }
}
"""


@pytest.mark.integration
def test_a_real_jvm_reports_its_collections_heap_and_classes(tmp_path: Path):
    from pipeline.loadtest.soak_sampling import JvmWatch

    src = tmp_path / "Spin.java"
    src.write_text(SPIN)
    proc = subprocess.Popen(["java", "-Xmx64m", "-XX:+UseG1GC", str(src)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        first = wait_for(lambda: hsperf.read(proc.pid), 60, "the JVM's performance-data file", process=proc)
        assert hsperf.perf_file(proc.pid).name == str(proc.pid)
        watch = JvmWatch()
        assert "gc_spin" not in watch.measure("spin", proc.pid)   # a share needs two readings
        gc0 = stats(first)["gc_count"]
        later = wait_for(lambda: (c := hsperf.read(proc.pid)) and stats(c)["gc_count"] > gc0 + 2 and c, 60,
                         "garbage collections counted", process=proc)
        s = stats(later)
        assert s["classes"] > 400 and s["metaspace_mb"] > 1 and 0 < s["heap_used_mb"] <= 64
        assert 0 < s["uptime_s"] < 120 and s["gc_pause_s"] > 0
        got = watch.measure("spin", proc.pid)   # the clock has moved since the first: a share
        assert 0 <= got["gc_spin"] <= 100 and got["classes_spin"] > 400 and got["heap_old_spin_mb"] >= 0
        assert watch.measure("spin", 0) == {} and "spin" not in watch.last
    finally:
        proc.terminate()
        proc.wait(30)
    assert hsperf.read(proc.pid) is None   # a JVM that exits removes its file
