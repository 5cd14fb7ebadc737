"""The processes of a running `python -m pipeline run`, as the Overview shows them.

`run`'s supervisor (`pipeline.procs.supervise`) keeps ``<run_dir>/parts.json``: per part its
state, pid, restarts, last exit code and start time. `run_parts` turns it into table rows
and the crash-loop lines; None when no run is going on (no file, or its run is gone), and
the page then shows what it shows without a run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.procs.supervise import CRASH_LOOP, RESTARTING, RUNNING, read_parts


def human_duration(seconds: float) -> str:
    """12 -> '12 s', 750 -> '12 min 30 s', 7260 -> '2 h 1 min'."""
    s = int(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


@dataclass
class RunParts:
    rows: list[dict] = field(default_factory=list)
    crash_loops: list[str] = field(default_factory=list)   # one line each
    restarting: list[str] = field(default_factory=list)    # names of the parts waiting for their restart


def _up_for(part: dict, now: float) -> str:
    if part.get("state") == RUNNING and part.get("started_at"):
        return human_duration(max(0.0, now - float(part["started_at"])))
    if part.get("state") == RESTARTING and part.get("next_restart_at"):
        return f"restart in {human_duration(max(0.0, float(part['next_restart_at']) - now))}"
    return "–"


def run_parts(run_dir: Path, now: float | None = None) -> RunParts | None:
    """Rows (part, state, pid, restarts, last exit code, up for) of the run going on, or None."""
    data = read_parts(run_dir)
    if data is None:
        return None
    now = time.time() if now is None else now
    out = RunParts()
    for p in data["parts"]:
        if not isinstance(p, dict) or "name" not in p:
            continue
        code = p.get("last_exit_code")
        out.rows.append({"Part": p["name"], "State": p.get("state", "?"), "PID": p.get("pid"),
                         "Restarts": int(p.get("restarts") or 0),
                         "Last exit code": "–" if code is None else str(code), "Up for": _up_for(p, now)})
        if p.get("state") == CRASH_LOOP:
            out.crash_loops.append(p.get("message") or f"{p['name']} crash-looped and is left down")
        elif p.get("state") == RESTARTING:
            out.restarting.append(p["name"])
    return out
