"""Unit tests of the storm emulator: no broker, no JVM (fake clocks where time matters)."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from pipeline.contract import Invalid, validate
from pipeline.emulator.binarizer import JsonBinarizer
from pipeline.emulator.control import DesiredState, Faults
from pipeline.emulator.faults import FaultInjector
from pipeline.emulator.pacing import Pacer
from pipeline.emulator.presets import PRESETS, PROFILES, make_profile, preset_rate
from pipeline.emulator.sources import EmulatorSource, FileReplaySource
from pipeline.errors import EmulatorError, SettingsError
from pipeline.settings import Settings
from tests.support.memory import late_by

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "samples" / "transactions.jsonl.gz"
CAPTURE = ROOT / "samples" / "capture_small.jsonl"
NOW = datetime(2026, 11, 24, 19, 12, 3, 123456, tzinfo=UTC).timestamp()


@pytest.fixture(scope="module")
def source(samples):
    return EmulatorSource(SAMPLES, Decimal("1500"), seed=7, samples=samples)


class FakeClock:
    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, dt: float) -> None:
        self.t += dt


# ---- 1. sample data ---------------------------------------------------------------------
def test_sample_file_regenerates_byte_for_byte(tmp_path):
    out = tmp_path / "again.jsonl.gz"
    subprocess.run([sys.executable, str(ROOT / "samples" / "generate_samples.py"), "--out", str(out)],
                   check=True, capture_output=True)
    assert out.read_bytes() == SAMPLES.read_bytes()


def test_sample_file_share_over_threshold(samples):
    assert len(samples) == 100_000
    share = sum(Decimal(str(r["amount"])) > 1500 for r in samples) / len(samples)
    assert 0.03 <= share <= 0.08
    for raw in gzip.open(SAMPLES).readlines()[:2000]:
        validate(raw)


# ---- 2. sources ---------------------------------------------------------------------------
def test_emulator_source_values_follow_the_contract(source, samples):
    # what the emulator reads of a ClientSource: paced by the emulator, never runs dry
    assert (source.self_paced, source.exhausted) == (False, False)
    batch = source.fetch(3000, NOW)
    assert len(batch) == len(batch.keys) == len(batch.high) == 3000
    ids = set()
    by_person = {r["person_id"] for r in samples}
    for key, value, high in zip(batch.keys, batch.values, batch.high):
        record = validate(value)  # every produced value passes the contract
        assert key == record["person_id"].encode()
        assert record["person_id"] in by_person
        assert record["event_time"] == datetime.fromtimestamp(NOW, UTC)
        assert high == (record["amount"] > Decimal("1500"))
        ids.add(record["transaction_id"])
    assert len(ids) == 3000  # fresh ids
    again = source.fetch(10, NOW + 1)
    assert not ids & {validate(v)["transaction_id"] for v in again.values}
    assert json.loads(again.values[0])["timestamp"] == "2026-11-24T19:12:04.123456Z"


def test_emulator_source_keeps_the_sample_fields(source, samples):
    batch = source.fetch(200, NOW)
    index = {(r["person_id"], r["merchant_id"], str(r["amount"])): r for r in samples}
    for value in batch.values:
        got = json.loads(value, parse_float=Decimal)
        original = index[(got["person_id"], got["merchant_id"], str(got["amount"]))]
        assert {k: v for k, v in got.items() if k not in ("transaction_id", "timestamp")} == \
            {k: v for k, v in original.items() if k not in ("transaction_id", "timestamp")}


def test_sampling_is_uniform_over_the_sample_file(samples):
    src = EmulatorSource(SAMPLES, seed=1, samples=samples[:100])
    idx = src._rng.integers(0, src.size, 50_000)  # the same sampler the source uses
    counts = Counter(idx.tolist())
    assert len(counts) == 100 and min(counts.values()) > 380 and max(counts.values()) < 620
    high_share = sum(src.fetch(20_000, NOW).high) / 20_000
    expected = sum(Decimal(str(r["amount"])) > 1500 for r in samples[:100]) / 100
    assert abs(high_share - expected) < 0.02


def test_two_sources_never_share_ids(samples):
    a = EmulatorSource(SAMPLES, samples=samples[:10])
    b = EmulatorSource(SAMPLES, samples=samples[:10])
    ids_a = {json.loads(v)["transaction_id"] for v in a.fetch(100, NOW).values}
    ids_b = {json.loads(v)["transaction_id"] for v in b.fetch(100, NOW).values}
    assert not ids_a & ids_b


def test_missing_sample_file_is_refused(tmp_path):
    with pytest.raises(EmulatorError, match="does not exist"):
        EmulatorSource(tmp_path / "nope.jsonl.gz")


def test_file_replay_in_order_at_original_pace():
    src = FileReplaySource(CAPTURE, speed=1.0)
    assert len(src) == 13 and src.invalid == 1 and src.self_paced
    first = src.fetch(100, 500.0)  # t=0: records with offset 0 (4 per second in the capture)
    assert [r["transaction_id"] for r in first] == ["CAP-000"]
    got = src.fetch(100, 500.6)
    assert [r["transaction_id"] for r in got] == ["CAP-001", "CAP-002"]
    got = src.fetch(100, 501.5)  # the invalid line keeps its place, as raw bytes
    assert got[:3] == [{**got[0]}, {**got[1]}, got[2]] and got[3] == b'{"transaction_id":"CAP-BAD","amount":"lots"'
    rest = src.fetch(100, 510.0)
    assert src.exhausted and rest[-1]["transaction_id"] == "CAP-011"
    assert src.fetch(100, 511.0) == []


def test_file_replay_at_set_rate_and_binarizer():
    src = FileReplaySource(CAPTURE)
    assert not src.self_paced
    records = src.fetch(5, 0.0) + src.fetch(100, 0.0)
    assert len(records) == 13 and src.exhausted
    batch = JsonBinarizer(Decimal("1500")).encode(records)
    assert batch.keys[6] is None and batch.values[6] == records[6]
    for i, (key, value) in enumerate(zip(batch.keys, batch.values)):
        if i == 6:
            with pytest.raises(Invalid):
                validate(value)
            continue
        assert validate(value)["transaction_id"] == records[i]["transaction_id"]
        assert key == records[i]["person_id"].encode()
        assert batch.high[i] == (Decimal(str(records[i]["amount"])) > 1500)


def test_file_replay_speed_must_be_positive():
    with pytest.raises(EmulatorError):
        FileReplaySource(CAPTURE, speed=0)


# ---- 5. pacing and profiles ---------------------------------------------------------------
def _drive(pacer: Pacer, clock: FakeClock, seconds: float, step: float, per_window: float = 10.0) -> list[int]:
    """Simulate the loop with jittery wake-ups; returns records sent per window."""
    import random

    rnd = random.Random(3)
    windows: Counter[int] = Counter()
    start = clock.t
    while clock.t - start < seconds:
        n = pacer.due()
        pacer.record(n)
        windows[int((clock.t - start) // per_window)] += n
        clock.advance(step * rnd.uniform(0.2, 2.5))  # late and early wake-ups
    return [windows[i] for i in range(int(seconds // per_window))]


def test_pacer_does_not_drift_at_50k():
    clock = FakeClock()
    pacer = Pacer(lambda t: 50_000.0, clock=clock)
    windows = _drive(pacer, clock, 60, 0.02)
    for got in windows:
        assert abs(got - 500_000) / 500_000 <= 0.01
    pacer.record(pacer.due())
    assert abs(pacer.sent - 50_000 * (clock.t - pacer.start)) <= 1  # cumulative error stays below one record


def test_pacer_per_tick_and_burst_mode():
    clock = FakeClock(0.0)
    pacer = Pacer(lambda t: 250 / 0.5, tick=0.5, burst=True, clock=clock)  # 250 records every 0.5 s
    assert pacer.due() == 0
    clock.advance(0.49)
    assert pacer.due() == 0
    clock.advance(0.02)
    assert pacer.due() == 250
    pacer.record(250)
    clock.advance(0.3)
    assert pacer.due() == 0
    clock.advance(0.2)
    assert pacer.due() == 250


def test_pacer_rate_change_keeps_credit_and_pause_stops_it():
    clock = FakeClock(0.0)
    pacer = Pacer(lambda t: 1000.0, clock=clock)
    clock.advance(1.0)
    assert pacer.due() == 1000
    pacer.record(1000)
    pacer.set_rate_fn(lambda t: 5000.0)
    clock.advance(1.0)
    assert pacer.due() == 5000
    pacer.record(5000)
    pacer.pause()
    clock.advance(10.0)
    assert pacer.due() == 0
    pacer.resume()
    clock.advance(0.5)
    assert pacer.due() == 2500


def test_pacer_forgives_a_large_backlog():
    clock = FakeClock(0.0)
    pacer = Pacer(lambda t: 1000.0, clock=clock, max_backlog_s=2.0)
    clock.advance(30.0)  # e.g. the process was suspended
    assert pacer.due() == 2000
    assert pacer.skipped == 28_000


def test_pacer_follows_a_ramp_exactly():
    clock = FakeClock(0.0)
    profile = make_profile({"name": "ramp", "from": 0, "seconds": 10})
    pacer = Pacer(lambda t: profile.rate(1000.0, t), clock=clock)
    for _ in range(7):
        clock.advance(1.37)
        pacer.record(pacer.due())
    # Integral of a linear ramp 0 -> 1000 over the first 9.59 s = 50 t^2 (the midpoint rule is exact).
    assert pacer.target == pytest.approx(50 * 9.59 ** 2)
    clock.advance(5.0)
    pacer.due()  # crosses the end of the ramp: the holding part at 1000/s follows
    assert pacer.target == pytest.approx(5000 + 1000 * 4.59, rel=0.02)


def test_profiles_shape_the_rate():
    assert set(PROFILES) == {"steady", "step", "ramp", "spike", "daily"}
    assert PRESETS == {"Normal day": 10_000, "Christmas": 50_000}
    assert preset_rate("christmas") == 50_000
    assert make_profile("steady").rate(100, 1e6) == 100
    step = make_profile({"name": "step", "to": 300, "at": 10})
    assert step.rate(100, 9.9) == 100 and step.rate(100, 10) == 300
    assert make_profile({"name": "step"}).rate(100, 61) == 200
    ramp = make_profile({"name": "ramp", "from": 100, "seconds": 10})
    assert ramp.rate(1100, 0) == 100 and ramp.rate(1100, 5) == 600 and ramp.rate(1100, 99) == 1100
    spike = make_profile({"name": "spike", "factor": 4, "every": 60, "length": 5})
    assert spike.rate(10, 10) == 10 and spike.rate(10, 56) == 40 and spike.rate(10, 61) == 10
    daily = make_profile({"name": "daily", "period": 24, "start_hour": 0})
    assert daily.rate(1000, 19) == 1000  # the evening peak (hour 19) is the base rate
    assert daily.rate(1000, 3) == pytest.approx(1000 / 16)
    assert daily.rate(1000, 3.5) == pytest.approx(1000 / 16)
    assert daily.rate(1000, 12.5) == pytest.approx(1000 * 12.5 / 16)


@pytest.mark.parametrize("spec, message", [
    ("hurricane", "unknown profile"),
    ({"name": "spike", "factor": -1}, "out of range"),
    ({"name": "spike", "every": 5, "length": 5}, "shorter than"),
    ({"name": "ramp", "speed": 3}, "no parameter speed"),
    ({"name": "step", "at": "soon"}, "not a number"),
])
def test_invalid_profiles_are_refused(spec, message):
    with pytest.raises(SettingsError, match=message):
        make_profile(spec)


# ---- desired state validation -------------------------------------------------------------
def test_desired_state_changes_are_validated():
    base = DesiredState.defaults(Settings())
    assert base.state == "running" and base.profile == {"name": "steady"} and base.faults == Faults()
    s = base.with_changes({"per_tick": 500, "ingest_interval": 0.5})
    assert s.rate == 1000 and s.ingest_interval == 0.5 and s.per_tick == 500
    s = s.with_changes({"preset": "Christmas", "profile": "spike", "faults": {"late": 0.1}})
    assert s.rate == 50_000 and s.profile["factor"] == 5 and s.faults.late == 0.1
    assert s.faults.late_seconds == 900 and base.rate == Settings().emulator_rate  # base is unchanged
    for bad, message in [({"rate": -1}, "out of range"), ({"ingest_interval": 0}, "out of range"),
                         ({"profile": "hurricane"}, "unknown profile"), ({"state": "sleeping"}, "not allowed"),
                         ({"faults": {"duplicates": 2}}, "out of range"), ({"speed": 1}, "unknown emulator"),
                         ({"rate": 1, "preset": "Christmas"}, "only one"), ({"preset": "Easter"}, "unknown preset"),
                         ({"rate": float("nan")}, "out of range"), ({"faults": {"typos": 0.1}}, "unknown fault"),
                         ({"faults": 0.1}, "must be an object")]:
        with pytest.raises(SettingsError, match=message):
            base.with_changes(bad)


def test_desired_state_from_the_wire_merges_partial_states_over_defaults():
    s = DesiredState.from_wire(Settings(), {"state": "paused", "rate": 5, "version": 4})
    assert s.state == "paused" and s.rate == 5 and s.version == 4 and s.faults.late == 0
    again = DesiredState.from_wire(Settings(), json.loads(json.dumps(s.as_dict())))
    assert again == s  # the JSON form round-trips
    with pytest.raises(SettingsError, match="not a JSON object"):
        DesiredState.from_wire(Settings(), [1])


# ---- 7. faults ----------------------------------------------------------------------------
def test_faults_are_off_by_default(source):
    batch = source.fetch(100, NOW)
    assert FaultInjector().apply(batch, NOW) is batch


def test_duplicates_repeat_the_same_bytes(source):
    faults = FaultInjector(duplicates=0.1, seed=5)
    batch = source.fetch(5000, NOW)
    out = faults.apply(batch, NOW)
    n = faults.counts["duplicates"]
    assert 400 < n < 600 and len(out) == 5000 + n
    copies = Counter(out.values)
    assert sum(c - 1 for c in copies.values()) == n and max(copies.values()) == 2
    for value, count in copies.items():
        if count == 2:
            i = out.values.index(value)
            assert out.values[i + 1] == value and out.keys[i + 1] == out.keys[i]
    assert sum(out.high) == sum(batch.high)  # the copy is not counted again as over the threshold


def test_malformed_messages_break_the_contract(source):
    faults = FaultInjector(malformed=0.1, seed=5)
    batch = source.fetch(5000, NOW)
    out = faults.apply(batch, NOW)
    n = faults.counts["malformed"]
    assert 400 < n < 600 and len(out) == 5000
    reasons = Counter()
    for value, high in zip(out.values, out.high):
        try:
            validate(value)
        except Invalid as exc:
            reasons[str(exc).split(" ")[0]] += 1
            assert not high
    assert sum(reasons.values()) == n
    assert len(reasons) >= 4  # several kinds of breakage


def test_late_events_are_late_by_the_set_amount(source):
    faults = FaultInjector(late=0.2, late_seconds=600, seed=5)
    out = faults.apply(source.fetch(5000, NOW), NOW)
    now = datetime.fromtimestamp(NOW, UTC)
    lateness = Counter(late_by(v, now) for v in out.values)
    assert lateness[timedelta(0)] + lateness[timedelta(seconds=600)] == 5000
    assert lateness[timedelta(seconds=600)] == faults.counts["late"] and 800 < faults.counts["late"] < 1200
    for v in out.values:
        validate(v)  # late events are still valid transactions
