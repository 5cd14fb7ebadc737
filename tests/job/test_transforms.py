"""Spark transforms on small batch DataFrames (real Spark, no broker)."""

from datetime import datetime
from decimal import Decimal

import pytest

from pipeline.job import transforms
from tests.support.cases import CASES

pytestmark = pytest.mark.integration


def kafka_rows(spark, values, start_offset=0):
    rows = [(b"k", v.encode() if isinstance(v, str) else v, "tx", 0, start_offset + i, datetime(2026, 11, 24, 19, 0))
            for i, v in enumerate(values)]
    return spark.createDataFrame(rows, "key binary, value binary, topic string, partition int, offset long, timestamp timestamp")


def test_parser_agrees_with_reference_validator(spark_session):
    parsed = transforms.parse_messages(kafka_rows(spark_session, [raw for raw, _ in CASES])).orderBy("kafka_offset")
    got = [r["reason"] for r in parsed.collect()]
    assert got == [reason for _, reason in CASES]


def test_valid_rows_are_typed_and_utc(spark_session):
    raw = [CASES[4][0], CASES[6][0], CASES[7][0]]
    rows = transforms.valid_rows(transforms.parse_messages(kafka_rows(spark_session, raw))).orderBy("kafka_offset").collect()
    assert rows[0]["event_time"] == datetime(2026, 11, 24, 19, 12, 3)
    assert (rows[1]["currency"], rows[1]["country"], rows[1]["channel"]) == ("EUR", "ES", "online")
    assert (rows[2]["currency"], rows[2]["country"], rows[2]["channel"]) == ("USD", None, None)


def test_high_value_is_strictly_greater_than_threshold(spark_session):
    raw = [CASES[1][0], CASES[2][0], CASES[3][0], CASES[0][0]]
    valid = transforms.valid_rows(transforms.parse_messages(kafka_rows(spark_session, raw)))
    amounts = sorted(r["amount"] for r in transforms.high_value(valid, Decimal("1500")).collect())
    assert amounts == [Decimal("1500.01"), Decimal("2000.00")]


def test_dedupe_within_window_keeps_far_apart_ids(spark_session):
    import json

    def t(tid, ts):
        return json.dumps({"transaction_id": tid, "person_id": "p", "merchant_id": "m", "amount": 2000, "timestamp": ts})

    raw = [t("a", "2026-11-24T10:00:00Z"), t("a", "2026-11-24T10:00:00Z"), t("a", "2026-11-24T10:09:00Z"),
           t("a", "2026-11-24T12:00:00Z"), t("b", "2026-11-24T10:00:00Z")]
    valid = transforms.valid_rows(transforms.parse_messages(kafka_rows(spark_session, raw)))
    kept = transforms.dedupe_within_batch(valid, 600).collect()
    assert sorted((r["transaction_id"], r["event_time"].hour) for r in kept) == [("a", 10), ("a", 12), ("b", 10)]


def test_sales_aggregates_per_window_and_dimension(spark_session):
    import json

    def t(tid, amount, ts, cat):
        return json.dumps({"transaction_id": tid, "person_id": "p", "merchant_id": "m", "amount": amount,
                           "timestamp": ts, "merchant_category": cat, "country": "US"})

    raw = [t("1", 10, "2026-11-24T10:00:05Z", "grocery"), t("2", 2000, "2026-11-24T10:00:50Z", "grocery"),
           t("3", 30, "2026-11-24T10:01:10Z", "grocery"), t("4", 1600, "2026-11-24T10:00:20Z", "travel")]
    valid = transforms.valid_rows(transforms.parse_messages(kafka_rows(spark_session, raw)))
    rows = {(r["window_start"].minute, r["merchant_category"]): r
            for r in transforms.sales_aggregates(valid, Decimal("1500"), 60).collect()}
    g = rows[(0, "grocery")]
    assert (g["sales_count"], g["sales_amount"], g["high_value_count"], g["high_value_amount"]) == \
        (2, Decimal("2010.00"), 1, Decimal("2000.00"))
    assert rows[(1, "grocery")]["high_value_count"] == 0
    assert rows[(0, "travel")]["high_value_amount"] == Decimal("1600.00")
