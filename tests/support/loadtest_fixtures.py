"""A simulated load test for the tests of the verdict, the report and the pages that show a run.

`simulate` runs a tiny model of the pipeline (emulator -> topic -> micro-batch job) over a plan;
`synthetic_result` turns one such run into a complete `LoadTestResult`, as the runner returns it.
"""

from __future__ import annotations

from pipeline.loadtest import plan as plans
from pipeline.loadtest import reconcile, verdict
from pipeline.loadtest.result import LoadTestResult
from pipeline.loadtest.sampling import LogEndHistory


# ---- a tiny simulator of the pipeline: emulator -> topic -> micro-batch job ----------------------
def simulate(plan: plans.Plan, *, job_capacity: float, overhead_s: float, emulator_max: float = 1e9,
             latency_ms: float = 20.0, queue: int = 100, failed_from: float | None = None, emulator_cpu: float = 40.0,
             t0: float = 1_000_000.0, dt: float = 0.5):
    """Samples, batches and step windows of a run where the job needs `overhead_s + n / job_capacity`
    seconds per batch of n records and the emulator reaches at most `emulator_max` tx/s."""
    windows, t = [], t0
    for s in plan.steps:
        windows.append(plans.StepWindow.of(s, t, t + s.duration_s))
        t += s.duration_s
    end_t = t
    trig = plan.trigger_s
    hist = LogEndHistory()
    log_end = 0.0
    committed, running, next_trigger = 0, None, t0
    samples, batches = [], []
    t = t0
    while t <= end_t + 1e-9:
        w = next((w for w in windows if w.start <= t < w.end), windows[-1])
        step = plan.steps[w.index]
        target = step.target_at(t - w.start)
        achieved = min(target, emulator_max)
        log_end += achieved * dt
        hist.add(t, int(log_end))
        if running and t >= running["finish"]:
            committed = running["end"]
            batches.append({"batch_id": len(batches), "trigger_time": running["start"],
                            "duration_s": running["finish"] - running["start"], "input_rows": running["n"]})
            running = None
        if running is None and t >= next_trigger:
            n = int(log_end) - committed
            running = {"start": t, "end": int(log_end), "n": n, "finish": t + overhead_s + n / job_capacity}
            while next_trigger <= t:
                next_trigger += trig
        failed = 0 if failed_from is None or t < failed_from else int((t - failed_from) * 100)
        samples.append({
            "t": t, "step": w.index, "target_rate": target, "achieved_rate": achieved, "delivered_rate": achieved,
            "failed": failed, "queue_depth": queue, "latency_p50_ms": latency_ms / 2, "latency_p99_ms": latency_ms,
            "log_end": int(log_end), "job_offset": committed,
            "lag_records": int(log_end) - committed, "lag_s": hist.lag_seconds(t, committed), "job_alive": True,
            "cpu_emulator": emulator_cpu, "cpu_broker": 30.0, "cpu_job": 120.0, "cpu_machine": 80.0,
            "mem_emulator_mb": 150.0, "mem_broker_mb": 700.0, "mem_job_mb": 1500.0, "mem_loadtest_mb": 90.0,
        })
        t = round(t + dt, 6)
    return samples, batches, windows


def judge_all(plan, samples, batches, windows):
    stats = [verdict.step_stats(w, samples, batches, plan.trigger_s) for w in windows]
    return stats, verdict.summarise(stats, plan.peak_rate, plan.ceiling)


def synthetic_result(plan: plans.Plan | None = None, **sim) -> tuple[LoadTestResult, list[dict]]:
    """A complete result (as the runner returns it) from a simulated run."""
    plan = plan or plans.build_plan("christmas", scale=0.5)
    samples, batches, windows = simulate(plan, **({"job_capacity": 80_000, "overhead_s": 2.0} | sim))
    stats, summary = judge_all(plan, samples, batches, windows)
    for s in stats:
        s.freshness = {"p50": 6.0, "p95": 11.0, "max": 14.0, "n": 100}
    rec = reconcile.compare_ids(["a", "b"], ["a", "b"])
    rec.windows = [{"minute": "2026-11-24T19:12:00Z", "sent": 1000, "over_threshold": 2, "in_delta": 2,
                    "difference": 0}]
    rec.totals = {"emulator_sent": 1000, "broker_log_end": 1000}
    result = LoadTestResult(
        run_id="test-run", plan=plan, summary=summary, reconciliation=rec, state="done",
        started="2026-11-24T19:12:00+00:00", finished="2026-11-24T19:20:00+00:00", t0=samples[0]["t"],
        windows=windows, steps=stats, caught_up=True, freshness_all={"p50": 6.0, "p95": 11.0, "max": 14.0, "n": 2},
        batch_freshness=[{"batch_id": b["batch_id"], "visible_at": b["trigger_time"] + b["duration_s"],
                          "p50": 5.0, "p95": 9.0, "max": 12.0, "n": 10} for b in batches],
        batches=batches, emulator={"sent": 1000, "delivered": 1000, "failed": 0},
        settings={"trigger_interval_s": plan.trigger_s, "partitions": 3},
        machine={"logical_cores": 2, "cpu_model": "test cpu"}, events=[{"t": samples[0]["t"], "text": "start"}],
        report="report.html")
    return result, samples
