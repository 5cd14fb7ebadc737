"""Is the live lane up? For the Overview's fifth part and the Live page.

The lane's process owns ``<data_dir>/run/live.pid`` (`run` writes it as it starts the lane;
`python -m pipeline live` by hand writes its own when no live lane owns it). Real-time Mode
writes ``<data_dir>/checkpoints/live/offsets/<n>`` as each of its long batches starts
(every `BATCH_DURATION_S`): a live process that has checkpointed since it started is up, one
that has not yet is starting (Spark's start plus the decode's code generation takes a
while), no live process means down, whatever the last checkpoint says. While all the lane's
long-running tasks run, the lane touches ``<data_dir>/run/live.running``: a heartbeat from
since the process started also says up (a restarted lane checkpoints only when the batch it
resumed ends, up to five minutes later).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from pipeline.live.lane import checkpoint_path, running_path
from pipeline.read.health import DOWN, IDLE, STARTING, UP, PartHealth
from pipeline.settings import Settings, format_duration

FIX = "python -m pipeline live"
RUNNING_FRESH_S = 30.0   # a heartbeat older than this says nothing (the lane touches it every HEARTBEAT_S)


@dataclass(frozen=True)
class LaneProcess:
    pid: int
    started: float  # epoch seconds (the pid file's time)


def lane_process(settings: Settings) -> LaneProcess | None:
    """The lane process `run` started, if alive (and still the lane: its command line says `live`)."""
    from pipeline.procs.group import pid_file_process

    found = pid_file_process(settings.run_dir / "live.pid", "live")
    return LaneProcess(*found) if found else None


def last_checkpoint(settings: Settings) -> float | None:
    """When the lane last checkpointed its offsets (epoch seconds), or None."""
    offsets = checkpoint_path(settings) / "offsets"
    try:
        return max((f.stat().st_mtime for f in offsets.iterdir() if f.name.isdigit()), default=None)
    except OSError:
        return None


def last_running(settings: Settings) -> float | None:
    """When the lane last saw all its long-running tasks running (epoch seconds), or None."""
    try:
        return running_path(settings).stat().st_mtime
    except OSError:
        return None


def judge_lane(enabled: bool, checkpointed: float | None, process: LaneProcess | None, now: float,
               running: float | None = None) -> PartHealth:
    """Pure: the lane's state from its process, its last checkpoint time and its heartbeat.

    Up: the process has checkpointed since it started, or its heartbeat (all tasks running)
    is from since it started and at most `RUNNING_FRESH_S` old. The heartbeat is what shows a
    restarted lane up at once: after a kill, Spark first finishes the batch that was running,
    and writes no new checkpoint until that long batch ends (up to `BATCH_DURATION_S`)."""
    beating = (process is not None and running is not None and running >= process.started - 1
               and now - running <= RUNNING_FRESH_S)
    if process is not None and (beating or (checkpointed is not None and checkpointed >= process.started - 1)):
        return PartHealth("live", UP, "The live lane writes each high-value sale to the live topic as it comes "
                          "(Spark Real-time Mode).")
    if process is not None:
        age = max(0, round(now - process.started))
        return PartHealth("live", STARTING, f"The live lane is starting (pid {process.pid}, started "
                          f"{format_duration(age) if age else 'just now'} ago); Spark takes a minute or so.")
    if not enabled:
        return PartHealth("live", IDLE, "The live lane is turned off (TORMENTA_LIVE=false).", FIX)
    what = "never ran here" if checkpointed is None else \
        f"last checkpointed {format_duration(max(1, round(now - checkpointed)))} ago"
    return PartHealth("live", DOWN, f"No live lane is running ({what}).", FIX)


def claim_pid_file(settings: Settings) -> bool:
    """Write this process's pid to ``run/live.pid`` unless a live lane process owns it (True = ours)."""
    path = settings.run_dir / "live.pid"
    owner = lane_process(settings)
    if owner is not None:
        return owner.pid == os.getpid()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(str(os.getpid()))
    return True


def release_pid_file(settings: Settings) -> None:
    """Remove ``run/live.pid`` if it names this process."""
    path = settings.run_dir / "live.pid"
    try:
        if int(path.read_text().strip()) == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def lane_health(settings: Settings, now: float | None = None) -> PartHealth:
    return judge_lane(settings.live, last_checkpoint(settings), lane_process(settings),
                      time.time() if now is None else now, last_running(settings))
