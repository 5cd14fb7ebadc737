"""The job's transforms as production runs them, on small batch DataFrames (real Spark, no broker)."""

import json
from datetime import datetime
from decimal import Decimal

import pytest

from pipeline.contract import avro
from pipeline.contract.spark import decode_messages
from pipeline.job import transforms
from tests.support.cases import CASES, kafka_rows

pytestmark = pytest.mark.integration


def t(tid, amount, ts="2026-11-24T10:00:05Z", cat="grocery", country="US"):
    return json.dumps({"transaction_id": tid, "person_id": "p", "merchant_id": "m", "amount": amount,
                       "timestamp": ts, "merchant_category": cat, "country": country})


def summary_of(spark, values, threshold=Decimal("1500"), window=60):
    """The production path on a batch DataFrame: decode, dedupe, summarise."""
    deduped = transforms.dedupe(decode_messages(kafka_rows(spark, values)), 600, threshold)
    return transforms.batch_summary(deduped, threshold, window)


def test_summary_counts_sales_high_value_and_quarantine(spark_session):
    raw = [t("1", 10, "2026-11-24T10:00:05Z"), t("2", 2000, "2026-11-24T10:00:50Z"),
           t("3", 30, "2026-11-24T10:01:10Z"), t("4", 1600, "2026-11-24T10:00:20Z", cat="travel"),
           t("5", 1500.00), t("6", 1500.01), "garbage{", CASES[0][0].replace("10.5", "-1")]
    summary = summary_of(spark_session, raw).cache()
    sales = {(r["window_start"].minute, r["merchant_category"]): r
             for r in transforms.summary_sales(summary, 60).collect()}
    g = sales[(0, "grocery")]
    assert (g["sales_count"], g["sales_amount"], g["high_value_count"], g["high_value_amount"]) == \
        (4, Decimal("5010.01"), 2, Decimal("3500.01"))
    assert sales[(1, "grocery")]["high_value_count"] == 0
    assert sales[(0, "travel")]["high_value_amount"] == Decimal("1600.00")
    assert sales[(0, "grocery")]["window_end"] == datetime(2026, 11, 24, 10, 1)
    hv = sorted(r["transaction_id"] for r in transforms.summary_rows(summary, "high_value_rows").collect())
    assert hv == ["2", "4", "6"]  # 1500.00 is not above the threshold, 1500.01 is
    q = transforms.summary_rows(summary, "quarantine_rows").collect()
    assert sorted(r["reason"] for r in q) == ["amount must be greater than 0", "value is not JSON"]
    assert {r["wire_format"] for r in q} == {"json"} and all(r["raw_bytes"] for r in q)


def test_summary_counts_avro_rows(spark_session):
    good = avro.encode_reference({"transaction_id": "a1", "person_id": "p", "merchant_id": "m",
                                  "amount": Decimal("1600.00"), "timestamp": datetime(2026, 11, 24, 10, 0, 5)})
    summary = summary_of(spark_session, [good, t("j1", 1700), good[:-2]]).cache()
    assert summary.agg({"avro_rows": "sum"}).first()[0] == 2
    assert sorted(r["transaction_id"] for r in transforms.summary_rows(summary, "high_value_rows").collect()) == \
        ["a1", "j1"]
    q = transforms.summary_rows(summary, "quarantine_rows").collect()
    assert [(r["reason"], r["wire_format"], bytes(r["raw_bytes"])) for r in q] == \
        [("avro body does not decode", "avro", good[:-2])]


def test_hourly_rollup_sums_windows_by_hour(spark_session):
    raw = [t("1", 10, "2026-11-24T10:00:05Z"), t("2", 2000, "2026-11-24T10:59:50Z"),
           t("3", 30, "2026-11-24T11:01:10Z")]
    sales = transforms.summary_sales(summary_of(spark_session, raw), 60)
    rows = {r["window_start"].hour: r for r in transforms.hourly_rollup(sales).collect()}
    assert (rows[10]["sales_count"], rows[10]["sales_amount"], rows[10]["high_value_count"]) == (2, Decimal("2010.00"), 1)
    assert rows[10]["window_end"] == datetime(2026, 11, 24, 11, 0)
    assert rows[11]["sales_count"] == 1


def test_dedupe_keeps_one_per_id_and_span_and_every_invalid_message(spark_session):
    raw = [t("a", 2000, "2026-11-24T10:00:05Z"), t("a", 2000, "2026-11-24T10:00:05Z"),  # a retry
           t("a", 2000, "2026-11-24T10:08:00Z"),                                        # within 10 minutes
           t("a", 2000, "2026-11-24T14:00:05Z"),                                        # hours later: new
           t("b", 20, "2026-11-24T10:00:05Z"), t("b", 20, "2026-11-24T10:00:05Z"),
           "garbage{", "garbage{"]                                                      # both quarantined
    summary = summary_of(spark_session, raw).cache()
    hv = sorted((r["transaction_id"], r["event_time"].hour) for r in
                transforms.summary_rows(summary, "high_value_rows").collect())
    assert hv == [("a", 10), ("a", 14)]
    assert summary.agg({"sales_count": "sum"}).first()[0] == 3
    assert len(transforms.summary_rows(summary, "quarantine_rows").collect()) == 2


def test_create_tables_makes_registers_and_upgrades(spark_session, tmp_path):
    """A fresh folder: every table created with its properties and registered in one go.
    A second start on the same folder keeps the data; a table of an earlier release
    (without the columns added since) gets them, its rows untouched."""
    from deltalake import write_deltalake

    from pipeline.contract.tables import ADDED_COLUMNS, TABLES, columns
    from pipeline.job import tables
    from tests.support.app_fixtures import contract_table
    from tests.support.stack import make_settings

    settings = make_settings(tmp_path)
    tables.create_tables(spark_session, settings)
    for name in TABLES:
        assert spark_session.table(f"tormenta.{name}").columns == list(columns(name))
        props = {r["key"]: r["value"] for r in spark_session.sql(f"SHOW TBLPROPERTIES tormenta.{name}").collect()}
        assert {k: props.get(k) for k in tables.TABLE_PROPERTIES} == tables.TABLE_PROPERTIES, name
    spark_session.sql("INSERT INTO tormenta.batch_metrics (query, batch_id) VALUES ('q', 7)")
    tables.create_tables(spark_session, settings)
    assert [r["batch_id"] for r in spark_session.table("tormenta.batch_metrics").collect()] == [7]

    legacy = make_settings(tmp_path / "legacy")
    write_deltalake(legacy.table_uri("quarantine"), contract_table("quarantine", {"reason": ["bad"]}, legacy=True))
    tables.create_tables(spark_session, legacy)
    rows = spark_session.table("tormenta.quarantine").collect()
    assert [r["reason"] for r in rows] == ["bad"] and all(rows[0][c] is None for c in ADDED_COLUMNS["quarantine"])


def test_the_streaming_dedupe_remembers_a_key_for_one_window_not_two(spark_session, tmp_path):
    """A redelivery within the window is dropped; the same key a little more than one
    window of arrival time later is counted again, because its state was evicted (with the
    watermark delay at the whole window it lived two windows: issue 19). One file = one
    micro-batch, in the order of their modification times."""
    import os
    import time

    from pyspark.sql import functions as F

    from pipeline.contract.fields import INGEST_TIME, TRANSACTION_ID

    window, t0 = 60, datetime.fromtimestamp(time.time() + 3600)  # arrivals after the batch clock
    plan = [("x", 0), ("p", 50), ("x", 55), ("q", 70), ("r", 72), ("x", 80)]  # (id, seconds after t0)
    src = tmp_path / "src"
    src.mkdir()
    schema = None
    for i, (tid, after) in enumerate(plan):
        df = decode_messages(kafka_rows(spark_session, [t(tid, 2000)], start_offset=i)).withColumn(
            INGEST_TIME, F.lit(t0.timestamp() + after).cast("timestamp"))
        schema = df.schema
        df.coalesce(1).write.parquet(str(tmp_path / f"w{i}"))
        part = next((tmp_path / f"w{i}").glob("part-*.parquet"))
        os.utime(part, (1_700_000_000 + i, 1_700_000_000 + i))
        part.rename(src / f"{i}.parquet")
    stream = spark_session.readStream.schema(schema).option("maxFilesPerTrigger", 1).parquet(str(src))
    q = (transforms.dedupe(stream, window, Decimal("1500")).select(TRANSACTION_ID).writeStream
         .format("memory").queryName("dedupe_window").trigger(availableNow=True)
         .option("checkpointLocation", str(tmp_path / "ck")).start())
    q.awaitTermination()
    got = sorted(r[0] for r in spark_session.sql("SELECT * FROM dedupe_window").collect())
    assert got == ["p", "q", "r", "x", "x"]  # x at +55 dropped, x at +80 counted again


def test_the_decode_stage_is_generated_once_and_a_late_arrival_still_counts(spark_session, tmp_path):
    """The streaming dedupe's clock holds the batch time, which Spark writes into the
    generated Java code as a number. Next to the decode it made every micro-batch compile
    the decode's stage (the largest generated method of the job) afresh: the generated code
    of that stage must be the same in every batch. And the clock still keeps a message whose
    Kafka time is hours behind the others from being dropped as late."""
    import os
    import time

    from pyspark.sql import functions as F

    from pipeline.contract.fields import TRANSACTION_ID

    now = time.time()
    plan = [("a", now), ("b", now + 1), ("c", now + 2), ("old", now - 7200), ("d", now + 3)]  # one file per batch
    src = tmp_path / "src"
    src.mkdir()
    schema = None
    for i, (tid, arrival) in enumerate(plan):
        df = kafka_rows(spark_session, [t(tid, 2000), t(f"{tid}-small", 20)], start_offset=2 * i).withColumn(
            "timestamp", F.lit(arrival).cast("timestamp"))   # the Kafka time: the dedupe's arrival
        schema = df.schema
        df.coalesce(1).write.parquet(str(tmp_path / f"w{i}"))
        part = next((tmp_path / f"w{i}").glob("part-*.parquet"))
        os.utime(part, (1_700_000_000 + i, 1_700_000_000 + i))
        part.rename(src / f"{i}.parquet")

    stages: list[dict[str, str]] = []   # per batch: the generated code of each stage, by its plan
    kept: list[str] = []

    def each_batch(batch_df, batch_id):
        query = next(q for q in spark_session.streams.active if q.name == "codegen_once")
        seq = query._jsq.streamingQuery().lastExecution().debug().codegenToSeq()
        summary = transforms.batch_summary(batch_df, Decimal("1500"), 60)
        rows = [r[TRANSACTION_ID] for r in transforms.summary_rows(summary, "high_value_rows").collect()]
        if rows:   # (the last batch has no data: it only moves the watermark on)
            stages.append({seq.apply(i)._1(): seq.apply(i)._2() for i in range(seq.size())})
        kept.extend(rows)

    stream = spark_session.readStream.schema(schema).option("maxFilesPerTrigger", 1).parquet(str(src))
    q = (transforms.dedupe(decode_messages(stream), 600, Decimal("1500")).writeStream.foreachBatch(each_batch)
         .queryName("codegen_once").trigger(availableNow=True)
         .option("checkpointLocation", str(tmp_path / "ck")).start())
    q.awaitTermination()

    assert sorted(kept) == ["a", "b", "c", "d", "old"]  # "old" is two hours behind: not late, counted
    assert len(stages) == len(plan)
    # The decode's stage: the one that reads values by VARIANT paths (the strict JSON path).
    decode = [[code for code in batch.values() if "parsedPath" in code] for batch in stages]
    assert all(len(codes) == 1 for codes in decode), [len(codes) for codes in decode]
    decode = [codes[0] for codes in decode]
    for i, code in enumerate(decode[2:], start=2):
        assert code == decode[1], f"the decode's generated code changed in batch {i}: compiled again"
    # The batch time is still in the generated code, in the small stage after the decode.
    assert sorted(stages[1].values()) != sorted(stages[2].values())
