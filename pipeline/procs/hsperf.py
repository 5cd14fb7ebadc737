"""What a running JVM says about itself in its performance-data file, read without attaching.

Every HotSpot JVM (unless started with ``-XX:-UsePerfData``) keeps its counters in a
memory-mapped file, ``/tmp/hsperfdata_<user>/<pid>``: the one `jstat` reads. Reading it
costs a file read, needs no JDK tool, no agent and no port, and the JVM does not notice.

The layout (HotSpot's perfMemory, version 2): a 32-byte prologue, then entries.

* prologue: magic ``ca fe c0 c0``, byte order (0 big, 1 little), major and minor version,
  accessible flag, used, overflow, modification time (8 bytes), entry offset, entry count;
* entry: its length, the offset of its name, vector length (0 for a scalar), data type
  (``J`` a 64-bit long, ``B`` a byte vector: a string), flags, units, variability, the
  offset of its data; all offsets from the entry's start.

`jvm_stats` turns the counters into what explains a JVM that slows down while its RSS is
flat (the heap is committed and touched at start, `pipeline.procs.jvm.service_heap_options`):
time in garbage-collection pauses, the old generation, metaspace and loaded classes (code
generated per query that is never unloaded), time in the JIT compiler, safepoints.
"""

from __future__ import annotations

import getpass
import struct
from pathlib import Path
from typing import Any

MAGIC = b"\xca\xfe\xc0\xc0"
PROLOGUE = 32
MIB = 1024 * 1024
# collectors 0 (young), 1 (full), 2 (the stop-the-world pauses of concurrent cycles) under G1
COLLECTORS = range(4)


def perf_file(pid: int, tmp: Path = Path("/tmp")) -> Path:
    """Where HotSpot keeps the counters of `pid` (Linux: /tmp, whatever java.io.tmpdir says)."""
    return tmp / f"hsperfdata_{getpass.getuser()}" / str(pid)


def parse(data: bytes) -> dict[str, int | str]:
    """Every counter of a performance-data file's bytes: longs as int, byte vectors as str.

    Raises ValueError for bytes that are not a version-2 performance-data file."""
    if len(data) < PROLOGUE or data[:4] != MAGIC:
        raise ValueError("not a HotSpot performance-data file (bad magic)")
    order = "<" if data[4] == 1 else ">"
    if data[5] != 2:
        raise ValueError(f"performance-data version {data[5]}.{data[6]} is not supported (2.x is)")
    entry_offset, entries = struct.unpack_from(order + "ii", data, 24)
    out: dict[str, int | str] = {}
    at = entry_offset
    for _ in range(entries):
        if at + 20 > len(data):
            raise ValueError("performance-data file truncated")
        length, name_at, vector, kind, _flags, _units, _var, data_at = struct.unpack_from(order + "iiiBBBBi", data, at)
        if length <= 0:
            raise ValueError("performance-data entry of length 0")
        end = data.index(b"\0", at + name_at)
        name = data[at + name_at:end].decode("ascii", "replace")
        if kind == ord("J") and vector == 0:
            out[name] = struct.unpack_from(order + "q", data, at + data_at)[0]
        elif kind == ord("B"):
            out[name] = data[at + data_at:at + data_at + vector].split(b"\0", 1)[0].decode("utf-8", "replace")
        at += length
    return out


def read(pid: int, tmp: Path = Path("/tmp")) -> dict[str, int | str] | None:
    """The counters of a running JVM, or None (no such file, not readable, not a JVM's)."""
    try:
        return parse(perf_file(pid, tmp).read_bytes())
    except (OSError, KeyError, ValueError, struct.error):   # KeyError: a uid without a user name
        return None


def _long(c: dict[str, Any], name: str) -> int:
    v = c.get(name)
    return v if isinstance(v, int) else 0


def stats(c: dict[str, int | str]) -> dict[str, float]:
    """Pure: the cumulative figures of one reading (seconds since the JVM started, MiB, counts)."""
    hz = _long(c, "sun.os.hrt.frequency") or 1_000_000_000
    pauses = sum(_long(c, f"sun.gc.collector.{i}.time") for i in COLLECTORS)
    count = sum(_long(c, f"sun.gc.collector.{i}.invocations") for i in COLLECTORS)
    young = sum(_long(c, f"sun.gc.generation.0.space.{i}.used") for i in range(3))
    old = _long(c, "sun.gc.generation.1.space.0.used")
    return {
        "gc_pause_s": pauses / hz, "gc_count": float(count),
        "full_gc_count": float(_long(c, "sun.gc.collector.1.invocations")),
        "heap_used_mb": (young + old) / MIB, "old_used_mb": old / MIB,
        "old_capacity_mb": _long(c, "sun.gc.generation.1.space.0.capacity") / MIB,
        "metaspace_mb": (_long(c, "sun.gc.metaspace.used")) / MIB,
        "classes": float(_long(c, "java.cls.loadedClasses") + _long(c, "java.cls.sharedLoadedClasses")
                         - _long(c, "java.cls.unloadedClasses") - _long(c, "java.cls.sharedUnloadedClasses")),
        "jit_s": _long(c, "java.ci.totalTime") / hz,
        "safepoint_s": _long(c, "sun.rt.safepointTime") / hz,
        "uptime_s": _long(c, "sun.os.hrt.ticks") / hz,
    }


def share(before: dict[str, float], after: dict[str, float], key: str) -> float | None:
    """Pure: % of the wall time between two readings of one JVM spent in `key` (a cumulative
    seconds figure); None across a restart (uptime went back) or without time between."""
    dt = after["uptime_s"] - before["uptime_s"]
    if dt <= 0 or after[key] < before[key]:
        return None
    return 100.0 * (after[key] - before[key]) / dt
