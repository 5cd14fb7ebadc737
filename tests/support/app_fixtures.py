"""Synthetic Delta tables shaped like the job's output, for the dashboard tests and bench.

`write_demo_tables(data_dir, ...)` writes high_value (partitioned by event_date, one
commit per day, time-ordered files like the job's micro-batches), quarantine, sales_agg
(partial rows: each window is split over two "batches", like a window that straddles
two micro-batches), and batch_metrics. Generation is vectorised (pyarrow/numpy) so the
bench can write 50 million high-value rows in a few minutes.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

CATEGORIES = ["electronics", "travel", "jewelry", "grocery", "fashion", "home", "sports", "toys", "books", "health"]
COUNTRIES = ["ES", "DE", "FR", "IT", "PT", "NL", "BE", "AT", "IE", "PL", "SE", "DK", "FI", "CZ", "GR", "HU",
             "RO", "BG", "HR", "SK"]
CHANNELS = ["web", "pos", "app"]
TS = pa.timestamp("us", tz="UTC")


def _ids(prefix: str, values: np.ndarray) -> pa.Array:
    return pc.binary_join_element_wise(prefix, pc.cast(pa.array(values), pa.string()), "")


def _pick(rng, choices: list[str], n: int) -> pa.Array:
    return pa.DictionaryArray.from_arrays(pa.array(rng.integers(0, len(choices), n), pa.int32()),
                                          pa.array(choices)).cast(pa.string())


def high_value_chunk(rng, start_us: int, end_us: int, n: int, first_id: int) -> pa.Table:
    times = np.sort(rng.integers(start_us, end_us, n))
    cents = rng.integers(150_001, 2_000_000, n)
    amount = pc.cast(pa.array(cents / 100.0), pa.decimal128(18, 2), safe=False)
    et = pa.array(times, TS)
    return pa.table({
        "transaction_id": _ids("tx-", np.arange(first_id, first_id + n)),
        "person_id": _ids("P", rng.integers(1, 200_000, n)),
        "merchant_id": _ids("M", rng.integers(1, 5_000, n)),
        "amount": amount,
        "currency": pa.array(["EUR"] * n) if n < 1000 else pc.cast(pa.DictionaryArray.from_arrays(
            pa.array(np.zeros(n, np.int32)), pa.array(["EUR"])), pa.string()),
        "event_time": et,
        "merchant_category": _pick(rng, CATEGORIES, n),
        "country": _pick(rng, COUNTRIES, n),
        "channel": _pick(rng, CHANNELS, n),
        "kafka_partition": pa.array(rng.integers(0, 3, n), pa.int32()),
        "kafka_offset": pa.array(np.arange(first_id, first_id + n), pa.int64()),
        "ingest_time": et,
        "processing_time": pa.array(times + 30_000_000, TS),
        "batch_id": pa.array((times - start_us) // 60_000_000, pa.int64()),
        "event_date": pc.cast(et, pa.date32()),
    })


def write_demo_tables(data_dir: Path, *, high_value_rows: int = 2_000, days: int = 2, now: datetime | None = None,
                      agg_minutes: int | None = None, dims: int = 40, quarantine_rows: int = 50,
                      metrics_minutes: int = 240, seed: int = 7, target_file_mb: int = 96,
                      log=lambda msg: None) -> dict:
    """Write the four tables under data_dir/delta; returns facts the tests assert on."""
    from deltalake import write_deltalake

    rng = np.random.default_rng(seed)
    now = (now or datetime.now(UTC)).replace(second=0, microsecond=0)
    delta = Path(data_dir) / "delta"
    end_us = int(now.timestamp() * 1_000_000)
    start = now - timedelta(days=days)
    per_day = max(1, high_value_rows // days)
    written = 0
    # high_value: one append per day (ordered like micro-batches), the last day ends at `now`
    for d in range(days):
        lo = start + timedelta(days=d)
        hi = lo + timedelta(days=1)
        n = per_day if d < days - 1 else high_value_rows - written
        t = high_value_chunk(rng, int(lo.timestamp() * 1e6), min(int(hi.timestamp() * 1e6), end_us), n, written)
        write_deltalake(delta / "high_value", t, mode="append", partition_by=["event_date"],
                        target_file_size=target_file_mb * 1024 * 1024)
        written += n
        log(f"high_value: {written:,} rows")

    # sales_agg: one row per (window, category, country) split in two partial rows
    minutes = agg_minutes if agg_minutes is not None else min(days * 1440, 7 * 1440)
    combos = [(c, k) for c in CATEGORIES for k in COUNTRIES][:dims]
    w = np.repeat(np.arange(minutes), len(combos))
    n = len(w)
    ws = end_us - (minutes - w) * 60_000_000
    cat = np.tile([c for c, _ in combos], minutes)
    cty = np.tile([k for _, k in combos], minutes)
    count = rng.integers(20, 400, n)
    hv = rng.integers(0, 5, n)
    amount = count * 55.0 + hv * 1700.0
    half = count // 2
    parts = []
    for share, batch in ((half, 0), (count - half, 1)):
        frac = share / np.maximum(count, 1)
        parts.append(pa.table({
            "window_start": pa.array(ws, TS), "window_end": pa.array(ws + 60_000_000, TS),
            "merchant_category": pa.array(cat), "country": pa.array(cty),
            "sales_count": pa.array(share, pa.int64()),
            "sales_amount": pc.cast(pa.array(np.round(amount * frac, 2)), pa.decimal128(28, 2), safe=False),
            "high_value_count": pa.array(hv if batch == 0 else np.zeros(n, np.int64), pa.int64()),
            "high_value_amount": pc.cast(pa.array(hv * 1700.0 if batch == 0 else np.zeros(n)), pa.decimal128(28, 2),
                                         safe=False),
            "batch_id": pa.array(w + batch, pa.int64()),
            "processing_time": pa.array(ws + 60_000_000 * (1 + batch), TS),
        }))
    agg = pa.concat_tables(parts).sort_by("window_start")
    write_deltalake(delta / "sales_agg", agg, mode="append", target_file_size=target_file_mb * 1024 * 1024)
    log(f"sales_agg: {agg.num_rows:,} rows")

    # quarantine
    reasons = ["not JSON", "missing transaction_id", "amount not a number", "timestamp unparseable"]
    qt = np.sort(rng.integers(end_us - 3600_000_000, end_us, quarantine_rows))
    qreason = [reasons[i % len(reasons)] for i in range(quarantine_rows)]
    write_deltalake(delta / "quarantine", pa.table({
        "raw_value": pa.array([f'{{"broken": {i}' for i in range(quarantine_rows)]),
        "raw_key": pa.array([f"P{i}" for i in range(quarantine_rows)]),
        "topic": pa.array(["transactions"] * quarantine_rows),
        "kafka_partition": pa.array([i % 3 for i in range(quarantine_rows)], pa.int32()),
        "kafka_offset": pa.array(list(range(quarantine_rows)), pa.int64()),
        "ingest_time": pa.array(qt, TS), "arrival_time": pa.array(qt, TS),
        "reason": pa.array(qreason), "batch_id": pa.array(list(range(quarantine_rows)), pa.int64()),
    }), mode="append")

    # batch_metrics: one batch per minute up to now, the last one a few seconds ago
    m = metrics_minutes
    trig = end_us - (m - 1 - np.arange(m)) * 60_000_000 - 5_000_000
    inputs = rng.integers(100_000, 700_000, m)
    write_deltalake(delta / "batch_metrics", pa.table({
        "query": pa.array(["high_value"] * m), "batch_id": pa.array(np.arange(m), pa.int64()),
        "trigger_time": pa.array(trig, TS), "duration_s": pa.array(rng.uniform(5, 40, m)),
        "trigger_interval_s": pa.array(np.full(m, 60.0)), "input_rows": pa.array(inputs, pa.int64()),
        "valid_rows": pa.array(inputs - 3, pa.int64()), "high_value_rows": pa.array(inputs // 40, pa.int64()),
        "quarantined_rows": pa.array(np.full(m, 3), pa.int64()), "agg_rows": pa.array(np.full(m, 400), pa.int64()),
        "offsets_behind": pa.array(rng.integers(0, 50_000, m), pa.int64()),
        "event_lag_s": pa.array(rng.uniform(1, 20, m)), "max_event_time": pa.array(trig - 2_000_000, TS),
        "end_offsets": pa.array([json.dumps({"0": int(i) * 1000, "1": int(i) * 1000, "2": int(i) * 1000})
                                 for i in range(m)]),
    }), mode="append")
    return {"now": now, "high_value_rows": high_value_rows, "agg_rows": agg.num_rows, "quarantine_rows": quarantine_rows,
            "reasons": reasons, "metrics_rows": m}
