"""The Pipeline page's charts from Prometheus: batch duration vs trigger and records behind latest.

    history = job_history(client, trigger_s=60)       # the last hour of the high-value query
    history.durations    # DataFrame time, duration_s, trigger_s (empty when Prometheus has none)
    history.behind       # DataFrame time, behind

A histogram has no "duration of the last batch": the chart shows the mean duration of the
batches that ended in a window of three trigger intervals (at least a minute), one point per
query step; the dashboard keeps its per-batch charts from the batch_metrics table when
Prometheus is off, unreachable or has no series yet.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from pipeline.contract.tables import HIGH_VALUE_QUERY
from pipeline.monitoring.client import PrometheusClient, last_hour


@dataclass(frozen=True)
class JobHistory:
    durations: pd.DataFrame
    behind: pd.DataFrame

    @property
    def empty(self) -> bool:
        return self.durations.empty and self.behind.empty


def _frame(series: list[dict], column: str) -> pd.DataFrame:
    """The first series of a query_range answer as a frame (time in UTC, one value column)."""
    values = series[0]["values"] if series else []
    frame = pd.DataFrame(values, columns=["time", column])
    frame["time"] = pd.to_datetime(frame["time"], unit="s", utc=True)
    return frame


def job_history(client: PrometheusClient, trigger_s: float, query: str = HIGH_VALUE_QUERY,
                minutes: int = 60, now: float | None = None) -> JobHistory:
    start, end, step = last_hour(now, minutes)
    window = f"{int(max(60.0, 3 * trigger_s))}s"
    sel = f'{{query="{query}"}}'
    mean = (f"sum(rate(tormenta_job_batch_duration_seconds_sum{sel}[{window}])) / "
            f"sum(rate(tormenta_job_batch_duration_seconds_count{sel}[{window}]))")
    durations = _frame(client.query_range(mean, start, end, step), "duration_s")
    trigger = _frame(client.query_range(f"max(tormenta_job_trigger_interval_seconds{sel})", start, end, step),
                     "trigger_s")
    if not durations.empty:
        durations = durations.merge(trigger, on="time", how="left")
    behind = _frame(client.query_range(f"sum(tormenta_job_offsets_behind_latest{sel})", start, end, step), "behind")
    return JobHistory(durations, behind)
