"""Chaos during a soak: kill -9 one part at a time on a seeded schedule, and time its recovery.

`schedule(seed, duration_s, every, targets)` is pure: the kill times (seconds after the
start, each gap drawn uniformly from `every` = (low, high)) and the part each one hits,
none in the last `low` seconds (the last kill has time to recover). The same seed gives
the same schedule. `Chaos` carries it out against ``parts.json`` (`soak_parts.read_parts`):
at each due time it sends SIGKILL to the part's process (the supervisor of ``run`` must
notice and start it again), then follows the kill until the part is

* **back**: ``parts.json`` shows it running with a new pid;
* **healthy**: the part's own check (given by the soak) holds after it is back: the job
  committed a new batch, the app's health endpoint answers, the emulator's records reach
  the topic again, the live lane checkpoints again, a broker node is in the cluster again.

A kill that is not back or not healthy within `recover_timeout_s` is recorded as such.
A second kill never starts while one is still recovering (it waits).
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipeline.loadtest.soak_parts import read_parts

RECOVER_TIMEOUT_S = 600.0
PARTS_TO_KILL = ("job", "emulator", "app", "live")


def kill_targets(parts: list[str], nodes: int) -> list[str]:
    """The parts chaos may kill: job, emulator, app, live lane; a broker node only on a cluster."""
    out = [p for p in parts if p in PARTS_TO_KILL]
    if nodes > 1:
        out += [p for p in parts if p.startswith("broker-")]
    return sorted(out)


def schedule(seed: int, duration_s: float, every: tuple[float, float], targets: list[str]) -> list[tuple[float, str]]:
    """(seconds after start, part) of each kill: gaps uniform in `every`, none in the last every[0] s."""
    low, high = every
    if not targets or low <= 0 or high < low:
        return []
    rng = random.Random(seed)
    out, t = [], 0.0
    while True:
        t += rng.uniform(low, high)
        if t > duration_s - low:
            return out
        out.append((round(t, 1), rng.choice(sorted(targets))))


@dataclass
class Kill:
    part: str
    planned_s: float            # seconds after the start, as scheduled
    at: float = 0.0             # epoch seconds of the SIGKILL
    pid: int | None = None
    new_pid: int | None = None
    back_at: float | None = None
    healthy_at: float | None = None
    problem: str = ""

    @property
    def back_s(self) -> float | None:
        return None if self.back_at is None else round(self.back_at - self.at, 1)

    @property
    def healthy_s(self) -> float | None:
        return None if self.healthy_at is None else round(self.healthy_at - self.at, 1)

    @property
    def done(self) -> bool:
        return self.healthy_at is not None or bool(self.problem)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"back_s": self.back_s, "healthy_s": self.healthy_s}


@dataclass
class Chaos:
    """Carry out a kill schedule; `tick()` from the soak's loop (about once a second)."""

    run_dir: Path
    plan: list[tuple[float, str]]
    t0: float
    healthy: Callable[[str, float], bool]          # (part, back_at) -> is it healthy now?
    event: Callable[[str], None] = print
    recover_timeout_s: float = RECOVER_TIMEOUT_S
    kill: Callable[[int, int], None] = os.kill
    clock: Callable[[], float] = time.time
    kills: list[Kill] = field(default_factory=list)

    def pending(self) -> Kill | None:
        return next((k for k in self.kills if not k.done), None)

    def tick(self) -> None:
        now = self.clock()
        current = self.pending()
        if current is not None:
            self._follow(current, now)
            return
        if len(self.kills) < len(self.plan):
            planned, part = self.plan[len(self.kills)]
            if now >= self.t0 + planned:
                self._kill(Kill(part, planned), now)

    def _kill(self, k: Kill, now: float) -> None:
        self.kills.append(k)
        state = read_parts(self.run_dir).get(k.part)
        if state is None or not state.running:
            k.problem = f"not running at the planned time ({state.state if state else 'not in parts.json'}); skipped"
            self.event(f"chaos: {k.part} {k.problem}")
            return
        k.pid, k.at = state.pid, now
        try:
            self.kill(state.pid, signal.SIGKILL)
        except ProcessLookupError:
            k.problem = f"pid {state.pid} was already gone"
        self.event(f"chaos: kill -9 {k.part} (pid {k.pid})" + (f": {k.problem}" if k.problem else ""))

    def _follow(self, k: Kill, now: float) -> None:
        if k.back_at is None:
            state = read_parts(self.run_dir).get(k.part)
            if state is not None and state.running and state.pid != k.pid:
                k.back_at, k.new_pid = now, state.pid
                self.event(f"chaos: {k.part} back after {k.back_s:.1f} s (pid {k.new_pid})")
        if k.back_at is not None and k.healthy_at is None and self.healthy(k.part, k.back_at):
            k.healthy_at = now
            self.event(f"chaos: {k.part} healthy {k.healthy_s:.1f} s after the kill")
        if not k.done and now - k.at > self.recover_timeout_s:
            k.problem = (f"not back within {self.recover_timeout_s:.0f} s" if k.back_at is None
                         else f"back but not healthy within {self.recover_timeout_s:.0f} s")
            self.event(f"chaos: {k.part} {k.problem}")

    def wait_recovered(self, timeout_s: float, stop: Callable[[], bool] = lambda: False) -> None:
        """After the schedule: follow the last kill until it is done (or `timeout_s`)."""
        end = self.clock() + timeout_s
        while self.pending() is not None and self.clock() < end and not stop():
            self._follow(self.pending(), self.clock())  # type: ignore[arg-type]
            time.sleep(1.0)  # the part's recovery happens in other processes: poll
