"""AppTest of the Load test page: renders with and without finished runs, shows the verdict of a saved
run and the capacity calculator's figures, with no broker and without starting a run."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from pipeline.loadtest.capacity import CapacityInput, capacity
from pipeline.loadtest.report import write_report
from tests.support.apptest import APP, closed_port
from tests.support.loadtest_fixtures import synthetic_result

PAGE = "pages/load_test.py"
pytestmark = pytest.mark.usefixtures("release_cached_clients")


def open_page(monkeypatch, data_dir: Path) -> AppTest:
    monkeypatch.setenv("TORMENTA_DATA_DIR", str(data_dir))
    monkeypatch.setenv("TORMENTA_BOOTSTRAP_SERVERS", f"127.0.0.1:{closed_port()}")
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page(PAGE)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def frames(at: AppTest):
    return [d.value for d in at.dataframe]


def test_page_without_runs_shows_the_form_and_the_calculator(monkeypatch, tmp_path):
    at = open_page(monkeypatch, tmp_path)
    assert at.title[0].value == "Load test"
    assert at.button(key="lt_start").disabled is False
    text = "\n".join(str(e.value) for e in at.info)
    assert "No load test is running" in text and "No finished load test yet" in text
    cap = next(f for f in frames(at) if "figure" in f.columns)
    figures = dict(zip(cap["figure"], cap["value"]))
    # the page shows exactly what pipeline.loadtest.capacity computes for its inputs
    s_retention = 86400.0
    plan = capacity(CapacityInput(rate=50_000, record_bytes=at.number_input(key="cap_size").value,
                                  retention_s=s_retention, trigger_s=60, partitions=3, cores=2))
    assert figures["Records per micro-batch"] == "3,000,000"
    assert figures["Broker disk needed, per broker"] == dict(plan.rows())["Broker disk needed, per broker"]
    assert figures["Dedupe state (rate × dedupe window)"] == "30,000,000 keys"   # 50,000 tx/s × the 10 min window
    assert any(c.value.startswith("plan christmas: warmup 10,000 tx/s") for c in at.caption)


def test_page_shows_a_saved_run_and_recomputes_capacity(monkeypatch, tmp_path):
    result, samples = synthetic_result()
    run_dir = tmp_path / "loadtests" / "20261124-191200-abcd"
    result.run_id = run_dir.name
    result.topic.bytes_per_record_on_disk = 60.0
    result.reconciliation.lost, result.reconciliation.duplicated = 1_234_567, 2_500  # big figures, compact units
    write_report(run_dir, result, samples)
    at = open_page(monkeypatch, tmp_path)
    metrics = {m.label: m.value for m in at.metric}
    assert result.summary.max_sustainable_rate == 50_000 and result.summary.peak_rate == 50_000
    assert metrics["Maximum sustainable rate"] == "50.0 k tx/s"
    assert metrics["Limiting stage"] == "job"
    assert "At the peak (50.0 k tx/s)" in metrics
    assert metrics["Lost / duplicated ids"] == "1.23 M / 2.5 k"
    verdicts = next(f for f in frames(at) if "verdict" in f.columns)
    assert list(verdicts["step"])[:3] == ["warmup 10,000", "ramp 10,000→50,000", "hold 50,000"]
    assert at.number_input(key="cap_tp").value > 0                 # measured job throughput of the run
    assert at.number_input(key="cap_comp").value > 1               # compression from bytes on disk
    at.number_input(key="cap_rate").set_value(200_000.0).run()
    assert not at.exception
    cap = next(f for f in frames(at) if "figure" in f.columns)
    assert dict(zip(cap["figure"], cap["value"]))["Records per micro-batch"] == "12,000,000"
    warnings = " ".join(str(w.value) for w in at.warning)
    assert "maxOffsetsPerTrigger" in warnings and "exceeds the measured job throughput" in warnings
