"""Child processes the product starts (job, emulator, app): stop a whole process group."""

from __future__ import annotations

import os
import signal
import subprocess


def stop_group(proc: subprocess.Popen, timeout: float = 30.0) -> int | None:
    """SIGTERM the child's process group, wait, then SIGKILL what is left; returns the exit code.

    Children are started with ``start_new_session=True`` so the group also holds what they
    started themselves (the Spark driver JVM of the job, for one)."""
    if proc.poll() is not None:
        return proc.returncode
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return proc.wait(10)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(10)
    return proc.returncode
