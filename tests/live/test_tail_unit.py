"""The live tail's pure parts and the lane's checks, without a broker or a JVM."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from pipeline.errors import SettingsError
from pipeline.live import health, lane, tail
from pipeline.live.tail import LiveSale
from tests.support.stack import make_settings
from tests.support.waiting import wait_for

NOW = 1_800_000_000_000  # ms, a whole minute


def sale(tid: str, amount: float, source_ms: int, received_ms: int | None = None, **kw) -> LiveSale:
    return LiveSale(tid, amount, kw.get("merchant", "M1"), kw.get("category", "travel"), kw.get("country", "ES"),
                    "2026-11-24T19:12:03.123456Z", source_ms, source_ms + 5,
                    received_ms if received_ms is not None else source_ms + 10)


def test_parse_record_reads_the_lane_json_and_refuses_anything_else():
    doc = {"transaction_id": "t1", "amount": 1600.5, "merchant_id": "M9", "merchant_category": "travel",
           "country": "FR", "event_time": "2026-11-24T19:12:03.123456Z", "source_timestamp": 1000}
    s = tail.parse_record(b"t1", json.dumps(doc).encode(), 1200, 1300)
    assert s == LiveSale("t1", 1600.5, "M9", "travel", "FR", "2026-11-24T19:12:03.123456Z", 1000, 1200, 1300)
    assert s.latency_ms == 300
    assert tail.parse_record(b"x", b"not json", 1, 2) is None
    assert tail.parse_record(b"x", b'{"amount": 5}', 1, 2) is None
    assert tail.parse_record(b"x", b'[1, 2]', 1, 2) is None
    assert tail.parse_record(None, None, 1, 2) is None


def test_buffer_drops_repeated_ids_counts_them_and_stays_bounded():
    buf = tail.DedupBuffer(capacity=3, seen_capacity=10)
    for tid in ("a", "b", "a", "c", "d", "b"):
        buf.add(sale(tid, 2000, NOW))
    assert [s.transaction_id for s in buf.rows] == ["b", "c", "d"]  # newest 3 kept
    assert buf.duplicates == 2
    small = tail.DedupBuffer(capacity=10, seen_capacity=2)
    for tid in ("a", "b", "c", "a"):  # "a" was forgotten by then: counted as new
        small.add(sale(tid, 2000, NOW))
    assert small.duplicates == 0 and len(small.rows) == 4


def test_window_totals_count_only_the_last_seconds():
    sales = [sale("old", 5000, NOW - 61_000), sale("m", 2000, NOW - 30_000), sale("n1", 1600, NOW - 9_000),
             sale("n2", 1700.25, NOW - 1), sale("future", 9999, NOW + 5_000)]
    assert tail.window_totals(sales, NOW, 10) == (2, 3300.25)
    assert tail.window_totals(sales, NOW, 60) == (3, 5300.25)


def test_per_second_has_every_second_with_zeros():
    sales = [sale("a", 2000, NOW - 500), sale("b", 1000.5, NOW - 400), sale("c", 3000, NOW - 3_000),
             sale("gone", 3000, NOW - 301_000)]
    df = tail.per_second(sales, NOW, span_s=300)
    assert len(df) == 300 and df["count"].sum() == 3
    last = df.iloc[-2]  # the second NOW-500ms falls in
    assert last["count"] == 2 and last["amount"] == 3000.5
    assert df.iloc[-1]["count"] == 0 and df["time"].iloc[-1] == datetime.fromtimestamp(NOW / 1000, UTC)


def test_latency_quantiles_over_the_last_minute():
    sales = [sale(f"t{i}", 2000, NOW - 30_000, NOW - 30_000 + (i + 1) * 10) for i in range(100)]
    sales.append(sale("stale", 2000, NOW - 200_000, NOW - 190_000))  # received 190 s ago: outside
    q = tail.latency_quantiles(sales, NOW)
    assert q["n"] == 100 and q["p50"] == pytest.approx(505) and 980 <= q["p99"] <= 1000
    assert tail.latency_quantiles([], NOW) == {"n": 0, "p50": None, "p95": None, "p99": None}


def test_ticker_newest_first_with_age():
    sales = [sale("a", 2000, NOW - 2_500), sale("b", 3000, NOW - 120), sale("c", 4000, NOW - 90_000)]
    df = tail.ticker(sales, NOW, n=2)
    assert list(df["transaction_id"]) == ["b", "a"]
    assert list(df["age"]) == ["120 ms", "2.5 s"]
    assert tail.format_age(90_000) == "1 min 30 s"


def test_provisional_vs_settled_per_complete_minute():
    minute = NOW // 60_000 * 60_000
    sales = [sale("a", 2000, minute - 10_000), sale("b", 2000, minute - 20_000), sale("c", 2000, minute - 70_000),
             sale("now", 2000, minute + 1_000)]  # the current minute is not complete: left out
    live = tail.per_minute(sales, NOW, minutes=3)
    assert list(live["live"]) == [0, 1, 2]
    m1 = datetime.fromtimestamp((minute - 60_000) / 1000, UTC)
    m2 = datetime.fromtimestamp((minute - 120_000) / 1000, UTC)
    out = tail.provisional_vs_settled(live, {m1: 3, m2: 1})
    assert list(out["settled"]) == [0, 1, 3] and list(out["difference"]) == [0, 0, -1]


# ---- the lane's checks and health -------------------------------------------------------------
def test_local_master_gets_a_slot_per_partition(tmp_path):
    s = make_settings(tmp_path)
    assert lane.local_master(s, 3) == "local[3]"
    assert lane.local_master(s.replace(spark_master="local[4]"), 3) == "local[4]"
    assert lane.local_master(s.replace(spark_master="spark://h:7077"), 3) is None
    with pytest.raises(SettingsError, match=r"needs a task slot per partition .* \(3\) but TORMENTA_SPARK_MASTER=local\[2\]"):
        lane.local_master(s.replace(spark_master="local[2]"), 3)


def test_judge_lane_states():
    proc = health.LaneProcess(123, 1000.0)
    assert health.judge_lane(True, 1005.0, proc, 1300.0).state == "up"        # checkpointed since it started
    starting = health.judge_lane(True, 900.0, proc, 1010.0)                   # only a checkpoint of an earlier run
    assert starting.state == "starting" and "pid 123" in starting.detail
    assert health.judge_lane(True, None, proc, 1010.0).state == "starting"
    down = health.judge_lane(True, 990.0, None, 1000.0)                        # fresh checkpoint, process gone
    assert down.state == "down" and down.fix == "python -m pipeline live" and "10 seconds" in down.detail
    assert health.judge_lane(True, None, None, 1000.0).state == "down"
    assert health.judge_lane(False, None, None, 1000.0).state == "idle"


def test_a_restarted_lane_is_up_by_its_heartbeat_before_it_checkpoints():
    proc = health.LaneProcess(123, 1000.0)
    old_checkpoint = 900.0   # the batch it resumed started before the restart: no checkpoint since
    assert health.judge_lane(True, old_checkpoint, proc, 1040.0, running=1035.0).state == "up"
    assert health.judge_lane(True, old_checkpoint, proc, 1040.0, running=990.0).state == "starting"  # a beat of the old process
    stale = 1035.0 + health.RUNNING_FRESH_S + 1   # its tasks stopped running: the beat says nothing any more
    assert health.judge_lane(True, old_checkpoint, proc, stale, running=1035.0).state == "starting"
    assert health.judge_lane(True, old_checkpoint, None, 1040.0, running=1035.0).state == "down"


def test_the_lane_claims_its_pid_file_unless_a_live_lane_owns_it(tmp_path):
    import os
    import subprocess
    import sys

    s = make_settings(tmp_path / "data")
    assert health.claim_pid_file(s) and (s.run_dir / "live.pid").read_text() == str(os.getpid())
    health.release_pid_file(s)
    assert not (s.run_dir / "live.pid").exists()
    # another live lane process owns it: left alone (a process whose command line says `live`)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "pipeline", "live"])
    try:
        (s.run_dir / "live.pid").write_text(str(other.pid))
        wait_for(lambda: health.lane_process(s), 30, "the other lane's process to show its command line")
        assert not health.claim_pid_file(s)
        health.release_pid_file(s)
        assert (s.run_dir / "live.pid").read_text() == str(other.pid)
    finally:
        other.kill()
        other.wait()
    assert health.claim_pid_file(s)                                            # a dead owner's file is taken over


def test_health_reads_the_pid_file_and_the_checkpoint_folder(tmp_path):
    import os
    import subprocess
    import sys

    s = make_settings(tmp_path)
    assert health.last_checkpoint(s) is None
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "pipeline", "live"])
    try:
        s.run_dir.mkdir(parents=True)
        (s.run_dir / "live.pid").write_text(str(proc.pid))
        os.utime(s.run_dir / "live.pid", (1000.0, 1000.0))
        wait_for(lambda: health.lane_process(s), 30, "the lane's process to show its command line")
        assert health.lane_health(s).state == "starting"
        lane.heartbeat(s)
        assert health.last_running(s) >= 1000.0 and health.lane_health(s).state == "up"
        os.utime(lane.running_path(s), (999.0, 999.0))   # a beat from before the process started
        assert health.lane_health(s).state == "starting"
        offsets = lane.checkpoint_path(s) / "offsets"
        offsets.mkdir(parents=True)
        (offsets / "0").write_text("v1")
        (offsets / ".0.crc").write_text("x")
        assert health.lane_health(s).state == "up"
    finally:
        proc.kill()
        proc.wait()
    assert health.lane_health(s).state == "down"   # the checkpoint is fresh, the process is gone


def test_reconcile_live_counts_missed_extra_and_duplicates():
    from pipeline.live.reconcile import LiveRow, latency_per_window, reconcile_live

    rows = [LiveRow("a", 1000, 1100), LiveRow("b", 2000, 2300), LiveRow("a", 1000, 1500), LiveRow("x", 3000, 3010)]
    r = reconcile_live(["a", "b", "c"], rows)
    assert (r.delta_ids, r.live_ids, r.missed, r.extra, r.duplicates) == (3, 3, 1, 1, 1)
    assert not r.ok and r.missed_examples == ("c",) and "1 of 3" in r.sentence()
    ok = reconcile_live(["a", "b"], rows)
    assert ok.ok and "written more than once" in ok.sentence()
    first, second = latency_per_window(rows, [(0, 1.5), (1.5, 10)])
    assert first["n"] == 2 and first["p50"] == 300.0          # both copies of "a": 100 and 500 ms
    assert second["n"] == 2 and second["p99"] == pytest.approx(297.1)  # 10 and 300 ms


class LaggingLane:
    """A live topic the lane is still writing to: one more id lands each `step` seconds of a fake clock."""

    def __init__(self, ids: list[str], present: int, step: float, stops_after: int | None = None):
        self.ids, self.present, self.step, self.now = ids, present, step, 0.0
        self.stops_after = len(ids) if stops_after is None else stops_after
        self.reads = 0

    def landed(self) -> int:
        return min(self.present + int(self.now // self.step), self.stops_after)

    def read(self):
        from pipeline.live.reconcile import LiveRow

        self.reads += 1
        return [LiveRow(i, 0, 1) for i in self.ids[:self.landed()]]

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def settle(lane: LaggingLane, **kw):
    from pipeline.live.reconcile import read_when_settled

    return read_when_settled(set(lane.ids), lane.read, lane.landed, clock=lambda: lane.now, sleep=lane.sleep, **kw)


def test_read_when_settled_waits_for_a_lane_still_writing():
    ids = [f"t{i}" for i in range(10)]
    rows, waited = settle(LaggingLane(ids, present=4, step=2.0), quiet=5.0, timeout=120.0)
    assert {r.transaction_id for r in rows} == set(ids)       # read once all 10 had landed
    assert waited == 12.0                                       # six more ids, one per 2 s


def test_read_when_settled_returns_at_once_when_nothing_is_missing():
    lane = LaggingLane(["a", "b"], present=2, step=1.0)
    rows, waited = settle(lane)
    assert len(rows) == 2 and waited == 0.0 and lane.reads == 1


def test_read_when_settled_gives_up_once_the_topic_stops_moving_and_reports_what_is_missing():
    from pipeline.live.reconcile import reconcile_live

    ids = [f"t{i}" for i in range(10)]
    lane = LaggingLane(ids, present=3, step=1.0, stops_after=6)   # the lane loses t6..t9
    rows, waited = settle(lane, quiet=5.0, timeout=120.0)
    assert reconcile_live(ids, rows).missed == 4                  # the last 3 that landed were read
    assert waited == 8.0                                           # moved until 3 s, then 5 s quiet


def test_read_when_settled_stops_at_its_timeout_while_the_topic_keeps_moving():
    ids = [f"t{i}" for i in range(1000)]
    rows, waited = settle(LaggingLane(ids, present=0, step=1.0), quiet=5.0, timeout=30.0)
    assert waited == 30.0 and len(rows) == 30
