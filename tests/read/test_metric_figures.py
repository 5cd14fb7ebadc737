"""Figures of the Storm control boxes: big values in compact units so six boxes in a row are not cut."""

from __future__ import annotations

from pipeline.read.dashboard import emulator_figures


def test_storm_control_boxes_use_compact_units():
    status = {"state": "running", "target_rate": 50_000, "achieved_rate": 49_876.5, "delivered": 4_845_686_530,
              "failed": 1_234, "latency_p50_ms": 12_345.0, "latency_p99_ms": 1_234_567.0, "queue_depth": 2_500_000}
    figures = dict(emulator_figures(status))
    assert list(figures) == ["State", "Target rate", "Achieved rate", "Delivered / failed", "Latency p50 / p99",
                             "Send queue"]
    assert figures["State"] == "running"
    assert figures["Target rate"] == "50.0 k tx/s"
    assert figures["Achieved rate"] == "49.9 k tx/s"
    assert figures["Delivered / failed"] == "4.85 B / 1.23 k"
    assert figures["Latency p50 / p99"] == "12.3 k / 1.23 M ms"
    assert figures["Send queue"] == "2.5 M records"
    assert all("," not in value for value in figures.values())


def test_storm_control_boxes_with_a_sparse_status():
    figures = dict(emulator_figures({"latency_p50_ms": 7.4}))
    assert figures["State"] == "?"
    assert figures["Latency p50 / p99"] == "7 / 0 ms"      # missing latency counts as 0, as before
    assert figures["Target rate"] == "– tx/s"
