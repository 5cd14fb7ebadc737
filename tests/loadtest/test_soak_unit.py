"""Unit tests of the soak (no broker, no JVM): the verdict's figures with data that must fail them,
the chaos schedule and its follow-up against a parts.json, the outage, the reconciliation glue,
the options and the report."""

from __future__ import annotations

import json
import signal
from decimal import Decimal

import numpy as np
import pytest

from pipeline.cli import main
from pipeline.errors import SettingsError
from pipeline.loadtest import soak_verdict as sv
from pipeline.loadtest.chaos import Chaos, kill_targets, schedule
from pipeline.loadtest.soak_events import Health, Outage, outage_figures
from pipeline.loadtest.soak_finish import excluded_periods, processed_offsets, verdict_of
from pipeline.loadtest.soak_options import SoakOptions, _range
from pipeline.loadtest.soak_parts import read_parts
from pipeline.loadtest.soak_reconcile import TopicFacts, _count, classify, compare_soak
from pipeline.loadtest.soak_report import build_report

T0 = 1_700_000_000.0
HOUR = 3600.0


def rss_samples(start_mb: float, growth: float, pid_at=lambda t: 100, every: float = 30.0, hours: float = 1.0):
    """Samples of an hour where the job's RSS grows by `growth` (share) linearly after the first 10 minutes."""
    out = []
    for i in range(int(hours * HOUR / every) + 1):
        t = i * every
        frac = max(0.0, (t - 600) / (hours * HOUR - 600))
        out.append({"t": T0 + t, "rss_job_mb": start_mb * (1 + growth * frac), "pid_job": pid_at(t)})
    return out


# ---- memory -------------------------------------------------------------------------------------
def test_line_fit_gives_the_slope_and_the_start():
    slope, start = sv.fit_line([0, 10, 20, 30], [5, 7, 9, 11])
    assert slope == pytest.approx(0.2) and start == pytest.approx(5)
    assert sv.fit_line([0, 1, 2], [1, 2, 3]) is None  # too few points


def test_flat_memory_passes_and_a_leak_fails_with_its_slope():
    flat = sv.memory_flat(rss_samples(1000, 0.02), T0, HOUR)
    assert [c.passed for c in flat] == [True]
    leak = sv.memory_flat(rss_samples(1000, 0.30), T0, HOUR)[0]
    assert leak.passed is False
    assert leak.values["slope_mib_h"] == pytest.approx(300 / (50 / 60), rel=0.02)  # 300 MiB over 50 minutes
    assert "MiB/h" in leak.figure and leak.values["growth"] > 0.05


def test_memory_fits_the_longest_stretch_of_one_pid_so_a_restart_does_not_hide_a_leak():
    # restarted at 20 min: the RSS drops, which over the whole hour would look flat, but the
    # long second stretch (one pid) still grows by 30 %
    samples = rss_samples(1000, 0.30, pid_at=lambda t: 100 if t < 1200 else 200)
    for s in samples:
        if s["pid_job"] == 200:
            s["rss_job_mb"] -= 250
    c = sv.memory_flat(samples, T0, HOUR)[0]
    assert c.passed is False and c.values["span_s"] == pytest.approx(HOUR - 1200 - 600)   # after its own warm-up
    assert sv.longest_segment([(0, 1, 1), (1, 1, 1), (2, 1, None), (3, 1, 2)]) == [(0, 1), (1, 1)]


def test_the_job_memory_warms_up_until_its_dedupe_state_is_full_and_no_other_part_does():
    # the state store fills until the dedupe window plus two triggers (minute 12), then stays:
    # its size again between minutes 10 and 12 (a big state), flat after
    def rss(t):
        return 3000.0 + 3000.0 * min(1.0, max(0.0, (t - 600) / 120))
    def series(part, leak=0.0):
        return [{"t": T0 + t, f"rss_{part}_mb": rss(t) + leak * max(0, t - 720), f"pid_{part}": 9}
                for t in range(0, 3601, 30)]
    warm = sv.work_warmup_s(HOUR, 600, 60)
    assert warm == 720
    job = sv.memory_flat(series("job"), T0, HOUR, warm)[0]
    assert job.passed is True and job.values["span_s"] == pytest.approx(HOUR - 720), job.figure
    assert sv.memory_flat(series("job"), T0, HOUR)[0].passed is False     # judged from minute 10
    jvm = [{"t": s["t"], "rss_job.jvm_mb": s["rss_job_mb"], "pid_job": 9} for s in series("job")]
    assert sv.memory_flat(jvm, T0, HOUR, warm)[0].passed is True          # the job's JVM alike
    app = [{"t": s["t"], "rss_app_mb": s["rss_job_mb"], "pid_app": 9} for s in series("job")]
    assert sv.memory_flat(app, T0, HOUR, warm)[0].passed is False         # holds no state: minute 10
    # a job that leaks after its state is full still fails
    assert sv.memory_flat(series("job", leak=0.2), T0, HOUR, warm)[0].passed is False


def test_a_restarted_process_is_judged_after_its_own_warm_up():
    # killed at 15 min: the new process climbs from 300 to 420 MiB in its first 10 minutes, then stays flat
    def rss(t):
        return 400.0 if t < 900 else min(420.0, 300.0 + 120.0 * (t - 900) / 600)
    samples = [{"t": T0 + t, "rss_app_mb": rss(t), "pid_app": 1 if t < 900 else 2} for t in range(0, 3601, 30)]
    c = sv.memory_flat(samples, T0, HOUR)[0]
    assert c.passed is True and c.values["span_s"] == pytest.approx(HOUR - 1500), c.figure
    still = [dict(s, rss_app_mb=s["rss_app_mb"] + 0.05 * (s["t"] - T0 - 1500) if s["t"] > T0 + 1500 else s["rss_app_mb"])
             for s in samples]   # a leak after the warm-up still fails
    assert sv.memory_flat(still, T0, HOUR)[0].passed is False
    assert sv.warmed_up([(0, 1, 5), (10, 1, 5), (11, 1, None), (12, 1, 6), (30, 1, 6)], 15) == [(30, 1, 6)]


def prometheus_samples(start_mb: float, mib_per_h: float, every: float = 30.0) -> list[dict]:
    return [{"t": T0 + i * every, "rss_prometheus_mb": start_mb + mib_per_h * i * every / HOUR, "pid_prometheus": 7}
            for i in range(int(HOUR / every) + 1)]


def test_prometheus_is_judged_by_its_projected_ceiling_not_by_its_growth_in_the_hour():
    # +40 % in the hour is its head block filling; projected to 3 h it stays well in budget
    ok = sv.memory_flat(prometheus_samples(60, 24), T0, HOUR)[0]
    assert ok.name == "memory bounded: prometheus" and ok.passed is True
    assert ok.values["projected_mib"] == pytest.approx(60 + 24 * 3, rel=0.01)
    # a Prometheus that would reach 60 + 3 x 80 = 300 MiB at its ceiling is over the 256 MiB budget
    big = sv.memory_flat(prometheus_samples(60, 80), T0, HOUR)[0]
    assert big.passed is False and big.values["projected_mib"] > 256
    # any other process with the same figures fails the 5 % growth rule
    other = [{"t": s["t"], "rss_app_mb": s["rss_prometheus_mb"], "pid_app": 7} for s in prometheus_samples(60, 24)]
    assert sv.memory_flat(other, T0, HOUR)[0].passed is False


def test_a_group_is_judged_by_its_pss_so_forked_workers_do_not_read_as_a_leak():
    # summed RSS jumps whenever PySpark forks workers (their shared pages counted in each);
    # the group's PSS stays flat and stands for it
    samples = rss_samples(1000, 0.0)
    for i, s in enumerate(samples):
        s["pss_job_mb"] = s["rss_job_mb"] - 50
        if i > len(samples) * 0.8:
            s["rss_job_mb"] += 4000
    flat = sv.memory_flat(samples, T0, HOUR)
    assert [(c.name, c.passed) for c in flat] == [("memory flat: job", True)]
    assert flat[0].values["start_mib"] == pytest.approx(950)
    # a PSS that grows is a leak, whatever the RSS says
    leaking = [dict(s, pss_job_mb=p["rss_job_mb"]) for s, p in zip(samples, rss_samples(1000, 0.3), strict=True)]
    assert sv.memory_flat(leaking, T0, HOUR)[0].passed is False
    # a JVM's own RSS series is still judged beside its group's PSS
    with_jvm = [dict(s, **{"rss_job.jvm_mb": 700 + (s["t"] - T0) / 10}) for s in samples]
    assert {c.name: c.passed for c in sv.memory_flat(with_jvm, T0, HOUR)} == {"memory flat: job": True,
                                                                            "memory flat: job.jvm": False}


def test_the_products_peak_memory_is_judged_against_its_budget():
    samples = [{"t": T0 + i * 30, "mem_total_mb": 6000.0 + (2500 if i == 70 else 0)} for i in range(121)]
    over = sv.memory_peak(samples, T0)
    assert over.passed is False and over.values["peak_mib"] == 8500 and "minute 35" in over.figure
    assert over.values["median_mib"] == 6000
    assert sv.memory_peak(samples[:60], T0).passed is True
    assert sv.memory_peak([{"t": T0, "rss_job_mb": 1.0}], T0).passed is None   # an older run: n/a


def test_windows_scale_with_short_runs():
    assert sv.window_s(HOUR) == 600 and sv.window_s(2 * HOUR) == 600
    assert sv.window_s(180) == 30


# ---- work, state, upkeep ------------------------------------------------------------------------
def batches(durations, trigger=60.0, rows=600_000, start=0.0):
    return [{"batch_id": i, "trigger_time": T0 + start + i * trigger, "duration_s": d, "input_rows": rows}
            for i, d in enumerate(durations)]


def test_work_flat_passes_at_constant_duration_and_fails_when_batches_slow_down():
    assert sv.work_flat(batches([6.0] * 60), T0, T0 + HOUR, []).passed is True
    slower = sv.work_flat(batches(list(np.linspace(6, 15, 60))), T0, T0 + HOUR, [])
    assert slower.passed is False and slower.values["ratio"] > 1.2


def test_work_warm_up_lasts_until_the_dedupe_state_evicts_what_it_takes_in():
    assert sv.work_warmup_s(HOUR) == 600.0                          # no dedupe: the window alone
    assert sv.work_warmup_s(HOUR, 600.0, 60.0) == 720.0             # 10-min dedupe: first full eviction at 12
    assert sv.work_warmup_s(HOUR, 300.0, 60.0) == 600.0             # a short dedupe window ends inside it
    assert sv.work_warmup_s(HOUR / 2, 900.0, 10.0) == 920.0


def test_work_flat_compares_from_the_first_batch_that_evicts_a_whole_batch():
    # a 15-minute dedupe window: no key expires before minute 15, every batch evicts from 17
    d = [6.0] * 17 + [9.0] * 43
    early = sv.work_flat(batches(d), T0, T0 + HOUR, [])              # compared from minute 10
    assert early.passed is False and early.values["ratio"] == 1.5
    settled = sv.work_flat(batches(d), T0, T0 + HOUR, [], dedupe_s=900.0, trigger_s=60.0)
    assert settled.passed is True and settled.values["from_min"] == 17.0 and settled.values["first_s"] == 9.0
    assert "minutes 17-27" in settled.figure
    # a real drift after the state has settled still fails
    drift = sv.work_flat(batches([6.0] * 17 + list(np.linspace(9, 14, 43))), T0, T0 + HOUR, [],
                         dedupe_s=900.0, trigger_s=60.0)
    assert drift.passed is False and drift.values["ratio"] > 1.2


def test_work_flat_is_not_judged_when_the_run_ends_inside_the_warm_up():
    c = sv.work_flat(batches([6.0] * 30), T0, T0 + 30 * 60, [], dedupe_s=1200.0, trigger_s=60.0)
    assert c.passed is None and "minute 22" in c.detail


def test_work_flat_leaves_out_the_batches_after_a_kill():
    d = [6.0] * 60
    d[50:56] = [40.0] * 6   # the backlog after a kill at minute 50
    assert sv.work_flat(batches(d), T0, T0 + HOUR, []).passed is False
    assert sv.work_flat(batches(d), T0, T0 + HOUR, [sv.Excluded(T0 + 50 * 60 - 1, T0 + 56 * 60)]).passed is True


def test_state_must_level_off_after_the_dedupe_window():
    flat = [{"t": T0 + t, "state_mb": min(t, 600) / 10} for t in range(0, 3601, 30)]
    grows = [{"t": T0 + t, "state_mb": t / 10} for t in range(0, 3601, 30)]
    assert sv.state_levels_off(flat, "state_mb", T0, T0 + HOUR, 600, "bytes").passed is True
    bad = sv.state_levels_off(grows, "state_mb", T0, T0 + HOUR, 600, "bytes")
    assert bad.passed is False and "x" in bad.figure


def test_the_state_folder_is_judged_once_the_history_of_a_full_state_has_filled():
    """The folder holds the last 20 minutes of history (changelogs, snapshots) of a state that is
    full after 15: it climbs from minute 15 to 35, while that history fills with the full state,
    then saw-tooths. Judged from minute 15 (the state alone) or 20 (the later of the two) the
    climb reads as growth; judged from minute 35 it passes, and growth after that fails."""
    def level(t):   # then a sawtooth of 5 batches
        return 100 + 300 * min(1.0, max(0.0, (t - 900) / 1200)) + 5 * ((t // 60) % 5)

    filling = [{"t": T0 + t, "state_mb": level(t)} for t in range(0, 3601, 30)]
    assert sv.state_levels_off(filling, "state_mb", T0, T0 + HOUR, 900, "bytes").passed is False
    later_of_two = sv.state_levels_off(filling, "state_mb", T0, T0 + HOUR, 0, "bytes", history_s=1200)
    assert later_of_two.passed is False   # the rule before the soak hour 20261206-160706-eb9b
    settled = sv.state_levels_off(filling, "state_mb", T0, T0 + HOUR, 900, "bytes", history_s=1200)
    assert settled.passed is True and settled.values["settled_min"] == 35
    with_triggers = sv.state_levels_off(filling, "state_mb", T0, T0 + HOUR, 780, "bytes", history_s=1200,
                                        trigger_s=60)   # the state is full two triggers after the window
    assert with_triggers.values["settled_min"] == 35
    grows = [{"t": T0 + t, "state_mb": level(t) + t / 2} for t in range(0, 3601, 30)]
    assert sv.state_levels_off(grows, "state_mb", T0, T0 + HOUR, 900, "bytes", history_s=1200).passed is False


# The state folder (MiB) of the soak hour 20261206-160706-eb9b, one sample a minute: it grew until
# minute 38, then saw-toothed between 365 and 485 MiB (10-minute dedupe window, 18-batch history).
SOAK_EB9B_STATE_MB = [
    2, 3, 8, 13, 43, 48, 53, 58, 63, 104, 108, 113, 121, 129, 201, 209, 218, 226, 234, 297, 305, 313, 321, 329, 360,
    368, 376, 385, 393, 402, 410, 419, 427, 435, 436, 444, 452, 460, 468, 430, 438, 446, 454, 462, 365, 373, 381,
    389, 397, 389, 397, 405, 413, 422, 444, 452, 461, 469, 477, 374, 382, 393]


def test_the_recorded_soak_hours_state_folder_levels_off_and_the_same_with_growth_does_not():
    samples = [{"t": T0 + 60 * i, "state_mb": mb} for i, mb in enumerate(SOAK_EB9B_STATE_MB)]
    end = T0 + 60 * (len(samples) - 1)
    history = 18 * 60
    old_rule = sv.state_levels_off(samples, "state_mb", T0, end, 0, "bytes", history_s=history)
    assert old_rule.passed is False   # from minute 18, as the printed verdict judged it: x1.2
    judged = sv.state_levels_off(samples, "state_mb", T0, end, 600, "bytes", history_s=history, trigger_s=60)
    assert judged.passed is True and judged.values["settled_min"] == 30, judged
    growing = [dict(s, state_mb=s["state_mb"] + 13 * i) for i, s in enumerate(samples)]   # still climbing
    assert sv.state_levels_off(growing, "state_mb", T0, end, 600, "bytes", history_s=history,
                               trigger_s=60).passed is False


# The state folder (MiB) of the chaos hour 20261206-223007-9f92, one sample a minute; the job was
# killed at minutes 30.6 (healthy 34.6) and 53.0 (healthy 56.4), and its catch-ups took the folder
# above its band for the 18 batches of history.
CHAOS_9F92_STATE_MB = [
    3, 7, 12, 17, 53, 58, 63, 68, 73, 113, 117, 125, 133, 141, 228, 237, 245, 253, 261, 301, 319, 327, 335, 341, 370,
    375, 383, 391, 399, 420, 410, 414, 414, 415, 425, 425, 425, 442, 453, 465, 484, 497, 505, 494, 507, 516, 526,
    534, 546, 561, 568, 576, 584, 513, 513, 513, 523, 492, 509, 523, 533, 543]


def _span(start_min: float, end_min: float, part: str) -> sv.Excluded:
    return sv.Excluded(T0 + 60 * start_min, T0 + 60 * end_min, part)


def test_the_state_folder_leaves_out_a_job_kills_catch_up_for_the_whole_history():
    """A job kill at minute 44 (healthy at 45), a 10-minute history: the catch-up batch lifts the
    folder by 150 MiB until its changelog leaves the history at minute 55. Judged with the kill's
    span + the history left out, the folder is level; without, the bump reads as growth. The same
    span for another part (the job did not stop) is not stretched, and growth outside the spans
    still fails."""
    def level(t, grow=0.0):
        bump = 150 if 44 * 60 <= t < 55 * 60 else 0
        return 400 + 20 * ((t // 60) % 5) + bump + grow * t

    samples = [{"t": T0 + t, "state_mb": level(t)} for t in range(0, 3601, 30)]
    kill = [_span(44, 45, "job")]
    args = ("state_mb", T0, T0 + HOUR, 300, "bytes")
    opts = {"history_s": 600, "trigger_s": 60}
    assert sv.state_levels_off(samples, *args, **opts).passed is False
    judged = sv.state_levels_off(samples, *args, **opts, excluded=kill)
    assert judged.passed is True and judged.values["end"] == 480, judged
    app = sv.state_levels_off(samples, *args, **opts, excluded=[_span(44, 45, "app")])
    assert app.passed is False   # an app kill leaves the job's batches alone: the bump is not its doing
    grows = [{"t": T0 + t, "state_mb": level(t, grow=0.1)} for t in range(0, 3601, 30)]
    assert sv.state_levels_off(grows, *args, **opts, excluded=kill).passed is False
    late = sv.state_levels_off(samples, *args, **opts, excluded=[_span(44, 46, "job")])
    assert late.passed is None   # minutes 56-60 are less than half of the last window


def test_the_chaos_hours_state_folder_has_no_stretch_outside_its_two_job_kills():
    samples = [{"t": T0 + 60 * i, "state_mb": mb} for i, mb in enumerate(CHAOS_9F92_STATE_MB)]
    end = T0 + 60 * (len(samples) - 1)
    args = ("state_mb", T0, end, 600, "bytes")
    printed = sv.state_levels_off(samples, *args, history_s=18 * 60, trigger_s=60)
    assert printed.passed is False and "x1.2" in printed.figure   # as the run printed it
    kills = [_span(30.6, 36.6, "job"), _span(53.0, 58.4, "job"), _span(9.8, 12.9, "live")]
    judged = sv.state_levels_off(samples, *args, history_s=18 * 60, trigger_s=60, excluded=kills)
    assert judged.passed is None and "outside the kills" in judged.figure, judged


def test_excluded_periods_name_the_part_that_was_killed():
    kills = [{"part": "job", "at": T0 + 100, "healthy_at": T0 + 150}, {"part": "app", "at": T0 + 900,
                                                                    "healthy_at": T0 + 905}]
    spans = excluded_periods(kills, {"started_at": T0 + 2000, "caught_up_at": T0 + 2600}, 60, T0 + HOUR)
    assert [e.part for e in spans] == ["job", "app", "outage"]
    assert spans[0].end == T0 + 150 + 120 and spans[2].end == T0 + 2600 + 120


def test_the_history_window_follows_the_jobs_checkpoint_settings():
    from pipeline.job import spark

    conf = spark.STEADY_STATE_CONF
    assert int(conf["spark.sql.streaming.minBatchesToRetain"]) == spark.STATE_HISTORY_BATCHES
    assert int(conf["spark.sql.streaming.stateStore.minDeltasForSnapshot"]) == spark.STATE_SNAPSHOT_EVERY
    assert float(conf["spark.sql.streaming.ratioExtraSpaceAllowedInCheckpoint"]) == spark.STATE_EXTRA_RATIO
    assert spark.state_folder_batches() == 10 + 5 + 3


def test_a_stall_longer_than_one_trigger_fails_and_one_inside_a_kill_does_not():
    b = batches([5.0] * 30)
    for x in b[20:]:
        x["trigger_time"] += 200   # upkeep held the stream 200 s after batch 19
    c = sv.upkeep_stall(b, 60.0, [])
    assert c.passed is False and c.values["worst_stall_s"] == pytest.approx(200)
    assert sv.upkeep_stall(batches([5.0] * 30), 60.0, []).passed is True
    assert sv.upkeep_stall(b, 60.0, [sv.Excluded(T0 + 19 * 60, T0 + 30 * 60)]).passed is True


# ---- lag, freshness, disk -------------------------------------------------------------------------
def test_lag_above_two_batches_fails():
    ok = [{"t": T0 + t, "lag_records": 700_000} for t in range(60, 3600, 30)]
    assert sv.lag_bounded(ok, 10_000, 60, T0, []).passed is True
    bad = ok + [{"t": T0 + 2000, "lag_records": 1_300_000}]
    c = sv.lag_bounded(bad, 10_000, 60, T0, [])
    assert c.passed is False and c.values["bound"] == 1_200_000
    assert sv.lag_bounded(bad, 10_000, 60, T0, [sv.Excluded(T0 + 1990, T0 + 2010)]).passed is True


def test_freshness_p95_that_grows_fails():
    times = T0 + np.arange(0, HOUR, 1.0)
    steady = np.full(times.size, 40.0)
    assert sv.freshness_flat(times, steady, T0, T0 + HOUR, []).passed is True
    growing = 40.0 + (times - T0) / HOUR * 40.0
    c = sv.freshness_flat(times, growing, T0, T0 + HOUR, [])
    assert c.passed is False and c.values["last_p95_s"] > 1.2 * c.values["first_p95_s"]


def test_freshness_leaves_out_rows_a_kill_held_back_until_its_recovery():
    times = T0 + np.arange(0, HOUR, 1.0)
    seconds = np.full(times.size, 40.0)
    kill = sv.Excluded(T0 + 3200, T0 + 3400)
    held = (times >= T0 + 3100) & (times < T0 + 3200)   # arrived before the kill, visible only after the recovery
    seconds[held] = T0 + 3380 - times[held]   # visible at the end of the recovery
    assert sv.freshness_flat(times, seconds, T0, T0 + HOUR, [kill]).passed is True
    assert sv.freshness_flat(times, seconds, T0, T0 + HOUR, []).passed is False
    late = seconds.copy()
    late[times >= T0 + 3420] = 90.0   # slower after the recovery: still fails
    assert sv.freshness_flat(times, late, T0, T0 + HOUR, [kill]).passed is False


def test_disk_projection_bounds_each_part_by_what_bounds_it():
    # broker +1,000 MiB/h, Delta +10 MiB/h, checkpoints +600 MiB/h until minute 30, then flat
    samples = []
    for t in range(0, 3601, 30):
        b, d, c = 100 + t / 3600 * 1000, 5 + t / 3600 * 10, 600 * min(t, 1800) / 3600
        samples.append({"t": T0 + t, "disk_broker_mb": b, "disk_delta_mb": d, "disk_checkpoints_mb": c,
                        "disk_total_mb": b + d + c})
    c = sv.disk_growth(samples, T0, HOUR, 86400, free_mb=26_000, settle_s=1800)
    # now 1,100 + 15 + 300; then 23 h of broker and Delta, no more checkpoints (settled at minute 30)
    assert c.values["day_mib"] == pytest.approx(1415 + 23 * 1000 + 23 * 10, rel=0.02)
    assert c.passed is True and "broker +1,000" in c.figure
    # the same samples lumped into one total project the checkpoints' early climb over the whole day
    lumped = [{"t": s["t"], "disk_total_mb": s["disk_total_mb"]} for s in samples]
    assert sv.disk_growth(lumped, T0, HOUR, 86400, free_mb=26_000).passed is False
    # a state that has not settled by the end is projected to grow until it does
    late = sv.disk_growth(samples, T0, HOUR, 86400, free_mb=26_000, settle_s=3 * HOUR)
    assert late.values["day_mib"] > c.values["day_mib"] + 200
    # and too little room fails, saying which record lifetime would fit: the broker's 1,000 MiB/h
    # into the 20,000 MiB free less Delta's 23 h x 10 MiB/h, counted from the hour already run
    tight = sv.disk_growth(samples, T0, HOUR, 86400, free_mb=20_000, settle_s=1800)
    assert tight.passed is False and "TORMENTA_RETENTION) of at most 20.7 h" in tight.figure
    assert tight.values["fits_retention_h"] == 20.7   # 1 + 19,770 / 1,000 = 20.77 h, rounded down
    fitting = tight.values["fits_retention_h"] * 3600
    assert sv.disk_growth(samples, T0, HOUR, fitting, free_mb=20_000, settle_s=1800).passed is True
    assert sv.disk_growth(samples, T0, HOUR, fitting + 360, free_mb=20_000, settle_s=1800).passed is False
    assert "fits_retention_h" not in c.values and "at most" not in c.figure   # a projection that fits says nothing
    # when Delta alone outgrows the free space, no lifetime helps, and the figure says so
    none = sv.disk_growth(samples, T0, HOUR, 86400, free_mb=200, settle_s=1800)
    assert none.passed is False and none.values["fits_retention_h"] == 0 and "even without" in none.figure


def test_disk_projection_against_the_free_space_and_files_bounded():
    samples = [{"t": T0 + t, "disk_total_mb": 100 + t / 3600 * 2000, "files_high_value": 10 + t // 360}
               for t in range(0, 3601, 30)]
    fits = sv.disk_growth(samples, T0, HOUR, 86400, free_mb=500_000)
    assert fits.passed is True and fits.values["mib_per_h"] == pytest.approx(2000, rel=0.01)
    assert fits.values["day_mib"] == pytest.approx(2100 + 23 * 2000, rel=0.01)
    lumped = sv.disk_growth(samples, T0, HOUR, 86400, free_mb=10_000)
    assert lumped.passed is False and lumped.values["fits_retention_h"] == pytest.approx(1 + 10_000 / 2000, abs=0.1)
    # the record lifetime caps the projection: one hour of retention means no more growth after the hour
    assert sv.disk_growth(samples, T0, HOUR, 3600, free_mb=10_000).passed is True
    assert sv.files_bounded(samples, "files_high_value", T0, T0 + HOUR).passed is True
    growing = [dict(s, files_high_value=10 + (s["t"] - T0) // 20) for s in samples]
    assert sv.files_bounded(growing, "files_high_value", T0, T0 + HOUR).passed is False
    # a run shorter than one compaction cycle has seen no compaction: its growth is n/a, not a failure
    short = sv.files_bounded(growing, "files_high_value", T0, T0 + HOUR, batches_run=26, cycle_batches=57)
    assert short.passed is None and "57" in short.figure
    # from a whole cycle on it is judged again, and the growth fails
    assert sv.files_bounded(growing, "files_high_value", T0, T0 + HOUR, batches_run=57, cycle_batches=57).passed is False
    assert sv.files_bounded(growing, "files_high_value", T0, T0 + HOUR, batches_run=3, cycle_batches=0).passed is False


def test_judge_lists_every_criterion_and_overall_fails_on_one_failure():
    samples = [dict(s, lag_records=0, disk_total_mb=100, state_mb=1, files_sales_agg=5) for s in rss_samples(500, 0)]
    x = sv.SoakInputs(samples=samples, batches=batches([5.0] * 60), t0=T0, t_end=T0 + HOUR, rate=1000, trigger_s=60,
                      dedupe_s=600, retention_s=86400, free_mb=1e6)
    crit = sv.judge(x)
    names = [c.name for c in crit]
    assert names[0] == "memory flat: job" and "upkeep never stalls the stream" in names
    assert "memory total: peak" in names
    assert "disk: files of sales_agg" in names and sv.overall(crit) == "pass"
    x.samples = rss_samples(500, 0.5)
    assert sv.overall(sv.judge(x)) == "fail"


def test_an_all_zero_state_rows_series_is_no_measure_the_bytes_are_judged():
    """A job that exports 0 state rows (Spark does not count them) must not pass the state
    criterion on zeros: the state folder's bytes, growing here, are judged instead."""
    samples = [dict(s, lag_records=0, disk_total_mb=100, state_rows=0.0, state_mb=(s["t"] - T0) / 10)
               for s in rss_samples(500, 0)]
    x = sv.SoakInputs(samples=samples, batches=batches([5.0] * 60), t0=T0, t_end=T0 + HOUR, rate=1000, trigger_s=60,
                      dedupe_s=600, retention_s=86400, free_mb=1e6)
    state = next(c for c in sv.judge(x) if c.name.startswith("work flat: state"))
    assert state.name == "work flat: state bytes on disk (MiB)" and state.passed is False


# ---- chaos --------------------------------------------------------------------------------------
def test_schedule_is_seeded_within_the_gaps_and_leaves_time_to_recover():
    targets = ["app", "emulator", "job"]
    a = schedule(7, 3600, (300, 600), targets)
    assert a == schedule(7, 3600, (300, 600), list(reversed(targets)))
    assert a != schedule(8, 3600, (300, 600), targets)
    times = [t for t, _ in a]
    gaps = np.diff([0.0, *times])
    assert len(a) >= 5 and all(300 <= g <= 600 for g in gaps) and times[-1] <= 3600 - 300
    assert {p for _, p in a} <= set(targets)
    assert schedule(1, 180, (60, 90), ["job"]) == [(pytest.approx(schedule(1, 180, (60, 90), ["job"])[0][0]), "job")]
    assert schedule(1, 100, (60, 90), []) == []


def test_kill_targets_take_a_broker_node_only_on_a_cluster():
    parts = ["app", "broker-1", "broker-2", "emulator", "job", "live", "monitoring"]
    assert kill_targets(parts, 1) == ["app", "emulator", "job", "live"]
    assert kill_targets(parts, 3) == ["app", "broker-1", "broker-2", "emulator", "job", "live"]


def write_parts(run_dir, **pids):
    run_dir.mkdir(parents=True, exist_ok=True)
    parts = [{"name": n, "kind": "child", "state": "running" if pid else "restarting", "pid": pid, "restarts": 0,
              "last_exit_code": None, "started_at": T0 if pid else None} for n, pid in pids.items()]
    (run_dir / "parts.json").write_text(json.dumps({"run_pid": 1, "written_at": T0, "parts": parts}))


def test_read_parts_and_a_missing_or_broken_file(tmp_path):
    assert read_parts(tmp_path) == {}
    (tmp_path / "parts.json").write_text("{not json")
    assert read_parts(tmp_path) == {}
    write_parts(tmp_path, job=11, app=None)
    parts = read_parts(tmp_path)
    assert parts["job"].running and parts["job"].pid == 11 and not parts["app"].running


class Clock:
    def __init__(self, t=T0):
        self.t = t

    def __call__(self):
        return self.t


def test_chaos_kills_on_time_and_times_the_recovery(tmp_path):
    write_parts(tmp_path, job=11, app=12)
    clock, sent, healthy = Clock(), [], {"job": False}
    chaos = Chaos(tmp_path, [(60.0, "job")], T0, lambda part, back: healthy[part], event=lambda _: None,
                  kill=lambda pid, sig: sent.append((pid, sig)), clock=clock)
    chaos.tick()
    assert sent == []
    clock.t = T0 + 61
    chaos.tick()
    assert sent == [(11, signal.SIGKILL)] and chaos.pending() is not None
    clock.t = T0 + 63
    write_parts(tmp_path, job=None, app=12)  # restarting
    chaos.tick()
    write_parts(tmp_path, job=21, app=12)
    clock.t = T0 + 65
    chaos.tick()
    k = chaos.kills[0]
    assert k.new_pid == 21 and k.back_s == pytest.approx(4.0) and k.healthy_at is None
    healthy["job"] = True
    clock.t = T0 + 80
    chaos.tick()
    assert k.healthy_s == pytest.approx(19.0) and chaos.pending() is None and not k.problem


def test_a_part_that_never_comes_back_is_recorded_as_such(tmp_path):
    write_parts(tmp_path, emulator=31)
    clock = Clock(T0 + 100)
    chaos = Chaos(tmp_path, [(10.0, "emulator")], T0, lambda *_: True, event=lambda _: None,
                  kill=lambda *_: None, clock=clock, recover_timeout_s=30)
    chaos.tick()
    clock.t += 31
    chaos.tick()
    assert chaos.kills[0].problem == "not back within 30 s" and chaos.kills[0].back_at is None


def test_health_of_the_emulator_needs_the_log_end_to_move(tmp_path):
    ends = iter([100, 100, 250])
    h = Health(tmp_path, lambda t: False, lambda: False, lambda: next(ends), lambda: None, lambda: {1, 3})
    assert h("emulator", T0) is False      # the mark
    assert h("emulator", T0) is False      # not moved yet
    assert h("emulator", T0) is True
    assert h("broker-3", T0) is True and h("broker-2", T0) is False


# ---- outage -------------------------------------------------------------------------------------
def test_outage_stops_the_job_then_kills_it_and_waits_for_the_new_pid(tmp_path):
    write_parts(tmp_path, job=41)
    clock, signals, rates = Clock(), [], []
    o = Outage(tmp_path, T0 + 10, 600, 50_000, 2_000, rates.append, lambda _: None,
               signal_group=lambda pid, sig: signals.append((pid, sig)), clock=clock)
    o.tick()
    assert signals == [] and not o.active
    clock.t = T0 + 10
    o.tick()
    assert signals == [(41, signal.SIGSTOP)] and rates == [50_000] and o.active
    clock.t = T0 + 300
    o.tick()
    assert len(signals) == 1
    clock.t = T0 + 611
    o.tick()
    assert signals[-1] == (41, signal.SIGKILL) and rates == [50_000, 2_000] and o.active
    write_parts(tmp_path, job=42)
    clock.t = T0 + 615
    o.tick()
    assert not o.active and o.state.new_pid == 42


def test_outage_figures_catch_up_time_and_the_largest_batch():
    from pipeline.loadtest.soak_events import OutageState

    st = OutageState(T0 + 100, 600, 50_000, started_at=T0 + 100, pid=1, released_at=T0 + 700, back_at=T0 + 702)
    samples = [{"t": T0 + t, "lag_records": lag} for t, lag in
               [(90, 1000), (400, 15_000_000), (700, 30_000_000), (800, 9_000_000), (900, 20_000), (950, 10_000)]]
    b = [{"batch_id": 1, "trigger_time": T0 + 50, "input_rows": 9e9, "duration_s": 1},
         {"batch_id": 7, "trigger_time": T0 + 710, "input_rows": 5_000_000, "duration_s": 80},
         {"batch_id": 8, "trigger_time": T0 + 800, "input_rows": 4_000_000, "duration_s": 60}]
    f = outage_figures(st, samples, b, normal_lag=40_000)
    assert f["catch_up_s"] == pytest.approx(198) and f["max_behind"] == 30_000_000
    assert f["largest_batch"]["batch_id"] == 7


def test_excluded_periods_cover_each_kill_until_healthy_plus_two_triggers():
    kills = [{"at": T0 + 100, "healthy_at": T0 + 130}, {"at": None, "problem": "skipped"},
             {"at": T0 + 500, "healthy_at": None}]
    ex = excluded_periods(kills, {"started_at": T0 + 1000, "caught_up_at": T0 + 1900}, 10, T0 + 3600)
    assert ex == [sv.Excluded(T0 + 100, T0 + 150), sv.Excluded(T0 + 500, T0 + 3620),
                  sv.Excluded(T0 + 1000, T0 + 1920, "outage")]
    # with the samples: until records behind is back to one batch's worth after healthy
    samples = [{"t": T0 + t, "lag_records": 900_000 if 100 <= t < 400 else 100_000} for t in range(0, 3600, 30)]
    ex = excluded_periods(kills[:1], None, 10, T0 + 3600, samples, normal_lag=600_000)
    assert ex == [sv.Excluded(T0 + 100, T0 + 420 + 20)]   # the first sample back to normal, + two triggers
    never = [dict(s, lag_records=900_000) for s in samples if s["t"] >= T0 + 100]
    assert excluded_periods(kills[:1], None, 10, T0 + 3600, never, 600_000) == [sv.Excluded(T0 + 100, T0 + 3620)]


# ---- reconciliation glue ------------------------------------------------------------------------------
def record(tid="t-1", amount="1500.01", ts="2026-12-24T18:00:00Z"):
    return (f'{{"transaction_id": "{tid}", "person_id": "p", "merchant_id": "m", "amount": {amount}, '
            f'"timestamp": "{ts}"}}').encode()


def test_classify_agrees_with_the_contract():
    th = Decimal("1500")
    assert classify(record(), th) == ("t-1", True)
    assert classify(record(amount="1500.00"), th) == ("t-1", False)   # strictly above
    assert classify(record(amount="1500.001"), th) is None             # three decimals
    assert classify(record(amount='"1600"'), th) is None               # a string is not a number
    assert classify(record(amount="-3"), th) is None
    assert classify(record(ts="2026-13-24T18:00:00Z"), th) is None
    assert classify(record(ts="2026-12-24T18:00:00+01:00"), th) == ("t-1", True)
    assert classify(b"not json", th) is None and classify(None, th) is None


def test_classify_reads_avro_like_the_contract():
    from datetime import UTC, datetime

    from pipeline.contract.avro import encode_reference, header

    th = Decimal("1500")
    rec = {"transaction_id": "tx-é1", "person_id": "p", "merchant_id": "m", "amount": Decimal("1500.01"),
           "timestamp": datetime(2026, 12, 24, 18, tzinfo=UTC), "currency": "EUR", "channel": None}
    good = encode_reference(rec)
    assert classify(good, th) == ("tx-é1", True)
    assert classify(encode_reference(dict(rec, amount=Decimal("1500.00"))), th) == ("tx-é1", False)
    for bad in (encode_reference(dict(rec, amount=Decimal("0"))), encode_reference(dict(rec, person_id="")),
                encode_reference(dict(rec, merchant_id="m" * 500)), good + b"\x00", good[:-3],
                header(99) + good[5:]):
        assert classify(bad, th) is None


def test_topic_facts_count_distinct_valid_transactions():
    facts = TopicFacts()
    for got in [("a", True), ("b", False), ("a", True), None]:
        _count(facts, got)
    assert (facts.messages, facts.valid, facts.invalid) == (4, 3, 1)
    assert facts.distinct_valid() == 2 and facts.high_value_ids == ["a", "a"]


def facts_of(processed: list[tuple[str, bool] | None], pending: list[tuple[str, bool] | None]) -> TopicFacts:
    facts = TopicFacts(complete=not pending)
    for got in processed:
        _count(facts, got)
    for got in pending:
        _count(facts, got, pending=True)
    return facts


def test_ids_past_the_jobs_committed_offsets_are_not_yet_processed_not_lost():
    # a, b, c processed; d, e, f past the committed offsets; e already in Delta (a batch written after
    # the offsets were read); "b" also again in the pending part (a producer retry)
    facts = facts_of([("a", True), ("b", True), ("c", True), ("x", False), None],
                     [("d", True), ("e", True), ("f", True), ("b", True), ("y", False)])
    assert (facts.pending_messages, facts.distinct_valid(), facts.distinct_valid_with_pending()) == (5, 4, 8)
    rec, sales = compare_soak(facts, ["a", "b", "c", "e"], agg=6)
    assert (rec.lost, rec.duplicated, rec.unexpected, rec.not_yet_processed) == (0, 0, 0, 2), rec.sentence()
    assert rec.ok and rec.complete is False and "not yet processed" in rec.sentence()
    assert sales["ok"] and sales["exact"] is False and sales["distinct_valid_with_pending"] == 8
    # what must still fail: a processed id missing, an id twice, an id from nowhere, a count out of bounds
    rec, sales = compare_soak(facts, ["a", "c", "c", "z"], agg=9)
    assert (rec.lost, rec.duplicated, rec.unexpected, rec.not_yet_processed) == (1, 1, 1, 3)
    assert rec.lost_examples == ["b"] and not rec.ok and not sales["ok"]
    assert not compare_soak(facts, ["a", "b", "c"], agg=3)[1]["ok"]   # fewer than the committed 4
    # a complete scan: every id is expected and the count must be exact
    whole = facts_of([("a", True), ("b", False)], [])
    rec, sales = compare_soak(whole, [], agg=2)
    assert (rec.lost, rec.complete, sales["ok"], sales["exact"]) == (1, True, True, True)
    assert not compare_soak(whole, ["a"], agg=3)[1]["ok"]


def test_the_job_caught_up_or_its_committed_offsets_from_the_checkpoint(tmp_path):
    ck = tmp_path / "ck"
    assert processed_offsets({"caught_up": True}, ck, "t") is None
    assert processed_offsets({"caught_up": False}, ck, "t") == {}   # no checkpoint: nothing committed
    (ck / "offsets").mkdir(parents=True)
    (ck / "commits").mkdir()
    for batch, ends in ((0, {"0": 5, "1": 7}), (1, {"0": 9, "1": 12})):
        (ck / "offsets" / str(batch)).write_text('v1\n{"batchWatermarkMs":0}\n' + json.dumps({"t": ends}) + "\n")
    (ck / "commits" / "0").write_text("v1\n{}\n")   # batch 1 is in flight: not committed
    assert processed_offsets({"caught_up": None}, ck, "t") == {0: 5, 1: 7}


def test_a_job_that_did_not_catch_up_fails_the_verdict_and_says_how_many_wait():
    crit = [sv.Criterion("memory flat: job", True, "")]
    r = {"reconciliation": {"ok": True, "complete": False, "not_yet_processed": 552_310}, "sales_agg": {"ok": True},
         "state": "done"}
    assert verdict_of(r, crit) == "fail" and r["problems"] == ["job not caught up: 552,310 high-value ids not yet processed"]


def test_the_verdict_fails_on_a_lost_id_a_count_mismatch_or_an_unrecovered_kill():
    crit = [sv.Criterion("memory flat: job", True, "")]
    clean = {"reconciliation": {"ok": True}, "sales_agg": {"ok": True}, "kills": [{"part": "job", "at": 1}],
             "state": "done"}
    assert verdict_of(dict(clean), crit) == "pass"
    for broken in ({"reconciliation": {"ok": False}}, {"sales_agg": {"ok": False}},
                   {"kills": [{"part": "app", "at": 1, "problem": "not back within 600 s"}]},
                   {"browser": {"failed": 2}}, {"outage": {"memory_failures": 1}}):
        r = dict(clean, **broken)
        assert verdict_of(r, crit) == "fail" and r["problems"]
    assert verdict_of(dict(clean), [sv.Criterion("lag", False, "")]) == "fail"


def test_a_visit_under_way_when_the_app_was_killed_is_the_kills_doing_and_no_other():
    crit = [sv.Criterion("memory flat: job", True, "")]
    kills = [{"part": "app", "at": 1000.0, "back_at": 1003.0, "healthy_at": 1005.0},
             {"part": "job", "at": 2000.0, "back_at": 2006.0, "healthy_at": 2170.0}]
    clean = {"reconciliation": {"ok": True}, "sales_agg": {"ok": True}, "kills": kills, "state": "done"}

    def run(*failures):
        r = dict(clean, browser={"visits": 100, "failed": len(failures),
                                 "failures": [{"t": t, "seconds": s, "page": "sql", "ok": False} for t, s in failures]})
        return verdict_of(r, crit), r["browser"].get("interrupted")

    assert run((999.5, 0.95)) == ("pass", 1)       # loading when the app was killed (the chaos hour 3ec8)
    assert run((1004.0, 0.2)) == ("pass", 1)       # back, not yet healthy
    assert run((990.0, 5.0)) == ("fail", 0)        # failed before the kill
    assert run((1010.0, 1.0)) == ("fail", 0)       # failed once the app was healthy again
    assert run((2001.0, 1.0)) == ("fail", 0)       # the job's kill must not break a page
    assert run((999.5, 0.95), (1010.0, 1.0)) == ("fail", 1)
    r = dict(clean, browser={"visits": 100, "failed": 60,   # only 50 are listed: 10 cannot be excused
                             "failures": [{"t": 1000.0, "seconds": 1.0, "page": "sql", "ok": False}] * 50})
    assert verdict_of(r, crit) == "fail" and r["browser"]["interrupted"] == 50
    never = [{"part": "app", "at": 1000.0, "problem": "not back within 600 s"}]
    r = dict(clean, kills=never, browser={"visits": 1, "failed": 1, "failures": [{"t": 1000.5, "seconds": 1.0}]})
    assert verdict_of(r, crit) == "fail" and "page visits" in r["problems"]


# ---- options and report ----------------------------------------------------------------------------
def test_chaos_every_ranges_and_refusals():
    assert _range("60-90s") == (60, 90) and _range("5m-10m") == (300, 600) and _range(None) == (300, 600)
    for bad in ("60", "90-60s", "x-y"):
        with pytest.raises(SettingsError):
            _range(bad)
    with pytest.raises(SettingsError, match="--nodes"):
        SoakOptions(nodes=2).check()
    with pytest.raises(SettingsError, match="outage"):
        SoakOptions(duration_s=600, outage_s=600).check()


@pytest.mark.parametrize("argv,says", [
    (["loadtest", "--profile", "soak", "--nodes", "2"], "--nodes=2"),
    (["loadtest", "--profile", "soak", "--chaos-every", "90-60s"], "--chaos-every"),
    (["loadtest", "--profile", "christmas", "--rate", "5"], "only go with --profile soak"),
])
def test_bad_soak_flags_are_one_line_and_exit_2(capsys, argv, says):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert says in err and len(err.splitlines()) == 1


def test_report_shows_the_verdict_the_kills_and_escapes_values():
    result = {"run_id": "r<1>", "dir": "/x", "state": "done", "verdict": "fail", "problems": ["reconciliation"],
              "t0": T0, "options": {"trigger_s": 10}, "criteria": [sv.Criterion("memory flat: job", False, "+9 MiB/h").as_dict()],
              "reconciliation": {"expected": 10, "actual_unique": 9, "lost": 1, "duplicated": 0, "unexpected": 0,
                                 "lost_examples": ["<script>"], "ok": False},
              "sales_agg": {"ok": True, "sales_agg_count": 5, "distinct_valid": 5},
              "kills": [{"part": "job", "planned_s": 60, "at": T0 + 61, "pid": 1, "new_pid": 2, "back_s": 3.5,
                         "healthy_s": 21.0, "problem": ""}],
              "batches": batches([5.0] * 3, trigger=10), "browser": {"visits": 16, "failed": 0}}
    samples = [{"t": T0 + t, "rss_job_mb": 100, "lag_records": 0, "disk_total_mb": 1, "gc_job": 1.5,
                "heap_old_job_mb": 300 + t} for t in range(0, 100, 5)]
    html = build_report(result, samples, [{"t": T0, "text": "started <b>"}])
    gc = html.split('id="chart-gc"', 1)[1].split('<div class="chart"', 1)[0]
    heap = html.split('id="chart-heap"', 1)[1].split('<div class="chart"', 1)[0]
    assert '"name":"job"' in gc and "1.5" in gc and '"name":"job"' in heap and "395" in heap
    assert 'id="not-caught-up"' not in html
    behind = dict(result, reconciliation=dict(result["reconciliation"], complete=False, not_yet_processed=4321,
                                              note="the job had not caught up: 9 messages"),
                  sales_agg={"ok": True, "exact": False, "sales_agg_count": 6, "distinct_valid": 5,
                             "distinct_valid_with_pending": 7})
    later = build_report(behind, samples, [])
    assert 'id="not-caught-up"' in later and "4,321 ids not yet processed" in later and "between 5" in later
    assert "&lt;script&gt;" in html and "<script>\"" not in html and "r&lt;1&gt;" in html
    assert "21.0 s" in html and "3.5 s" in html and "FAIL" in html and "+9 MiB/h" in html
    assert html.count("plotly.js v") <= 2 and 'id="chart-rss"' in html and 'id="chart-batches"' in html


def test_the_soak_runs_the_product_on_its_own_folder_and_ports(tmp_path):
    from pipeline.loadtest.soak_stack import METRICS_BLOCK, SoakStack

    st = SoakStack(tmp_path / "soak", rate=2000, trigger_s=10, nodes=3, base_env={"TORMENTA_DATA_DIR": "/elsewhere"})
    env, ports = st.env, st.ports
    assert env["TORMENTA_DATA_DIR"] == str(tmp_path / "soak" / "data") and st.run_dir == tmp_path / "soak" / "data" / "run"
    assert env["TORMENTA_BROKER_NODES"] == "3" and env["TORMENTA_EMULATOR_RATE"] == "2000"
    assert env["TORMENTA_TRIGGER_INTERVAL"] == "10s" and st.settings.trigger_interval == 10
    spans = [range(ports["broker"], ports["broker"] + 6), range(ports["controller"], ports["controller"] + 6),
             range(ports["app"], ports["app"] + 1), range(ports["metrics"], ports["metrics"] + METRICS_BLOCK)]
    every = [p for r in spans for p in r]
    assert len(every) == len(set(every))  # no two uses share a port
    assert st.settings.app_port == ports["app"] and st.settings.metrics_port == ports["metrics"]


def test_a_soak_report_rebuilds_from_its_files(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "soaks" / "20261205-000000-abcd"
    folder.mkdir(parents=True)
    result = {"run_id": "20261205-000000-abcd", "dir": str(folder), "state": "done", "verdict": "pass", "t0": T0,
              "criteria": [sv.Criterion("lag bounded: records behind", True, "max 5 records behind").as_dict()],
              "events": [{"t": T0, "text": "every part runs"}]}
    (folder / "result.json").write_text(json.dumps(result))
    (folder / "samples.json").write_text(json.dumps([{"t": T0 + i, "lag_records": 5} for i in range(5)]))
    monkeypatch.setenv("TORMENTA_DATA_DIR", str(tmp_path))
    assert main(["loadtest", "--report", "20261205-000000-abcd"]) == 0
    assert capsys.readouterr().out.strip() == str(folder / "report.html")
    html = (folder / "report.html").read_text()
    assert "max 5 records behind" in html and "every part runs" in html


def test_load_times_per_page_compare_the_first_and_the_last_quarter_of_the_run():
    from pipeline.loadtest.soak_browser import Visit, load_times

    visits = []
    for i in range(40):                                        # 40 rounds of 30 s, two pages
        visits.append(Visit(T0 + 30 * i, "overview", True, 1.0))
        visits.append(Visit(T0 + 30 * i + 5, "explorer", True, 1.0 + i * 0.1))   # reads more each round
    visits.append(Visit(T0 + 30 * 39 + 9, "explorer", False, 60.0, "TimeoutError"))   # a failed visit: left out
    rows = {r["page"]: r for r in load_times(visits)}
    assert rows["overview"] == {"page": "overview", "visits": 40, "first_s": 1.0, "last_s": 1.0, "ratio": 1.0}
    assert rows["explorer"]["visits"] == 40 and rows["explorer"]["first_s"] < 2.0 < 4.0 < rows["explorer"]["last_s"]
    assert rows["explorer"]["ratio"] > 2
    assert load_times([]) == [] and load_times([Visit(T0, "sql", False, 1.0, "x")]) == []
    result = {"run_id": "r", "dir": "/x", "state": "done", "verdict": "pass", "problems": [], "t0": T0,
              "options": {"trigger_s": 10}, "criteria": [], "reconciliation": {}, "sales_agg": {}, "kills": [],
              "batches": batches([5.0] * 3, trigger=10),
              "browser": {"visits": 81, "failed": 1, "by_page": load_times(visits)}}
    html = build_report(result, [{"t": T0, "rss_job_mb": 1}], [])
    table = html.split('id="page-times"', 1)[1].split("</table>", 1)[0]
    assert "explorer" in table and "overview" in table and "1.00 s" in table and "x1.00" in table


# ---- what a soak leaves on disk -----------------------------------------------------------------
def _run_folder(data):
    for name, mib in (("broker/node-1", 2), ("checkpoints/high_value", 1), ("tmp", 0), ("delta/high_value", 1),
                      ("run", 0), ("monitoring", 0)):
        (data / name).mkdir(parents=True)
        (data / name / "f").write_bytes(b"x" * (mib * 2**20))


@pytest.mark.parametrize("state,keep,stopped,deleted", [
    ("done", False, False, True),     # the default: a finished soak deletes its bulk
    ("done", True, False, False),     # --keep-data
    ("failed", False, False, False),  # a failed soak keeps everything to look into
    ("done", False, True, False),     # and so does one cut short
])
def test_a_finished_soak_deletes_its_broker_logs_and_checkpoints_unless_kept(tmp_path, monkeypatch, state, keep,
                                                                             stopped, deleted):
    import threading

    from pipeline.loadtest import soak as soak_mod
    from pipeline.loadtest import soak_finish
    from pipeline.settings import Settings

    stops = []

    class Stack:  # the product: its data folder filled as a run leaves it
        def __init__(self, folder, **_):
            self.folder = folder

        def start(self, stop, event):
            _run_folder(self.folder / "data")

        def stop(self, event):
            stops.append(sorted(p.name for p in (self.folder / "data").iterdir()))

    def finish(soak, parts):
        soak.result["state"] = state if state == "failed" else "done"
        return soak.dir / "report.html"

    monkeypatch.setattr(soak_mod, "SoakStack", Stack)
    monkeypatch.setattr(soak_mod.Soak, "_drive", lambda self, stack, stop: {})
    monkeypatch.setattr(soak_finish, "finish", finish)
    stop = threading.Event()
    if stopped:
        stop.set()
    s = soak_mod.Soak(Settings(data_dir=tmp_path), SoakOptions(keep_data=keep), run_id="r1")
    result = s.run(stop)
    data = tmp_path / "soaks" / "r1" / "data"
    assert stops == [["broker", "checkpoints", "delta", "monitoring", "run", "tmp"]]  # deleted only after the stop
    left = sorted(p.name for p in data.iterdir())
    if deleted:
        assert left == ["delta", "monitoring", "run"]
        assert result["removed_mib"] == {"broker": 2.0, "checkpoints": 1.0, "tmp": 0.0}
        assert any("3 MiB; --keep-data keeps them" in e["text"] for e in s.events)
    else:
        assert left == ["broker", "checkpoints", "delta", "monitoring", "run", "tmp"] and "removed_mib" not in result
    assert json.loads((data.parent / "result.json").read_text()).get("removed_mib") == result.get("removed_mib")


def test_keep_data_is_a_soak_flag():
    from pipeline.cli import build_parser
    from pipeline.loadtest.soak_options import refuse_soak_flags

    args = build_parser().parse_args(["loadtest", "--profile", "soak", "--keep-data"])
    assert args.keep_data is True
    args = build_parser().parse_args(["loadtest", "--profile", "smoke", "--keep-data"])
    with pytest.raises(SettingsError, match="--keep-data only go with --profile soak"):
        refuse_soak_flags(args)
