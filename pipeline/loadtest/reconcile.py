"""After a run: what was sent vs what is in Delta (by transaction id and per window).

* expected = the transaction ids the emulator recorded for every *delivered* record over
  the threshold (``--record-ids``); actual = the ``transaction_id`` column of the run's
  ``high_value`` Delta table (read with delta-rs). lost = expected - actual, unexpected =
  actual - expected, duplicated = ids that occur more than once in the table.
* per window: the emulator's own per-minute counts (sent, over threshold; its summary's
  ``sent_by_minute``) next to the high-value rows per minute of event time in Delta.
* totals along the pipe: emulator sent / delivered, broker log-end offsets, rows the job
  read (sum of ``batch_metrics.input_rows``).

The freshness of each high-value row is measured in `pipeline.loadtest.freshness`.
"""

from __future__ import annotations

import collections
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.contract.fields import EVENT_TIME, TRANSACTION_ID
from pipeline.contract.tables import BATCH_METRICS, HIGH_VALUE_QUERY, TABLES, columns

MAX_EXAMPLES = 20


@dataclass
class Reconciliation:
    expected: int
    actual_rows: int
    actual_unique: int
    lost: int
    duplicated: int
    unexpected: int
    lost_examples: list[str] = field(default_factory=list)
    duplicated_examples: list[str] = field(default_factory=list)
    unexpected_examples: list[str] = field(default_factory=list)
    expected_file_duplicates: int = 0
    windows: list[dict[str, Any]] = field(default_factory=list)
    totals: dict[str, Any] = field(default_factory=dict)
    complete: bool = True
    note: str = ""
    not_yet_processed: int = 0

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.duplicated == 0 and self.unexpected == 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"ok": self.ok}

    def sentence(self) -> str:
        later = f" Incomplete: {self.note}." if not self.complete and self.note else ""
        if self.ok:
            return (f"{self.expected:,} high-value transactions sent, {self.actual_unique:,} in Delta: "
                    f"0 lost, 0 duplicated, 0 unexpected.{later}")
        return (f"{self.expected:,} sent, {self.actual_unique:,} in Delta: {self.lost:,} lost, "
                f"{self.duplicated:,} duplicated, {self.unexpected:,} unexpected.{later}")


def compare_ids(expected: list[str], actual: list[str], *, max_examples: int = MAX_EXAMPLES) -> Reconciliation:
    """Pure comparison of two id lists (expected may repeat if a record was recorded twice)."""
    exp_counts = collections.Counter(expected)
    act_counts = collections.Counter(actual)
    exp, act = set(exp_counts), set(act_counts)
    lost = sorted(exp - act)
    unexpected = sorted(act - exp)
    dup = sorted(k for k, n in act_counts.items() if n > 1)
    return Reconciliation(
        expected=len(exp), actual_rows=len(actual), actual_unique=len(act), lost=len(lost),
        duplicated=len(dup), unexpected=len(unexpected), lost_examples=lost[:max_examples],
        duplicated_examples=dup[:max_examples], unexpected_examples=unexpected[:max_examples],
        expected_file_duplicates=sum(n - 1 for n in exp_counts.values() if n > 1),
    )


def read_ids(path: Path) -> list[str]:
    try:
        return [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except OSError:
        return []


def _minute(epoch_s: float) -> str:
    return datetime.fromtimestamp(int(epoch_s // 60) * 60, UTC).strftime("%Y-%m-%dT%H:%M:00Z")


def per_window(sent_by_minute: list[dict[str, Any]], event_times_s: np.ndarray) -> list[dict[str, Any]]:
    """Emulator per-minute counts next to Delta high-value rows per minute of event time."""
    delta_counts = collections.Counter(_minute(t) for t in event_times_s.tolist()) if len(event_times_s) else {}
    rows = []
    minutes = sorted({w["minute"] for w in sent_by_minute} | set(delta_counts))
    sent = {w["minute"]: w for w in sent_by_minute}
    for m in minutes:
        w = sent.get(m, {})
        over = w.get("over_threshold")
        in_delta = int(delta_counts.get(m, 0))
        rows.append({"minute": m, "sent": w.get("sent"), "over_threshold": over, "in_delta": in_delta,
                     "difference": (in_delta - over) if over is not None else None})
    return rows


# ---- Delta reads (delta-rs) -----------------------------------------------------------------------
def _to_epoch(col) -> np.ndarray:
    """A pyarrow timestamp column (naive = UTC) as float epoch seconds."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if len(col) == 0:
        return np.array([], dtype=float)
    micros = pc.cast(pc.cast(col, pa.timestamp("us")), pa.int64())
    return micros.to_numpy(zero_copy_only=False).astype(float) / 1e6


def _epoch_list(col) -> list[float | None]:
    """A pyarrow timestamp column (naive = UTC) as epoch seconds, None where NULL."""
    import pyarrow as pa
    import pyarrow.compute as pc

    micros = pc.cast(pc.cast(col, pa.timestamp("us")), pa.int64()).to_pylist()
    return [None if m is None else m / 1e6 for m in micros]


def read_high_value(path: Path):
    """transaction_id, event_time (epoch s), batch_id of every row, or empty arrays."""
    from pipeline.read.readers import read_columns

    if not (path / "_delta_log").is_dir():
        return [], np.array([]), np.array([], dtype=np.int64)
    t = read_columns(path, [TRANSACTION_ID, EVENT_TIME, "batch_id"])
    return (t.column(TRANSACTION_ID).to_pylist(), _to_epoch(t.column(EVENT_TIME)),
            t.column("batch_id").to_numpy(zero_copy_only=False).astype(np.int64))


def read_batches(path: Path) -> list[dict[str, Any]]:
    """Rows of the run's batch_metrics table (high_value query), every column of the contract's
    ``batch_metrics``; timestamps as epoch seconds; a column an older table lacks is None."""
    from deltalake import DeltaTable

    from pipeline.read.readers import read_columns

    if not (path / "_delta_log").is_dir():
        return []
    table = DeltaTable(str(path))
    present = set(table.schema().to_arrow().names)
    t = read_columns(path, [c for c in columns(BATCH_METRICS) if c in present])
    times = {c: _epoch_list(t.column(c)) for c, kind in TABLES[BATCH_METRICS] if kind == "TIMESTAMP" and c in present}
    rows = t.drop_columns(list(times)).to_pylist()
    out = []
    for i, r in enumerate(rows):
        if r["query"] != HIGH_VALUE_QUERY:
            continue
        out.append({c: (times[c][i] if c in times else r.get(c)) for c in columns(BATCH_METRICS)})
    return sorted(out, key=lambda r: r["batch_id"])
