"""The load test end to end on the real stack: session broker, the real job as a subprocess, the real
emulator as a subprocess, a tiny two-step plan (1,000 then 3,000 tx/s, 2 s trigger, ~25 s of load).

The verdict of every step must be the one the stated rules give for its measured stats (recomputed
here independently, and the stats themselves recomputed from the samples and batches); the
reconciliation must be exact: the high-value ids are counted independently by reading the run's
topic back and applying the contract's threshold rule, and Delta must hold exactly those ids, once
each. Then: the HTML report, the run's topics deleted, no process left, and the real report in
headless Chromium (when installed) with a screenshot.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import psutil
import pytest
from confluent_kafka import Consumer, TopicPartition

from pipeline.contract import Invalid, is_high_value, validate
from pipeline.kafka.topic import admin
from pipeline.loadtest import reconcile, verdict
from pipeline.loadtest.result import LoadTestResult
from pipeline.loadtest.runner import LoadTest, LoadTestOptions
from pipeline.loadtest.runs import list_runs
from tests.support.app_fixtures import CHROMIUM, open_report
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


def _our_children() -> list[str]:
    out = []
    for p in psutil.Process().children(recursive=True):
        try:
            cmd = " ".join(p.cmdline())
        except psutil.Error:
            continue
        if "pipeline job" in cmd or "pipeline emulate" in cmd or "pipeline live" in cmd:
            out.append(cmd)
    return out


def rules_verdict(s: verdict.StepStats, trigger: float) -> str:
    """The verdict docs/LOADTEST.md states for a step's measured figures (written apart from verdict.judge)."""
    ratio, lag = s.producer_ratio, s.lag_s_max
    trend = s.lag_points >= 3 and s.lag_slope is not None and s.lag_growth_s is not None
    if ((ratio is not None and ratio < 0.80) or s.failed > 0 or not s.job_alive
            or (lag is not None and lag > 3 * trigger + 10)
            or (trend and s.lag_slope >= 0.10 and s.lag_growth_s > max(trigger, 5.0))):
        return "breaks"
    holds = (ratio is not None and ratio >= 0.95 and (s.batch_max_s is None or s.batch_max_s <= trigger)
             and (lag is None or lag <= 2 * trigger + 5)
             and not (trend and s.lag_slope >= 0.05 and s.lag_growth_s >= max(trigger / 2, 2.0)))
    return "holds" if holds else "degrades"


def check_step_figures(result: LoadTestResult, samples: list[dict]) -> None:
    """Each step's batch and lag figures are those of the batches and samples inside its window."""
    for w, s in zip(result.windows, result.steps, strict=True):
        mine = [b["duration_s"] for b in result.batches if w.start <= b["trigger_time"] < w.end]
        assert s.batches == len(mine) and s.batch_max_s == (max(mine) if mine else None), s.label
        lags = [x["lag_s"] for x in samples if w.start <= x["t"] <= w.end and x["lag_s"] is not None]
        assert s.lag_s_max == (max(lags) if lags else None), s.label
        assert s.verdict == rules_verdict(s, result.plan.trigger_s), (s.label, s.verdict, s.reasons)
        assert (s.limiting_stage is None) == (s.verdict == "holds")


def high_value_ids_in_topic(settings, topic: str) -> tuple[list[str], int]:
    """Every record of the run's topic read back: the ids the contract calls high-value, and the count."""
    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": f"check-{topic}",
                         "enable.auto.commit": False, "enable.partition.eof": True})
    try:
        parts = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, 0) for p in parts])
        ids, records, at_end = [], 0, set()
        while len(at_end) < len(parts):
            batch = consumer.consume(num_messages=5000, timeout=10)
            assert batch, "the topic stopped delivering before its end"
            for msg in batch:
                if msg.error() is not None:
                    at_end.add(msg.partition())
                    continue
                records += 1
                try:
                    record = validate(msg.value())
                except Invalid:
                    continue
                if is_high_value(record["amount"], settings.threshold):
                    ids.append(record["transaction_id"])
        return ids, records
    finally:
        consumer.close()


def check_exact_reconciliation(result: LoadTestResult, test: LoadTest, settings) -> None:
    rec = result.reconciliation
    topic_ids, records = high_value_ids_in_topic(settings, test.run_settings.topic)
    recorded = reconcile.read_ids(test.dir / "ids.txt")
    in_delta, _, _ = reconcile.read_high_value(test.run_settings.table_path("high_value"))
    assert len(topic_ids) == len(set(topic_ids)) > 0
    assert sorted(recorded) == sorted(topic_ids) == sorted(in_delta)
    assert (rec.expected, rec.actual_rows, rec.actual_unique) == (len(topic_ids),) * 3
    assert (rec.lost, rec.duplicated, rec.unexpected) == (0, 0, 0) and rec.ok and rec.complete
    t = rec.totals
    assert t["emulator_over_threshold_delivered"] == len(topic_ids)
    assert t["emulator_sent"] == t["emulator_delivered"] == t["broker_log_end"] == t["job_input_rows"] == records
    assert sum(w["in_delta"] for w in rec.windows) == sum(w["over_threshold"] or 0 for w in rec.windows) == len(topic_ids)


def test_smoke_plan_on_the_real_stack(broker, tmp_path, artifacts):
    settings = broker.replace(data_dir=tmp_path / "data")
    test = LoadTest(settings, LoadTestOptions(profile="smoke", scale=0.5, catch_up_timeout_s=240, keep_topic=True))
    try:
        result = test.run()
        assert result.state == "done", result.error
        assert result.caught_up
        assert [s.kind for s in result.steps] == ["warmup", "hold"]
        samples = json.loads((test.dir / "samples.json").read_text())
        assert max(s["batches"] for s in samples) >= 2 and any(s.get("cpu_broker") is not None for s in samples)
        check_step_figures(result, samples)
        assert all(s.freshness["n"] for s in result.steps)
        check_exact_reconciliation(result, test, settings)
        # The live lane ran beside the job: reconciled against Delta, latency per step.
        assert set(result.live) >= {"reconciliation", "steps"}, result.live
        assert [s["step"] for s in result.live["steps"]] == [s.label for s in result.windows]
        # The run's own Prometheus evaluated monitoring/alerts.yaml: the alerts of each step; a step that
        # holds fires none (every rule's `for` but one is longer than a smoke step; that one counts failures).
        assert result.alerts.get("state") == "on", result.alerts
        assert [s["step"] for s in result.alerts["steps"]] == [s.label for s in result.windows]
        held = {s.label for s in result.steps if s.verdict == "holds"}
        assert not [a for s in result.alerts["steps"] if s["step"] in held for a in s["alerts"] if a["state"] == "firing"]
        assert LoadTestResult.load(test.dir / "result.json") == result
    finally:
        test.delete_topics()
    wait_for(lambda: not any(t.startswith(f"loadtest-{test.run_id}")
                             for t in admin(settings).list_topics(timeout=10).topics), 30, "the run's topics deleted")
    report = Path(result.report)
    assert report.exists() and "Plotly.newPlot" in report.read_text()
    assert list_runs(settings)[0].run_id == test.run_id
    assert not any("could not delete" in e["text"] for e in result.events)
    assert _our_children() == []
    shutil.copy(report, artifacts / "loadtest-report-smoke.html")

    if Path(CHROMIUM).exists():
        seen = open_report(report, artifacts / "loadtest-report-smoke.png")
        assert seen["errors"] == [] and seen["charts"] >= 12
        assert seen["reconciliation"] == "0 lost / 0 duplicated"
        assert seen["verdict_rows"] == len(result.steps)
