"""The temp folder of each Spark application of a run: ``<data_dir>/tmp/<part>`` (job, live).

A driver JVM writes temporary files on every start: the native libraries its jars unpack
(RocksDB's ~15 MB ``librocksdbjni*.so``, lz4, snappy), Spark's scratch (block manager
files, spills, fetched files) and the session's artifact folders. It deletes them at a
normal exit only: after a kill -9 they stayed in /tmp for good, one RocksDB library per
killed job. So when this package launches the driver JVM of a part, the JVM gets
``-Djava.io.tmpdir=<data_dir>/tmp/<part>`` and Spark ``spark.local.dir`` there too
(`pipeline.job.spark.build_spark`), and the part empties that folder as it starts: a start
after a kill -9 removes what the dead one left. (rocksdbjni 9.8 unpacks its library into
``java.io.tmpdir`` under a fresh name, or under a fixed name into ``ROCKSDB_SHAREDLIB_DIR``
when that variable is set; the JVM option moves every library and Spark's own files with it.)

Emptying is only safe while no other process uses the folder, and nothing else ensures that
a data folder runs one job and one live lane (`run` starts one of each, but nothing stops a
second `python -m pipeline job` by hand, which would also write the same checkpoint). The
starting process therefore holds an exclusive lock on ``<data_dir>/tmp/<part>.lock`` for its
whole life (the kernel drops it when the process ends, kill -9 included) and empties the
folder only once it has the lock; a second one is refused with one line naming the first.
Nothing outside the folder is ever removed: an entry that is a symbolic link is unlinked,
never followed.
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path

from pipeline.errors import JobError
from pipeline.procs.tmpdir import empty

log = logging.getLogger(__name__)

PARTS = {"job": "streaming job", "live": "live lane"}
_HELD: dict[Path, int] = {}  # folder -> the open lock file this process holds (for its whole life)


def scratch_dir(data_dir: Path, part: str) -> Path:
    """``<data_dir>/tmp/<part>``: the part's temp folder (`part` one of PARTS)."""
    if part not in PARTS:
        raise ValueError(f"unknown part {part!r}; one of {', '.join(PARTS)}")
    return Path(data_dir).absolute() / "tmp" / part


def claim(data_dir: Path, part: str) -> Path:
    """Lock the part's temp folder for this process, empty it, and return it.

    Idempotent within a process (a second call returns the folder untouched: this process's
    JVM may be using it). Raises JobError when another live process holds it."""
    folder = scratch_dir(data_dir, part)
    if folder in _HELD:
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder.parent / f"{part}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise JobError(f"another {PARTS[part]} (pid {owner}) is running on the data folder {folder.parent.parent}: "
                       f"one per data folder; stop that one first, or give this one its own "
                       f"TORMENTA_DATA_DIR") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    _HELD[folder] = fd
    entries, size = empty(folder)
    if entries:
        log.info("temp folder %s: removed %d entries (%.1f MB) a previous %s left", folder, entries, size / 2**20,
                 PARTS[part])
    return folder


def release(folder: Path) -> None:
    """Give up this process's lock on `folder` (a process that ends drops it anyway)."""
    fd = _HELD.pop(Path(folder), None)
    if fd is not None:
        os.close(fd)


def java_option(folder: Path) -> str:
    """``-Djava.io.tmpdir=<folder>`` as one word of Spark's extraJavaOptions (quoted when it must be)."""
    option = f"-Djava.io.tmpdir={folder}"
    if not any(c.isspace() or c in "\"'\\" for c in option):
        return option
    escaped = option.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'
