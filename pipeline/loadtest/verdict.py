"""Verdict rules: per-second samples + per-batch metrics -> holds / degrades / breaks per step.

Pure functions (no I/O), so the rules are unit-tested with synthetic samples. For each
step the first seconds after a rate change are skipped (`settle_s`), then:

* **producer ratio** = mean achieved produce rate / mean target rate (emulator status);
* **batch duration** of every micro-batch triggered in the step vs the trigger interval;
* **lag growth**: the age of the oldest unprocessed record (lag in seconds), taken right
  after each batch commit (the minima of the micro-batch sawtooth), fitted by least
  squares over the step: seconds of lag gained per second of test;
* **oldest record late**: the largest lag in seconds seen in the step.

A job that finishes every batch within the trigger T never lets a record wait more than
2 x T (it arrives just after a batch started, waits for the next one and its run), so
"lag bounded by 2 x T + 5 s" is the precise form of "lag not growing" that still works
when a step holds only a few micro-batches.

A step **holds** when producer ratio >= 95 %, no delivery failed, every batch took at most
the trigger interval and no record waited more than 2 x T + 5 s. It **breaks** when
producer ratio < 80 %, a delivery failed, the job died, a record waited more than
3 x T + 10 s, or (with at least 3 commits in the step) the lag grows >= 0.10 s/s and by
more than max(T, 5 s). Everything in between **degrades**.

The limiting stage of a step that does not hold: *broker* when deliveries fail, the
producer's queue backs up (>= 250,000 messages) or the delivery latency p99 exceeds 2 s;
*emulator* when it simply cannot reach the target otherwise (it builds records in one
Python thread); *job* when the producer kept up but batches overran the trigger or the
lag grew. The maximum sustainable rate is the highest non-ramp step that holds below the
first break.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from pipeline.loadtest.capacity import CapacityInput, capacity
from pipeline.loadtest.plan import StepWindow

HOLDS, DEGRADES, BREAKS = "holds", "degrades", "breaks"
PRODUCER_HOLDS = 0.95
PRODUCER_BREAKS = 0.80
LAG_SLOPE_HOLDS = 0.05
LAG_SLOPE_BREAKS = 0.10
HOLD_LAG_FACTOR, HOLD_LAG_SLACK_S = 2.0, 5.0   # a job that ends every batch within the trigger keeps lag <= 2T
LATE_FACTOR, LATE_SLACK_S = 3.0, 10.0
MIN_LAG_POINTS = 3
BROKER_LATENCY_MS = 2000.0
BROKER_QUEUE = 250_000
EMULATOR_CPU_BOUND = 85.0   # % of one core
MACHINE_SATURATED = 90.0    # % of all cores

RULES = [
    ("holds", f"achieved produce rate ≥ {PRODUCER_HOLDS:.0%} of target, no failed delivery, every micro-batch "
              "duration ≤ trigger interval, and lag not growing: no record waited more than "
              f"{HOLD_LAG_FACTOR:g} × trigger + {HOLD_LAG_SLACK_S:g} s (the bound a job that finishes each batch "
              "within the trigger guarantees)"),
    ("breaks", f"achieved produce rate < {PRODUCER_BREAKS:.0%} of target, or a failed delivery, or the job died, "
               f"or a record waited > {LATE_FACTOR:g} × trigger + {LATE_SLACK_S:g} s, or (≥ {MIN_LAG_POINTS} commits "
               f"in the step) the lag after each commit grows ≥ {LAG_SLOPE_BREAKS} s per s and by > max(trigger, 5 s)"),
    ("degrades", "anything in between (e.g. batches longer than the trigger while the job still keeps up)"),
    ("limiting stage", f"broker if deliveries fail, the producer queue holds ≥ {BROKER_QUEUE:,} messages or delivery "
                       f"p99 > {BROKER_LATENCY_MS / 1000:g} s; emulator if it misses its target otherwise; job if "
                       "the producer kept up but batches overran the trigger or lag grew"),
    ("max sustainable rate", "the highest steady (non-ramp) step that holds, below the first step that breaks"),
]


@dataclass
class StepStats:
    index: int
    label: str
    kind: str
    target_rate: float
    start: float
    end: float
    achieved_rate: float | None = None
    delivered_rate: float | None = None
    producer_ratio: float | None = None
    failed: int = 0
    latency_p99_ms: float | None = None
    queue_max: int | None = None
    batches: int = 0
    batch_max_s: float | None = None
    batch_p50_s: float | None = None
    rows_in_batches: int = 0
    job_throughput: float | None = None
    lag_records_max: int | None = None
    lag_s_max: float | None = None
    lag_s_end: float | None = None
    lag_slope: float | None = None
    lag_growth_s: float | None = None
    lag_points: int = 0
    cpu: dict[str, float] = field(default_factory=dict)
    mem_mb: dict[str, float] = field(default_factory=dict)
    job_alive: bool = True
    freshness: dict[str, float | None] = field(default_factory=dict)
    verdict: str = ""
    reasons: list[str] = field(default_factory=list)
    limiting_stage: str | None = None
    why: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _mean(values) -> float | None:
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return sum(vals) / len(vals) if vals else None


def _max(values):
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return max(vals) if vals else None


def settle_seconds(duration_s: float) -> float:
    """Seconds skipped after a rate change: the emulator's 1-s status window and the pacer settle."""
    return min(5.0, 0.2 * duration_s)


def post_commit_lag(samples: list[dict]) -> list[tuple[float, float]]:
    """(t, lag_s) at the first sample after each change of the job's committed offset."""
    out = []
    prev = None
    for s in samples:
        off = s.get("job_offset")
        if off is not None and prev is not None and off != prev and s.get("lag_s") is not None:
            out.append((float(s["t"]), float(s["lag_s"])))
        if off is not None:
            prev = off
    return out


def _slope(points: list[tuple[float, float]]) -> float | None:
    if len(points) < 2:
        return None
    t = np.array([p[0] for p in points])
    y = np.array([p[1] for p in points])
    if float(t.max() - t.min()) <= 0:
        return None
    return float(np.polyfit(t - t[0], y, 1)[0])


def step_stats(step: StepWindow, samples: list[dict], batches: list[dict], trigger_s: float,
               freshness: dict[str, float | None] | None = None) -> StepStats:
    """Measure one step (its window as it ran) and judge it."""
    start, end = float(step.start), float(step.end)
    settle = settle_seconds(end - start)
    inside = [s for s in samples if start + settle <= s["t"] <= end]
    whole = [s for s in samples if start <= s["t"] <= end]
    st = StepStats(step.index, step.label, step.kind, float(step.target), start, end,
                   freshness=dict(freshness or {}))
    _producer_stats(st, samples, inside, whole)
    _batch_stats(st, batches)
    _lag_stats(st, samples, whole, start + settle)
    _process_stats(st, inside, whole)
    judge(st, trigger_s)
    return st


def _producer_stats(st: StepStats, samples: list[dict], inside: list[dict], whole: list[dict]) -> None:
    """Achieved vs target rate after the settle time, failed deliveries in the step, queue, latency."""
    target = _mean(s.get("target_rate") for s in inside)
    st.achieved_rate = _mean(s.get("achieved_rate") for s in inside)
    st.delivered_rate = _mean(s.get("delivered_rate") for s in inside)
    if target and st.achieved_rate is not None:
        st.producer_ratio = st.achieved_rate / target
    failed = [s.get("failed") for s in whole if s.get("failed") is not None]
    before = [s.get("failed") for s in samples if s["t"] < st.start and s.get("failed") is not None]
    st.failed = int((max(failed) if failed else 0) - (max(before) if before else 0))
    st.latency_p99_ms = _max(s.get("latency_p99_ms") for s in inside)
    q = _max(s.get("queue_depth") for s in whole)
    st.queue_max = int(q) if q is not None else None


def _batch_stats(st: StepStats, batches: list[dict]) -> None:
    """The micro-batches triggered in the step: count, longest, median, records per second of batch time."""
    mine = [b for b in batches if st.start <= float(b["trigger_time"]) < st.end]
    st.batches = len(mine)
    if not mine:
        return
    durs = sorted(float(b["duration_s"]) for b in mine)
    st.batch_max_s = durs[-1]
    st.batch_p50_s = durs[len(durs) // 2]
    st.rows_in_batches = int(sum(int(b.get("input_rows") or 0) for b in mine))
    busy = sum(durs)
    st.job_throughput = st.rows_in_batches / busy if busy > 0 else None


def _lag_stats(st: StepStats, samples: list[dict], whole: list[dict], settled: float) -> None:
    """Largest and last lag, and the lag right after each commit fitted over the step."""
    lr = _max(s.get("lag_records") for s in whole)
    st.lag_records_max = int(lr) if lr is not None else None
    st.lag_s_max = _max(s.get("lag_s") for s in whole)
    ends = [s.get("lag_s") for s in whole if s.get("lag_s") is not None]
    st.lag_s_end = ends[-1] if ends else None
    # Lag after each commit within the step (plus the commit just before it, as the baseline).
    pts = post_commit_lag(samples)
    base = [p for p in pts if p[0] < settled]
    in_step = [p for p in pts if settled <= p[0] <= st.end]
    series = ([base[-1]] if base else []) + in_step
    st.lag_slope = _slope(series)
    st.lag_growth_s = (series[-1][1] - series[0][1]) if len(series) >= 2 else None
    st.lag_points = len(series)


def _process_stats(st: StepStats, inside: list[dict], whole: list[dict]) -> None:
    for who in ("emulator", "broker", "job", "loadtest", "machine"):
        c = _mean(s.get(f"cpu_{who}") for s in inside)
        if c is not None:
            st.cpu[who] = round(c, 1)
        m = _max(s.get(f"mem_{who}_mb") for s in inside)
        if m is not None:
            st.mem_mb[who] = round(m, 1)
    st.job_alive = all(s.get("job_alive", True) for s in whole)


def judge(st: StepStats, trigger_s: float) -> StepStats:
    """Apply the rules to measured stats; sets verdict, reasons, limiting stage and why."""
    breaks: list[str] = []
    degrades: list[str] = []
    ratio = st.producer_ratio
    if ratio is None:
        degrades.append("no emulator status in the step (producer rate unknown)")
    elif ratio < PRODUCER_BREAKS:
        breaks.append(f"producer reached only {ratio:.0%} of the target")
    elif ratio < PRODUCER_HOLDS:
        degrades.append(f"producer reached {ratio:.0%} of the target")
    if st.failed:
        breaks.append(f"{st.failed:,} deliveries failed")
    if not st.job_alive:
        breaks.append("the job process died")
    if st.batch_max_s is not None and st.batch_max_s > trigger_s:
        degrades.append(f"longest batch {st.batch_max_s:.1f} s > trigger {trigger_s:g} s")
    slope, growth = st.lag_slope, st.lag_growth_s
    if slope is not None and growth is not None and st.lag_points >= MIN_LAG_POINTS:
        if slope >= LAG_SLOPE_BREAKS and growth > max(trigger_s, 5.0):
            breaks.append(f"lag grows {slope:.2f} s per s (+{growth:.0f} s over the step): the job falls behind")
        elif slope >= LAG_SLOPE_HOLDS and growth >= max(trigger_s / 2, 2.0):
            degrades.append(f"lag grows {slope:.2f} s per s (+{growth:.0f} s over the step)")
    late_limit = LATE_FACTOR * trigger_s + LATE_SLACK_S
    hold_limit = HOLD_LAG_FACTOR * trigger_s + HOLD_LAG_SLACK_S
    if st.lag_s_max is not None and st.lag_s_max > late_limit:
        breaks.append(f"a record waited {st.lag_s_max:.0f} s (> {late_limit:g} s = {LATE_FACTOR:g} × trigger + "
                      f"{LATE_SLACK_S:g} s): the job falls behind")
    elif st.lag_s_max is not None and st.lag_s_max > hold_limit:
        degrades.append(f"a record waited {st.lag_s_max:.0f} s (> {hold_limit:g} s = {HOLD_LAG_FACTOR:g} × trigger"
                        f" + {HOLD_LAG_SLACK_S:g} s)")
    if breaks:
        st.verdict, st.reasons = BREAKS, breaks + degrades
    elif degrades:
        st.verdict, st.reasons = DEGRADES, degrades
    else:
        st.verdict, st.reasons = HOLDS, []
    if st.verdict != HOLDS:
        st.limiting_stage, st.why = limiting_stage(st, trigger_s)
    return st


def limiting_stage(st: StepStats, trigger_s: float) -> tuple[str, str]:
    """Which stage stops the step from holding, and why (with the measured numbers)."""
    machine = st.cpu.get("machine")
    machine_note = (f"; the machine's CPU was {machine:.0f} % busy (all processes share "
                    "the cores)") if machine is not None and machine >= MACHINE_SATURATED else ""
    ratio = st.producer_ratio
    producer_short = st.failed > 0 or (ratio is not None and ratio < PRODUCER_HOLDS)
    if producer_short:
        broker_signs = []
        if st.failed:
            broker_signs.append(f"{st.failed:,} deliveries failed")
        if st.queue_max is not None and st.queue_max >= BROKER_QUEUE:
            broker_signs.append(f"the producer queue backed up to {st.queue_max:,} messages")
        if st.latency_p99_ms is not None and st.latency_p99_ms > BROKER_LATENCY_MS:
            broker_signs.append(f"delivery latency p99 reached {st.latency_p99_ms / 1000:.1f} s")
        if broker_signs:
            return "broker", "the broker does not take the records fast enough: " + ", ".join(broker_signs) + machine_note
        cpu = st.cpu.get("emulator")
        cpu_text = f" while using {cpu:.0f} % of a core" if cpu is not None else ""
        bound = " (CPU-bound: it builds records in one Python thread)" if cpu is not None and cpu >= EMULATOR_CPU_BOUND else ""
        achieved = f"{st.achieved_rate:,.0f}" if st.achieved_rate is not None else "?"
        return "emulator", (f"the emulator produced {achieved} of {st.target_rate:,.0f} tx/s"
                            f"{cpu_text}{bound}; the broker queue stayed short" + machine_note)
    parts = []
    if st.batch_max_s is not None and st.batch_max_s > trigger_s:
        parts.append(f"batch duration {st.batch_max_s:.1f} s > trigger {trigger_s:g} s")
    if st.lag_slope is not None and st.lag_slope >= LAG_SLOPE_HOLDS and st.lag_points >= MIN_LAG_POINTS:
        parts.append(f"lag grows {st.lag_slope:.2f} s per s")
    if st.lag_s_max is not None and st.lag_s_max > HOLD_LAG_FACTOR * trigger_s + HOLD_LAG_SLACK_S:
        parts.append(f"oldest unprocessed record {st.lag_s_max:.0f} s late")
    if st.job_throughput is not None:
        parts.append(f"its batches in the step handled {st.job_throughput:,.0f} records per second of batch time "
                     f"({st.rows_in_batches:,} records in {st.batches} batch{'es' if st.batches != 1 else ''})")
    if not st.job_alive:
        parts.append("the job process died")
    return "job", ("the job does not keep up: " + ", ".join(parts or ["its lag grew"]) + machine_note)


@dataclass
class Summary:
    max_sustainable_rate: float | None
    limiting_stage: str | None
    why: str | None
    peak_rate: float
    peak_verdict: str | None
    first_break_rate: float | None
    ceiling_reached: bool
    answer: str
    highest_unbroken_rate: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def full_state_caveat(stats: list[StepStats], trigger_s: float, dedupe_window_s: float | None,
                      cores: int | None) -> str:
    """What the hold at the peak could not show when it was shorter than the dedupe window:
    the dedupe state was not full, and Spark reads every key of it in every batch to evict
    the expired ones (see `capacity`). "" when the hold filled the window, or without a hold,
    a measured throughput or the settings."""
    hold = next((s for s in stats if s.kind == "hold"), None)
    if hold is None or not dedupe_window_s or not cores or not hold.job_throughput:
        return ""
    held = hold.end - hold.start
    if held >= dedupe_window_s:
        return ""
    plan = capacity(CapacityInput(rate=hold.target_rate, trigger_s=trigger_s, cores=cores,
                                  job_throughput=hold.job_throughput, dedupe_window_s=dedupe_window_s))
    outcome = ("longer than the trigger: a longer hold (--scale) or a longer trigger tells whether it holds"
               if plan.est_batch_s > trigger_s else "still within the trigger")
    return (f" The hold lasted {held:,.0f} s, less than the {dedupe_window_s:,.0f} s dedupe window, so the dedupe "
            f"state was not full. Full ({plan.dedupe_state_keys:,.0f} keys), Spark's scan of it to evict adds "
            f"≈{plan.eviction_s_per_batch:,.1f} s to every batch: at the {hold.job_throughput:,.0f} records per second "
            f"of batch time measured here a {trigger_s:g} s batch would take ≈{plan.est_batch_s:,.1f} s, {outcome}.")


def summarise(stats: list[StepStats], peak_rate: float, ceiling: float, *, trigger_s: float | None = None,
              dedupe_window_s: float | None = None, cores: int | None = None) -> Summary:
    """Max sustainable rate, the limiting stage and a one-sentence answer (plus, given the
    trigger, the dedupe window and the job's cores, what a hold shorter than the window hides)."""
    steady = [s for s in stats if s.kind != "ramp"]
    first_break = next((s for s in steady if s.verdict == BREAKS), None)
    below = [s for s in steady if first_break is None or s.index < first_break.index]
    holding = [s for s in below if s.verdict == HOLDS]
    max_rate = max((s.target_rate for s in holding), default=None)
    above = [s for s in stats if s.verdict != HOLDS and (max_rate is None or s.target_rate > max_rate)]
    limiter = next((s for s in above if s.kind != "ramp"), above[0] if above else None)
    peak = next((s for s in stats if s.kind == "hold"), None)
    top = max((s.target_rate for s in steady), default=0.0)
    ceiling_reached = first_break is None and top >= ceiling and all(s.verdict == HOLDS for s in steady)
    peak_text = (f"At the peak ({peak_rate:,.0f} tx/s) the pipeline {peak.verdict}" if peak else
                 f"The peak ({peak_rate:,.0f} tx/s) was not reached")
    unbroken = max((s.target_rate for s in below if s.verdict != BREAKS), default=None)
    if max_rate is None:
        rate_text = "no step held"
        if unbroken is not None:
            rate_text += f" (the highest rate that did not break: {unbroken:,.0f} tx/s, degraded)"
    else:
        rate_text = f"the maximum sustainable rate measured is {max_rate:,.0f} tx/s"
        if ceiling_reached:
            rate_text += " (the ceiling: nothing broke)"
    lim_text = f"; limited by the {limiter.limiting_stage}: {limiter.why}" if limiter else ""
    return Summary(max_rate, limiter.limiting_stage if limiter else None, limiter.why if limiter else None,
                   peak_rate, peak.verdict if peak else None, first_break.target_rate if first_break else None,
                   ceiling_reached, f"{peak_text}; {rate_text}{lim_text}."
                   + (full_state_caveat(stats, trigger_s, dedupe_window_s, cores) if trigger_s else ""), unbroken)


def percentiles(values) -> dict[str, float | None]:
    """p50 / p95 / max of a list of seconds (None when empty)."""
    arr = np.asarray([v for v in values if v is not None], dtype=float)
    if arr.size == 0:
        return {"p50": None, "p95": None, "max": None, "n": 0}
    return {"p50": round(float(np.percentile(arr, 50)), 3), "p95": round(float(np.percentile(arr, 95)), 3),
            "max": round(float(arr.max()), 3), "n": int(arr.size)}

