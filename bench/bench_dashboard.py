"""Dashboard rerun benchmark: p50/p95 server-side rerun time per page with a big high-value table.

    .venv/bin/python bench/bench_dashboard.py                       # 50 M rows, 30 days, 20 reruns/page
    .venv/bin/python bench/bench_dashboard.py --rows 2000000 --days 5 --runs 10
    .venv/bin/python bench/bench_dashboard.py --data /tmp/tormenta-bench   # keep/reuse the generated tables

It writes Delta tables shaped like the job's (high_value partitioned by event_date, one
commit per day, files of about --file-mb MB; sales_agg with every category x country per
minute as two partial rows; quarantine; batch_metrics) with `deltalake.write_deltalake`,
then times `AppTest.run()` of every page: "warm" = the reruns a user triggers (the
page-layer st.cache_data TTLs in force), "cold" = caches cleared before each run (every
read hits Delta). Each figure is printed next to the rerun time of an empty page measured
in the same run, the AppTest overhead reference.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.contract.fields import AMOUNT  # noqa: E402
from pipeline.contract.tables import HIGH_VALUE  # noqa: E402

SCENARIOS = [
    ("Overview", "pages/overview.py", []),
    ("Pipeline", "pages/pipeline_health.py", []),
    ("Storm control (broker down)", "pages/storm_control.py", []),
    ("Live sales, last hour", "pages/live_sales.py", []),
    ("Live sales, last 24 h / 5 min", "pages/live_sales.py",
     [("selectbox", "sales_range", "Last 24 hours"), ("button_group", "sales_bucket", "5 minutes")]),
    ("Explorer, last hour", "pages/explorer.py", []),
    ("Explorer, 7 days by amount p.3", "pages/explorer.py",
     [("selectbox", "hv_range", "Last 7 days"), ("selectbox", "hv_sort", AMOUNT), ("number_input", "hv_page", 3)]),
]


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(q * (len(s) - 1)))))]


def generate(data: Path, rows: int, days: int, file_mb: int) -> None:
    from tests.support.app_fixtures import write_demo_tables

    t0 = time.perf_counter()
    facts = write_demo_tables(data, high_value_rows=rows, days=days, agg_minutes=days * 1440, dims=200,
                              quarantine_rows=5_000, metrics_minutes=days * 1440, target_file_mb=file_mb,
                              log=lambda m: print(f"  {m}", flush=True))
    (data / "bench-facts.txt").write_text(f"{rows} {days}\n")
    print(f"generated in {time.perf_counter() - t0:.0f} s: {facts['high_value_rows']:,} high-value rows, "
          f"{facts['agg_rows']:,} aggregate rows", flush=True)


def time_page(app: str, page: str, actions, runs: int, cold: bool) -> list[float]:
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    st.cache_data.clear()
    st.cache_resource.clear()
    at = AppTest.from_file(app, default_timeout=120)
    at.run()
    at.switch_page(page)
    at.run()
    for kind, key, value in actions:
        getattr(at, kind)(key=key).set_value(value)
        at.run()
    if at.exception:
        raise SystemExit(f"{page} raised: {at.exception[0].value}")
    out = []
    for _ in range(runs):
        if cold:
            st.cache_data.clear()
        t = time.perf_counter()
        at.run()
        out.append((time.perf_counter() - t) * 1000)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=50_000_000, help="high-value rows (default 50 M)")
    ap.add_argument("--days", type=int, default=30, help="days the rows span, ending now (default 30)")
    ap.add_argument("--runs", type=int, default=20, help="timed reruns per page and mode (default 20)")
    ap.add_argument("--file-mb", type=int, default=128, help="target Parquet file size (default 128 MB)")
    ap.add_argument("--data", type=Path, help="keep the tables here and reuse them when rows/days match")
    args = ap.parse_args()
    if not 1_000 <= args.rows <= 500_000_000 or not 1 <= args.days <= 31 or not 3 <= args.runs <= 1000:
        ap.error("rows 1k..500M, days 1..31, runs 3..1000")

    data = args.data or Path(tempfile.mkdtemp(prefix="tormenta-bench-"))
    facts = data / "bench-facts.txt"
    if not (facts.exists() and facts.read_text().split() == [str(args.rows), str(args.days)]):
        shutil.rmtree(data / "delta", ignore_errors=True)
        data.mkdir(parents=True, exist_ok=True)
        print(f"writing {args.rows:,} high-value rows over {args.days} days into {data} ...", flush=True)
        generate(data, args.rows, args.days, args.file_mb)
    else:
        print(f"reusing the tables in {data}")
    files = len(list((data / "delta" / HIGH_VALUE).rglob("*.parquet")))
    size = sum(f.stat().st_size for f in (data / "delta").rglob("*.parquet")) / 2**30
    print(f"{HIGH_VALUE}: {files} Parquet files; all tables {size:.1f} GiB on disk")

    os.environ["TORMENTA_DATA_DIR"] = str(data)
    os.environ["TORMENTA_BOOTSTRAP_SERVERS"] = "127.0.0.1:9"  # nothing listens: the broker-down path
    os.environ.setdefault("STREAMLIT_LOGGER_LEVEL", "error")
    import logging

    logging.getLogger("streamlit").setLevel(logging.ERROR)
    app = str(ROOT / "streamlit_app.py")

    empty = Path(tempfile.mkdtemp(prefix="tormenta-bench-empty-")) / "app.py"
    empty.write_text("import streamlit as st\nst.title('empty')\n")
    ref = []
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(empty))
    at.run()
    for _ in range(args.runs):
        t = time.perf_counter()
        at.run()
        ref.append((time.perf_counter() - t) * 1000)
    print(f"\nreference: AppTest rerun of an empty page p50 {pct(ref, .5):.0f} ms\n")
    print(f"{'page':34} {'warm p50':>9} {'warm p95':>9} {'cold p50':>9} {'cold p95':>9}   (ms, {args.runs} reruns)")
    worst = 0.0
    for label, page, actions in SCENARIOS:
        warm = time_page(app, page, actions, args.runs, cold=False)
        cold = time_page(app, page, actions, args.runs, cold=True)
        worst = max(worst, pct(warm, .95))
        print(f"{label:34} {pct(warm, .5):9.0f} {pct(warm, .95):9.0f} {pct(cold, .5):9.0f} {pct(cold, .95):9.0f}",
              flush=True)
    print(f"\nworst warm p95: {worst:.0f} ms (target <= 300 ms); median of the empty-page reference "
          f"{statistics.median(ref):.0f} ms")
    if not args.data:
        shutil.rmtree(data, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
