"""Ready business questions for the SQL page, written for our tables.

Each one runs unchanged through delta-rs (DataFusion) and Spark SQL and gives the same rows
(`tests/read/test_sql_agreement.py` checks it on tables the real job wrote): both dialects
take ``date_trunc('hour', ts)``, ``now()``, ``INTERVAL '24' HOUR`` and ``CAST(... AS DOUBLE)``;
a ratio divides a DOUBLE (DataFusion divides integers as integers) by ``NULLIF(..., 0)``
(Spark's ANSI mode refuses a division by zero). Time ranges start at whole hours, so two
runs a few seconds apart read the same rows. ``sales_agg`` rows are partial per micro-batch:
every question sums them per window. A question on high_value names its ``event_date`` range
too, so both engines skip the other days' partitions.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.contract.tables import BATCH_METRICS, HIGH_VALUE, QUARANTINE, SALES_AGG, SALES_HOURLY


@dataclass(frozen=True)
class Question:
    key: str      # stable id (page address, tests)
    title: str    # what the analyst asks
    sql: str


QUESTIONS: tuple[Question, ...] = (
    Question("sales_per_hour_today", "Sales per hour today (UTC)", f"""\
SELECT date_trunc('hour', window_start) AS hour,
       sum(sales_count) AS sales,
       CAST(sum(sales_amount) AS DOUBLE) AS sales_amount,
       sum(high_value_count) AS high_value_sales
FROM {SALES_AGG}
WHERE window_start >= date_trunc('day', now())
GROUP BY date_trunc('hour', window_start)
ORDER BY hour"""),
    Question("top_merchants", "Top 20 merchants by high-value amount, last 24 hours", f"""\
SELECT merchant_id,
       count(*) AS high_value_sales,
       CAST(sum(amount) AS DOUBLE) AS high_value_amount
FROM {HIGH_VALUE}
WHERE event_date >= CAST(date_trunc('hour', now()) - INTERVAL '24' HOUR AS DATE)
  AND event_time >= date_trunc('hour', now()) - INTERVAL '24' HOUR
GROUP BY merchant_id
ORDER BY high_value_amount DESC, merchant_id
LIMIT 20"""),
    Question("high_value_share_by_country", "High-value share by country, last 24 hours", f"""\
SELECT coalesce(country, '(unknown)') AS country,
       sum(sales_count) AS sales,
       sum(high_value_count) AS high_value_sales,
       CAST(sum(high_value_count) AS DOUBLE) / NULLIF(sum(sales_count), 0) AS high_value_share
FROM {SALES_AGG}
WHERE window_start >= date_trunc('hour', now()) - INTERVAL '24' HOUR
GROUP BY coalesce(country, '(unknown)')
ORDER BY high_value_share DESC, country"""),
    Question("quarantine_reasons_over_time", "Quarantine reasons per hour, last 24 hours", f"""\
SELECT date_trunc('hour', arrival_time) AS hour,
       reason,
       count(*) AS messages
FROM {QUARANTINE}
WHERE arrival_time >= date_trunc('hour', now()) - INTERVAL '24' HOUR
GROUP BY date_trunc('hour', arrival_time), reason
ORDER BY hour, reason"""),
    Question("slowest_batches", "The job's 20 slowest batches", f"""\
SELECT query, batch_id, trigger_time, duration_s, input_rows, high_value_rows, offsets_behind
FROM {BATCH_METRICS}
ORDER BY duration_s DESC, trigger_time DESC, query
LIMIT 20"""),
    Question("sales_vs_yesterday", "Sales per window, last 3 hours, next to the same window yesterday", f"""\
WITH today AS (
    SELECT window_start, sum(sales_count) AS sales, CAST(sum(sales_amount) AS DOUBLE) AS sales_amount
    FROM {SALES_AGG}
    WHERE window_start >= date_trunc('hour', now()) - INTERVAL '3' HOUR
    GROUP BY window_start),
yesterday AS (
    SELECT window_start + INTERVAL '24' HOUR AS window_start, sum(sales_count) AS sales,
           CAST(sum(sales_amount) AS DOUBLE) AS sales_amount
    FROM {SALES_AGG}
    WHERE window_start >= date_trunc('hour', now()) - INTERVAL '27' HOUR
      AND window_start < date_trunc('hour', now()) - INTERVAL '20' HOUR
    GROUP BY window_start)
SELECT t.window_start, t.sales, y.sales AS sales_yesterday,
       t.sales_amount, y.sales_amount AS sales_amount_yesterday
FROM today t LEFT JOIN yesterday y ON t.window_start = y.window_start
ORDER BY t.window_start"""),
    Question("hourly_summary_by_category", "Hourly summary by merchant category, last 7 days", f"""\
SELECT window_start AS hour,
       coalesce(merchant_category, '(unknown)') AS merchant_category,
       sum(sales_count) AS sales,
       CAST(sum(high_value_amount) AS DOUBLE) AS high_value_amount
FROM {SALES_HOURLY}
WHERE window_start >= date_trunc('hour', now()) - INTERVAL '168' HOUR
GROUP BY window_start, coalesce(merchant_category, '(unknown)')
ORDER BY hour, merchant_category"""),
)
BY_KEY = {q.key: q for q in QUESTIONS}
