"""Freshness: how long each high-value row took from its event time to being visible in Delta.

A row becomes visible when its batch's append to the ``high_value`` table commits: the
first commit within the batch's run (trigger time .. trigger time + duration, from
``batch_metrics``), else the batch's end. Freshness = that moment minus the row's event
time. `Freshness` holds it per row and gives the percentiles overall, per step (rows whose
event time falls in the step) and per batch (with the time the batch became visible).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.loadtest import verdict
from pipeline.loadtest.plan import StepWindow


def merge_commit_times(path: Path) -> list[float]:
    """Epoch seconds of every MERGE/WRITE commit of the high-value table, ascending (the job
    appends since the dedupe moved to streaming state; tables of older runs have MERGEs)."""
    from deltalake import DeltaTable

    if not (path / "_delta_log").is_dir():
        return []
    hist = DeltaTable(str(path)).history()
    return sorted(h["timestamp"] / 1000.0 for h in hist if str(h.get("operation", "")).upper() in ("MERGE", "WRITE"))


def visible_times(batches: list[dict[str, Any]], commits: list[float], slack_s: float = 2.0) -> dict[int, float]:
    """batch_id -> when its rows became visible: the first MERGE commit inside the batch's run
    (trigger time .. trigger time + duration); the batch end if no commit matches."""
    out = {}
    arr = np.asarray(commits, dtype=float)
    for b in batches:
        start = float(b["trigger_time"])
        end = start + float(b["duration_s"])
        i = int(np.searchsorted(arr, start - 0.5)) if arr.size else 0
        if arr.size and i < arr.size and arr[i] <= end + slack_s:
            out[int(b["batch_id"])] = float(arr[i])
        else:
            out[int(b["batch_id"])] = end
    return out


def row_freshness(event_times: np.ndarray, batch_ids: np.ndarray, visible: dict[int, float]) -> np.ndarray:
    """Seconds from event time to visibility in Delta, one per row (NaN if the batch is unknown)."""
    if event_times.size == 0:
        return np.array([], dtype=float)
    vis = np.array([visible.get(int(b), np.nan) for b in batch_ids.tolist()], dtype=float)
    return vis - event_times


def _finite(values: np.ndarray) -> list[float]:
    return values[np.isfinite(values)].tolist() if values.size else []


@dataclass
class Freshness:
    """Freshness of every high-value row of a run (seconds; NaN where the batch is unknown)."""

    event_times: np.ndarray
    batch_ids: np.ndarray
    visible: dict[int, float]    # batch id -> epoch seconds its rows became visible
    seconds: np.ndarray

    @classmethod
    def measure(cls, table: Path, event_times: np.ndarray, batch_ids: np.ndarray,
                batches: list[dict[str, Any]]) -> Freshness:
        """From the rows' event times and batch ids, the batches, and the commits of `table` (high_value)."""
        visible = visible_times(batches, merge_commit_times(table))
        return cls(event_times, batch_ids, visible, row_freshness(event_times, batch_ids, visible))

    def overall(self) -> dict[str, float | None]:
        return verdict.percentiles(_finite(self.seconds))

    def in_window(self, w: StepWindow) -> dict[str, float | None]:
        """Percentiles of the rows whose event time falls in the step."""
        if not self.event_times.size:
            return verdict.percentiles([])
        return verdict.percentiles(_finite(self.seconds[(self.event_times >= w.start) & (self.event_times < w.end)]))

    def per_batch(self, batches: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Percentiles of each batch's rows, with the time the batch became visible."""
        out = []
        for b in batches if self.seconds.size else []:
            sel = _finite(self.seconds[self.batch_ids == int(b["batch_id"])])
            if sel:
                out.append({"batch_id": int(b["batch_id"]), "visible_at": self.visible.get(int(b["batch_id"])),
                            **verdict.percentiles(sel)})
        return out
