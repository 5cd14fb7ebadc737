"""The delta-rs SQL engine on generated Delta tables: answers, row cap, as of, one-line errors, a
runaway query stopped at the timeout (its worker killed), and the `sql --engine delta-rs` command."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipeline.errors import DataUnavailable
from pipeline.sql.check import QueryRefused
from pipeline.sql.engine import AsOf, QueryError, QueryTimeout, QueryTooBig, SqlEngine
from pipeline.sql.questions import QUESTIONS
from tests.support.app_fixtures import write_demo_tables
from tests.support.stack import make_settings

ROOT = Path(__file__).resolve().parents[2]
RUNAWAY = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("sql")
    facts = write_demo_tables(d, high_value_rows=3_000, days=2, agg_minutes=600, dims=20)
    return d, facts


@pytest.fixture(scope="module")
def engine(data):
    e = SqlEngine(make_settings(data[0], sql_max_rows="500", sql_timeout="20s"))
    yield e
    e.close()


def test_a_query_counts_the_rows_of_the_table(engine, data):
    r = engine.run("SELECT count(*) AS n, count(DISTINCT transaction_id) AS ids FROM tormenta.high_value")
    assert r.table.to_pylist() == [{"n": data[1]["high_value_rows"], "ids": data[1]["high_value_rows"]}]
    assert r.versions == {"high_value": 1} and not r.truncated  # two appends: versions 0 and 1


def test_the_row_cap_cuts_and_says_so(engine):
    r = engine.run("SELECT transaction_id FROM high_value")
    assert r.table.num_rows == 500 and r.truncated and r.max_rows == 500
    exact = engine.run("SELECT transaction_id FROM high_value LIMIT 500")
    assert exact.table.num_rows == 500 and not exact.truncated


def test_as_of_a_version_reads_the_table_as_it_was(engine, data):
    first = engine.run("SELECT count(*) AS n FROM high_value", AsOf(table="high_value", version=0))
    assert first.versions == {"high_value": 0}
    assert first.table.column("n")[0].as_py() == data[1]["high_value_rows"] // 2  # the first of two days
    with pytest.raises(QueryError, match="has no version 99"):
        engine.run("SELECT count(*) FROM high_value", AsOf(table="high_value", version=99))


def _commit_times(engine, table: str) -> dict[int, datetime]:
    """Version -> commit time (UTC) of a table: its commit file's time, which Delta time travel goes by."""
    log = Path(engine.settings.table_uri(table)) / "_delta_log"
    return {int(f.stem): datetime.fromtimestamp(f.stat().st_mtime, UTC) for f in log.glob("*.json")}


def test_as_of_a_time_reads_every_table_as_it_was(engine, data):
    times = _commit_times(engine, "high_value")
    assert times[1] > times[0]  # two appends, one after the other
    sql = "SELECT count(*) AS n FROM high_value"
    first = engine.run(sql, AsOf(time=times[0]))
    assert first.versions == {"high_value": 0}
    assert first.table.column("n")[0].as_py() == data[1]["high_value_rows"] // 2  # the first of two days
    naive = engine.run(sql, AsOf(time=times[0].replace(tzinfo=None)))  # a time without zone is UTC
    assert naive.versions == {"high_value": 0}
    later = engine.run(sql, AsOf(time=times[1] + timedelta(minutes=5)))
    assert later.versions == {"high_value": 1} and later.table.column("n")[0].as_py() == data[1]["high_value_rows"]
    assert later.as_of.label() == f"as of {times[1] + timedelta(minutes=5):%Y-%m-%d %H:%M:%S} UTC"
    # before the table existed: said so, not version 0 (delta-rs alone answers version 0)
    with pytest.raises(QueryError, match=rf"high_value table has no time .*: it was created at "
                                         rf"{times[0]:%Y-%m-%d %H:%M:%S} UTC, after that time"):
        engine.run(sql, AsOf(time=times[0] - timedelta(hours=1)))


def test_a_query_with_no_rows_answers_an_empty_table(engine):
    r = engine.run("SELECT transaction_id, amount FROM high_value WHERE amount < 0")
    assert r.table.num_rows == 0 and r.table.column_names == ["transaction_id", "amount"]
    assert not r.truncated and r.versions == {"high_value": 1}
    assert r.frame().empty and list(r.frame().columns) == ["transaction_id", "amount"]


def test_unknown_column_shows_datafusions_message_in_one_line(engine):
    with pytest.raises(QueryError) as err:
        engine.run("SELECT no_such_column FROM high_value")
    assert "No field named no_such_column" in str(err.value) and "\n" not in str(err.value)


def test_refused_statements_never_reach_a_worker_and_leave_the_tables_alone(engine, data):
    before = engine.run("SELECT count(*) AS n FROM quarantine").table.to_pylist()
    for sql in ("DELETE FROM quarantine", "COPY (SELECT 1) TO '/tmp/x.csv'", "SELECT 1; DELETE FROM quarantine"):
        with pytest.raises(QueryRefused):
            engine.run(sql)
    assert engine.run("SELECT count(*) AS n FROM quarantine").table.to_pylist() == before


def test_a_missing_table_says_how_to_create_it(tmp_path):
    e = SqlEngine(make_settings(tmp_path))
    try:
        with pytest.raises(DataUnavailable, match="sales_hourly does not exist yet.*python -m pipeline job"):
            e.run("SELECT * FROM sales_hourly")
    finally:
        e.close()


def test_a_runaway_query_is_stopped_at_the_timeout_and_the_next_query_runs(engine):
    engine.warm()
    started = time.monotonic()
    with pytest.raises(QueryTimeout, match="ran longer than 2 seconds .* was stopped"):
        engine.run(RUNAWAY, timeout=2)
    assert time.monotonic() - started < 10
    assert engine.run("SELECT count(*) AS n FROM batch_metrics").table.num_rows == 1  # a fresh worker answers


def test_the_killed_worker_is_gone(data):
    """The timeout really stops the work: the worker process that ran it no longer exists."""
    e = SqlEngine(make_settings(data[0]), workers=1)
    try:
        e.warm()
        pid = e._idle[0].proc.pid
        with pytest.raises(QueryTimeout):
            e.run(RUNAWAY, timeout=1)
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
    finally:
        e.close()


def test_the_memory_pool_bounds_a_big_sort(data):
    e = SqlEngine(make_settings(data[0]), memory_limit="1M")
    try:
        with pytest.raises(QueryTooBig, match="needs more than 1MB of memory"):
            e.run("SELECT * FROM high_value ORDER BY person_id, merchant_id")  # a full sort of 3,000 rows
    finally:
        e.close()
    roomy = SqlEngine(make_settings(data[0]), memory_limit="256M")
    try:
        assert roomy.run("SELECT * FROM high_value ORDER BY person_id, merchant_id").table.num_rows == 3_000
    finally:
        roomy.close()


def test_every_ready_question_runs(engine):
    for q in QUESTIONS:
        if "sales_hourly" in q.sql:  # the demo folder has no hourly summary table
            with pytest.raises(DataUnavailable):
                engine.run(q.sql)
            continue
        r = engine.run(q.sql)
        assert r.table.num_columns >= 2, q.key


def _cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    import os

    env = {**os.environ, "TORMENTA_DATA_DIR": str(data_dir)}
    return subprocess.run([sys.executable, "-m", "pipeline", "sql", "--engine", "delta-rs", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)


def test_command_line_csv_and_table(data):
    out = _cli(data[0], "--format", "csv", "SELECT reason, count(*) AS n FROM tormenta.quarantine GROUP BY reason "
                                            "ORDER BY reason")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "reason,n" and len(lines) == 1 + len(data[1]["reasons"])
    assert sum(int(line.rsplit(",", 1)[1]) for line in lines[1:]) == data[1]["quarantine_rows"]
    table = _cli(data[0], "--limit", "3", "SELECT transaction_id FROM high_value")
    assert table.returncode == 0 and "(3 rows; cut at 3: the query returned more" in table.stdout
    assert "delta-rs read high_value v1" in table.stdout


def test_command_line_refusals_and_errors_exit_2_with_one_line(data):
    for sql, words in (("DROP TABLE high_value", "DROP statements are not run here"),
                       ("SELECT nope FROM high_value", "No field named nope"),
                       ("SELECT * FROM read_parquet('/etc/x')", "read_parquet() reads files")):
        out = _cli(data[0], sql)
        assert out.returncode == 2 and out.stdout == "", (sql, out)
        assert out.stderr.count("\n") == 1 and words in out.stderr, out.stderr
    assert (data[0] / "delta" / "high_value" / "_delta_log").is_dir()


def test_a_worker_retires_after_its_queries_and_a_fresh_one_answers_the_next(data):
    e = SqlEngine(make_settings(data[0]), workers=1, worker_queries=3)
    try:
        e.warm()
        first = e._idle[0].proc.pid
        pids = []
        for _ in range(7):
            assert e.run("SELECT count(*) AS n FROM batch_metrics").table.num_rows == 1
            pids.append(e._idle[0].proc.pid)   # the worker that waits for the next query
        # three answers each: the worker that answered the third is replaced at once
        assert pids[:2] == [first, first] and pids[2] != first and pids[3:5] == [pids[2]] * 2
        assert pids[5] not in (first, pids[2]) and pids[6] == pids[5] and len(e._idle) == 1
        assert not Path(f"/proc/{first}").exists() or "zombie" in Path(f"/proc/{first}/status").read_text().lower()
    finally:
        e.close()
