"""``python -m pipeline sql``: one read-only query over the Delta tables, through Spark or delta-rs.

    python -m pipeline sql "SELECT count(*) FROM tormenta.high_value"                  # Spark SQL (the default)
    python -m pipeline sql --engine delta-rs "SELECT country, count(*) FROM high_value GROUP BY 1"
    python -m pipeline sql --engine delta-rs --format csv "SELECT ..." > out.csv

Both engines take the same statements and refuse the same ones (`pipeline.sql.check`: one
SELECT/WITH over our five tables, named ``x`` or ``tormenta.x``): a refused statement exits 2
with one line before any engine starts, and the tables are untouched. ``delta-rs`` is the SQL
page's engine (`pipeline.sql.engine`): no JVM, ``TORMENTA_SQL_TIMEOUT`` stops a long query,
DataFusion's memory pool and ``TORMENTA_SQL_MAX_ROWS`` bound it. ``spark`` starts a local
Spark session (as the command always did; Spark's own SQL dialect), cancels its jobs at the
same timeout, and reads the same tables registered as ``tormenta.<name>``. Spark stays the
default so the scripts written for the command keep their dialect.

Rows printed: ``--limit`` (default 50 as a table, ``TORMENTA_SQL_MAX_ROWS`` as CSV); when the
query returned more, a note says so (on stderr for CSV, so the file stays clean).
"""

from __future__ import annotations

import sys
import threading

from pipeline.errors import DataUnavailable, SettingsError
from pipeline.settings import Settings, format_duration

ENGINES = ("spark", "delta-rs")
FORMATS = ("table", "csv")


def register(sub) -> None:
    p = sub.add_parser("sql", help="run one read-only SQL query over the Delta tables (Spark or delta-rs)")
    p.add_argument("query", help='one SELECT/WITH, e.g. "SELECT count(*) FROM tormenta.high_value"')
    p.add_argument("--engine", choices=ENGINES, default="spark",
                   help="spark (default: a local Spark session) or delta-rs (DataFusion, no JVM; the SQL page's engine)")
    p.add_argument("--format", choices=FORMATS, default="table", help="an aligned table (default) or CSV")
    p.add_argument("--limit", type=int, default=None,
                   help="rows to print (default 50 as a table, TORMENTA_SQL_MAX_ROWS as CSV)")
    p.set_defaults(func=sql_cmd)


def sql_cmd(settings: Settings, args) -> int:
    from pipeline.sql import output
    from pipeline.sql.check import check_query

    limit = args.limit if args.limit is not None else (50 if args.format == "table" else settings.sql_max_rows)
    if not 1 <= limit <= 1_000_000:
        raise SettingsError(f"--limit={limit} must be a number of rows from 1 to 1000000")
    checked = check_query(args.query, args.engine)  # refused: one line, exit 2, nothing started
    if args.engine == "delta-rs":
        table, truncated, note = _delta_rs(settings, args.query, limit)
    else:
        table, truncated, note = _spark(settings, checked, limit)
    if args.format == "csv":
        sys.stdout.write(output.to_csv(table))
        if truncated:
            print(f"-- cut at {limit:,} rows: the query returned more (--limit, TORMENTA_SQL_MAX_ROWS)", file=sys.stderr)
    else:
        print(output.to_text(table))
        more = f"; cut at {limit:,}: the query returned more (--limit)" if truncated else ""
        print(f"({table.num_rows:,} row{'s' if table.num_rows != 1 else ''}{more}; {note})")
    return 0


def _delta_rs(settings: Settings, sql: str, limit: int):
    from pipeline.sql.engine import SqlEngine

    engine = SqlEngine(settings, workers=1)
    try:
        result = engine.run(sql, max_rows=limit)
    finally:
        engine.close()
    read = ", ".join(f"{name} v{v}" for name, v in result.versions.items()) or "no table"
    return result.table, result.truncated, f"delta-rs read {read} in {result.elapsed_s:.2f} s"


def _spark(settings: Settings, checked, limit: int):
    from pipeline.job.spark import build_spark

    spark = build_spark(settings, "tormenta-sql")
    spark.sparkContext.setLogLevel("OFF")  # an error is said once, in one line, by the caller
    try:
        return spark_query(spark, settings, checked, limit)
    finally:
        spark.stop()


def spark_query(spark, settings: Settings, checked, limit: int):
    """(table, truncated, note) of a checked query in a Spark session (the tables registered
    as tormenta.<name>, bare names through USE tormenta); its jobs are cancelled at the timeout."""
    import time

    from pipeline.contract.tables import DATABASE
    from pipeline.job.tables import register_all
    from pipeline.sql.engine import QueryError, QueryTimeout
    from pipeline.sql.worker import one_line

    registered = {name.split(".", 1)[1] for name in register_all(spark, settings)}
    missing = [n for n in checked.tables if n not in registered]
    if missing:
        raise DataUnavailable(f"The table{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                              f"{'do' if len(missing) > 1 else 'does'} not exist yet; start the job "
                              "(`python -m pipeline job`, or `make run`) and it writes them after one processing interval")
    if registered:
        spark.catalog.setCurrentDatabase(DATABASE)  # bare names work as in delta-rs
    expired = threading.Event()

    def stop() -> None:
        expired.set()
        spark.sparkContext.cancelAllJobs()

    timer = threading.Timer(settings.sql_timeout, stop)
    timer.daemon = True
    started = time.monotonic()
    timer.start()
    try:
        table = spark.sql(checked.sql).limit(limit + 1).toArrow()
    except Exception as exc:  # noqa: BLE001 - Spark's message in one line (parse, analysis, runtime)
        if expired.is_set():
            raise QueryTimeout(f"the query ran longer than {format_duration(settings.sql_timeout)} "
                               "(TORMENTA_SQL_TIMEOUT) and its Spark jobs were cancelled") from None
        raise QueryError(one_line(str(exc).strip().splitlines()[0] if str(exc).strip() else exc)) from None
    finally:
        timer.cancel()
    elapsed = time.monotonic() - started
    truncated = table.num_rows > limit
    return table.slice(0, limit), truncated, f"Spark SQL in {elapsed:.2f} s"
