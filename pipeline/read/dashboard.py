"""Page-facing logic of the dashboard: choices, bounds, conversions and summaries.

The Streamlit pages only lay out what these functions return, so every number on a page
can be checked by a unit test without Streamlit. Nothing here imports streamlit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pandas as pd

from pipeline.contract.wire import AVRO, JSON
from pipeline.errors import SettingsError
from pipeline.read.units import compact
from pipeline.settings import Settings, format_duration

TIME_RANGES: dict[str, int] = {
    "Last 15 minutes": 900, "Last hour": 3600, "Last 6 hours": 6 * 3600,
    "Last 24 hours": 86400, "Last 7 days": 7 * 86400,
}
BUCKETS: dict[str, int] = {"1 minute": 60, "5 minutes": 300, "1 hour": 3600}

# Storm control bounds (the emulator validates again; these keep the widgets honest)
RATE_MAX = 200_000          # tx/s offered on the page
TICK_MIN_MS, TICK_MAX_MS = 10, 10_000
RECORDS_PER_TICK_MAX = 200_000
STATES = ("running", "paused", "stopped")
PROFILE_UNITS = {"to": "tx/s", "from": "tx/s", "at": "seconds", "seconds": "seconds", "factor": "x rate",
                 "every": "seconds", "length": "seconds", "period": "seconds", "start_hour": "hour of day"}


def time_window(label: str, now: datetime | None = None) -> tuple[datetime, datetime]:
    """(start, end) in UTC for a TIME_RANGES label; the end is one minute ahead so a live window is in."""
    if label not in TIME_RANGES:
        raise SettingsError(f"unknown time range {label!r}; allowed: {', '.join(TIME_RANGES)}")
    now = (now or datetime.now(UTC)).astimezone(UTC)
    return now - timedelta(seconds=TIME_RANGES[label]), now + timedelta(minutes=1)


def rate_from_ticks(records_per_tick: int, tick_ms: int) -> float:
    """Transactions per second for `records_per_tick` every `tick_ms` milliseconds."""
    if not 0 <= records_per_tick <= RECORDS_PER_TICK_MAX:
        raise SettingsError(f"records per tick must be 0..{RECORDS_PER_TICK_MAX:,}")
    if not TICK_MIN_MS <= tick_ms <= TICK_MAX_MS:
        raise SettingsError(f"tick interval must be {TICK_MIN_MS}..{TICK_MAX_MS} ms")
    rate = records_per_tick * 1000.0 / tick_ms
    if rate > RATE_MAX:
        raise SettingsError(f"{records_per_tick:,} records every {tick_ms} ms is {rate:,.0f} tx/s; "
                            f"the page allows at most {RATE_MAX:,} tx/s")
    return rate


def records_per_tick(rate: float, tick_ms: int) -> int:
    return int(round(float(rate) * tick_ms / 1000.0))


def clamp_rate(rate: float) -> int:
    return int(min(max(0.0, float(rate or 0)), RATE_MAX))


@dataclass
class SettingRow:
    setting: str
    value: str
    meaning: str


def settings_summary(settings: Settings, topic=None) -> pd.DataFrame:
    """The settings that matter to a business user, with units and what they mean."""
    retention = topic.retention_s if topic is not None and topic.retention_s else settings.retention
    rows = [
        SettingRow("Ingest interval", format_duration(settings.ingest_interval),
                   "How often the emulator sends a burst of transactions (records per tick = rate x tick)"),
        SettingRow("Record lifetime", format_duration(retention),
                   "How long Kafka keeps a transaction; unprocessed older records are lost"),
        SettingRow("Processing interval", format_duration(settings.trigger_interval),
                   "How often the job turns new transactions into Delta rows"),
        SettingRow("High-value threshold", f"{settings.threshold:,} (amount, strictly greater)",
                   "Transactions above this amount land in the high-value table"),
        SettingRow("Aggregation window", format_duration(settings.agg_window),
                   "Width of one window in the sales aggregates"),
        SettingRow("Topic partitions", str(topic.partitions if topic else settings.partitions)
                   + ("" if topic else " (configured; topic not reachable)"), "Parallel lanes of the topic"),
        SettingRow("Topic replication", str(topic.replication) if topic else "unknown (topic not reachable)",
                   "Copies of every record across brokers"),
    ]
    return pd.DataFrame([r.__dict__ for r in rows])


def status_frame(history: list[dict]) -> pd.DataFrame:
    """Emulator status messages as a time series: target vs achieved rate, delivery latency."""
    cols = ["time", "target_rate", "achieved_rate", "latency_p50_ms", "latency_p99_ms", "queue_depth", "failed"]
    if not history:
        return pd.DataFrame({c: [] for c in cols})
    df = pd.DataFrame([{c: h.get(c) for c in cols} for h in history])
    df["time"] = pd.to_datetime(df["time"], utc=True, errors="coerce")
    for c in cols[1:]:
        df[c] = pd.to_numeric(df[c], errors="coerce")
    return df.dropna(subset=["time"]).sort_values("time").reset_index(drop=True)


def headline_rate(emulator_status: dict | None, metrics: pd.DataFrame | None) -> tuple[float | None, str]:
    """Current storm rate (tx/s) and where it comes from: the emulator if it reports, else the job."""
    if emulator_status and emulator_status.get("achieved_rate") is not None:
        return float(emulator_status["achieved_rate"]), "emulator, achieved"
    if metrics is not None and len(metrics):
        last = metrics.iloc[-1]
        interval = float(last.get("trigger_interval_s") or 0)
        if interval > 0:
            return float(last["input_rows"]) / interval, "job, last batch"
    return None, ""


def fmt_count(n) -> str:
    """A count in compact units (4.01 M), so a metric box never cuts it."""
    return compact(n)


def fmt_money(x) -> str:
    """An amount: exact with cents below a million, compact above (4.85 B), so it fits a metric box."""
    if x is None or pd.isna(x):
        return "–"
    return f"{float(x):,.2f}" if abs(float(x)) < 1e6 else compact(x)


def emulator_figures(status: dict) -> list[tuple[str, str]]:
    """(label, value) of the six Storm control boxes for an emulator status, all in compact units."""
    def ms(key: str) -> str:
        return compact(status.get(key) or 0)
    return [
        ("State", str(status.get("state", "?"))),
        ("Target rate", f"{fmt_count(status.get('target_rate'))} tx/s"),
        ("Achieved rate", f"{fmt_count(status.get('achieved_rate'))} tx/s"),
        ("Delivered / failed", f"{fmt_count(status.get('delivered'))} / {fmt_count(status.get('failed'))}"),
        ("Latency p50 / p99", f"{ms('latency_p50_ms')} / {ms('latency_p99_ms')} ms"),
        ("Send queue", f"{fmt_count(status.get('queue_depth'))} records"),
    ]


WIRE_FORMAT_LABELS = {JSON: "JSON", AVRO: "Avro"}


def wire_format_label(emulator_status: dict | None) -> str:
    """The wire format the emulator reports (JSON or Avro); "unknown" with no status or an odd value."""
    value = str((emulator_status or {}).get("wire_format") or "").strip().lower()
    return WIRE_FORMAT_LABELS.get(value, "unknown")


def _count_or_none(value) -> int | None:
    """A count from a metrics cell; NULL (None/NaN/NA, as old rows hold) is None."""
    if value is None or pd.isna(value):
        return None
    return int(value)


# Batch-metrics columns that old rows may hold as NULL (added after the first release): label, column.
BATCH_EXTRAS = (("Avro rows", "avro_rows"), ("Duplicates dropped", "duplicates_dropped"))


def batch_extras(metrics: pd.DataFrame) -> list[tuple[str, str, str]]:
    """(label, last batch, whole range) texts for the optional batch counts; "–" where unknown.

    The range sums only rows that carry the count and says so when some do not."""
    out = []
    for label, column in BATCH_EXTRAS:
        values = metrics[column] if column in metrics else pd.Series([], dtype="float64")
        last = _count_or_none(values.iloc[-1]) if len(values) else None
        known = values.dropna()
        total = "–" if known.empty else fmt_count(int(known.sum()))
        if not known.empty and len(known) < len(values):
            total += f" ({len(known)} of {len(values)} batches report it)"
        out.append((label, fmt_count(last), total))
    return out
