"""One child process: its command, environment and log file; start, poll, stop, start again.

    job = Child("job", [sys.executable, "-m", "pipeline", "job"], run_dir / "job.log").start()
    ...
    if job.poll() is not None:          # it ended: exit code, how long it ran, its last lines
        print(job.returncode, job.uptime(), job.tail())
    job.stop()                          # the child first, then the rest of its process group

A child runs in its own session (a new process group), so `stop()` also ends what it
started itself (the Spark driver JVM of the job, for one). Its standard output and error
are appended to its log (or its output goes to a separate file, truncated at each start).
Everything a restart needs is kept, so `start()` may be called again once the child has
ended: same command, same environment, same log, one more in `starts`.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from pipeline.procs.group import stop_group
from pipeline.settings import PROJECT_ROOT

# glibc's malloc gives threads that allocate at once arenas of their own, up to 8 per core, and
# keeps what is freed in each for reuse: a threaded process holds fragments in many arenas, and
# its resident memory creeps up for tens of minutes before it levels off. It is for the Python
# parts: the app runs every page view in a thread of its own, and the emulator's librdkafka a
# thread per broker (its memory stepped up after each broker loss in the chaos hour). The JVMs
# get it too and lose nothing by it; in the job it changed nothing measurable (docs/PERFORMANCE.md),
# since they give freed C heap back every minute themselves. Set MALLOC_ARENA_MAX to choose otherwise.
ALLOCATOR_DEFAULTS = {"MALLOC_ARENA_MAX": "2"}


def product_env(base: Mapping[str, str], **extra: str) -> dict[str, str]:
    """The environment of a long-running part of the product: `base` (this process's environment),
    `ALLOCATOR_DEFAULTS` where `base` does not set them, then `extra`."""
    return {**ALLOCATOR_DEFAULTS, **base, **extra}


class Child:
    """A child process the product starts; `env` None = this process's environment."""

    def __init__(self, name: str, cmd: list[str], log_path: Path, *, env: Mapping[str, str] | None = None,
                 stdout: Path | None = None, pid_file: Path | None = None, cwd: Path = PROJECT_ROOT):
        self.name = name
        self.cmd = list(cmd)
        self.log_path = Path(log_path)
        self.env = dict(env) if env is not None else None
        self.stdout = stdout        # a separate file for the output (else it goes to the log)
        self.pid_file = pid_file    # written at each start, removed by stop()
        self.cwd = cwd
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self._started_at: float | None = None
        self._ended_at: float | None = None

    def start(self) -> Child:
        """Start the command (again, once the previous run has ended); returns self."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError(f"{self.name} is still running (pid {self.proc.pid})")
        err = open(self.log_path, "ab")
        out = open(self.stdout, "wb") if self.stdout else err
        try:
            self.proc = subprocess.Popen(self.cmd, stdout=out, stderr=err if self.stdout else subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=self.cwd, env=self.env,
                                         start_new_session=True)
        finally:
            err.close()
            if self.stdout:
                out.close()
        self.starts += 1
        self._started_at, self._ended_at = time.monotonic(), None
        if self.pid_file is not None:
            self.pid_file.write_text(str(self.proc.pid))
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def returncode(self) -> int | None:
        """The exit code of the last run (negative: killed by that signal); None while running or never started."""
        return self.proc.returncode if self.proc is not None else None

    def poll(self) -> int | None:
        """The exit code once the child has ended, else None (never blocks)."""
        if self.proc is None:
            return None
        code = self.proc.poll()
        if code is not None and self._ended_at is None:
            self._ended_at = time.monotonic()
        return code

    def alive(self) -> bool:
        return self.proc is not None and self.poll() is None

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the child to end; its exit code (subprocess.TimeoutExpired after `timeout`)."""
        if self.proc is None:
            raise RuntimeError(f"{self.name} was never started")
        code = self.proc.wait(timeout)
        self.poll()
        return code

    def uptime(self) -> float | None:
        """Seconds the current (or last) run has been up; None before the first start."""
        if self._started_at is None:
            return None
        self.poll()
        return (self._ended_at or time.monotonic()) - self._started_at

    def stop(self, timeout: float = 30.0, *, linger: float = 10.0) -> int | None:
        """Stop the child, then the rest of its group (`stop_group`); its exit code. Removes the pid file."""
        code = stop_group(self.proc, timeout, linger=linger) if self.proc is not None else None
        self.poll()
        if self.pid_file is not None:
            self.pid_file.unlink(missing_ok=True)
        return code

    def tail(self, lines: int = 15, indent: str = "") -> str:
        """The last `lines` lines of the log."""
        try:
            return "\n".join(indent + ln for ln in self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return f"{indent}(no log)"

