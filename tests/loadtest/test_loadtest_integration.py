"""The load test end to end on the real stack: session broker, the real job as a subprocess, the real
emulator as a subprocess, a tiny two-step plan (1,000 then 3,000 tx/s, 2 s trigger, ~25 s of load).

Asserts a verdict for every step, 0 lost / 0 duplicated high-value ids after the catch-up, the
HTML report, that the run's topics are gone and that no process it started is left; then opens
the real report in headless Chromium (when installed) and saves a screenshot.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import psutil
import pytest

from pipeline.kafka.topic import admin
from pipeline.loadtest.runner import LoadTest, LoadTestOptions, list_runs

pytestmark = pytest.mark.integration


def _our_children() -> list[str]:
    out = []
    for p in psutil.Process().children(recursive=True):
        try:
            cmd = " ".join(p.cmdline())
        except psutil.Error:
            continue
        if "pipeline job" in cmd or "pipeline emulate" in cmd:
            out.append(cmd)
    return out


def test_smoke_plan_on_the_real_stack(broker, tmp_path, artifacts):
    settings = broker.replace(data_dir=tmp_path / "data")
    test = LoadTest(settings, LoadTestOptions(profile="smoke", scale=0.5, catch_up_timeout_s=240))
    result = test.run()

    assert result["state"] == "done", result.get("error")
    steps = result["steps"]
    assert [s["kind"] for s in steps][0] == "warmup" and len(steps) >= 1
    assert all(s["verdict"] in ("holds", "degrades", "breaks") for s in steps)
    assert all(s["verdict"] == "holds" or s["limiting_stage"] in ("emulator", "broker", "job") for s in steps)
    assert result["summary"]["answer"]
    # the samples saw the emulator, the broker and the job
    samples = json.loads((test.dir / "samples.json").read_text())
    assert max(s["log_end"] for s in samples) > 0 and max(s["batches"] for s in samples) >= 2
    assert any(s.get("achieved_rate") for s in samples) and any(s.get("cpu_job") for s in samples)
    assert any(s.get("cpu_broker") is not None for s in samples)

    rec = result["reconciliation"]
    assert result["caught_up"] and rec["complete"]
    assert rec["expected"] > 0
    assert (rec["lost"], rec["duplicated"], rec["unexpected"]) == (0, 0, 0), rec
    totals = rec["totals"]
    assert totals["emulator_sent"] == totals["emulator_delivered"] == totals["broker_log_end"]
    assert totals["job_input_rows"] == totals["broker_log_end"]
    assert sum(w["in_delta"] for w in rec["windows"]) == rec["actual_rows"]
    assert sum(w["over_threshold"] or 0 for w in rec["windows"]) == rec["expected"]
    assert any(s["freshness"]["n"] for s in steps)

    report = Path(result["report"])
    assert report.exists() and "Plotly.newPlot" in report.read_text()
    assert list_runs(settings)[0]["run_id"] == test.run_id
    assert not any("could not delete" in e["text"] for e in result["events"])
    deadline = time.monotonic() + 20  # topic deletion reaches the metadata asynchronously
    while any(t.startswith(f"loadtest-{test.run_id}") for t in admin(settings).list_topics(timeout=10).topics):
        assert time.monotonic() < deadline, "the run's topics were not deleted"
        time.sleep(0.5)
    assert _our_children() == []
    shutil.copy(report, artifacts / "loadtest-report-smoke.html")

    from tests.app.test_loadtest_browser import CHROMIUM, open_report

    if Path(CHROMIUM).exists():
        seen = open_report(report, artifacts / "loadtest-report-smoke.png")
        assert seen["errors"] == [] and seen["charts"] >= 12
        assert seen["reconciliation"] == "0 lost / 0 duplicated"
        assert seen["verdict_rows"] == len(steps)
