"""Every ready question gives the same rows through delta-rs (the SQL page's engine) as through Spark
SQL, on tables the real job wrote: real broker, real Spark job (`run_job(once=True)`), then each
question in both engines, rows compared as sets (floating-point sums to 9 significant digits).

The command line is checked end to end once per engine (`python -m pipeline sql --engine
spark|delta-rs --format csv`, one JVM start); the other questions run in the test's Spark
session through the same function the command uses (`pipeline.sql.cli.spark_query`).
"""

from __future__ import annotations

import csv
import io
import os
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipeline.job.runner import run_job
from pipeline.sql import output
from pipeline.sql.check import check_query
from pipeline.sql.cli import spark_query
from pipeline.sql.engine import SqlEngine
from pipeline.sql.questions import BY_KEY, QUESTIONS
from tests.support.stack import produce

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
CATEGORIES = ["electronics", "travel", "jewelry", "grocery"]
COUNTRIES = ["ES", "DE", "FR", "IT", None]


def records(n: int, now: datetime, seed: int = 22) -> list:
    """Contract transactions over the last 26 hours (about a third above the threshold) and some garbage."""
    rng = random.Random(seed)
    out: list = []
    for i in range(n):
        ts = now - timedelta(seconds=rng.uniform(0, 26 * 3600))
        tx = {"transaction_id": f"T{i}", "person_id": f"P{rng.randrange(200)}", "merchant_id": f"M{rng.randrange(40)}",
              "amount": round(rng.choice([rng.uniform(1, 1500), rng.uniform(1500.01, 9000)]), 2),
              "timestamp": ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "merchant_category": rng.choice(CATEGORIES),
              "channel": rng.choice(["pos", "online", "atm"])}
        country = rng.choice(COUNTRIES)
        if country:
            tx["country"] = country
        out.append(tx)
    out += ["not json at all", '{"transaction_id": "x"}', '{"transaction_id": "y", "amount": "many"}'] * 4
    return out


@pytest.fixture(scope="module")
def job_data(broker, tmp_path_factory, spark_session):
    import uuid

    from pipeline.kafka.topic import ensure_topic

    suffix = uuid.uuid4().hex[:8]
    settings = broker.replace(data_dir=tmp_path_factory.mktemp("sql-agree") / "data", topic=f"tx-{suffix}",
                              control_topic=f"ctl-{suffix}", status_topic=f"status-{suffix}",
                              trigger_interval=1.0, compact_every=0, sql_timeout=600.0)
    ensure_topic(settings)
    produce(settings, records(3_000, datetime.now(UTC)))
    run_job(settings, once=True)
    return settings


def normalised(table) -> tuple[list[str], list[tuple]]:
    """(column names, rows as sorted tuples of text; floats to 9 significant digits)."""
    def cell(v):
        return f"{v:.9g}" if isinstance(v, float) else output.cell(v)

    rows = sorted(tuple(cell(v) for v in row.values()) for row in table.to_pylist())
    return list(table.column_names), rows


def both(settings, spark, sql: str):
    engine = SqlEngine(settings, workers=1)
    try:
        delta = engine.run(sql, max_rows=100_000).table
    finally:
        engine.close()
    table, truncated, _ = spark_query(spark, settings, check_query(sql, "spark"), 100_000)
    assert not truncated
    return normalised(delta), normalised(table)


def _hour() -> datetime:
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


@pytest.mark.parametrize("key", [q.key for q in QUESTIONS])
def test_every_ready_question_gives_the_same_rows_in_both_engines(job_data, spark_session, key):
    sql = BY_KEY[key].sql
    for _ in range(2):  # the questions start at whole hours: an hour turning between the two runs is retried
        hour = _hour()
        (d_cols, d_rows), (s_cols, s_rows) = both(job_data, spark_session, sql)
        if hour == _hour():
            break
    assert d_cols == s_cols
    assert d_rows == s_rows, f"{key}: delta-rs {len(d_rows)} rows, Spark {len(s_rows)} rows"
    if key not in ("sales_per_hour_today",):  # 'today' may have just begun (UTC midnight)
        assert d_rows, f"{key}: no rows — the data does not exercise the question"


def test_the_job_wrote_what_the_questions_read(job_data):
    engine = SqlEngine(job_data, workers=1)
    try:
        counts = {t: engine.run(f"SELECT count(*) AS n FROM {t}").table.column("n")[0].as_py()
                  for t in ("high_value", "quarantine", "sales_agg", "sales_hourly", "batch_metrics")}
    finally:
        engine.close()
    assert counts["quarantine"] == 12 and counts["high_value"] > 500 and counts["batch_metrics"] >= 1
    assert counts["sales_agg"] > 100 and counts["sales_hourly"] > 10, counts


def _cli(settings, engine: str, sql: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TORMENTA_DATA_DIR": str(settings.data_dir), "TORMENTA_SQL_TIMEOUT": "600s"}
    return subprocess.run([sys.executable, "-m", "pipeline", "sql", "--engine", engine, "--format", "csv", sql],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


def test_the_command_line_agrees_with_itself_across_engines(job_data):
    sql = BY_KEY["top_merchants"].sql
    outs = {engine: _cli(job_data, engine, sql) for engine in ("delta-rs", "spark")}
    for engine, out in outs.items():
        assert out.returncode == 0, (engine, out.stderr[-2000:])
    parsed = {engine: list(csv.reader(io.StringIO(out.stdout))) for engine, out in outs.items()}
    assert parsed["delta-rs"][0] == parsed["spark"][0] == ["merchant_id", "high_value_sales", "high_value_amount"]
    assert len(parsed["delta-rs"]) == 21
    for a, b in zip(parsed["delta-rs"][1:], parsed["spark"][1:], strict=True):  # ordered by amount, then id
        assert a[:2] == b[:2] and float(a[2]) == pytest.approx(float(b[2]), rel=1e-9)


def test_a_refused_statement_exits_2_in_both_engines_and_the_tables_are_untouched(job_data):
    engine = SqlEngine(job_data, workers=1)
    try:
        before = engine.run("SELECT count(*) AS n FROM high_value").table.to_pylist()
        for name in ("delta-rs", "spark"):
            out = _cli(job_data, name, "DELETE FROM tormenta.high_value")
            assert out.returncode == 2 and out.stderr.strip().count("\n") == 0, out.stderr
            assert "DELETE statements are not run here" in out.stderr
        assert engine.run("SELECT count(*) AS n FROM high_value").table.to_pylist() == before
    finally:
        engine.close()
