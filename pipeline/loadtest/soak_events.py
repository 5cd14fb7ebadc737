"""What a soak does to the running product besides load: part health after a kill, and the job outage.

`Health` answers "is this part healthy again since it came back at `back_at`?" for the
chaos kills: the job has committed a batch since, the app's health endpoint answers, the
emulator's records reach the topic again (the log end moved since), the live lane has
checkpointed or seen all its tasks running since, a broker node is listed in the cluster's metadata again.

`Outage` stops the job for a while without the supervisor noticing and then lets the
supervisor bring it back: the job's process group (Python driver and Spark JVM) gets
SIGSTOP (a stopped process has not exited, so ``run`` does not restart it) while the
emulator is switched to the outage rate; at the end the group gets SIGKILL, and ``run``
restarts the job from its checkpoint with the backlog, as after a crash. The emulator goes
back to the steady rate. The outage's figures come from the samples and the batches
afterwards (`outage_figures`).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pipeline.loadtest.soak_parts import read_parts


@dataclass
class Health:
    run_dir: Path
    job_committed_since: Callable[[float], bool]
    app_healthy: Callable[[], bool]
    log_end: Callable[[], int | None]
    live_checkpointed: Callable[[], float | None]
    broker_ids: Callable[[], set[int]]

    def __post_init__(self) -> None:
        self._marks: dict[tuple[str, float], int | None] = {}

    def __call__(self, part: str, back_at: float) -> bool:
        if part == "job":
            return self.job_committed_since(back_at)
        if part == "app":
            return self.app_healthy()
        if part == "emulator":
            end = self.log_end()
            first = self._marks.setdefault((part, back_at), end)
            return end is not None and first is not None and end > first
        if part == "live":
            t = self.live_checkpointed()
            return t is not None and t > back_at
        if part.startswith("broker"):
            node = int(part.rpartition("-")[2]) if "-" in part else 1
            return node in self.broker_ids()
        return True


@dataclass
class OutageState:
    planned_start: float
    seconds: float
    rate: float
    started_at: float | None = None
    pid: int | None = None
    released_at: float | None = None
    back_at: float | None = None
    new_pid: int | None = None
    problem: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Outage:
    """The job held down for `seconds` from `planned_start` (epoch s), under `rate`; `tick()` ~once a second."""

    def __init__(self, run_dir: Path, planned_start: float, seconds: float, rate: float, steady_rate: float,
                 set_rate: Callable[[float], None], event: Callable[[str], None],
                 signal_group: Callable[[int, int], None] = os.killpg, clock: Callable[[], float] = time.time):
        self.run_dir, self.steady_rate, self.set_rate, self.event = run_dir, steady_rate, set_rate, event
        self.signal_group, self.clock = signal_group, clock
        self.state = OutageState(planned_start, seconds, rate)

    @property
    def active(self) -> bool:
        """From the start of the outage until the job is back."""
        s = self.state
        return s.started_at is not None and s.back_at is None and not s.problem

    def tick(self) -> None:
        s, now = self.state, self.clock()
        if s.started_at is None and not s.problem and now >= s.planned_start:
            self._begin(now)
        elif self.active and s.released_at is None and now >= s.started_at + s.seconds:
            self._release(now)
        elif self.active and s.released_at is not None:
            part = read_parts(self.run_dir).get("job")
            if part is not None and part.running and part.pid != s.pid:
                s.back_at, s.new_pid = now, part.pid
                self.event(f"outage: the supervisor brought the job back (pid {part.pid}) "
                           f"{now - s.released_at:.1f} s after its release")

    def _begin(self, now: float) -> None:
        s = self.state
        part = read_parts(self.run_dir).get("job")
        if part is None or not part.running or part.pid is None:
            s.problem = "the job was not running when the outage was due"
            self.event(f"outage: {s.problem}")
            return
        self.set_rate(s.rate)
        self.signal_group(part.pid, signal.SIGSTOP)
        s.started_at, s.pid = now, part.pid
        self.event(f"outage: job (pid {part.pid}) stopped for {s.seconds:g} s; emulator at {s.rate:,.0f} tx/s")

    def _release(self, now: float) -> None:
        s = self.state
        assert s.pid is not None
        self.set_rate(self.steady_rate)
        try:
            self.signal_group(s.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        s.released_at = now
        self.event(f"outage over: job killed (kill -9 of its group), emulator back at {self.steady_rate:,.0f} tx/s; "
                   "the supervisor restarts the job")


def outage_figures(state: OutageState, samples: list[dict[str, Any]], batches: list[dict[str, Any]],
                   normal_lag: float) -> dict[str, Any]:
    """Pure: catch-up time (job back -> records behind ≤ `normal_lag`), the largest batch after the start,
    and the most records behind."""
    out = state.as_dict()
    if state.started_at is None:
        return out
    after = [s for s in samples if s["t"] >= state.started_at and s.get("lag_records") is not None]
    out["max_behind"] = max((s["lag_records"] for s in after), default=None)
    since = state.back_at or state.released_at
    caught = next((s["t"] for s in after if since is not None and s["t"] >= since and s["lag_records"] <= normal_lag),
                  None)
    out["caught_up_at"] = caught
    out["catch_up_s"] = None if caught is None or since is None else round(caught - since, 1)
    big = [b for b in batches if float(b["trigger_time"]) >= state.started_at]
    largest = max(big, key=lambda b: b.get("input_rows") or 0, default=None)
    out["largest_batch"] = None if largest is None else {
        "batch_id": largest["batch_id"], "input_rows": largest.get("input_rows"), "duration_s": largest.get("duration_s")}
    out["normal_lag"] = normal_lag
    return out
