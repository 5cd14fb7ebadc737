"""Synthetic Delta tables shaped like the job's output, for the dashboard tests and bench.

`write_demo_tables(data_dir, ...)` writes high_value (partitioned by event_date, one
commit per day, time-ordered files like the job's micro-batches), quarantine, sales_agg
(partial rows: each window is split over two "batches", like a window that straddles
two micro-batches), and batch_metrics. Generation is vectorised (pyarrow/numpy) so the
bench can write 50 million high-value rows in a few minutes.

Every table is laid out by `pipeline.contract.tables` (column names, order and types), the
channels come from the contract and every high-value amount is above its threshold: a
fixture the contract would reject cannot test the dashboard. `legacy=True` writes the
tables as the first release did, without the columns added since (`ADDED_COLUMNS`).
"""

from __future__ import annotations

import json
import re
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.contract.fields import CHANNELS as CONTRACT_CHANNELS
from pipeline.contract.fields import DEFAULT_THRESHOLD, is_high_value
from pipeline.contract.tables import ADDED_COLUMNS, PARTITIONS, TABLES
from tests.support.ports import free_port
from tests.support.waiting import wait_for

CATEGORIES = ["electronics", "travel", "jewelry", "grocery", "fashion", "home", "sports", "toys", "books", "health"]
COUNTRIES = ["ES", "DE", "FR", "IT", "PT", "NL", "BE", "AT", "IE", "PL", "SE", "DK", "FI", "CZ", "GR", "HU",
             "RO", "BG", "HR", "SK"]
CHANNELS = list(CONTRACT_CHANNELS)
TS = pa.timestamp("us", tz="UTC")
# Smallest high-value amount in cents: one cent above the contract's threshold.
MIN_HIGH_VALUE_CENTS = int(DEFAULT_THRESHOLD * 100) + 1
assert is_high_value(MIN_HIGH_VALUE_CENTS / 100) and not is_high_value(DEFAULT_THRESHOLD)
_SIMPLE_TYPES = {"STRING": pa.string(), "BIGINT": pa.int64(), "INT": pa.int32(), "DOUBLE": pa.float64(),
                 "TIMESTAMP": TS, "DATE": pa.date32(), "BINARY": pa.binary()}


def arrow_type(sql_type: str) -> pa.DataType:
    """The Arrow type of a contract SQL type (STRING, BIGINT, DECIMAL(18,2), ...)."""
    m = re.fullmatch(r"DECIMAL\((\d+),\s*(\d+)\)", sql_type.upper())
    return pa.decimal128(int(m[1]), int(m[2])) if m else _SIMPLE_TYPES[sql_type.upper()]


def contract_table(name: str, data: dict, *, legacy: bool = False) -> pa.Table:
    """`data` as the contract's table `name`: its columns in order and types; absent columns NULL.

    A key the contract does not know is an error, so the fixtures cannot drift from it."""
    unknown = set(data) - {c for c, _ in TABLES[name]}
    assert not unknown, f"{name}: columns not in the contract: {sorted(unknown)}"
    n = len(next(iter(data.values())))
    cols = [(c, t) for c, t in TABLES[name] if not (legacy and c in ADDED_COLUMNS.get(name, ()))]
    return pa.table({c: pc.cast(pa.array(data[c]) if not isinstance(data[c], pa.Array | pa.ChunkedArray)
                                 else data[c], arrow_type(t), safe=False) if c in data
                     else pa.nulls(n, arrow_type(t)) for c, t in cols})


def _ids(prefix: str, values: np.ndarray) -> pa.Array:
    return pc.binary_join_element_wise(prefix, pc.cast(pa.array(values), pa.string()), "")


def _pick(rng, choices: list[str], n: int) -> pa.Array:
    return pa.DictionaryArray.from_arrays(pa.array(rng.integers(0, len(choices), n), pa.int32()),
                                          pa.array(choices)).cast(pa.string())


def high_value_chunk(rng, start_us: int, end_us: int, n: int, first_id: int) -> pa.Table:
    times = np.sort(rng.integers(start_us, end_us, n))
    cents = rng.integers(MIN_HIGH_VALUE_CENTS, 2_000_000, n)
    amount = pc.cast(pa.array(cents / 100.0), pa.decimal128(18, 2), safe=False)
    et = pa.array(times, TS)
    return contract_table("high_value", {
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
                      metrics_minutes: int = 240, seed: int = 7, target_file_mb: int = 96, legacy: bool = False,
                      log=lambda msg: None) -> dict:
    """Write the four tables under data_dir/delta; returns facts the tests assert on.

    The newest aggregate window ends at `now` and the newest batch started 5 s before it,
    so that window is still filling (not complete) and the one before it is the last
    complete window. metrics_minutes=0 writes no batch_metrics table (a job not started yet).
    """
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
        write_deltalake(delta / "high_value", t, mode="append", partition_by=list(PARTITIONS.values()),
                        target_file_size=target_file_mb * 1024 * 1024)
        written += n
        log(f"high_value: {written:,} rows")
    minutes = agg_minutes if agg_minutes is not None else min(days * 1440, 7 * 1440)
    agg = _sales_agg(rng, end_us, minutes, dims, legacy)
    write_deltalake(delta / "sales_agg", agg, mode="append", target_file_size=target_file_mb * 1024 * 1024)
    log(f"sales_agg: {agg.num_rows:,} rows")
    reasons = ["not JSON", "missing transaction_id", "amount not a number", "timestamp unparseable"]
    write_deltalake(delta / "quarantine", _quarantine(rng, end_us, quarantine_rows, reasons, legacy), mode="append")
    if metrics_minutes:
        write_deltalake(delta / "batch_metrics", _batch_metrics(rng, end_us, metrics_minutes, legacy), mode="append")
    return {"now": now, "high_value_rows": high_value_rows, "agg_rows": agg.num_rows, "quarantine_rows": quarantine_rows,
            "reasons": reasons, "metrics_rows": metrics_minutes, "last_trigger": now - timedelta(seconds=5)}


HV_AMOUNT = float(DEFAULT_THRESHOLD) + 200  # each high-value sale in the aggregates: above the threshold


def _sales_agg(rng, end_us: int, minutes: int, dims: int, legacy: bool) -> pa.Table:
    """One row per (window, category, country), split in two partial rows like two micro-batches."""
    combos = [(c, k) for c in CATEGORIES for k in COUNTRIES][:dims]
    w = np.repeat(np.arange(minutes), len(combos))
    n = len(w)
    ws = end_us - (minutes - w) * 60_000_000
    cat = np.tile([c for c, _ in combos], minutes)
    cty = np.tile([k for _, k in combos], minutes)
    count = rng.integers(20, 400, n)
    hv = rng.integers(0, 5, n)
    amount = count * 55.0 + hv * HV_AMOUNT
    half = count // 2
    parts = []
    for share, batch in ((half, 0), (count - half, 1)):
        frac = share / np.maximum(count, 1)
        parts.append(contract_table("sales_agg", {
            "window_start": pa.array(ws, TS), "window_end": pa.array(ws + 60_000_000, TS),
            "merchant_category": cat, "country": cty, "sales_count": share,
            "sales_amount": np.round(amount * frac, 2),
            "high_value_count": hv if batch == 0 else np.zeros(n, np.int64),
            "high_value_amount": hv * HV_AMOUNT if batch == 0 else np.zeros(n),
            "batch_id": w + batch, "processing_time": pa.array(ws + 60_000_000 * (1 + batch), TS),
        }, legacy=legacy))
    return pa.concat_tables(parts).sort_by("window_start")


def _quarantine(rng, end_us: int, rows: int, reasons: list[str], legacy: bool) -> pa.Table:
    qt = pa.array(np.sort(rng.integers(end_us - 3600_000_000, end_us, rows)), TS)
    return contract_table("quarantine", {
        "raw_value": [f'{{"broken": {i}' for i in range(rows)], "raw_key": [f"P{i}" for i in range(rows)],
        "topic": ["transactions"] * rows, "kafka_partition": [i % 3 for i in range(rows)],
        "kafka_offset": list(range(rows)), "ingest_time": qt, "arrival_time": qt,
        "reason": [reasons[i % len(reasons)] for i in range(rows)], "batch_id": list(range(rows)),
        "wire_format": [("json", "avro")[i % 2] for i in range(rows)],
        "raw_bytes": [f'{{"broken": {i}'.encode() for i in range(rows)],
    }, legacy=legacy)


def _batch_metrics(rng, end_us: int, m: int, legacy: bool) -> pa.Table:
    """One batch per minute up to now, the last one 5 s before `now`; the newest half of the
    batches carry duplicates_dropped / avro_rows (older rows NULL, as before those columns existed)."""
    trig = end_us - (m - 1 - np.arange(m)) * 60_000_000 - 5_000_000
    inputs = rng.integers(100_000, 700_000, m)
    newer = np.arange(m) >= m // 2
    return contract_table("batch_metrics", {
        "query": ["high_value"] * m, "batch_id": np.arange(m), "trigger_time": pa.array(trig, TS),
        "duration_s": rng.uniform(5, 40, m), "trigger_interval_s": np.full(m, 60.0), "input_rows": inputs,
        "valid_rows": inputs - 3, "high_value_rows": inputs // 40, "quarantined_rows": np.full(m, 3),
        "agg_rows": np.full(m, 400), "offsets_behind": rng.integers(0, 50_000, m),
        "event_lag_s": rng.uniform(1, 20, m), "max_event_time": pa.array(trig - 2_000_000, TS),
        "end_offsets": [json.dumps({"0": int(i) * 1000, "1": int(i) * 1000, "2": int(i) * 1000}) for i in range(m)],
        "duplicates_dropped": pa.array([int(i % 7) if new else None for i, new in enumerate(newer)], pa.int64()),
        "avro_rows": pa.array([int(v) // 2 if new else None for v, new in zip(inputs, newer, strict=True)], pa.int64()),
    }, legacy=legacy)


# ---- processes for the real-browser tests: Chromium, the app and a local OIDC provider -----------
CHROMIUM = "/usr/bin/chromium"  # Debian's (`make browser`)
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]


@contextmanager
def launched_chromium():
    """Headless Chromium driven by Playwright; closed on exit."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def _http_ok(url: str) -> bool:
    import urllib.request

    try:
        return urllib.request.urlopen(url, timeout=1).status == 200
    except OSError:
        return False


@contextmanager
def running_streamlit(data: Path, port: int, *, secrets_file: Path | None = None, env: dict | None = None):
    """`streamlit run streamlit_app.py` on 127.0.0.1:`port` with TORMENTA_* `env` (and a secrets file);
    yields its URL once the health endpoint answers; stopped (process group) on exit."""
    import os
    import sys

    from pipeline.procs.child import Child

    root = Path(__file__).resolve().parents[2]
    full_env = dict(os.environ, TORMENTA_DATA_DIR=str(data), **{f"TORMENTA_{k.upper()}": v for k, v in (env or {}).items()})
    full_env.setdefault("TORMENTA_BOOTSTRAP_SERVERS", f"127.0.0.1:{free_port()}")  # nothing listens there
    cmd = [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port", str(port),
           "--server.address", "127.0.0.1", "--server.headless", "true", "--server.fileWatcherType", "none",
           "--browser.gatherUsageStats", "false"]
    if secrets_file is not None:
        cmd += ["--secrets.files", str(secrets_file)]
    app = Child("app", cmd, data / f"streamlit-{port}.log", env=full_env, cwd=root).start()
    url = f"http://127.0.0.1:{port}"

    try:
        wait_for(lambda: _http_ok(f"{url}/_stcore/health"), 60, "streamlit's health endpoint", process=app,
                 log=app.log_path)
        yield url
    finally:
        app.stop(15, linger=5)



def settle(page, charts: bool = False, timeout_ms: int = 30_000) -> None:
    """Wait until the page's script run has finished (no status widget) and, with charts, every
    Plotly chart has drawn."""
    page.wait_for_function("() => !document.querySelector('[data-testid=stStatusWidget]')", timeout=timeout_ms)
    if charts:
        page.wait_for_function("() => [...document.querySelectorAll('.js-plotly-plot')].every("
                               "p => p._fullLayout && p.querySelector('.main-svg'))", timeout=timeout_ms)


def running_app(data: Path, **env: str):
    """`streamlit run` on a free loopback port with TORMENTA_* env; stopped (process group) on exit."""
    return running_streamlit(data, free_port(), env=env)


def open_report(path: Path, screenshot: Path) -> dict:
    """Open a load-test report file in headless Chromium, wait for every Plotly chart, screenshot it;
    returns what the page showed (charts drawn, headline texts, console errors)."""
    with launched_chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        # Any request leaving the file would mean the report is not self-contained.
        page.route("http*://**", lambda route: (errors.append("network: " + route.request.url), route.abort()))
        page.goto(path.as_uri(), wait_until="load")
        # every chart has drawn its SVG: the page is complete, nothing left to wait for
        page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot .main-svg').length >= 12",
                               timeout=60_000)
        page.screenshot(path=str(screenshot), full_page=True)
        return {"charts": page.locator(".js-plotly-plot").count(),
                "max_rate": page.locator("#max-rate").inner_text(),
                "stage": page.locator("#limiting-stage").inner_text(),
                "reconciliation": page.locator("#reconciliation-verdict").inner_text(),
                "verdict_rows": page.locator("table.verdicts tbody tr").count(),
                "errors": errors}


@contextmanager
def oidc_provider(port: int, users: list[dict], log_dir: Path):
    """A real OpenID Connect provider process (`oidc-provider-mock`) on 127.0.0.1:`port`.

    Each user is a claims dict with "sub" (e.g. email and groups); the authorize form offers
    them as one-click buttons. Any client id/secret is accepted. Yields the issuer URL."""
    import json
    import os
    import sys

    from pipeline.procs.child import Child

    cmd = [sys.executable, "-m", "oidc_provider_mock", "--host", "127.0.0.1", "--port", str(port)]
    for user in users:
        cmd += ["--user-claims", json.dumps(user)]
    provider = Child("oidc", cmd, log_dir / f"oidc-{port}.log", env=dict(os.environ, NO_COLOR="1")).start()
    issuer = f"http://127.0.0.1:{port}"

    try:
        wait_for(lambda: _http_ok(f"{issuer}/.well-known/openid-configuration"), 30,
                 "the OIDC provider's discovery document", process=provider, log=provider.log_path)
        yield issuer
    finally:
        provider.stop(15, linger=5)
