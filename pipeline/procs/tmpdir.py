"""A process's own temp folder, emptied before the process starts.

A JVM unpacks native libraries (lz4-java, snappy, RocksDB) into ``java.io.tmpdir`` on every
start and deletes them only at a normal exit, so each kill -9 left one in /tmp for good. The
product's long-running JVMs therefore get a temp folder of their own inside the data folder
(the job and the live lane: `pipeline.job.scratch`; each broker node: ``<node dir>/tmp``),
which the product empties before it starts the process again.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

log = logging.getLogger(__name__)


def empty(folder: Path) -> tuple[int, int]:
    """Remove everything inside `folder` (created if missing); (entries removed, bytes freed).

    Symbolic links are removed themselves, never followed; what cannot be removed is logged."""
    folder.mkdir(parents=True, exist_ok=True)
    entries = size = 0
    for entry in os.scandir(folder):
        freed = _size(entry)
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("temp folder %s: cannot remove %s (%s)", folder, entry.name, exc.strerror or exc)
            continue
        entries, size = entries + 1, size + freed
    return entries, size


def _size(entry: os.DirEntry) -> int:
    try:
        if not entry.is_dir(follow_symlinks=False):
            return entry.stat(follow_symlinks=False).st_size
        return sum(os.lstat(os.path.join(top, name)).st_size for top, _, files in os.walk(entry.path) for name in files)
    except OSError:
        return 0
