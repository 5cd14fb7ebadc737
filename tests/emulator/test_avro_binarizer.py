"""The Avro wire format of the emulator: the hand-written encoder against fastavro, byte for byte.

No broker: `pipeline.contract.avro.encode_reference` (fastavro) is the reference and
`pipeline.contract.validate` the judge of what the encoder and the fault injector produce.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from pipeline.contract import Invalid, validate
from pipeline.contract.avro import SCHEMA_ID, decode, encode_reference, header
from pipeline.emulator.binarizer import (
    AvroBinarizer,
    JsonBinarizer,
    avro_decimal,
    epoch_micros,
    read_varint,
    transaction_id_of,
    zigzag_varint,
)
from pipeline.emulator.faults import FaultInjector
from pipeline.emulator.sources import EmulatorSource
from tests.support.memory import late_by

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "samples" / "transactions.jsonl.gz"
NOW = datetime(2026, 11, 24, 19, 12, 3, 123456, tzinfo=UTC).timestamp()
EDGE_AMOUNTS = ["0.01", "0.1", "1", "127.99", "128", "1.27", "1.28", "327.67", "327.68", "1500.00", "1500.01",
                "99999.99", "8388607.99", "10000000.00", "10000000"]


def _reference(record: dict) -> bytes:
    """fastavro's bytes for a contract dict (wire types: aware datetime, Decimal)."""
    wire = dict(record)
    wire["timestamp"] = datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00"))
    wire["amount"] = Decimal(str(record["amount"]))
    return encode_reference(wire)


def _record(tid="T-1", amount="12.34", **extra) -> dict:
    return {"transaction_id": tid, "person_id": "P1", "merchant_id": "M1", "amount": Decimal(amount),
            "timestamp": "2026-11-24T19:12:03.123456Z", **extra}


@pytest.mark.parametrize("n", [0, 1, -1, 63, -64, 64, -65, 8191, 8192, 2**31, -(2**31), 2**62, -(2**63),
                               1_795_000_000_000_000])
def test_zigzag_varint_round_trips_and_matches_the_spec(n):
    data = zigzag_varint(n)
    assert read_varint(data, 0) == (n, len(data))
    assert all(b & 0x80 for b in data[:-1]) and not data[-1] & 0x80
    assert zigzag_varint(0) == b"\x00" and zigzag_varint(-1) == b"\x01" and zigzag_varint(1) == b"\x02"
    assert zigzag_varint(64) == b"\x80\x01"


def test_every_sample_encodes_exactly_as_fastavro(samples):
    avro = AvroBinarizer()
    for row in samples[:20_000]:
        record = {**row, "timestamp": row["timestamp"]}
        assert avro.encode_record(record) == _reference(record), row
    # The hot path (templates + spliced id and timestamp) for every sample of the file.
    source = EmulatorSource(SAMPLES, seed=4, samples=samples, binarizer=avro)
    index = list(range(len(samples)))
    values = source.templates.render(source.id_prefix, 999_990, index, NOW)  # the id gains a digit inside
    stamp = datetime.fromtimestamp(NOW, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    for i in range(0, len(samples), 7):  # every 7th: fastavro is slow
        tid = source.id_prefix.decode() + str(999_990 + i)
        assert values[i] == _reference({**samples[i], "transaction_id": tid, "timestamp": stamp}), i


@pytest.mark.parametrize("amount", EDGE_AMOUNTS)
def test_edge_amounts_match_fastavro_and_keep_the_threshold_rule(amount):
    record = _record(amount=amount)
    value = AvroBinarizer().encode_record(record)
    assert value == _reference(record)
    assert validate(value)["amount"] == Decimal(amount)
    batch = AvroBinarizer(Decimal("1500")).encode([record])
    assert batch.high == [Decimal(amount) > Decimal("1500")]  # 1500.00 is not high, 1500.01 is
    assert JsonBinarizer(Decimal("1500")).encode([record]).high == batch.high


def test_out_of_contract_amounts_still_encode_like_fastavro():
    for amount in ("0", "0.00", "-0.01", "-1.28", "-128", "10000000.01"):
        value = AvroBinarizer().encode_record(_record(amount=amount))
        assert value == _reference(_record(amount=amount))
        with pytest.raises(Invalid, match="amount"):
            validate(value)
    with pytest.raises(ValueError, match="does not fit"):
        avro_decimal(Decimal("1.234"))


@pytest.mark.parametrize("extra", [
    {},
    {"currency": "EUR"},
    {"currency": "EUR", "merchant_category": "grocery", "country": "ES", "channel": "online"},
    {"merchant_category": "café ☕ ünïcode", "channel": "atm"},
    {"country": None, "channel": None},
])
def test_optional_fields_present_or_absent(extra):
    record = _record(**extra)
    value = AvroBinarizer().encode_record(record)
    assert value == _reference(record)
    got = validate(value)
    for name, v in extra.items():
        assert got[name] == v
    assert got["currency"] == (extra.get("currency") or "USD")


@pytest.mark.parametrize("tid", ["ü", "订单-42", "🙂" * 16, "x" * 64, "a" * 63])
def test_unicode_and_long_ids(tid):
    record = _record(tid=tid, person_id="persön-√")
    value = AvroBinarizer().encode_record(record)
    assert value == _reference(record)
    assert validate(value)["transaction_id"] == tid and transaction_id_of(value) == tid
    assert AvroBinarizer().encode([record]).keys == ["persön-√".encode()]


def test_a_record_avro_cannot_hold_falls_back_to_json_and_is_never_high():
    odd = {"transaction_id": "T", "person_id": "P", "merchant_id": "M", "amount": "lots", "timestamp": "now"}
    batch = AvroBinarizer().encode([odd, b"raw bytes", _record(amount="2000")])
    assert batch.values[0].startswith(b"{") and batch.high == [False, False, True]
    assert batch.values[1] == b"raw bytes" and batch.keys[1] is None
    with pytest.raises(Invalid):
        validate(batch.values[0])


def test_emulator_source_in_avro_is_valid_fresh_and_flags_high_right(samples):
    source = EmulatorSource(SAMPLES, Decimal("1500"), seed=9, samples=samples, binarizer=AvroBinarizer())
    assert source.wire_format == "avro"
    batch = source.fetch(5000, NOW)
    ids = set()
    for key, value, high in zip(batch.keys, batch.values, batch.high):
        assert value[:5] == header(SCHEMA_ID)
        record = validate(value)
        assert key == record["person_id"].encode()
        assert record["event_time"] == datetime.fromtimestamp(NOW, UTC)
        assert high == (record["amount"] > Decimal("1500"))
        assert transaction_id_of(value) == record["transaction_id"]
        ids.add(record["transaction_id"])
    assert len(ids) == 5000 and 0 < sum(batch.high) < 500


def test_timestamp_micros_matches_the_json_timestamp():
    for epoch in (NOW, 0.0, 1.0000005, 1.9999995, 1_795_000_000.123456):
        iso = datetime.fromtimestamp(epoch, UTC)
        assert epoch_micros(epoch) == (iso - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


# ---- faults in Avro ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def avro_source(samples):
    return EmulatorSource(SAMPLES, Decimal("1500"), seed=7, samples=samples, binarizer=AvroBinarizer())


def test_avro_malformed_variants_each_break_the_contract(avro_source):
    value = avro_source.fetch(1, NOW).values[0]
    reasons = []
    for variant in AvroBinarizer.malformed_variants(value):
        with pytest.raises(Invalid) as caught:
            validate(variant)
        reasons.append(str(caught.value))
    assert reasons[0] == "avro body does not decode"
    assert reasons[1] == "avro body has trailing bytes"
    assert reasons[2].startswith("unknown avro schema id")
    assert reasons[3] == "amount must be greater than 0"
    assert reasons[4] == "transaction_id must be 1..64 characters"


def test_avro_fault_knobs(avro_source):
    faults = FaultInjector(malformed=0.1, late=0.2, duplicates=0.05, late_seconds=600, seed=5, wire=AvroBinarizer())
    batch = avro_source.fetch(5000, NOW)
    out = faults.apply(batch, NOW)
    counts = faults.counts
    assert 400 < counts["malformed"] < 600 and 800 < counts["late"] < 1200 and 180 < counts["duplicates"] < 320
    assert len(out) == 5000 + counts["duplicates"]
    now = datetime.fromtimestamp(NOW, UTC)
    reasons, lateness, high_valid = Counter(), Counter(), 0
    for value, high in zip(out.values, out.high):
        try:
            record = validate(value)
        except Invalid as exc:
            reasons[str(exc)[:20]] += 1
            assert not high  # a malformed message is never "over the threshold"
            continue
        lateness[now - record["event_time"]] += 1
        high_valid += high
    assert len(reasons) == 5 and sum(reasons.values()) >= counts["malformed"]
    assert set(lateness) == {timedelta(0), timedelta(seconds=600)}
    assert high_valid <= sum(batch.high)  # copies are not counted again


def test_avro_restamp_moves_only_the_event_time(avro_source):
    value = avro_source.fetch(1, NOW).values[0]
    moved = AvroBinarizer.restamp(value, NOW - 3600)
    assert late_by(moved, datetime.fromtimestamp(NOW, UTC)) == timedelta(hours=1)
    before, after = decode(value), decode(moved)
    assert {k: v for k, v in before.items() if k != "timestamp"} == {k: v for k, v in after.items() if k != "timestamp"}
    assert AvroBinarizer.restamp(b'{"json": 1}', NOW) is None


@pytest.mark.parametrize("broken", [b"\x00", b"\x00\x00\x00\x00\x01", b"\x00\x00\x00\x00\x01\x7f",
                                    b"\x00\x00\x00\x00\x01\x03abc", b"\x00\x00\x00\x00\x01\x06ab"])
def test_broken_frames_are_handled_not_crashed_on(broken):
    assert transaction_id_of(broken) is None
    assert AvroBinarizer.restamp(broken, NOW) is None
    assert AvroBinarizer.malformed_variants(broken) == [broken[: max(1, len(broken) // 2)]]
