"""Integration tests of the storm emulator against the real embedded Kafka broker."""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import UTC, datetime

import pytest

from pipeline.cli import main
from pipeline.contract import Invalid, validate
from pipeline.contract.avro import is_framed
from pipeline.emulator.control import EmulatorControl
from pipeline.emulator.sources import FileReplaySource
from pipeline.emulator.storm import StormEmulator
from tests.support.emulator_fixtures import Background, read_all, topic_count
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("wire_format", ["json", "avro"])
def test_produced_equals_delivered_equals_topic(stack, tmp_path, wire_format):
    ids_file = tmp_path / "high.txt"
    emulator = StormEmulator(stack, control=False, changes={"rate": 20_000}, record_ids=ids_file, seed=11,
                             wire_format=wire_format)
    summary = emulator.run(max_records=12_000, duration=20)
    assert summary["stopped_by"] == "max_records" and summary["wire_format"] == wire_format
    assert summary["sent"] == summary["delivered"] == summary["records"] == 12_000
    assert summary["failed"] == 0 and summary["failed_reasons"] == {}
    assert topic_count(stack) == 12_000
    messages = read_all(stack)
    high_ids = set()
    for m in messages:
        assert is_framed(m.value()) == (wire_format == "avro")
        record = validate(m.value())
        assert m.key() == record["person_id"].encode()
        if record["amount"] > stack.threshold:
            high_ids.add(record["transaction_id"])
    assert len({validate(m.value())["transaction_id"] for m in messages}) == 12_000
    recorded = ids_file.read_text().split()
    assert sorted(recorded) == sorted(high_ids) and len(recorded) == summary["over_threshold_delivered"]
    assert summary["over_threshold_sent"] == len(high_ids) > 0
    minutes = summary["sent_by_minute"]
    assert sum(m["sent"] for m in minutes) == 12_000 and sum(m["over_threshold"] for m in minutes) == len(high_ids)
    # delivery latency of real deliveries: positive, p50 <= p99, within the 20 s run
    assert 0 < summary["latency_p50_ms"] <= summary["latency_p99_ms"] < 20_000, summary


def test_rate_change_through_control_topic_within_one_second(stack):
    with EmulatorControl(stack) as ctl:
        emulator = StormEmulator(stack, changes={"rate": 2000, "profile": "steady"}, status_interval=0.25)
        with Background(emulator, duration=25) as bg:
            wait_for(lambda: ctl.latest_status() is not None, 15, "a first status from the emulator", every=0.02)
            assert ctl.desired()["rate"] == 2000
            before = topic_count(stack)
            t = time.monotonic()
            state = ctl.set_desired(rate=8000)
            wait_for(lambda: emulator.desired.version == state["version"], 1.0, "the emulator to apply the new version",
                     every=0.005)
            applied = time.monotonic() - t
            assert applied < 1.0
            # Measure once a status at the new rate is out: the time 16,000 more records take to land.
            status = wait_for(lambda: (s := ctl.latest_status()) and s["base_rate"] == 8000 and s, 10,
                              "a status at the new rate", every=0.02)
            t1, n1 = time.monotonic(), topic_count(stack)
            wait_for(lambda: topic_count(stack) >= n1 + 16_000, 5, "16,000 more records in the topic", every=0.01)
            rate = (topic_count(stack) - n1) / (time.monotonic() - t1)
            assert 6500 < rate < 9500, rate
            assert topic_count(stack) > before
            for key in ("name", "state", "time", "target_rate", "achieved_rate", "delivered", "failed", "failed_reasons",
                        "queue_depth", "latency_p50_ms", "latency_p99_ms", "sent_by_minute", "profile", "pid"):
                assert key in status
            assert status["wire_format"] == stack.wire_format == "avro"  # the default
            assert status["state"] == "running" and status["target_rate"] == 8000
            history = ctl.status_history(60)
            assert len(history) >= 4 and history[0]["time"] <= history[-1]["time"]
            ctl.set_desired(state="stopped")
            summary = bg.join(5)
        assert summary["stopped_by"] == "control" and summary["failed"] == 0
        assert summary["delivered"] == summary["sent"] == topic_count(stack)


def test_pause_resume_stop_and_state_survives_restart(stack):
    with EmulatorControl(stack) as ctl:
        emulator = StormEmulator(stack, changes={"rate": 3000}, status_interval=0.25)
        with Background(emulator, duration=25) as bg:
            wait_for(lambda: topic_count(stack) > 500, 15, "500 records in the topic", every=0.02)
            ctl.set_desired(state="paused")
            wait_for(lambda: emulator.desired.state == "paused", 1.0, "the emulator to pause", every=0.005)
            # Paused, with every record sent before the pause delivered and in the topic.
            paused = wait_for(lambda: (s := ctl.latest_status()) and s["state"] == "paused"
                              and s["delivered"] == s["sent"] == topic_count(stack) and s, 10,
                              "a paused status with everything sent delivered", every=0.02)
            assert paused["target_rate"] == 0
            paused_at = paused["sent"]
            # A full second of statuses later, still nothing new in the topic.
            later = wait_for(lambda: (s := ctl.latest_status()) and s["uptime_s"] >= paused["uptime_s"] + 1.0 and s,
                             10, "a status a second after the pause", every=0.02)
            assert later["state"] == "paused" and later["sent"] == paused_at == topic_count(stack)
            ctl.set_desired(state="running", rate=1500)
            wait_for(lambda: topic_count(stack) > paused_at + 300, 3, "300 records after the resume", every=0.02)
            t = time.monotonic()
            ctl.set_desired(state="stopped")
            summary = bg.join(5)
            assert time.monotonic() - t < 1.5
        assert summary["stopped_by"] == "control"
        assert summary["delivered"] == topic_count(stack)
        # The desired state survives: a new client and a new emulator see rate 1500.
    with EmulatorControl(stack) as again:
        assert again.desired()["rate"] == 1500 and again.desired()["state"] == "stopped"
        assert again.latest_status()["state"] == "stopped"
    restarted = StormEmulator(stack)
    summary = restarted.run(duration=1.0)
    assert restarted.desired.rate == 1500 and restarted.desired.state == "running"
    assert 900 < summary["sent"] < 2100


def test_fault_knobs_produce_what_they_say(stack):
    emulator = StormEmulator(stack, control=False, seed=3, changes={
        "rate": 20_000, "faults": {"duplicates": 0.05, "malformed": 0.05, "late": 0.1, "late_seconds": 3600}})
    summary = emulator.run(max_records=6000, duration=20)
    assert summary["delivered"] == summary["sent"] == 6000 + summary["duplicates"] == topic_count(stack)
    messages = read_all(stack)
    invalid, ids, late = 0, Counter(), 0
    for m in messages:
        try:
            record = validate(m.value())
        except Invalid:
            invalid += 1
            continue
        ids[record["transaction_id"]] += 1
        if (datetime.now(UTC) - record["event_time"]).total_seconds() > 3000:
            late += 1
    duplicated = sum(n - 1 for n in ids.values())
    assert 150 < summary["malformed"] < 450 and 150 < summary["duplicates"] < 450 and 400 < summary["late"] < 800
    # A duplicate of a malformed message is malformed too; a late event may be turned malformed afterwards.
    assert summary["malformed"] <= invalid <= summary["malformed"] * 1.2
    assert summary["duplicates"] * 0.85 <= duplicated <= summary["duplicates"]
    assert summary["late"] * 0.85 <= late <= summary["late"] * 1.2


def test_file_replay_sends_the_capture_in_order(stack, tmp_path):
    from pathlib import Path

    capture = Path(__file__).resolve().parents[2] / "samples" / "capture_small.jsonl"
    one = stack.replace(partitions=1, topic=stack.topic + "-replay", wire_format="json")  # bytes compared as JSON
    source = FileReplaySource(capture, speed=4.0)
    t = time.monotonic()
    summary = StormEmulator(one, source, control=False).run(duration=20)
    elapsed = time.monotonic() - t
    assert summary["stopped_by"] == "exhausted" and summary["delivered"] == 13
    assert 0.6 < elapsed < 5  # 2.75 s of capture at 4x speed
    values = [m.value() for m in sorted(read_all(one), key=lambda m: m.offset())]
    expected = [line.encode() for line in capture.read_text().splitlines()]
    assert len(values) == len(expected) == 13
    for i, (got, want) in enumerate(zip(values, expected)):
        if i == 6:
            continue
        assert json.loads(got)["transaction_id"] == json.loads(want)["transaction_id"]
    assert values[6] == expected[6]  # the invalid line went through unchanged


def test_cli_emulate_and_storm(stack, monkeypatch, capsys, tmp_path):
    env = {"BOOTSTRAP_SERVERS": stack.bootstrap_servers, "TOPIC": stack.topic, "CONTROL_TOPIC": stack.control_topic,
           "STATUS_TOPIC": stack.status_topic, "DATA_DIR": str(stack.data_dir)}
    for k, v in env.items():
        monkeypatch.setenv(f"TORMENTA_{k}", v)
    from pipeline.procs import trim
    trims = []
    monkeypatch.setattr(trim, "start", lambda *a, **k: trims.append(a))
    assert main(["emulate", "--per-tick", "500", "--interval", "0.25", "--max-records", "1500", "--quiet",
                 "--format", "avro"]) == 0
    assert trims == [()]   # the emulator gives freed C memory back (a broker stall: 164 -> 97 MiB, not 173)
    summary = json.loads(capsys.readouterr().out)
    assert summary["delivered"] == 1500 and summary["stopped_by"] == "max_records" and summary["wire_format"] == "avro"
    assert all(is_framed(m.value()) for m in read_all(stack))
    assert main(["storm", "set", "--preset", "Normal day", "--profile", "spike", "factor=3"]) == 0
    state = json.loads(capsys.readouterr().out)
    assert state["rate"] == 10_000 and state["profile"]["factor"] == 3 and state["ingest_interval"] == 0.25
    assert main(["storm", "pause"]) == 0 and "paused" in capsys.readouterr().out
    assert main(["storm", "status", "--max-age", "60", "--json"]) == 0  # the final status of the run above
    final = json.loads(capsys.readouterr().out)
    assert final["state"] == "stopped" and final["wire_format"] == "avro"
    assert main(["storm", "set", "--rate", "-5"]) == 2
    assert "rate=-5.0 is out of range" in capsys.readouterr().err
    assert main(["storm", "set", "--profile", "hurricane"]) == 2
    assert main(["emulate", "--interval", "0", "--no-control"]) == 2
    assert main(["emulate", "--format", "xml", "--no-control"]) == 2
    monkeypatch.setenv("TORMENTA_SAMPLE_FILE", str(tmp_path / "missing.jsonl.gz"))
    assert main(["emulate", "--no-control", "--max-records", "1"]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_full_local_queue_is_backpressure_not_loss(stack):
    from pipeline.emulator.producer import StormProducer
    from pipeline.emulator.sources import EmulatorSource

    producer = StormProducer(stack, overrides={"queue.buffering.max.messages": 1000, "linger.ms": 5})
    source = EmulatorSource(stack.sample_file, seed=1)
    for _ in range(4):
        producer.send(source.fetch(5000, time.time()))
    assert producer.flush(30) == 0
    assert producer.backpressure_waits > 0  # the queue did fill up ...
    assert producer.delivered == 20_000 and producer.failed == 0  # ... and nothing was lost
    assert topic_count(stack) == 20_000


def test_sigterm_stops_the_emulator_process_cleanly(stack):
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "TORMENTA_BOOTSTRAP_SERVERS": stack.bootstrap_servers, "TORMENTA_TOPIC": stack.topic,
           "TORMENTA_CONTROL_TOPIC": stack.control_topic, "TORMENTA_STATUS_TOPIC": stack.status_topic,
           "TORMENTA_DATA_DIR": str(stack.data_dir)}
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "emulate", "--rate", "2000", "--duration", "60"],
                            cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: topic_count(stack) > 1000, 20, "1,000 records from the emulate command", process=proc)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    summary = json.loads(out)
    assert summary["stopped_by"] == "signal" and summary["failed"] == 0
    assert summary["delivered"] == summary["sent"] == topic_count(stack)
    assert "achieved" in err  # the live status line
