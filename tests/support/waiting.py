"""The one way tests wait: poll an observable condition until it holds, never sleep a fixed time.

`wait_for(condition, timeout, what)` returns the first true value of `condition()`; when
`timeout` seconds pass first, it fails saying what it waited for (and the tail of `log`, when
given). Given the `process` the condition depends on (a `subprocess.Popen`), it fails at once
when that process exits, with its exit code and the tail of its `log` file, instead of
waiting out the timeout.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
LOG_TAIL = 2000  # characters of the process's log quoted in the failure


def log_tail(log: Path | None, chars: int = LOG_TAIL) -> str:
    """The end of a log file, or a note that there is none to show."""
    if log is None:
        return "(no log given)"
    try:
        return Path(log).read_text(errors="replace")[-chars:]
    except OSError as exc:
        return f"(log {log} cannot be read: {exc.strerror or exc})"


def wait_for(condition: Callable[[], T], timeout: float, what: str, *, process: Any = None,
             log: Path | None = None, every: float = 0.1) -> T:
    """Poll `condition()` every `every` seconds until it returns a true value (returned).

    Fails (AssertionError) after `timeout` seconds, naming `what` (with the tail of `log`, if
    given); when `process` (anything
    with `poll()` and `returncode`) has exited before the condition held, fails at once with
    its exit code and the tail of `log`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the process exited ({process.returncode}) while waiting for {what}:\n"
                                 f"{log_tail(log)}")
        if time.monotonic() > deadline:
            tail = f":\n{log_tail(log)}" if log is not None else ""
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}{tail}")
        time.sleep(every)
