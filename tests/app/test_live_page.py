"""The Live page (AppTest): empty lane, lane down, and data on a real broker's live topic.

The live records are written straight to the live topic here (what the lane would write),
so the page is tested without a Spark start; the lane itself is tested in tests/live.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid

import pytest
from confluent_kafka import Producer
from streamlit.testing.v1 import AppTest

from pipeline.kafka.topic import ensure_live_topic
from pipeline.live.lane import checkpoint_path
from tests.support.apptest import APP, assert_clean, texts, use_env
from tests.support.waiting import wait_for

pytestmark = pytest.mark.usefixtures("release_cached_clients")


def open_live() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page("pages/live.py")
    at.run()
    return at


def live_record(tid: str, amount: float, merchant: str, *, age_ms: int = 200,
                now_ms: int | None = None) -> tuple[bytes, bytes]:
    """One live record whose source time is `age_ms` before `now_ms` (the clock when not given)."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    doc = {"transaction_id": tid, "person_id": "P1", "merchant_id": merchant, "amount": amount,
           "event_time": "2026-11-24T19:12:03.123456Z", "currency": "USD", "merchant_category": "travel",
           "country": "ES", "channel": "pos", "kafka_partition": 0, "kafka_offset": 1,
           "source_timestamp": now_ms - age_ms}
    return tid.encode(), json.dumps(doc).encode()


def produce_live(settings, records) -> None:
    p = Producer({"bootstrap.servers": settings.bootstrap_servers})
    for key, value in records:
        p.produce(settings.live_topic, value, key=key)
    assert p.flush(30) == 0


def test_empty_and_no_lane(monkeypatch, tmp_path):
    use_env(monkeypatch, tmp_path / "empty")
    at = open_live()
    assert_clean(at, allowed=("DataUnavailable",))  # no high_value table yet: the settled side says so
    assert [t.value for t in at.title] == ["Live"]
    text = texts(at)
    assert "Live lane: DOWN" in text and "python -m pipeline live" in text
    assert "No high-value sale on the live topic" in text
    assert {m.label: m.value for m in at.metric}["High-value sales, last 10 s"] == "0"


@pytest.mark.integration
def test_lane_down_still_shows_what_the_topic_holds_and_drops_duplicates(monkeypatch, tmp_path, stack):
    s = stack.replace(live_topic=f"live-{uuid.uuid4().hex[:8]}")
    ensure_live_topic(s)
    produce_live(s, [live_record("t-1", 2500.0, "M-DOWN-1"), live_record("t-2", 1600.0, "M-DOWN-2"),
                     live_record("t-1", 2500.0, "M-DOWN-1")])  # the same sale twice (at least once)
    use_env(monkeypatch, tmp_path / "data", s.bootstrap_servers, live_topic=s.live_topic)
    at = open_live()

    def shown():
        at.run()
        tables = [t.value for t in at.table]
        return any("M-DOWN-2" in set(df.get("merchant", [])) for df in tables)

    wait_for(shown, 60, "the live records on the page")
    assert_clean(at, allowed=("DataUnavailable",))
    text = texts(at)
    assert "Live lane: DOWN" in text
    assert "1 duplicates dropped" in text
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["High-value sales, last 10 s"] == "2" and metrics["Lane"] == "DOWN"


@pytest.mark.integration
def test_data_with_the_lane_up(monkeypatch, tmp_path, stack, request):
    s = stack.replace(live_topic=f"live-{uuid.uuid4().hex[:8]}", data_dir=tmp_path / "data")
    ensure_live_topic(s)
    # a lane process (its command line says `pipeline live`) that has checkpointed since it started
    lane_proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", "pipeline", "live"])
    request.addfinalizer(lambda: (lane_proc.kill(), lane_proc.wait()))
    s.run_dir.mkdir(parents=True)
    (s.run_dir / "live.pid").write_text(str(lane_proc.pid))
    offsets = checkpoint_path(s) / "offsets"
    offsets.mkdir(parents=True)
    (offsets / "0").write_text("v1")
    now_ms = int(time.time() * 1000)  # one clock for all 30, so their ages differ by exactly 1 ms each
    produce_live(s, [live_record(f"u-{i}", 2000.0 + i, f"M-UP-{i}", age_ms=100 + i, now_ms=now_ms)
                     for i in range(30)])
    use_env(monkeypatch, s.data_dir, s.bootstrap_servers, live_topic=s.live_topic)
    at = open_live()

    def count():
        at.run()
        return {m.label: m.value for m in at.metric}.get("High-value sales, last 10 s") == "30"

    wait_for(count, 60, "30 live sales on the page")
    assert_clean(at, allowed=("DataUnavailable",))
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Lane"] == "UP" and "Live lane:" not in texts(at)
    assert metrics["Latency p50"] != "–" and metrics["Latency p99"] != "–"
    ticker = at.table[0].value
    assert len(ticker) == 15 and ticker["merchant"].iloc[0] == "M-UP-0"  # newest first (smallest age)
