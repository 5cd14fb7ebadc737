"""Stop a child process and everything it started (its process group); whether a pid or group exists."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path


def signal_reaches(send, target: int) -> bool:
    """True when signal 0 finds the target: `send` is os.kill (a pid) or os.killpg (a group).

    A target that exists but belongs to someone else (PermissionError) counts as found."""
    try:
        send(target, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _group_alive(pgid: int) -> bool:
    return signal_reaches(os.killpg, pgid)


def stop_group(proc: subprocess.Popen, timeout: float = 30.0, *, linger: float = 10.0) -> int | None:
    """Stop a child and everything it started; returns the child's exit code.

    Children are started with ``start_new_session=True``, so the group also holds what they
    started themselves (the Spark driver JVM of the job, for one). The child alone gets
    SIGTERM first and `timeout` seconds to shut down what it owns in order (the job stops
    its queries while its JVM still answers). Only then is the rest of the group sent
    SIGTERM and, after `linger` seconds, SIGKILL; a child that overstays its timeout is
    killed with its group.
    """
    pgid = proc.pid
    if proc.poll() is None:
        try:
            os.kill(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(10)
    if _group_alive(pgid):
        try:
            os.killpg(pgid, signal.SIGTERM)
        except ProcessLookupError:
            return proc.returncode
        deadline = time.monotonic() + linger
        while _group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _group_alive(pgid):
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    return proc.returncode


def pid_file_process(pid_file: Path, word: str) -> tuple[int, float] | None:
    """(pid, start time in epoch seconds) of the live process a pid file names, or None.

    `run` writes `<name>.pid` as it starts a child and removes it when it stops it; the file's
    time is the start time. A pid that no longer exists, or that now belongs to another program
    (its command line has no `pipeline` and no `word`), is no such process."""
    try:
        pid = int(pid_file.read_text().strip())
        started = pid_file.stat().st_mtime
    except (OSError, ValueError):
        return None
    if pid <= 0 or not signal_reaches(os.kill, pid):
        return None
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        argv = None  # no /proc (not Linux): the live pid is all we can check
    if argv is not None and not (b"pipeline" in argv and word.encode() in argv):
        return None
    return pid, started
