"""What the Overview shows of run's supervised parts (parts.json -> rows and crash-loop lines)."""

from __future__ import annotations

import json
import os

from pipeline.read.parts import human_duration, run_parts


def _write(run_dir, parts, run_pid=None):
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "parts.json").write_text(json.dumps({"run_pid": run_pid or os.getpid(), "written_at": 0, "parts": parts}))


def test_rows_say_restarts_exit_code_and_uptime(tmp_path):
    _write(tmp_path, [
        {"name": "job", "state": "running", "pid": 11, "restarts": 2, "last_exit_code": -9, "started_at": 1000.0},
        {"name": "emulator", "state": "crash-loop", "pid": None, "restarts": 4, "last_exit_code": 1,
         "message": "emulator exited 5 times within 10 min (last exit code 1): crash loop"},
        {"name": "live", "state": "restarting", "pid": None, "restarts": 0, "last_exit_code": 137,
         "next_restart_at": 1004.0},
    ])
    got = run_parts(tmp_path, now=1750.0)
    assert got.rows == [
        {"Part": "job", "State": "running", "PID": 11, "Restarts": 2, "Last exit code": "-9", "Up for": "12 min 30 s"},
        {"Part": "emulator", "State": "crash-loop", "PID": None, "Restarts": 4, "Last exit code": "1", "Up for": "–"},
        {"Part": "live", "State": "restarting", "PID": None, "Restarts": 0, "Last exit code": "137",
         "Up for": "restart in 0 s"},
    ]
    assert got.crash_loops == ["emulator exited 5 times within 10 min (last exit code 1): crash loop"]
    assert got.restarting == ["live"]


def test_no_file_or_a_dead_run_is_no_run(tmp_path):
    assert run_parts(tmp_path) is None
    import subprocess
    import sys

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    _write(tmp_path, [{"name": "job", "state": "running"}], run_pid=gone.pid)
    assert run_parts(tmp_path) is None


def test_human_duration():
    assert [human_duration(s) for s in (0, 59.9, 60, 3599, 3600, 7260)] == [
        "0 s", "59 s", "1 min 0 s", "59 min 59 s", "1 h 0 min", "2 h 1 min"]
