"""Unit tests of the load test (no broker, no JVM): plans, verdict rules on simulated runs,
reconciliation by id and per window, the sampler's lag arithmetic, the HTML report."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest

from pipeline.errors import SettingsError
from pipeline.loadtest import freshness, reconcile, verdict
from pipeline.loadtest import plan as plans
from pipeline.loadtest.report import build_report, verdict_rows, write_report
from pipeline.loadtest.sampling import LogEndHistory, checkpoint_offsets
from tests.support.loadtest_fixtures import judge_all, simulate, synthetic_result

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


def test_a_hold_shorter_than_the_dedupe_window_says_what_a_full_state_would_cost():
    """The plan's 60 s hold at 50,000 tx/s leaves the 10-minute dedupe state far from full;
    a 10-minute hold broke on the scan Spark makes of that state (run 20261206-022504-6335).
    The answer says so, with the capacity calculator's figures; a hold of the whole window
    does not need it, and without the settings the answer is as before."""
    plan = plans.build_plan("christmas")
    stats, plain = judge_all(plan, *simulate(plan, job_capacity=90_000, overhead_s=1.0))
    hold = next(s for s in stats if s.kind == "hold")
    assert hold.verdict == "holds" and hold.end - hold.start == pytest.approx(60, abs=1)
    summary = verdict.summarise(stats, plan.peak_rate, plan.ceiling, trigger_s=10, dedupe_window_s=600, cores=2)
    assert summary.answer.startswith(plain.answer)
    caveat = summary.answer[len(plain.answer):]
    assert "less than the 600 s dedupe window" in caveat and "30,000,000 keys" in caveat
    assert "≈9.0 s to every batch" in caveat and "longer than the trigger" in caveat
    # at a one-minute trigger the same full state still fits
    minute = verdict.summarise(stats, plan.peak_rate, plan.ceiling, trigger_s=60, dedupe_window_s=600, cores=2)
    assert "still within the trigger" in minute.answer
    # a hold as long as the window, or no dedupe, or no settings: nothing added
    assert verdict.summarise(stats, plan.peak_rate, plan.ceiling, trigger_s=10, dedupe_window_s=60,
                             cores=2).answer == plain.answer
    assert verdict.summarise(stats, plan.peak_rate, plan.ceiling, trigger_s=10, dedupe_window_s=0,
                             cores=2).answer == plain.answer


def test_no_step_holds_names_the_highest_unbroken_rate(tmp_path):
    from pipeline.loadtest.report import rebuild

    plan = plans.build_plan("christmas", scale=0.5)
    stats, summary = judge_all(plan, *simulate(plan, job_capacity=80_000, overhead_s=12.0))
    assert summary.max_sustainable_rate is None and summary.limiting_stage == "job"
    # every step up to 75,000 degraded, 100,000 broke: the highest rate that did not break is 75,000
    assert [(s.target_rate, s.verdict) for s in stats if s.kind != "ramp"][2:4] == [
        (75_000, verdict.DEGRADES), (100_000, verdict.BREAKS)]
    assert summary.highest_unbroken_rate == 75_000 and summary.first_break_rate == 100_000
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
    os.utime(ck / "offsets" / "1", (1_795_000_000.5, 1_795_000_000.5))  # when the running batch was planned
    got = checkpoint_offsets(ck, "t")
    assert got["batches"] == 1 and got["committed"] == 15 and got["inflight"] == 42
    assert got["inflight_since"] == 1_795_000_000.5
    assert checkpoint_offsets(tmp_path / "none", "t")["committed"] is None


def test_checkpoint_offsets_counts_batches_spark_already_cleaned_up(tmp_path):
    ck = tmp_path / "ck"
    (ck / "offsets").mkdir(parents=True)
    (ck / "commits").mkdir()
    for b in (40, 41):  # Spark keeps only the newest batches' files (minBatchesToRetain)
        (ck / "offsets" / str(b)).write_text(f'v1\n{{}}\n{{"t":{{"0":{b}}}}}')
        (ck / "commits" / str(b)).write_text("v1\n{}")
    got = checkpoint_offsets(ck, "t")
    assert got["batches"] == 42 and got["committed"] == 41


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
    vis = freshness.visible_times(batches, [minute + 12.5, minute + 200.0])
    assert vis == {0: minute + 12.5, 1: minute + 73.0}  # batch 1 has no commit in its run: its end
    fr = freshness.row_freshness(et, np.array([0, 0, 1, 1]), vis)
    assert fr.tolist() == pytest.approx([11.5, 10.5, 13.1, 12.0])


# ---- report ---------------------------------------------------------------------------------------------------
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


def test_report_shows_the_live_lane_reconciliation_and_latency_per_step(tmp_path):
    result, samples = synthetic_result()
    assert 'id="live-lane"' not in build_report(result, samples)  # no lane, no section
    result = dataclasses.replace(result, live={
        "reconciliation": {"delta_ids": 10, "live_ids": 9, "missed": 1, "extra": 0, "duplicates": 2,
                           "missed_examples": ["tx-9"], "ok": False},
        "sentence": "1 of 10 high-value transactions in Delta never reached the live topic (e.g. tx-9).",
        "steps": [{"step": "warmup 10,000", "rate": 10000.0, "n": 9, "p50": 80.0, "p95": 410.0, "p99": 905.0}]})
    path = write_report(tmp_path, result, samples)
    text = path.read_text()
    assert 'id="live-lane"' in text and "never reached the live topic (e.g. tx-9)" in text
    assert "<td>warmup 10,000</td><td>10,000</td><td>9</td><td>80</td><td>410</td><td>905</td>" in text
    loaded = json.loads((tmp_path / "result.json").read_text())
    assert loaded["live"]["reconciliation"]["missed"] == 1


# ---- the plan's stop rule -------------------------------------------------------------------------
@pytest.mark.parametrize(("breaking", "ran"), [
    ("warmup", ["warmup", "ramp", "hold", "beyond"]),   # reported, the plan goes on
    ("ramp", ["warmup", "ramp", "hold", "beyond"]),
    ("hold", ["warmup", "ramp", "hold"]),                # a steady step that breaks ends the plan
])
def test_only_a_steady_step_that_breaks_ends_the_plan(tmp_path, monkeypatch, breaking, ran):
    import threading
    from types import SimpleNamespace

    from pipeline.loadtest import runner
    from pipeline.loadtest.options import LoadTestOptions
    from tests.support.stack import make_settings

    test = runner.LoadTest(make_settings(tmp_path / "data"),
                           LoadTestOptions(profile="christmas", scale=0.1, ceiling=75_000))
    clock = iter(range(0, 10_000, 10))
    monkeypatch.setattr(test, "_apply", lambda ctl, step: None)
    monkeypatch.setattr(test, "_hold_step", lambda step, stack, stop: plans.StepWindow.of(step, next(clock), next(clock)))
    monkeypatch.setattr(runner, "read_batches", lambda settings: [])
    monkeypatch.setattr(runner.verdict, "step_stats", lambda window, samples, batches, trigger: SimpleNamespace(
        verdict=verdict.BREAKS if window.kind == breaking else verdict.HOLDS, reasons=["test"]))
    stack = SimpleNamespace(sampler=SimpleNamespace(samples=[]), ctl=None, dead=lambda: None)
    test._run_steps(stack, threading.Event())
    assert [w.kind for w in test.windows] == ran
