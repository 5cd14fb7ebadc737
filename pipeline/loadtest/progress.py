"""What a running load test shows of itself: its phase, its events, ``progress.json``.

The page reads ``<run dir>/progress.json`` (rewritten on every phase change and every
sample): state, phase, the fraction done, the current step, the last sample's figures and
the last events. `Progress` is also where the run notes which step is on and since when,
so the sampler can ask for the target rate at any moment (`target_at`).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from pipeline.loadtest.plan import Plan, Step
from pipeline.loadtest.runs import write_json

log = logging.getLogger("pipeline.loadtest.runner")
LAST_SAMPLE_KEYS = ("target_rate", "achieved_rate", "lag_records", "lag_s", "batches", "latency_p99_ms",
                    "cpu_machine")
# the share of the bar each phase after the steps has reached
AFTER_STEPS = {"stopping emulator": 0.86, "catching up": 0.88, "stopping job": 0.93, "reconciling": 0.95,
               "writing report": 0.98}


class Progress:
    """The run's phase, events and current step, written to ``progress.json`` in the run's folder."""

    def __init__(self, run_id: str, plan: Plan, run_dir: Path):
        self.run_id, self.plan, self.dir = run_id, plan, run_dir
        self.phase = "starting"
        self.events: list[dict[str, Any]] = []
        self.started = time.time()
        self.steps_started_at: float | None = None
        self.step: Step | None = None
        self.step_started = 0.0

    def event(self, text: str) -> None:
        log.info("%s", text)
        self.events.append({"t": round(time.time(), 3), "text": text})

    def set_phase(self, phase: str) -> None:
        self.phase = phase
        self.write()

    def enter_step(self, step: Step) -> None:
        self.step, self.step_started = step, time.time()
        self.phase = f"step {step.index + 1}/{len(self.plan.steps)}"

    def target_at(self, now: float) -> tuple[int | None, float]:
        """The current step's index and target rate at `now` (None, 0 between steps)."""
        step = self.step
        if step is None or self.phase != f"step {step.index + 1}/{len(self.plan.steps)}":
            return None, 0.0
        return step.index, step.target_at(now - self.step_started)

    def fraction(self) -> float:
        if self.phase == "done":
            return 1.0
        if self.steps_started_at is None:
            return 0.03
        if self.phase.startswith("step"):
            done = sum(s.duration_s for s in self.plan.steps if self.step and s.index < self.step.index)
            within = min(self.step.duration_s, time.time() - self.step_started) if self.step else 0.0
            return 0.05 + 0.8 * min(1.0, (done + within) / max(1.0, self.plan.planned_seconds))
        return AFTER_STEPS.get(self.phase, 0.9)

    def write(self, sample: dict[str, Any] | None = None, state: str = "running") -> None:
        """Rewrite ``progress.json`` (a sample adds its figures); a write that fails is skipped."""
        data = {"run_id": self.run_id, "pid": os.getpid(), "state": state, "phase": self.phase,
                "fraction": round(self.fraction(), 3), "elapsed_s": round(time.time() - self.started, 1),
                "planned_s": self.plan.planned_seconds, "plan": self.plan.name,
                "step": self.step.label if self.step else None,
                "updated": time.time(), "events": self.events[-8:]}
        if sample:
            data["last"] = {k: sample.get(k) for k in LAST_SAMPLE_KEYS}
        try:
            write_json(self.dir / "progress.json", data)
        except OSError:
            pass
