"""Job commands: ``job`` (the streaming queries) and ``sql`` (query the Delta tables).

    python -m pipeline job            run until Ctrl-C
    python -m pipeline job --once     catch up with the topic, then stop (tests, backfills)
    python -m pipeline sql [--engine spark|delta-rs] [--format table|csv] "SELECT count(*) FROM tormenta.high_value"
    python -m pipeline spark-submit-args     the --jars/--py-files of `spark-submit ... pipeline/job/submit.py job`
"""

from __future__ import annotations

import argparse
import signal
import threading

from pipeline.contract.tables import BATCH_METRICS, HIGH_VALUE, QUARANTINE, QUERIES, SALES_AGG
from pipeline.settings import Settings


def register(sub) -> None:
    p = sub.add_parser("job", help="run the Spark streaming job")
    p.add_argument("--once", action="store_true", help="process what is in the topic now, then stop")
    p.add_argument("--query", action="append", choices=QUERIES,
                   help="run only this query (repeatable; default both)")
    # Fault injection for the exactly-once tests: the process dies right after this
    # table's commit in its first batch with data, or in its K-th with TABLE@K (exit code 86).
    p.add_argument("--crash-after-commit", type=_crash_point, metavar="TABLE[@K]", help=argparse.SUPPRESS)
    p.set_defaults(func=job_cmd)
    from pipeline.job import classarchive

    classarchive.register(sub)
    p = sub.add_parser("spark-submit-args", help="print the spark-submit options (--jars, --py-files, ...) the job needs")
    p.set_defaults(func=spark_submit_args_cmd)
    from pipeline.sql import cli as sql_cli

    sql_cli.register(sub)  # `sql`: one read-only query through Spark or delta-rs (pipeline.sql.cli)


CRASH_TABLES = (QUARANTINE, HIGH_VALUE, SALES_AGG, BATCH_METRICS)


def _crash_point(text: str) -> tuple[str, int]:
    table, at, k = text.partition("@")
    if table not in CRASH_TABLES or (at and not (k.isdigit() and int(k) >= 1)):
        raise argparse.ArgumentTypeError(f"{text!r}: expected TABLE or TABLE@K, TABLE one of "
                                         f"{', '.join(CRASH_TABLES)}, K a batch number from 1")
    return table, int(k or 1)


def job_cmd(settings: Settings, args) -> int:
    from pipeline.job.runner import run_job
    from pipeline.job.spark import check_storage

    check_storage(settings)  # missing keys, a dead endpoint or bucket: one line in seconds, before Spark

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    metrics, endpoint = _metrics(settings)
    try:
        run_job(settings, once=args.once, stop_event=stop, queries=tuple(args.query or QUERIES),
                stop_spark=True, crash_after=args.crash_after_commit, metrics=metrics)
    finally:
        if endpoint is not None:
            endpoint.close()
    return 0


def _metrics(settings: Settings):
    """(JobMetrics, its endpoint) at TORMENTA_METRICS_PORT + 0; (None, None) when metrics are off."""
    if settings.metrics_port == 0:
        return None, None
    import logging

    from pipeline.metrics import ports
    from pipeline.metrics.job import JobMetrics
    from pipeline.metrics.serve import serve

    metrics = JobMetrics(settings)
    return metrics, serve(settings, ports.JOB, metrics.registry, logging.getLogger("pipeline.job"))


def spark_submit_args_cmd(settings: Settings, args) -> int:
    """For `spark-submit ... $(python -m pipeline spark-submit-args) pipeline/job/submit.py job`."""
    import shlex

    from pipeline.job.spark import spark_submit_args

    print(" ".join(shlex.quote(a) for a in spark_submit_args(settings)))
    return 0
