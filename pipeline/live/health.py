"""Is the live lane up? For the Overview's fifth part and the Live page.

The lane checkpoints its Kafka offsets every `BATCH_DURATION_S` seconds while it runs
(``<data_dir>/checkpoints/live/offsets/<n>``), so a fresh offsets file means it is up. `run`
writes ``<data_dir>/run/live.pid`` as it starts the lane: a live process without a fresh
checkpoint is starting (Spark's start plus the decode's code generation takes a while);
neither means down.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from pipeline.live.lane import BATCH_DURATION_S, checkpoint_path
from pipeline.read.health import DOWN, IDLE, STARTING, UP, PartHealth
from pipeline.settings import Settings, format_duration

FIX = "python -m pipeline live"
SLACK_S = 15


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


def judge_lane(enabled: bool, checkpointed: float | None, process: LaneProcess | None, now: float) -> PartHealth:
    """Pure: the lane's state from its last checkpoint time and its process."""
    fresh = checkpointed is not None and now - checkpointed <= 2 * BATCH_DURATION_S + SLACK_S
    if fresh:
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


def lane_health(settings: Settings, now: float | None = None) -> PartHealth:
    return judge_lane(settings.live, last_checkpoint(settings), lane_process(settings),
                      time.time() if now is None else now)
