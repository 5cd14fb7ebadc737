"""The SQL page's chart choice from a result's shape, and compact units for big figures."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pandas as pd
import pytest

from pipeline.read.dashboard import fmt_count, fmt_money
from pipeline.read.units import compact
from pipeline.sql.chart import MAX_BARS, ChartSpec, chart_frame, choose_chart

T0 = datetime(2026, 12, 24, 18, 0, tzinfo=UTC)


def times(n: int) -> pd.Series:
    return pd.Series(pd.to_datetime([T0 + timedelta(hours=i) for i in range(n)], utc=True))


def test_time_and_numbers_give_lines_over_time():
    df = pd.DataFrame({"hour": times(3), "sales": [5, 7, 6], "sales_amount": [1.5, 2.5, 2.0]})
    assert choose_chart(df) == ChartSpec("line", "hour", ("sales", "sales_amount"))


def test_time_text_and_number_give_one_line_per_value():
    df = pd.DataFrame({"hour": times(4), "reason": ["not JSON", "bad amount"] * 2, "messages": [1, 2, 3, 4]})
    assert choose_chart(df) == ChartSpec("line", "hour", ("messages",), "reason")


def test_text_and_number_give_bars():
    df = pd.DataFrame({"country": ["DE", "FR"], "sales": [10, 20], "high_value_share": [0.1, 0.2]})
    assert choose_chart(df) == ChartSpec("bar", "country", ("sales",))


def test_identifiers_are_not_measures():
    df = pd.DataFrame({"merchant_id": ["M1", "M2"], "batch_id": [3, 4], "high_value_amount": [9.5, 3.0]})
    assert choose_chart(df) == ChartSpec("bar", "merchant_id", ("high_value_amount",))
    only_ids = pd.DataFrame({"merchant_id": ["M1"], "batch_id": [1]})
    assert choose_chart(only_ids).kind == "none" and "no number column" in choose_chart(only_ids).reason


def test_dates_count_as_time_and_lines_are_drawn_in_time_order():
    df = pd.DataFrame({"day": [date(2026, 12, 25), date(2026, 12, 24)], "n": [2, 1]})
    spec = choose_chart(df)
    assert spec == ChartSpec("line", "day", ("n",))
    assert list(chart_frame(df, spec)["n"]) == [1, 2]


def test_no_chart_for_no_rows_or_a_lone_number():
    assert choose_chart(pd.DataFrame({"n": []})).reason == "no rows to draw"
    lone = choose_chart(pd.DataFrame({"n": [42]}))
    assert lone.kind == "none" and "no time or text column" in lone.reason


def test_bars_are_cut_at_max_bars_in_the_results_order():
    df = pd.DataFrame({"merchant_id": [f"M{i}" for i in range(MAX_BARS + 10)], "amount": range(MAX_BARS + 10)})
    spec = choose_chart(df)
    drawn = chart_frame(df, spec)
    assert len(drawn) == MAX_BARS and drawn["merchant_id"].iloc[0] == "M0"


@pytest.mark.parametrize("value,text", [
    (4_845_686_530.12, "4.85 B"), (4_000_000, "4.0 M"), (12_345, "12.3 k"), (1_234, "1.23 k"), (950, "950"),
    (999_960, "1.0 M"), (99_950, "100 k"), (-2_500_000, "-2.5 M"), (0, "0"), (3_000, "3.0 k"),
    (1.2e12, "1.2 T"), (None, "–"), (float("nan"), "–"), ("x", "–"),
])
def test_compact_units(value, text):
    assert compact(value) == text


def test_compact_keeps_small_values_with_their_decimals():
    assert compact(999.6, small_decimals=2) == "999.60" and compact(999.6) == "1.0 k"


def test_dashboard_figures_fit_a_metric_box():
    assert fmt_money(4_845_686_530.12) == "4.85 B" and fmt_money(123_456.5) == "123,456.50"
    assert fmt_count(4_012_345) == "4.01 M" and fmt_count(None) == "–"
    for value in (4_845_686_530.12, 98_765_432_109.99, 123_456.78):
        assert len(fmt_money(value)) <= 10
