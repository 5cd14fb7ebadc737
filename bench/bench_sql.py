"""SQL page benchmark: each ready question on 10 million high-value rows, delta-rs next to Spark SQL.

    .venv/bin/python bench/bench_sql.py                          # 10 M rows over 7 days, 10 runs per question
    .venv/bin/python bench/bench_sql.py --rows 1000000 --runs 5
    .venv/bin/python bench/bench_sql.py --data /tmp/tormenta-sql-bench   # keep/reuse the generated tables
    .venv/bin/python bench/bench_sql.py --no-spark               # delta-rs only

The tables are written straight into Delta with `deltalake.write_deltalake` (no Kafka, no job):
high_value partitioned by event_date, one commit per day; sales_agg with every category x
country per minute as two partial rows; sales_hourly rolled up from it; quarantine;
batch_metrics — shaped like the job's (the generator of the dashboard tests and benches).

delta-rs: each question through `SqlEngine.run`, as the SQL page runs it (checker, warm worker
process, Delta log refresh, Arrow transfer back); one warm-up run, then --runs timed runs.
Spark SQL: the same text in one local Spark session (`pipeline.sql.cli.spark_query`, the
`sql --engine spark` path without the JVM start), one warm-up, then --spark-runs timed runs.
Printed: p50 and p95 per question and engine, and the goal (delta-rs p95 <= 2 s).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.contract.tables import SALES_AGG, SALES_HOURLY  # noqa: E402

GOAL_S = 2.0


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(q * (len(s) - 1)))))]


def generate(data: Path, rows: int, days: int) -> None:
    import pyarrow as pa
    from deltalake import DeltaTable, write_deltalake

    from pipeline.read.readers import run_sql
    from tests.support.app_fixtures import write_demo_tables

    t0 = time.perf_counter()
    facts = write_demo_tables(data, high_value_rows=rows, days=days, agg_minutes=days * 1440, dims=200,
                              quarantine_rows=5_000, metrics_minutes=days * 1440,
                              log=lambda m: print(f"  {m}", flush=True))
    agg = DeltaTable(str(data / "delta" / SALES_AGG))
    hourly = run_sql("SELECT date_trunc('hour', window_start) AS window_start,"
                     " date_trunc('hour', window_start) + INTERVAL '1 hour' AS window_end, merchant_category, country,"
                     " sum(sales_count) AS sales_count, sum(sales_amount) AS sales_amount,"
                     " sum(high_value_count) AS high_value_count, sum(high_value_amount) AS high_value_amount,"
                     " max(batch_id) AS batch_id, max(processing_time) AS processing_time"
                     " FROM agg GROUP BY 1, 2, 3, 4", agg=agg)
    schema = pa.schema(agg.schema().to_arrow())  # the aggregates' own types (decimal sums, UTC timestamps)
    hourly = hourly.select(schema.names).cast(schema)
    write_deltalake(data / "delta" / SALES_HOURLY, hourly, mode="overwrite")
    (data / "bench-facts.txt").write_text(f"{rows} {days}\n")
    print(f"generated in {time.perf_counter() - t0:.0f} s: {facts['high_value_rows']:,} high-value rows, "
          f"{facts['agg_rows']:,} aggregate rows, {hourly.num_rows:,} hourly rows", flush=True)


def time_delta_rs(settings, questions, runs: int) -> dict[str, list[float]]:
    from pipeline.sql.engine import SqlEngine

    engine = SqlEngine(settings, workers=1)
    out = {}
    try:
        for q in questions:
            engine.run(q.sql)  # warm-up: the worker, the Delta log, the OS page cache
            times = []
            for _ in range(runs):
                t0 = time.perf_counter()
                r = engine.run(q.sql)
                times.append(time.perf_counter() - t0)
            out[q.key] = times
            print(f"  delta-rs {q.key}: {r.table.num_rows} rows, p95 {pct(times, 0.95):.3f} s", flush=True)
    finally:
        engine.close()
    return out


def time_spark(settings, questions, runs: int) -> dict[str, list[float]]:
    from pipeline.job.spark import build_spark
    from pipeline.sql.check import check_query
    from pipeline.sql.cli import spark_query

    spark = build_spark(settings, "tormenta-bench-sql")
    spark.sparkContext.setLogLevel("ERROR")
    out = {}
    try:
        for q in questions:
            checked = check_query(q.sql, "spark")
            spark_query(spark, settings, checked, settings.sql_max_rows)  # warm-up
            times = []
            for _ in range(runs):
                t0 = time.perf_counter()
                table, _, _ = spark_query(spark, settings, checked, settings.sql_max_rows)
                times.append(time.perf_counter() - t0)
            out[q.key] = times
            print(f"  spark {q.key}: {table.num_rows} rows, p95 {pct(times, 0.95):.3f} s", flush=True)
    finally:
        spark.stop()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000, help="high-value rows (default 10,000,000)")
    ap.add_argument("--days", type=int, default=7, help="days the rows span, ending now (default 7)")
    ap.add_argument("--runs", type=int, default=10, help="timed runs per question through delta-rs (default 10)")
    ap.add_argument("--spark-runs", type=int, default=5, help="timed runs per question through Spark SQL (default 5)")
    ap.add_argument("--data", type=Path, help="data folder to keep and reuse (default: a temporary one)")
    ap.add_argument("--no-spark", action="store_true", help="time delta-rs only")
    args = ap.parse_args()

    from pipeline.settings import Settings
    from pipeline.sql.questions import QUESTIONS

    temp = None
    data = args.data
    if data is None:
        temp = Path(tempfile.mkdtemp(prefix="tormenta-sql-bench-"))
        data = temp
    try:
        facts = data / "bench-facts.txt"
        if not (facts.exists() and facts.read_text().split() == [str(args.rows), str(args.days)]):
            if (data / "delta").exists():
                shutil.rmtree(data / "delta")
            print(f"generating {args.rows:,} high-value rows over {args.days} days in {data} ...", flush=True)
            generate(data, args.rows, args.days)
        settings = Settings.from_env({"TORMENTA_DATA_DIR": str(data), "TORMENTA_SQL_TIMEOUT": "600s"})
        print("delta-rs (the SQL page's engine):", flush=True)
        fast = time_delta_rs(settings, QUESTIONS, args.runs)
        slow = {} if args.no_spark else (print("Spark SQL:", flush=True) or time_spark(settings, QUESTIONS,
                                                                                      args.spark_runs))
        print(f"\n{'question':34} {'delta-rs p50':>12} {'p95':>8} {'Spark p50':>10} {'p95':>8}  goal p95 <= {GOAL_S:g} s")
        met = True
        for q in QUESTIONS:
            d = fast[q.key]
            s = slow.get(q.key)
            ok = pct(d, 0.95) <= GOAL_S
            met &= ok
            spark_cols = f"{pct(s, 0.5):10.3f} {pct(s, 0.95):8.3f}" if s else f"{'-':>10} {'-':>8}"
            print(f"{q.key:34} {pct(d, 0.5):12.3f} {pct(d, 0.95):8.3f} {spark_cols}  {'met' if ok else 'NOT met'}")
        spark_runs = "no Spark" if args.no_spark else f"Spark {args.spark_runs} runs"
        print(f"\n{args.rows:,} high-value rows; delta-rs {args.runs} runs, {spark_runs} per question; "
              f"goal {'met for every question' if met else 'NOT met for every question'}")
        return 0
    finally:
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
