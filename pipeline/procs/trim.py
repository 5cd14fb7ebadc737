"""Give freed C-heap memory back to the system now and then (glibc's ``malloc_trim``).

A long-running Python process that keeps allocating and freeing buffers (the dashboard:
Arrow tables from Delta reads, pandas frames, Plotly figures, one script thread per page
view) leaves holes in glibc's heaps that it keeps as resident memory; its RSS only ever
went up (+25 MiB/h in the soak hour `20261206-111812-a9d3`, docs/LOADTEST.md). The JVMs
of the product get the same treatment from HotSpot (`-XX:TrimNativeHeapInterval`,
`pipeline.procs.jvm.service_heap_options`). ``malloc_trim(0)`` walks every arena and
returns each free page to the kernel; it takes a few milliseconds on a few hundred MiB.

Each round first runs a full garbage collection, so objects kept only by reference cycles
are freed before the trim. The dashboard relies on it: Streamlit's own full collection after
every script run (``runner.postScriptGC``, on by default) is turned off there, because it
walks every object of the process on every page view and every fragment rerun (7 % of a
core in py-spy samples of the app at minute 16 of the soak `20261206-150405-a10f`, more as
the process grows); once a minute is enough to keep cycles from piling up. With both, the
app read +12.7 MiB/h (+2.8 % over 50 minutes) in the soak hour `20261206-160706-eb9b`.

The emulator runs the same round: librdkafka's queue swells while a broker is lost and
glibc kept what it freed afterwards (`pipeline.emulator.cli`).

Where the C library is not glibc (no ``malloc_trim``), `start` does nothing and says so.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import threading
import time

log = logging.getLogger(__name__)

TRIM_EVERY_S = 60.0
_started: threading.Thread | None = None
_lock = threading.Lock()


def _libc_trim():
    """glibc's malloc_trim, or None where the C library has none."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        fn = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int
    return fn


def trim_now() -> bool | None:
    """One round (collection and trim): True when memory was given back, False when there
    was none to give, None without glibc."""
    fn = _libc_trim()
    return None if fn is None else one_round(fn)


def one_round(trim_fn) -> bool:
    """A full garbage collection, then the trim: True when memory was given back."""
    gc.collect()
    return bool(trim_fn(0))


def start(every_s: float = TRIM_EVERY_S) -> threading.Thread | None:
    """Start the process's one thread that collects garbage and trims every `every_s` (a
    daemon; a second call returns the first thread). None where there is no ``malloc_trim``."""
    global _started
    if every_s <= 0:
        raise ValueError(f"every_s must be positive, got {every_s!r}")
    with _lock:
        if _started is not None and _started.is_alive():
            return _started
        fn = _libc_trim()
        if fn is None:
            log.info("no malloc_trim in this C library: freed C memory is not given back early")
            return None
        def loop() -> None:
            while True:   # a daemon: it ends with the process
                time.sleep(every_s)
                one_round(fn)

        _started = threading.Thread(target=loop, name="tormenta-malloc-trim", daemon=True)
        _started.start()
        return _started
