"""AppTest of the SQL page: every ready question answers with a table and a chart, the query travels
in the page address, errors and refusals are one line, empty tables say how to fill them."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta

import pytest
from streamlit.testing.v1 import AppTest

from pipeline.sql.questions import QUESTIONS
from tests.support.app_fixtures import write_demo_tables
from tests.support.apptest import APP, DEMO_HIGH_VALUE_ROWS, assert_clean, failures, texts, use_env

pytestmark = pytest.mark.usefixtures("release_cached_clients")
PAGE = "pages/sql.py"


def open_sql(query: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=90)
    if query is not None:
        at.query_params["q"] = query
    at.run()
    at.switch_page(PAGE)
    at.run()
    return at


def result_frame(at: AppTest):
    assert at.dataframe, texts(at)
    return at.dataframe[-1].value


def test_the_page_opens_with_the_first_question_answered(monkeypatch, demo_dir):
    use_env(monkeypatch, demo_dir)
    at = open_sql()
    assert_clean(at)
    assert [t.value for t in at.title] == ["SQL"]
    assert at.text_area(key="sql_text").value == QUESTIONS[0].sql
    assert "Delta version read: sales_agg v0" in texts(at)
    assert set(result_frame(at).columns) == {"hour", "sales", "sales_amount", "high_value_sales"}


@pytest.mark.parametrize("question", QUESTIONS, ids=[q.key for q in QUESTIONS])
def test_each_ready_question_answers(monkeypatch, demo_dir, question):
    use_env(monkeypatch, demo_dir)
    at = open_sql()
    at.selectbox(key="sql_question").set_value("(your own query)").run()  # the first question is picked at opening
    at.selectbox(key="sql_question").set_value(question.title).run()
    assert at.text_area(key="sql_text").value == question.sql
    if "sales_hourly" in question.sql:  # the demo folder has no hourly summary yet
        assert_clean(at, allowed=("DataUnavailable",))
        assert "sales_hourly does not exist yet" in texts(at)
        return
    assert_clean(at)
    df = result_frame(at)
    assert len(df) >= 1 and len(df.columns) >= 3
    assert at.get("plotly_chart"), f"{question.key}: no chart"
    assert at.query_params["q"] == question.sql  # the address carries the question


def test_a_link_with_a_query_opens_and_runs_it(monkeypatch, demo_dir):
    use_env(monkeypatch, demo_dir)
    at = open_sql("SELECT count(*) AS n FROM tormenta.high_value")
    assert_clean(at)
    assert at.text_area(key="sql_text").value == "SELECT count(*) AS n FROM tormenta.high_value"
    assert result_frame(at)["n"].tolist() == [DEMO_HIGH_VALUE_ROWS]


def test_a_typed_query_runs_on_the_button(monkeypatch, demo_dir):
    use_env(monkeypatch, demo_dir)
    at = open_sql()
    at.text_area(key="sql_text").set_value("SELECT country, count(*) AS n FROM high_value GROUP BY country "
                                           "ORDER BY n DESC, country").run()
    at.button(key="sql_run").click().run()
    assert_clean(at)
    df = result_frame(at)
    assert list(df.columns) == ["country", "n"] and df["n"].sum() <= DEMO_HIGH_VALUE_ROWS
    assert at.get("plotly_chart")


@pytest.mark.parametrize("sql,shown", [
    ("SELECT no_such_column FROM high_value", "The query failed:** Schema error: No field named no_such_column"),
    ("DROP TABLE high_value", "Refused:** DROP statements are not run here"),
    ("SELECT * FROM read_csv('/etc/passwd')", "Refused:** the function read_csv() reads files"),
    ("SELECT 1; SELECT 2", "Refused:** 2 statements were given"),
    ("selec 1", "Refused:** syntax error"),
])
def test_an_error_is_one_line_never_a_trace(monkeypatch, demo_dir, sql, shown):
    use_env(monkeypatch, demo_dir)
    at = open_sql(sql)
    assert not at.exception
    assert len(at.error) == 1 and shown in at.error[0].value and "\n" not in at.error[0].value
    assert "Traceback" not in at.error[0].value and not at.dataframe
    assert failures(at), "the failed query is recorded"


def test_a_cut_result_says_so(monkeypatch, demo_dir):
    use_env(monkeypatch, demo_dir, sql_max_rows="100")
    at = open_sql("SELECT transaction_id, amount FROM high_value")
    assert_clean(at)
    assert len(result_frame(at)) == 50  # the first page of the 100 rows kept
    assert any("cut at 100 rows (TORMENTA_SQL_MAX_ROWS)" in w.value for w in at.warning)
    assert at.number_input(key="sql_page").label == "Page (of 2)"


def test_as_of_a_version(monkeypatch, demo_dir):
    use_env(monkeypatch, demo_dir)
    at = open_sql("SELECT count(*) AS n FROM high_value")
    at.radio(key="sql_asof_mode").set_value("Version").run()
    at.selectbox(key="sql_asof_table").set_value("high_value").run()
    at.selectbox(key="sql_asof_version").set_value(0).run()
    at.button(key="sql_run").click().run()
    assert_clean(at)
    assert "Delta version read: high_value v0 (high_value as of version 0)" in texts(at)
    assert result_frame(at)["n"].tolist() == [DEMO_HIGH_VALUE_ROWS // 2]  # the first of two days


def test_as_of_a_time(monkeypatch, tmp_path):
    """Every table as it was at a time: high_value's first append is dated an hour back (Delta time travel
    goes by the commit file's time), so half an hour ago it held only its first day."""
    write_demo_tables(tmp_path, high_value_rows=400, days=2, agg_minutes=30, metrics_minutes=10, dims=5)
    first_commit = tmp_path / "delta" / "high_value" / "_delta_log" / f"{0:020d}.json"
    an_hour_ago = time.time() - 3600
    os.utime(first_commit, (an_hour_ago, an_hour_ago))
    use_env(monkeypatch, tmp_path)
    at = open_sql("SELECT count(*) AS n FROM high_value")
    assert result_frame(at)["n"].tolist() == [400]  # latest: both days
    at.radio(key="sql_asof_mode").set_value("Time").run()
    half_hour_ago = (datetime.now(UTC) - timedelta(minutes=30)).replace(tzinfo=None, second=0, microsecond=0)
    at.datetime_input(key="sql_asof_time").set_value(half_hour_ago).run()
    at.button(key="sql_run").click().run()
    assert_clean(at)
    assert f"Delta version read: high_value v0 (as of {half_hour_ago:%Y-%m-%d %H:%M:%S} UTC)" in texts(at)
    assert result_frame(at)["n"].tolist() == [200]  # the first of two days


def test_a_query_with_no_rows_says_so(monkeypatch, demo_dir):
    use_env(monkeypatch, demo_dir)
    at = open_sql("SELECT transaction_id, amount FROM high_value WHERE amount < 0")
    assert_clean(at)
    assert "**0 rows** · Delta version read: high_value v1" in texts(at)
    assert [i.value for i in at.info] == ["The query returned no rows."]
    assert not at.dataframe and not at.get("plotly_chart") and not at.download_button


def test_the_result_downloads_as_csv(monkeypatch, demo_dir):
    """The download button comes with the result and carries the CSV of all its rows."""
    from pipeline.sql import output

    made: list[str] = []
    to_csv = output.to_csv
    monkeypatch.setattr(output, "to_csv", lambda table: made.append(to_csv(table)) or made[-1])
    use_env(monkeypatch, demo_dir)
    at = open_sql("SELECT country, count(*) AS n FROM high_value GROUP BY country ORDER BY country")
    assert_clean(at)
    df = result_frame(at)
    button = at.download_button(key="sql_csv")
    assert button.label == f"Download the {len(df):,} rows as CSV" and button.proto.url
    lines = made[-1].splitlines()
    assert lines[0] == "country,n" and len(lines) == len(df) + 1
    assert lines[1:] == [f"{c},{n}" for c, n in zip(df["country"], df["n"], strict=True)]
    assert sum(int(line.rsplit(",", 1)[1]) for line in lines[1:]) == DEMO_HIGH_VALUE_ROWS


def test_empty_data_folder_says_how_to_fill_it(monkeypatch, tmp_path):
    use_env(monkeypatch, tmp_path / "empty")
    at = open_sql()
    assert_clean(at, allowed=("DataUnavailable",))
    assert "does not exist yet" in texts(at) and "python -m pipeline job" in texts(at)
    assert not at.dataframe and not at.error
