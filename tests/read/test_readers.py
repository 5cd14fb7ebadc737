"""Unit tests of the dashboard's logic in pipeline/ (readers, health, dashboard): no Streamlit, no broker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pandas as pd
import pytest

from pipeline.errors import DataUnavailable, SettingsError
from pipeline.read import dashboard, health
from pipeline.read.readers import MAX_POINTS, DeltaReader, HighValueQuery
from pipeline.settings import Settings
from tests.support.app_fixtures import write_demo_tables
from tests.support.waiting import wait_for


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    d = tmp_path_factory.mktemp("readers")
    facts = write_demo_tables(d, high_value_rows=4_000, days=3, agg_minutes=600, dims=20)
    return DeltaReader(Settings.from_env({"TORMENTA_DATA_DIR": str(d)})), facts


def test_missing_table_says_how_to_create_it(tmp_path):
    reader = DeltaReader(Settings.from_env({"TORMENTA_DATA_DIR": str(tmp_path)}))
    with pytest.raises(DataUnavailable, match="python -m pipeline job"):
        reader.sales_series(datetime.now(UTC) - timedelta(hours=1), datetime.now(UTC))


def test_table_facts_come_from_file_statistics(demo):
    reader, facts = demo
    info = reader.info("high_value", "event_time")
    assert info.rows == facts["high_value_rows"] and info.files >= 3
    assert info.newest <= facts["now"]


def test_sales_series_sums_partial_rows_per_window(demo):
    reader, facts = demo
    now = facts["now"]
    s = reader.sales_series(now - timedelta(minutes=10), now + timedelta(minutes=1), 60)
    assert len(s.frame) == 10 and s.frame["window_start"].is_monotonic_increasing
    # two partial rows per (window, dims) are summed: the bucket totals equal the raw sums
    raw = reader._sql(f"SELECT sum(sales_count) AS n FROM agg WHERE {reader._window_where(now - timedelta(minutes=10), now)}",
                      agg=reader.table("sales_agg"))
    assert s.frame["sales_count"].sum() == raw.column("n")[0].as_py()
    five = reader.sales_series(now - timedelta(minutes=10), now + timedelta(minutes=1), 300)
    assert five.frame["sales_count"].sum() == s.frame["sales_count"].sum() and len(five.frame) <= 3
    assert (s.frame["high_value_share"].between(0, 1)).all()


def test_sales_series_never_returns_more_than_max_points(demo):
    reader, facts = demo
    s = reader.sales_series(facts["now"] - timedelta(days=31), facts["now"], 60)
    assert s.coarsened and (31 * 86400) / s.bucket_s <= MAX_POINTS


def test_the_window_still_filling_is_marked_and_left_out_of_the_last_window(demo):
    reader, facts = demo
    now = facts["now"]
    # the newest window [now-1m, now) ended after the newest batch started (now-5s): still filling
    s = reader.sales_series(now - timedelta(minutes=10), now + timedelta(minutes=1), 60, now=now + timedelta(seconds=30))
    assert s.complete_until == facts["last_trigger"]
    assert list(s.frame["complete"]) == [True] * 9 + [False]
    w = reader.latest_complete_window(now=now + timedelta(seconds=30))
    assert w["window_start"] == now - timedelta(minutes=2) and w["window_end"] == now - timedelta(minutes=1)
    assert w["sales_count"] == s.frame["sales_count"].iloc[-2]
    # once the clock and a batch are past its end, the newest window is complete (a later clock alone is not enough)
    assert reader.latest_complete_window(now=now + timedelta(hours=1))["window_start"] == now - timedelta(minutes=2)


def test_tops(demo):
    reader, facts = demo
    top = reader.top_dimension("country", facts["now"] - timedelta(hours=1), facts["now"], 3)
    assert len(top) <= 3 and top["amount"].is_monotonic_decreasing
    merchants = reader.top_merchants(facts["now"] - timedelta(days=3), facts["now"], 5)
    assert len(merchants) == 5 and merchants["count"].min() >= 1


def test_high_value_paging_is_consistent_and_sorted(demo):
    reader, facts = demo
    base = HighValueQuery(start=facts["now"] - timedelta(days=4), end=facts["now"] + timedelta(minutes=1),
                          sort_by="amount", descending=True, page_size=100)
    pages = [reader.high_value_page(HighValueQuery(**{**base.__dict__, "page": p})) for p in (1, 2, 3)]
    assert pages[0].total == facts["high_value_rows"] and pages[0].pages == 40
    ids = [i for p in pages for i in p.rows["transaction_id"]]
    assert len(ids) == len(set(ids)) == 300
    amounts = pd.concat([p.rows["amount"] for p in pages])
    assert amounts.is_monotonic_decreasing


def test_high_value_filters(demo):
    reader, facts = demo
    q = HighValueQuery(start=facts["now"] - timedelta(days=4), end=facts["now"] + timedelta(minutes=1),
                       min_amount=Decimal("5000"), max_amount=Decimal("6000"), categories=("travel",))
    page = reader.high_value_page(q)
    assert 0 < page.total < facts["high_value_rows"]
    assert page.rows["amount"].between(5000, 6000).all() and set(page.rows["merchant_category"]) == {"travel"}
    csv = reader.high_value_csv(q).decode().splitlines()
    assert len(csv) == page.total + 1 and csv[0].startswith("event_time,transaction_id")


def test_text_filters_are_literals_not_sql(demo):
    reader, facts = demo
    q = HighValueQuery(start=facts["now"] - timedelta(days=4), end=facts["now"] + timedelta(minutes=1),
                       person_id="x' OR '1'='1")
    assert reader.high_value_page(q).total == 0
    with pytest.raises(SettingsError):
        reader.high_value_page(HighValueQuery(**{**q.__dict__, "person_id": "a\x00b"}))


@pytest.mark.parametrize("bad", [
    {"min_amount": Decimal("10"), "max_amount": Decimal("5")},
    {"sort_by": "raw_value"}, {"page_size": 7}, {"page": 0},
    {"end": datetime(2020, 1, 1, tzinfo=UTC)},
])
def test_bad_explorer_input_is_rejected_with_a_message(bad):
    q = HighValueQuery(start=datetime(2026, 1, 1, tzinfo=UTC), end=datetime(2026, 1, 2, tzinfo=UTC))
    with pytest.raises(SettingsError):
        HighValueQuery(**{**q.__dict__, **bad}).validated()
    with pytest.raises(SettingsError, match="at most 31 days"):
        HighValueQuery(start=q.start, end=q.start + timedelta(days=40)).validated()


def test_as_of_version_reads_the_old_table(demo):
    reader, facts = demo
    q = HighValueQuery(start=facts["now"] - timedelta(days=4), end=facts["now"] + timedelta(minutes=1))
    first = reader.high_value_page(q, as_of=0)
    assert first.version == 0 and first.total < facts["high_value_rows"]
    assert list(reader.history("high_value")["version"])[0] == reader.info("high_value").version
    with pytest.raises(DataUnavailable):
        reader.high_value_page(q, as_of=999)


def test_quarantine_counts_and_rows(demo):
    reader, facts = demo
    counts, rows = reader.quarantine(facts["now"] - timedelta(hours=2), facts["now"] + timedelta(minutes=1), limit=10)
    assert counts["messages"].sum() == facts["quarantine_rows"] and len(rows) == 10
    assert rows["arrival_time"].is_monotonic_decreasing
    _, only = reader.quarantine(facts["now"] - timedelta(hours=2), facts["now"] + timedelta(minutes=1),
                                reason="not JSON")
    assert set(only["reason"]) == {"not JSON"}


# ---- health ------------------------------------------------------------------------------
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
S = Settings.from_env({})


def batch(age_s: float, **extra) -> dict:
    return {"trigger_time": NOW - timedelta(seconds=age_s), "trigger_interval_s": 60.0, "duration_s": 10.0,
            "end_offsets": '{"0": 100, "1": 200}', **extra}


def test_job_is_up_when_batches_are_fresh_and_down_when_stale_with_new_records():
    assert health.job_health(batch(70), S, table_exists=True, now=NOW).state == "up"
    stale = health.job_health(batch(600), S, table_exists=True, new_records=5000, now=NOW)
    assert stale.state == "down" and stale.fix == "python -m pipeline job"
    assert health.job_health(batch(600), S, table_exists=True, new_records=0, now=NOW).state == "idle"
    assert health.job_health(None, S, table_exists=False, now=NOW).state == "down"


PROC = health.JobProcess(4242, NOW - timedelta(seconds=20))


@pytest.mark.parametrize("last,exists,process,state", [
    (None, False, PROC, "starting"),     # no table yet, the job process is alive: starting, not DOWN
    (None, True, PROC, "starting"),      # table made, first batch not finished yet
    (None, False, None, "down"),         # no process and no batch: really gone
    (None, True, None, "down"),
    ("stale", True, PROC, "starting"),   # restarted after the newest batch: catching up
    ("stale", True, None, "down"),       # stale, new records, no process
    ("fresh", True, PROC, "up"),
    ("fresh", True, None, "up"),         # a job started by hand leaves no pid file: its batches say up
])
def test_job_states(last, exists, process, state):
    rows = {None: None, "stale": batch(600), "fresh": batch(30)}
    part = health.job_health(rows[last], S, table_exists=exists, new_records=5000, now=NOW, process=process)
    assert part.state == state, part
    assert (part.fix is None) == (state in ("starting", "up"))  # no "start the job" step while it starts
    if state == "starting":
        assert "4242" in part.detail and "20 seconds" in part.detail
        assert health.next_steps([part]) == []


def test_a_stale_job_process_started_before_the_newest_batch_is_not_starting():
    old = health.JobProcess(4242, NOW - timedelta(hours=1))
    assert health.job_health(batch(600), S, table_exists=True, new_records=5000, now=NOW, process=old).state == "down"


def _settings(tmp_path) -> Settings:
    return Settings.from_env({"TORMENTA_DATA_DIR": str(tmp_path)})


def test_job_process_is_found_from_the_pid_file_and_gone_when_the_process_ends(tmp_path):
    import subprocess
    import sys

    settings = _settings(tmp_path)
    assert health.job_process(settings) is None  # no pid file
    settings.run_dir.mkdir(parents=True)
    # a process whose command line is that of the job; it ends when its stdin closes
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()", "-m", "pipeline", "job"],
                            stdin=subprocess.PIPE)
    try:
        (settings.run_dir / "job.pid").write_text(str(proc.pid))
        # right after the fork the child still carries pytest's command line: wait for its exec
        found = wait_for(lambda: health.job_process(settings), 30, "the job's command line in /proc", process=proc)
        assert found.pid == proc.pid
        assert abs((found.started - datetime.now(UTC)).total_seconds()) < 60
    finally:
        proc.stdin.close()
        proc.wait(10)
    assert health.job_process(settings) is None  # the pid is gone: DOWN, not starting


def test_a_pid_that_is_not_the_job_is_no_job_process(tmp_path):
    import os

    settings = _settings(tmp_path)
    settings.run_dir.mkdir(parents=True)
    (settings.run_dir / "job.pid").write_text(str(os.getpid()))  # alive, but pytest, not the job
    assert health.job_process(settings) is None
    (settings.run_dir / "job.pid").write_text("not a pid")
    assert health.job_process(settings) is None


def test_backlog_and_retention_risk():
    assert health.backlog({0: 150, 1: 200, 2: 10}, batch(0)) == 60
    assert health.backlog(None, batch(0)) is None
    risk = health.retention_risk(NOW - timedelta(hours=1), 3_600_000, 1000.0, 86400, now=NOW)
    assert risk.oldest_unprocessed_age_s == pytest.approx(7200) and risk.level == "ok"
    late = health.retention_risk(NOW - timedelta(hours=22), 0, 1000.0, 86400, now=NOW)
    assert late.level == "critical" and late.time_left_s == pytest.approx(7200)


def test_next_steps_name_the_commands():
    parts = [health.PartHealth("broker", "down", "x", health.FIX["broker"]),
             health.PartHealth("topic", "unknown", "y", health.FIX["broker"]),
             health.PartHealth("job", "up", "z"), health.PartHealth("emulator", "down", "w", health.FIX["emulator"])]
    steps = health.next_steps(parts)
    assert len(steps) == 2 and "python -m pipeline broker start" in steps[0] and "emulate" in steps[1]
    all_down = [health.PartHealth(p.part, "down", "", p.fix or "x") for p in parts]
    assert "make run" in health.next_steps(all_down)[0]


def test_ingest_and_quarantine_rate():
    df = pd.DataFrame({"trigger_time": pd.to_datetime([0, 60, 120], unit="s", utc=True),
                       "input_rows": [999, 6000, 6000], "quarantined_rows": [0, 6, 6]})
    assert health.ingest_rate(df) == pytest.approx(100.0)
    assert health.quarantine_rate(df) == pytest.approx(12 / 12999)


# ---- dashboard helpers -------------------------------------------------------------------
def test_rate_conversions_are_bounded():
    assert dashboard.rate_from_ticks(500, 100) == 5000
    assert dashboard.records_per_tick(10_000, 250) == 2500
    with pytest.raises(SettingsError):
        dashboard.rate_from_ticks(100_000, 10)   # 10 M tx/s: above the page's bound
    with pytest.raises(SettingsError):
        dashboard.rate_from_ticks(10, 5)
    assert dashboard.clamp_rate(-5) == 0 and dashboard.clamp_rate(1e9) == dashboard.RATE_MAX


def test_wire_format_label():
    assert dashboard.wire_format_label({"wire_format": "avro"}) == "Avro"
    assert dashboard.wire_format_label({"wire_format": "JSON"}) == "JSON"
    assert dashboard.wire_format_label({"achieved_rate": 5.0}) == "unknown"   # an older emulator
    assert dashboard.wire_format_label(None) == "unknown"                      # no status yet
    assert dashboard.wire_format_label({"wire_format": "xml"}) == "unknown"


def test_batch_extras_tolerate_null_and_missing_columns():
    df = pd.DataFrame({"avro_rows": [None, 40, 60], "duplicates_dropped": [None, None, None]})
    extras = {label: (last, total) for label, last, total in dashboard.batch_extras(df)}
    assert extras["Avro rows"] == ("60", "100 (2 of 3 batches report it)")
    assert extras["Duplicates dropped"] == ("–", "–")
    old = {label: (last, total) for label, last, total in dashboard.batch_extras(pd.DataFrame({"input_rows": [1]}))}
    assert old == {"Avro rows": ("–", "–"), "Duplicates dropped": ("–", "–")}


def test_metrics_of_a_table_written_before_the_new_columns_read_as_null(tmp_path):
    facts = write_demo_tables(tmp_path, high_value_rows=100, days=1, agg_minutes=10, metrics_minutes=10, legacy=True)
    reader = DeltaReader(_settings(tmp_path))
    df = reader.batch_metrics(facts["now"] - timedelta(hours=1))
    assert len(df) == 10 and df["avro_rows"].isna().all() and df["duplicates_dropped"].isna().all()
    _, rows = reader.quarantine(facts["now"] - timedelta(hours=2), facts["now"])
    assert rows["wire_format"].isna().all()
    assert reader.last_batch()["batch_id"] == 9


def test_settings_summary_and_headline():
    table = dashboard.settings_summary(S)
    values = dict(zip(table["setting"], table["value"], strict=True))
    assert values["Processing interval"] == "1 minute" and values["Record lifetime"] == "1 day"
    assert values["Ingest interval"] == "1 second"
    rate, source = dashboard.headline_rate({"achieved_rate": 9500.0}, None)
    assert rate == 9500 and "emulator" in source
    m = pd.DataFrame({"input_rows": [600_000], "trigger_interval_s": [60.0]})
    assert dashboard.headline_rate(None, m) == (10_000.0, "job, last batch")


def test_two_read_pages_equal_the_one_query_result_with_ties(tmp_path):
    """The page bound of the two-read path keeps ties: every page equals the plain top-k query."""
    import numpy as np
    import pyarrow as pa
    from deltalake import write_deltalake

    from tests.support.app_fixtures import TS, high_value_chunk

    rng = np.random.default_rng(3)
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    end_us = int(now.timestamp() * 1e6)
    t = high_value_chunk(rng, end_us - 3_600_000_000, end_us, 600, 0)
    # Few distinct amounts and event times: most rows tie with others on the sort key.
    t = t.set_column(t.schema.get_field_index("amount"), "amount",
                     pa.array([Decimal(a) for a in rng.choice(["1500.01", "1600.00", "2500.50"], 600)],
                              pa.decimal128(18, 2)))
    t = t.set_column(t.schema.get_field_index("event_time"), "event_time",
                     pa.array(end_us - rng.integers(1, 5, 600) * 60_000_000, TS))
    write_deltalake(tmp_path / "delta" / "high_value", t, partition_by=["event_date"])
    reader = DeltaReader(Settings.from_env({"TORMENTA_DATA_DIR": str(tmp_path)}))
    dt = reader.table("high_value")
    for sort_by in ("amount", "event_time"):
        for descending in (True, False):
            q = HighValueQuery(start=now - timedelta(hours=2), end=now + timedelta(minutes=1), sort_by=sort_by,
                               descending=descending, page_size=25)
            seen = []
            for page in range(1, 600 // 25 + 2):
                qp = HighValueQuery(**{**q.__dict__, "page": page}).validated()
                two = reader._page_rows(qp, dt)
                one = reader._sql(reader._page_sql(qp, qp.page_size, (page - 1) * qp.page_size), hv=dt)
                assert two.equals(one), (sort_by, descending, page)
                seen += two.column("transaction_id").to_pylist()
            assert len(seen) == len(set(seen)) == 600


# ---- windows: which one is complete ------------------------------------------------------
def test_a_window_is_complete_when_the_clock_and_the_job_are_past_its_end():
    from pipeline.read import windows

    end = NOW
    assert windows.complete_until(NOW + timedelta(seconds=30)) == NOW + timedelta(seconds=30)   # no batch: the clock
    assert windows.is_complete(end, windows.complete_until(NOW))                                # ends exactly now
    assert not windows.is_complete(end, windows.complete_until(NOW - timedelta(seconds=1)))     # still running
    # the clock is past it, but the newest batch started before its end: not all of it is read
    assert not windows.is_complete(end, windows.complete_until(NOW + timedelta(minutes=5), NOW - timedelta(seconds=5)))
    assert windows.is_complete(end, windows.complete_until(NOW + timedelta(minutes=5), NOW + timedelta(seconds=1)))
    # a batch "after" the clock (clock skew) does not complete a window that has not ended
    assert not windows.is_complete(end, windows.complete_until(NOW - timedelta(seconds=1), NOW + timedelta(minutes=1)))


def test_mark_complete_and_the_note():
    from pipeline.read import windows

    df = pd.DataFrame({"window_start": pd.to_datetime([NOW - timedelta(minutes=m) for m in (3, 2, 1)], utc=True)})
    marked = windows.mark_complete(df, 60, NOW - timedelta(seconds=10))
    assert list(marked["complete"]) == [True, True, False]
    assert "11:59 UTC is still filling" in windows.partial_note(marked)
    assert windows.partial_note(windows.mark_complete(df, 60, NOW)) is None
    assert list(windows.mark_complete(df, 300, NOW)["complete"]) == [False, False, False]  # 5-minute buckets
    assert windows.mark_complete(df.iloc[:0], 60, NOW)["complete"].dtype == bool
