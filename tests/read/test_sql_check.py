"""The analysts' SQL checker: one read-only query over our five tables, everything else refused in one line."""

from __future__ import annotations

import pytest

from pipeline.errors import SettingsError
from pipeline.sql.check import QueryRefused, check_query
from pipeline.sql.questions import QUESTIONS

REFUSED = [
    # (statement, words the one-line refusal must contain)
    ("INSERT INTO high_value SELECT * FROM high_value", "INSERT statements are not run"),
    ("UPDATE high_value SET amount = 1", "UPDATE statements are not run"),
    ("DELETE FROM quarantine", "DELETE statements are not run"),
    ("MERGE INTO high_value USING quarantine ON 1 = 1 WHEN MATCHED THEN DELETE", "MERGE statements are not run"),
    ("DROP TABLE high_value", "DROP statements are not run"),
    ("CREATE TABLE t AS SELECT * FROM high_value", "CREATE TABLE statements are not run"),
    ("CREATE EXTERNAL TABLE e STORED AS CSV LOCATION '/etc/passwd'", "CREATE EXTERNAL TABLE statements are not run"),
    ("CREATE VIEW v AS SELECT 1", "CREATE VIEW statements are not run"),
    ("ALTER TABLE high_value ADD COLUMN x INT", "ALTER statements are not run"),
    ("TRUNCATE TABLE high_value", "TRUNCATE statements are not run"),
    ("COPY (SELECT * FROM high_value) TO '/tmp/out.csv'", "COPY statements are not run"),
    ("SET datafusion.runtime.memory_limit = '100G'", "SET statements are not run"),
    ("EXPLAIN SELECT 1", "EXPLAIN statements are not run"),
    ("SHOW TABLES", "SHOW statements are not run"),
    ("DESCRIBE high_value", "DESCRIBE statements are not run"),
    ("VALUES (1), (2)", "VALUES statements are not run"),
    ("SELECT * INTO copy_of_it FROM high_value", "SELECT ... INTO writes a table"),
    ("SELECT 1; SELECT 2", "2 statements were given; one statement at a time"),
    ("SELECT count(*) FROM high_value; DROP TABLE high_value", "2 statements were given"),
    ("SELECT * FROM read_parquet('/etc/x.parquet')", "the function read_parquet() reads files"),
    ("SELECT * FROM read_csv('/etc/passwd')", "read_csv"),
    ("SELECT read_json('/etc/x')", "the function read_json() reads files"),
    ("SELECT * FROM generate_series(1, 10)", "the table function generate_series(...) is not one of our tables"),
    ("SELECT * FROM '/etc/passwd'", "'/etc/passwd' is not one of our tables"),
    ('SELECT * FROM "/tmp/data/delta/high_value"', "'/tmp/data/delta/high_value' is not one of our tables"),
    ("SELECT * FROM other_table", "'other_table' is not one of our tables"),
    ("SELECT * FROM other.high_value", "other.high_value is not one of our tables"),
    ("SELECT * FROM cat.tormenta.high_value", "is not one of our tables"),
    ("SELECT * FROM high_value WHERE amount > (SELECT max(x) FROM secrets)", "'secrets' is not one of our tables"),
    ("", "the query is empty"),
    ("   ;  ", "the query is empty"),
]


@pytest.mark.parametrize("sql,words", REFUSED)
def test_every_forbidden_kind_is_refused_in_one_line_saying_what_is_allowed(sql, words):
    with pytest.raises(QueryRefused) as err:
        check_query(sql)
    message = str(err.value)
    assert words in message and "\n" not in message
    assert message.endswith("allowed: one SELECT or WITH ... SELECT query over high_value, quarantine, sales_agg, "
                            "sales_hourly, batch_metrics")
    assert isinstance(err.value, SettingsError)  # the command line exits 2


def test_spark_file_paths_are_refused_in_the_spark_dialect():
    for sql in ("SELECT * FROM parquet.`/tmp/x`", "SELECT * FROM delta.`/tmp/data/delta/high_value`",
                "SELECT * FROM json.`/etc/x`"):
        with pytest.raises(QueryRefused, match="is not one of our tables"):
            check_query(sql, "spark")


@pytest.mark.parametrize("sql", ["selec 1", "SELECT FROM", "SELECT * FROM high_value LIMIT", "SELECT (1"])
def test_bad_sql_is_a_syntax_error_in_one_line(sql):
    with pytest.raises(QueryRefused) as err:
        check_query(sql)
    assert str(err.value).startswith("syntax error: ") and "\n" not in str(err.value)


def test_qualified_names_are_read_as_the_bare_table_names():
    checked = check_query('SELECT tormenta.high_value.amount, q.reason FROM tormenta.high_value '
                          'JOIN "tormenta"."quarantine" q ON q.batch_id = high_value.batch_id')
    assert checked.sql == ('SELECT high_value.amount, q.reason FROM high_value '
                           'JOIN "quarantine" q ON q.batch_id = high_value.batch_id')
    assert checked.tables == ("high_value", "quarantine")


def test_queries_that_only_read_pass_unchanged():
    cases = {
        "SELECT count(*) FROM batch_metrics": ("batch_metrics",),
        "(SELECT 1)": (),
        "SELECT 1 UNION ALL SELECT count(*) FROM sales_hourly": ("sales_hourly",),
        "WITH x AS (SELECT * FROM sales_agg) SELECT * FROM x JOIN high_value USING (country)": ("high_value", "sales_agg"),
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT * FROM r": (),
        "SELECT * FROM unnest([1, 2, 3])": (),
        "SELECT 'DROP TABLE high_value; DELETE FROM x' AS text_only FROM quarantine": ("quarantine",),
    }
    for sql, tables in cases.items():
        checked = check_query(sql)
        assert checked.sql == sql and checked.tables == tables, sql


def test_a_with_name_shadows_nothing_outside_the_query():
    """A WITH name is allowed where it is used; the same name outside its query is still checked."""
    assert check_query("WITH secrets AS (SELECT 1 AS x) SELECT * FROM secrets").tables == ()
    with pytest.raises(QueryRefused, match="'secrets' is not one of our tables"):
        check_query("SELECT * FROM secrets")


def test_every_ready_question_passes_the_checker_in_both_dialects():
    for q in QUESTIONS:
        for engine in ("delta-rs", "spark"):
            assert check_query(q.sql, engine).tables, (q.key, engine)
    assert len(QUESTIONS) >= 6 and len({q.key for q in QUESTIONS}) == len(QUESTIONS)


def test_a_very_long_text_is_refused():
    with pytest.raises(QueryRefused, match="characters long"):
        check_query("SELECT " + "1 + " * 6_000 + "1")
