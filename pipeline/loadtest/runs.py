"""The run registry: every load test's folder under ``<data_dir>/loadtests/<run-id>/``; start one, stop one.

- `list_runs` reads each folder as the page and ``loadtest --list`` see it (`RunEntry`):
  running or not (its ``loadtest.pid``), its progress, its result, its report,
- `launch` starts ``python -m pipeline loadtest ...`` in the background for the page,
  `request_stop` asks a running one to stop (SIGTERM; the run still writes its report).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.loadtest.options import LoadTestOptions
from pipeline.loadtest.result import LoadTestResult, ResultFormatError
from pipeline.procs.child import Child
from pipeline.settings import Settings

PID_FILE = "loadtest.pid"


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:4]


def runs_dir(settings: Settings) -> Path:
    return settings.data_dir / "loadtests"


def write_json(path: Path, data: Any) -> None:
    """Write `data` as JSON atomically (a reader sees the old file or the new one)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, default=str))
    os.replace(tmp, path)


@dataclass
class RunEntry:
    """One run folder as the page and ``--list`` see it."""

    run_id: str
    dir: Path
    running: bool
    progress: dict[str, Any] | None = None
    result: LoadTestResult | None = None
    problem: str | None = None       # why result.json could not be read
    report: Path | None = None

    @property
    def state(self) -> str:
        if self.running:
            return "running"
        if self.result is not None:
            return self.result.state
        return "unreadable" if self.problem else (self.progress or {}).get("state", "?")


def list_runs(settings: Settings) -> list[RunEntry]:
    """Every run folder, newest first."""
    root = runs_dir(settings)
    if not root.is_dir():
        return []
    return [_run_entry(d) for d in sorted((p for p in root.iterdir() if p.is_dir()), reverse=True)]


def _run_entry(d: Path) -> RunEntry:
    entry = RunEntry(d.name, d, running_pid(d) is not None)
    try:
        entry.progress = json.loads((d / "progress.json").read_text())
    except (OSError, ValueError):
        pass
    if (d / "result.json").exists():
        try:
            entry.result = LoadTestResult.load(d / "result.json")
        except ResultFormatError as exc:
            entry.problem = str(exc)
    entry.report = d / "report.html" if (d / "report.html").exists() else None
    return entry


def running_pid(run_dir: Path) -> int | None:
    """The pid of a load test still running in `run_dir`, or None."""
    import psutil

    try:
        pid = int((run_dir / PID_FILE).read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE or "loadtest" not in " ".join(proc.cmdline()):
            return None
    except psutil.Error:
        return None
    return pid


def launch_command(options: LoadTestOptions) -> list[str]:
    """The command line of a background run: every option, written by the options themselves."""
    return [sys.executable, "-m", "pipeline", "loadtest", *options.to_argv()]


def launch(settings: Settings, options: LoadTestOptions) -> tuple[str, int]:
    """Start `python -m pipeline loadtest ...` detached (for the page); returns (run_id, pid)."""
    options = replace(options, run_id=options.run_id or new_run_id())
    d = runs_dir(settings) / options.run_id
    d.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, TORMENTA_DATA_DIR=str(settings.data_dir),
               TORMENTA_BOOTSTRAP_SERVERS=settings.bootstrap_servers)
    # left running: the run removes its pid file itself when it ends
    child = Child("loadtest", launch_command(options), d / "loadtest.log", env=env, pid_file=d / PID_FILE).start()
    assert child.pid is not None
    return options.run_id, child.pid


def request_stop(settings: Settings, run_id: str) -> bool:
    """Ask a running load test to stop cleanly (SIGTERM); True if one was running."""
    pid = running_pid(runs_dir(settings) / run_id)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    return True
