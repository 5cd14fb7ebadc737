"""Load-test plans: warm-up at the normal rate, ramp (or step) to the peak, hold, then beyond.

A plan is data: a list of `Step`s (kind, target rate, duration) plus the trigger interval
the job runs with during the test and a ceiling for the beyond-peak steps. The beyond
steps run one after the other until a step *breaks* (judged live at the end of the step,
see `verdict`) or the ceiling is reached.

`build_plan("christmas", scale=0.25)` shortens every duration by the factor; the rates
never scale. The real default of the Christmas plan is::

    warm-up 10,000 tx/s 30 s -> ramp to 50,000 over 30 s -> hold 50,000 for 60 s
    -> beyond 75,000 / 100,000 / 150,000 / 200,000 tx/s, 40 s each (ceiling 200,000)
    trigger 10 s  (about 5 minutes of load plus start-up and catch-up)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from pipeline.errors import SettingsError

MIN_STEP_S = 5.0


@dataclass(frozen=True)
class Step:
    index: int
    kind: str
    rate: float                 # target rate at the end of the step (the whole step unless a ramp)
    duration_s: float
    start_rate: float | None = None  # ramps only: the rate at the start

    @property
    def label(self) -> str:
        if self.kind == "ramp":
            return f"ramp {self.start_rate:,.0f}→{self.rate:,.0f}"
        return f"{self.kind} {self.rate:,.0f}"

    def target_at(self, t: float) -> float:
        """Target rate `t` seconds into the step."""
        if self.kind == "ramp" and self.start_rate is not None and self.duration_s > 0:
            frac = min(1.0, max(0.0, t / self.duration_s))
            return self.start_rate + (self.rate - self.start_rate) * frac
        return self.rate

    def mean_target(self) -> float:
        if self.kind == "ramp" and self.start_rate is not None:
            return (self.start_rate + self.rate) / 2
        return self.rate


@dataclass(frozen=True)
class StepWindow:
    """A step as it ran: its plan figures and the wall-clock window (epoch s) it held."""

    index: int
    label: str
    kind: str
    target: float               # the step's mean target rate
    rate: float
    start: float
    end: float
    planned_s: float | None = None
    complete: bool = True

    @classmethod
    def of(cls, step: Step, start: float, end: float, complete: bool = True) -> StepWindow:
        return cls(step.index, step.label, step.kind, step.mean_target(), step.rate, start, end, step.duration_s,
                   complete)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Plan:
    name: str
    normal_rate: float
    peak_rate: float
    trigger_s: float
    ceiling: float
    steps: tuple[Step, ...] = field(default_factory=tuple)
    scale: float = 1.0

    @property
    def planned_seconds(self) -> float:
        return sum(s.duration_s for s in self.steps)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["steps"] = [asdict(s) | {"label": s.label} for s in self.steps]
        d["planned_seconds"] = self.planned_seconds
        return d

    def describe(self) -> str:
        parts = [f"{s.label} tx/s for {s.duration_s:g} s" for s in self.steps]
        return (f"plan {self.name}: " + " → ".join(parts)
                + f"; trigger {self.trigger_s:g} s; beyond steps stop at the first break or the ceiling "
                  f"{self.ceiling:,.0f} tx/s")


# name -> parameters; "beyond" are multiples of the peak rate.
PLANS: dict[str, dict[str, Any]] = {
    "christmas": {"normal": 10_000, "peak": 50_000, "warmup_s": 30, "ramp_s": 30, "hold_s": 60,
                  "beyond": (1.5, 2.0, 3.0, 4.0), "step_s": 40, "trigger_s": 10, "ceiling": 200_000,
                  "help": "normal day 10,000 tx/s → Christmas 50,000 tx/s → beyond up to 200,000"},
    "normal-day": {"normal": 5_000, "peak": 10_000, "warmup_s": 30, "ramp_s": 20, "hold_s": 60,
                   "beyond": (2.0, 3.0, 5.0), "step_s": 40, "trigger_s": 10, "ceiling": 50_000,
                   "help": "half load 5,000 tx/s → normal day 10,000 tx/s → beyond up to 50,000"},
    "smoke": {"normal": 1_000, "peak": 3_000, "warmup_s": 20, "ramp_s": 0, "hold_s": 25,
              "beyond": (), "step_s": 20, "trigger_s": 2, "ceiling": 3_000,
              "help": "a tiny two-step plan for tests: 1,000 then 3,000 tx/s, 2 s trigger"},
}


def build_plan(name: str = "christmas", *, scale: float = 1.0, trigger_s: float | None = None,
               ceiling: float | None = None, normal: float | None = None, peak: float | None = None,
               beyond: bool = True) -> Plan:
    """The named plan with durations x `scale` (each step at least 5 s) and optional overrides."""
    if name not in PLANS:
        raise SettingsError(f"unknown load-test profile {name!r}; allowed: {', '.join(PLANS)}")
    if not 0.01 <= scale <= 100:
        raise SettingsError(f"--scale={scale:g} is out of range; allowed: 0.01..100 (1 = the real plan)")
    p = PLANS[name]
    normal = float(p["normal"] if normal is None else normal)
    peak = float(p["peak"] if peak is None else peak)
    trigger = float(p["trigger_s"] if trigger_s is None else trigger_s)
    cap = float(p["ceiling"] if ceiling is None else ceiling)
    if normal <= 0 or peak <= 0:
        raise SettingsError("normal and peak rates must be > 0 tx/s")
    if peak < normal:
        raise SettingsError(f"peak {peak:,.0f} tx/s must not be below the normal rate {normal:,.0f} tx/s")
    if not 0.5 <= trigger <= 600:
        raise SettingsError(f"trigger {trigger:g} s is out of range; allowed: 0.5..600 s")
    if cap < peak:
        raise SettingsError(f"ceiling {cap:,.0f} tx/s must be at least the peak {peak:,.0f} tx/s")

    def dur(seconds: float) -> float:
        return max(MIN_STEP_S, round(seconds * scale, 1))

    steps: list[Step] = [Step(0, "warmup", normal, dur(p["warmup_s"]))]
    if p["ramp_s"] and peak > normal:
        steps.append(Step(len(steps), "ramp", peak, dur(p["ramp_s"]), start_rate=normal))
    steps.append(Step(len(steps), "hold", peak, dur(p["hold_s"])))
    if beyond:
        for factor in p["beyond"]:
            rate = min(cap, round(peak * factor))
            if rate <= steps[-1].rate:
                break
            steps.append(Step(len(steps), "beyond", rate, dur(p["step_s"])))
            if rate >= cap:
                break
    return Plan(name, normal, peak, trigger, cap, tuple(steps), scale)


def plan_from_dict(d: dict[str, Any]) -> Plan:
    steps = tuple(Step(s["index"], s["kind"], s["rate"], s["duration_s"], s.get("start_rate")) for s in d["steps"])
    return Plan(d["name"], d["normal_rate"], d["peak_rate"], d["trigger_s"], d["ceiling"], steps, d.get("scale", 1.0))
