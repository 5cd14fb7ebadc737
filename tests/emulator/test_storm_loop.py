"""The emulator's loop against the in-memory sink and control link: no broker, a fake clock.

`StormEmulator` runs for real (pacing, slices, binarizer, fault knobs, status, control);
only the Kafka producer and the control topics are replaced by `tests.support.memory`.
The fake clock advances only when the loop sleeps, so the tests also see that the loop
sleeps between slices instead of spinning.
"""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.contract import Invalid, validate
from pipeline.contract.avro import is_framed
from pipeline.emulator.binarizer import AvroBinarizer, transaction_id_of
from pipeline.emulator.sources import EmulatorSource, FileReplaySource
from pipeline.emulator.storm import StormEmulator
from pipeline.errors import EmulatorError
from pipeline.settings import Settings
from tests.support.memory import MemoryControl, MemorySink

ROOT = Path(__file__).resolve().parents[2]
EPOCH = 1_795_000_000.0
FEW = 5000  # samples per emulator source: enough variety, cheap to pre-encode


class FakeTime:
    """Monotonic clock, wall clock and sleep in one: time moves only when the loop sleeps."""

    def __init__(self):
        self.t = 100.0
        self.sleeps: list[float] = []
        self.reads_since_sleep = 0

    def clock(self) -> float:
        self.reads_since_sleep += 1
        if self.reads_since_sleep > 10_000:
            raise AssertionError("the loop spins: it keeps reading the clock without sleeping")
        return self.t

    def wall(self) -> float:
        return EPOCH + self.t

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.sleeps.append(seconds)
        self.reads_since_sleep = 0
        self.t += seconds


class TimedSink(MemorySink):
    """Also notes when (fake time) each chunk was sent."""

    def __init__(self, time: FakeTime, **kw):
        super().__init__(**kw)
        self.time = time
        self.chunks: list[tuple[float, int]] = []

    def send(self, batch) -> int:
        self.chunks.append((self.time.t, len(batch)))
        return super().send(batch)


@pytest.fixture(scope="module")
def settings():
    return Settings()


def emulator(settings, samples, fake: FakeTime, *, wire_format="json", **kw) -> StormEmulator:
    kw.setdefault("control", False)
    kw.setdefault("sink", TimedSink(fake))
    binarizer = AvroBinarizer(settings.threshold) if wire_format == "avro" else None
    source = kw.pop("source", None) or EmulatorSource(settings.sample_file, settings.threshold, seed=1,
                                                      samples=samples[:FEW], binarizer=binarizer)
    return StormEmulator(settings, source, wire_format=wire_format, clock=fake.clock, wall=fake.wall,
                         sleep=fake.sleep, seed=2, **kw)


def per_second(chunks: list[tuple[float, int]], start: float) -> Counter:
    out: Counter = Counter()
    for t, n in chunks:
        out[int(t - start)] += n
    return out


def test_smooth_rate_in_slices_and_no_spinning(settings, samples):
    fake = FakeTime()
    em = emulator(settings, samples, fake, changes={"rate": 50_000})
    summary = em.run(duration=10)
    sink = em.sink
    assert summary["stopped_by"] == "duration" and summary["wire_format"] == "json"
    assert abs(summary["sent"] - 500_000) <= 1000 and summary["delivered"] == summary["sent"] == len(sink.values)
    # One chunk of ~1,000 records per 20 ms slice; the loop slept between all of them.
    assert 495 <= len(sink.chunks) <= 501 and max(n for _, n in sink.chunks) <= 1001
    assert len(fake.sleeps) >= 495 and sink.polls <= len(fake.sleeps) + 2
    assert all(abs(n - 50_000) <= 1000 for n in per_second(sink.chunks, 100.0).values())


def test_burst_releases_each_tick_at_its_boundary(settings, samples):
    fake = FakeTime()
    em = emulator(settings, samples, fake, burst=True, changes={"per_tick": 250, "ingest_interval": 0.5})
    em.run(duration=3.01)
    times = sorted({round(t - 100.0, 2) for t, _ in em.sink.chunks})
    assert times == [0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
    assert [n for _, n in em.sink.chunks] == [250] * 6


def test_avro_format_end_to_end_with_status_and_high_ids(settings, samples):
    fake = FakeTime()
    control = MemoryControl(settings)
    em = emulator(settings, samples, fake, wire_format="avro", control=control, changes={"rate": 2000})
    summary = em.run(duration=3)
    sink = em.sink
    assert summary["wire_format"] == "avro" and summary["sent"] == len(sink.values) > 5000
    high_ids = []
    for key, value, high in zip(sink.keys, sink.values, sink.high):
        assert is_framed(value)
        record = validate(value)
        assert key == record["person_id"].encode() and high == (record["amount"] > settings.threshold)
        if high:
            high_ids.append(record["transaction_id"])
    assert sink.high_ids == high_ids and summary["over_threshold_delivered"] == len(high_ids) > 0
    assert [s["wire_format"] for s in control.statuses] == ["avro"] * len(control.statuses)
    assert len(control.statuses) == 4 and control.statuses[-1]["state"] == "stopped" and control.closed


@pytest.mark.parametrize("wire_format", ["json", "avro"])
def test_fault_knobs_in_the_loop(settings, samples, wire_format):
    fake = FakeTime()
    faults = {"duplicates": 0.05, "malformed": 0.05, "late": 0.1, "late_seconds": 3600}
    em = emulator(settings, samples, fake, wire_format=wire_format, changes={"rate": 20_000, "faults": faults})
    summary = em.run(max_records=10_000)
    values = em.sink.values
    assert summary["stopped_by"] == "max_records" and summary["records"] == 10_000
    assert summary["sent"] == len(values) == 10_000 + summary["duplicates"]
    invalid, late, ids = 0, 0, Counter()
    for value in values:
        try:
            record = validate(value)
        except Invalid:
            invalid += 1
            continue
        ids[record["transaction_id"]] += 1
        late += (EPOCH + fake.t - record["event_time"].timestamp()) > 3000
    assert 350 < summary["malformed"] < 650 and 350 < summary["duplicates"] < 650 and 800 < summary["late"] < 1200
    assert summary["malformed"] <= invalid <= summary["malformed"] * 1.2
    assert summary["duplicates"] * 0.85 <= sum(n - 1 for n in ids.values()) <= summary["duplicates"]
    assert summary["late"] * 0.85 <= late <= summary["late"] * 1.2


def test_control_changes_rate_pauses_and_stops(settings, samples):
    fake = FakeTime()
    control = MemoryControl(settings)
    script = {2: dict(rate=3000), 4: dict(state="paused"), 6: dict(state="running", rate=500), 8: dict(state="stopped")}

    def on_status(status):
        change = script.pop(int(round(status["uptime_s"])), None)
        if change:
            control.set(**change)

    em = emulator(settings, samples, fake, control=control, changes={"rate": 1000}, on_status=on_status)
    summary = em.run(duration=30)
    seconds = per_second(em.sink.chunks, 100.0)
    assert summary["stopped_by"] == "control" and 7.9 < fake.t - 100.0 < 8.5
    # Statuses come every >= 1 s (after the slice that crosses the second), so a change lands
    # up to a few slices after the full second.
    expected = [1000, 1000, 3000, 3000, 0, 0, 500, 500]
    assert all(abs(seconds[s] - want) <= 300 for s, want in enumerate(expected)), seconds
    assert seconds[5] == 0 and seconds[3] == 3000
    assert em.desired.state == "stopped" and em.desired.version == 4
    paused = [s for s in control.statuses if s["state"] == "paused"]
    assert paused and all(s["target_rate"] == 0 for s in paused)


def test_delivery_failures_are_counted(settings, samples):
    fake = FakeTime()
    em = emulator(settings, samples, fake, sink=TimedSink(fake, fail_every=10), changes={"rate": 1000})
    summary = em.run(max_records=2000)
    assert summary["failed"] == 200 and summary["delivered"] == 1800
    assert summary["failed_reasons"] == {"_MEMORY_FAIL": 200}


def test_replay_in_avro_and_full_speed(settings, samples):
    fake = FakeTime()
    source = FileReplaySource(ROOT / "samples" / "capture_small.jsonl")
    em = emulator(settings, samples, fake, wire_format="avro", source=source, full_speed=True)
    summary = em.run(duration=5)
    assert summary["stopped_by"] == "exhausted" and summary["sent"] == 13
    framed = [v for v in em.sink.values if is_framed(v)]
    assert len(framed) == 12 and em.sink.values[6] == b'{"transaction_id":"CAP-BAD","amount":"lots"'
    assert [transaction_id_of(v) for v in framed][:2] == ["CAP-000", "CAP-001"]


def test_source_and_emulator_must_agree_on_the_format(settings, samples):
    fake = FakeTime()
    source = EmulatorSource(settings.sample_file, Decimal("1500"), samples=samples[:FEW])  # JSON
    with pytest.raises(EmulatorError, match="source encodes json"):
        emulator(settings, samples, fake, wire_format="avro", source=source)
    with pytest.raises(EmulatorError, match="wire format 'xml' is not allowed"):
        StormEmulator(settings, source, wire_format="xml")


def test_cli_refuses_a_bad_format_with_one_line(capsys):
    assert main(["emulate", "--format", "protobuf", "--no-control", "--max-records", "1"]) == 2
    err = capsys.readouterr().err
    assert err == "error: --format=protobuf is not allowed; allowed: json, avro\n"
