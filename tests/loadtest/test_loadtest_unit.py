"""Unit tests of the load test (no broker, no JVM): plans, verdict rules on simulated runs,
reconciliation by id and per window, the sampler's lag arithmetic, the HTML report."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from pipeline.errors import SettingsError
from pipeline.loadtest import plan as plans
from pipeline.loadtest import reconcile, verdict
from pipeline.loadtest.report import build_report, verdict_rows, write_report
from pipeline.loadtest.result import LoadTestResult
from pipeline.loadtest.sampling import LogEndHistory, checkpoint_offsets


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


CHRISTMAS = plans.build_plan("christmas", scale=0.5)


# ---- plans ----------------------------------------------------------------------------------------
def test_christmas_plan_default_shape():
    p = plans.build_plan("christmas")
    assert [s.kind for s in p.steps] == ["warmup", "ramp", "hold", "beyond", "beyond", "beyond", "beyond"]
    assert [s.rate for s in p.steps] == [10_000, 50_000, 50_000, 75_000, 100_000, 150_000, 200_000]
    assert p.steps[1].start_rate == 10_000 and p.trigger_s == 10
    assert p.planned_seconds == 30 + 30 + 60 + 4 * 40
    assert p.steps[1].target_at(15) == pytest.approx(30_000)


def test_plan_scale_ceiling_and_validation():
    p = plans.build_plan("christmas", scale=0.25, ceiling=100_000, trigger_s=5)
    assert [s.rate for s in p.steps][-2:] == [75_000, 100_000]
    assert p.steps[0].duration_s == 7.5 and p.trigger_s == 5
    assert plans.build_plan("christmas", scale=0.01).steps[0].duration_s == plans.MIN_STEP_S
    assert [s.kind for s in plans.build_plan("christmas", beyond=False).steps] == ["warmup", "ramp", "hold"]
    assert plans.plan_from_dict(json.loads(json.dumps(p.as_dict()))) == p
    with pytest.raises(SettingsError, match="unknown load-test profile"):
        plans.build_plan("easter")
    with pytest.raises(SettingsError, match="ceiling"):
        plans.build_plan("christmas", ceiling=20_000)
    with pytest.raises(SettingsError, match="scale"):
        plans.build_plan("christmas", scale=0)


# ---- verdict rules ------------------------------------------------------------------------------------
def test_everything_holds_when_the_job_has_headroom():
    plan = plans.build_plan("smoke")
    stats, summary = judge_all(plan, *simulate(plan, job_capacity=100_000, overhead_s=0.5))
    assert [s.verdict for s in stats] == ["holds", "holds"], [s.reasons for s in stats]
    assert summary.max_sustainable_rate == 3_000 and summary.ceiling_reached
    assert summary.limiting_stage is None
    assert all(s.batch_max_s <= plan.trigger_s for s in stats)


def test_job_limited_run_breaks_beyond_its_capacity():
    # job: 80k records/s of pure processing + 2 s per batch; 10 s trigger; the real plan's durations
    plan = plans.build_plan("christmas")
    stats, summary = judge_all(plan, *simulate(plan, job_capacity=80_000, overhead_s=2.0))
    by_rate = {s.label: s for s in stats}
    assert by_rate["warmup 10,000"].verdict == "holds"
    assert by_rate["hold 50,000"].verdict == "holds"
    assert by_rate["beyond 75,000"].verdict == "degrades"  # batches > trigger, lag still bounded
    assert by_rate["beyond 150,000"].verdict == "breaks"
    assert by_rate["beyond 150,000"].limiting_stage == "job"
    assert "falls behind" in " ".join(by_rate["beyond 150,000"].reasons)
    assert summary.max_sustainable_rate == 50_000 and summary.peak_verdict == "holds"
    assert summary.limiting_stage == "job" and summary.first_break_rate == 150_000
    assert "batch duration" in summary.why and "maximum sustainable rate measured is 50,000" in summary.answer
    # a slower job: the peak itself only degrades and the answer says so
    stats, summary = judge_all(plan, *simulate(plan, job_capacity=60_000, overhead_s=2.0))
    assert summary.peak_verdict == "degrades" and summary.max_sustainable_rate == 10_000
    assert summary.highest_unbroken_rate == 75_000


def test_no_step_holds_names_the_highest_unbroken_rate(tmp_path):
    from pipeline.loadtest.report import rebuild

    plan = plans.build_plan("christmas", scale=0.5)
    stats, summary = judge_all(plan, *simulate(plan, job_capacity=80_000, overhead_s=12.0))
    assert summary.max_sustainable_rate is None and summary.limiting_stage == "job"
    assert summary.highest_unbroken_rate is not None
    assert f"did not break: {summary.highest_unbroken_rate:,.0f} tx/s" in summary.answer
    result, samples = synthetic_result(plan, job_capacity=80_000, overhead_s=12.0)
    result.summary.answer = "old wording"
    write_report(tmp_path, result, samples)
    assert "did not break" in rebuild(tmp_path).read_text()


def test_batches_longer_than_the_trigger_but_stable_degrade():
    # steady state d = o / (1 - R/C) = 6 / (1 - 0.5) = 12 s > 10 s trigger, but it does not grow
    plan = plans.build_plan("christmas", beyond=False, normal=20_000, peak=20_000)
    stats, summary = judge_all(plan, *simulate(plan, job_capacity=40_000, overhead_s=6.0, dt=1.0))
    hold = next(s for s in stats if s.kind == "hold")
    assert hold.verdict == "degrades", hold.reasons
    assert hold.batch_max_s > plan.trigger_s and hold.limiting_stage == "job"
    assert "batch duration" in hold.why


def test_emulator_limited_run():
    stats, summary = judge_all(CHRISTMAS, *simulate(CHRISTMAS, job_capacity=1e7, overhead_s=1.0,
                                                    emulator_max=70_000, emulator_cpu=99.0))
    s75 = next(s for s in stats if s.label == "beyond 75,000")
    assert s75.verdict == "degrades" and s75.limiting_stage == "emulator"
    s100 = next(s for s in stats if s.label == "beyond 100,000")
    assert s100.verdict == "breaks" and s100.limiting_stage == "emulator" and "CPU-bound" in s100.why
    assert summary.max_sustainable_rate == 50_000 and summary.limiting_stage == "emulator"


def test_broker_limited_when_deliveries_back_up_or_fail():
    samples, batches, windows = simulate(CHRISTMAS, job_capacity=1e7, overhead_s=1.0, emulator_max=60_000,
                                         latency_ms=4_000, queue=400_000)
    stats, summary = judge_all(CHRISTMAS, samples, batches, windows)
    s75 = next(s for s in stats if s.label == "beyond 75,000")
    assert s75.limiting_stage == "broker" and "queue backed up" in s75.why and "p99" in s75.why
    failing = simulate(plans.build_plan("smoke"), job_capacity=1e6, overhead_s=0.2, failed_from=1_000_030.0)
    stats, _ = judge_all(plans.build_plan("smoke"), *failing)
    assert stats[-1].verdict == "breaks" and stats[-1].limiting_stage == "broker" and stats[-1].failed > 0


def test_dead_job_breaks_and_rules_are_stated():
    plan = plans.build_plan("smoke")
    samples, batches, windows = simulate(plan, job_capacity=1e6, overhead_s=0.2)
    for s in samples[-10:]:
        s["job_alive"] = False
    stats, _ = judge_all(plan, samples, batches, windows)
    assert stats[-1].verdict == "breaks" and "job process died" in " ".join(stats[-1].reasons)
    assert {k for k, _ in verdict.RULES} >= {"holds", "breaks", "degrades", "limiting stage"}


def test_percentiles():
    p = verdict.percentiles([1, 2, 3, 4, 100])
    assert p["p50"] == 3 and p["max"] == 100 and p["n"] == 5 and 3 < p["p95"] <= 100
    assert verdict.percentiles([])["p50"] is None


# ---- sampler arithmetic -----------------------------------------------------------------------------------
def test_lag_seconds_is_the_age_of_the_oldest_unprocessed_record():
    h = LogEndHistory()
    for t, end in ((0, 0), (1, 100), (2, 200), (3, 300), (4, 400)):
        h.add(t, end)
    assert h.lag_seconds(4, 400) == 0.0
    assert h.lag_seconds(4, 150) == pytest.approx(2.5)   # offset 150 passed at t = 1.5
    assert h.lag_seconds(4, 0) == pytest.approx(4.0)
    assert h.lag_seconds(4, None) is None
    h.add(5, 350)  # a stale watermark never moves the log end back
    assert h.ends[-1] == 400


def test_checkpoint_offsets(tmp_path):
    ck = tmp_path / "ck"
    (ck / "offsets").mkdir(parents=True)
    (ck / "commits").mkdir()
    meta = '{"batchWatermarkMs":0,"batchTimestampMs":1}'
    (ck / "offsets" / "0").write_text(f'v1\n{meta}\n{{"t":{{"0":10,"1":5,"2":0}}}}')
    (ck / "commits" / "0").write_text('v1\n{"nextBatchWatermarkMs":0}')
    (ck / "offsets" / "1").write_text(f'v1\n{meta}\n{{"t":{{"0":20,"1":15,"2":7}}}}')
    got = checkpoint_offsets(ck, "t")
    assert got["batches"] == 1 and got["committed"] == 15 and got["inflight"] == 42
    assert got["inflight_since"] is not None
    assert checkpoint_offsets(tmp_path / "none", "t")["committed"] is None


# ---- reconciliation -----------------------------------------------------------------------------------------
def test_compare_ids_names_the_exact_ids():
    ok = reconcile.compare_ids(["a", "b", "c"], ["c", "b", "a"])
    assert ok.ok and ok.lost == ok.duplicated == ok.unexpected == 0
    bad = reconcile.compare_ids(["a", "b", "c", "d"], ["a", "a", "c", "x"])
    assert (bad.lost, bad.duplicated, bad.unexpected) == (2, 1, 1)
    assert bad.lost_examples == ["b", "d"] and bad.duplicated_examples == ["a"] and bad.unexpected_examples == ["x"]
    assert not bad.ok and "2 lost" in bad.sentence()


def test_per_window_counts_and_freshness():
    minute = 1_795_600_000 // 60 * 60
    sent = [{"minute": reconcile._minute(minute), "sent": 1000, "over_threshold": 3},
            {"minute": reconcile._minute(minute + 60), "sent": 500, "over_threshold": 2}]
    et = np.array([minute + 1.0, minute + 2.0, minute + 59.9, minute + 61.0])
    rows = reconcile.per_window(sent, et)
    assert [(r["over_threshold"], r["in_delta"], r["difference"]) for r in rows] == [(3, 3, 0), (2, 1, -1)]
    batches = [{"batch_id": 0, "trigger_time": minute + 10.0, "duration_s": 4.0},
               {"batch_id": 1, "trigger_time": minute + 70.0, "duration_s": 3.0}]
    vis = reconcile.visible_times(batches, [minute + 12.5, minute + 200.0])
    assert vis == {0: minute + 12.5, 1: minute + 73.0}  # batch 1 has no commit in its run: its end
    fr = reconcile.freshness(et, np.array([0, 0, 1, 1]), vis)
    assert fr.tolist() == pytest.approx([11.5, 10.5, 13.1, 12.0])


# ---- report ---------------------------------------------------------------------------------------------------
def synthetic_result(plan: plans.Plan | None = None, **sim) -> tuple[LoadTestResult, list[dict]]:
    """A complete result (as the runner returns it) from a simulated run."""
    plan = plan or CHRISTMAS
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


def test_report_is_self_contained_with_every_chart_and_the_verdict(tmp_path):
    result, samples = synthetic_result()
    path = write_report(tmp_path, result, samples)
    text = path.read_text()
    assert text.count("Plotly.newPlot") >= 12  # every sampled series has its chart
    for chart in ("rates", "latency", "offsets", "lag_records", "lag_seconds", "batch_duration", "batch_rows",
                  "freshness", "freshness_steps", "cpu", "memory", "reconciliation"):
        assert f'id="chart-{chart}"' in text
    assert "<script src=" not in text  # plotly.js inlined once: the file works offline
    assert result.summary.answer.split(";")[0] in text
    assert 'id="max-rate"' in text and f"{result.summary.max_sustainable_rate:,.0f} tx/s" in text
    assert "0 lost / 0 duplicated" in text and "v-breaks" in text and "Rules" in text
    assert json.loads((tmp_path / "result.json").read_text())["run_id"] == "test-run"
    rows = verdict_rows(result)
    assert rows[0]["step"] == "warmup 10,000" and rows[0]["verdict"] == "holds"


def test_report_of_a_failed_run_still_renders():
    result, samples = synthetic_result(plans.build_plan("smoke"), job_capacity=1e6, overhead_s=0.2)
    result = dataclasses.replace(result, state="failed", error="the job exited with code 1", steps=[], windows=[],
                                 batches=[], batch_freshness=[])
    result.reconciliation.windows = []
    text = build_report(result, [])
    assert "the job exited with code 1" in text and "Run state" in text
