"""The soak reconciliation's batch reader of Avro messages (pipeline.loadtest.avro_scan) against
the one-message reader it stands in for (soak_reconcile._plain_avro, then the validator): on the
emulator's own messages, the contract's malformed variants and thousands of random corruptions,
both ways must count the same messages, the same valid ids and the same high-value ids."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from decimal import Decimal

import numpy as np
import pytest

from pipeline.contract.avro import encode_reference, header
from pipeline.emulator.binarizer import AvroBinarizer, avro_decimal, avro_string, zigzag_varint
from pipeline.loadtest import avro_scan
from pipeline.loadtest.soak_reconcile import TopicFacts, _plain_avro, count_batch
from tests.support.avro_messages import TH, emulator_messages, one_by_one, rec, same


def test_id_hash_is_fnv1a_64_and_the_batch_hash_is_the_same():
    assert avro_scan.id_hash("") == 0xCBF29CE484222325 - (1 << 64)          # the FNV-1a 64 offset basis
    assert avro_scan.id_hash("a") == 0xAF63DC4C8601EC8C - (1 << 64)         # its published value for "a"
    ids = ["a", "T000000001", "x" * 63, "S20261224-99"]
    got = avro_scan.scan([encode_reference(rec(1, transaction_id=t)) for t in ids])
    assert got.valid.all() and got.hashes.tolist() == [avro_scan.id_hash(t) for t in ids]


def test_the_emulators_messages_are_all_read_at_once_and_agree_one_by_one():
    values = emulator_messages(3000)
    got = avro_scan.scan(values)
    assert got.valid.all()                                    # none left to the slow way
    for i in range(0, len(values), 97):
        tid, cents = _plain_avro(values[i])
        assert (got.transaction_id(i), int(got.cents[i])) == (tid, cents)
    pending = [i % 4 == 0 for i in range(len(values))]
    facts = TopicFacts(complete=False)
    count_batch(facts, values, pending, TH)
    same(facts, one_by_one(values, pending))
    assert facts.high_value_ids and facts.pending_high_value_ids and facts.invalid == 0


def edge_cases() -> list[bytes]:
    good = encode_reference(rec(5, amount=Decimal("1500.01")))
    body = good[5:]
    ts_max = 253_402_300_799 * 10**6
    return [
        good, good + b"\x00", good[:-1], good[:5], good[:6], b"", b"\x00", header(2) + body, b"\x01" + good[1:],
        encode_reference(rec(1, amount=Decimal("1500.00"))), encode_reference(rec(1, amount=Decimal("0.01"))),
        encode_reference(rec(1, amount=Decimal("10000000"))), encode_reference(rec(1, amount=Decimal("10000000.01"))),
        encode_reference(rec(1, transaction_id="é-unicode")), encode_reference(rec(1, person_id="ü" * 20)),
        encode_reference(rec(1, transaction_id="x" * 64)), encode_reference(rec(1, merchant_id="m" * 65)),
        header() + avro_string("") + body[len(avro_string("T000000005")):],
        header() + zigzag_varint(-3) + body,                                      # negative id length
        header() + body.replace(avro_decimal(Decimal("1500.01")), avro_decimal(Decimal("-1500.01")), 1),
        header() + body.replace(avro_decimal(Decimal("1500.01")), zigzag_varint(8) + (150001).to_bytes(8, "big"), 1),
        header() + body.replace(avro_decimal(Decimal("1500.01")), zigzag_varint(0), 1),
        encode_reference(rec(1, timestamp=datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC))),
        encode_reference(rec(1, timestamp=datetime(1, 1, 1, tzinfo=UTC))),
        zigzag_varint(ts_max),
        encode_reference(rec(1, currency="€" * 40, channel="x" * 200)),
        b'{"transaction_id": "j1", "person_id": "p", "merchant_id": "m", "amount": 1600, '
        b'"timestamp": "2026-12-24T18:00:00Z"}',
        b"not json at all",
    ]


def test_edge_cases_and_the_contracts_malformed_variants_agree_with_one_by_one():
    values = edge_cases()
    for v in emulator_messages(20):
        values += AvroBinarizer.malformed_variants(v)
    facts = TopicFacts()
    count_batch(facts, values, [False] * len(values), TH)
    same(facts, one_by_one(values))
    assert facts.invalid >= 10 and facts.valid >= 10
    got = avro_scan.scan(values)
    for i in np.flatnonzero(got.valid):                        # every fast yes is the slow way's yes
        assert _plain_avro(values[int(i)]) == (got.transaction_id(int(i)), int(got.cents[int(i)]))


@pytest.mark.parametrize("seed", range(4))
def test_random_corruptions_agree_with_one_by_one(seed):
    r = random.Random(seed)
    values = []
    for v in emulator_messages(400, seed) + [encode_reference(rec(i)) for i in range(400)]:
        b = bytearray(v)
        kind = r.randrange(6)
        if kind == 0:
            b[r.randrange(len(b))] = r.randrange(256)                   # one byte anywhere
        elif kind == 1:
            del b[r.randrange(len(b)):]                                 # cut short
        elif kind == 2:
            b += bytes(r.randrange(256) for _ in range(r.randrange(1, 4)))   # trailing bytes
        elif kind == 3:
            i = r.randrange(5, len(b))
            b[i:i] = bytes([r.choice([0x80, 0xFF, 0x01, 0x7F])])        # a stray byte inside
        values.append(bytes(b))
    pending = [r.random() < 0.3 for _ in values]
    facts = TopicFacts(complete=False)
    count_batch(facts, values, pending, TH)
    same(facts, one_by_one(values, pending))
    assert 0 < facts.invalid < facts.messages


def test_a_batch_without_avro_goes_one_by_one_and_none_is_invalid():
    values = [None, b'{"x": 1}', b""]
    facts = TopicFacts()
    count_batch(facts, values, [False, True, False], TH)
    same(facts, one_by_one(values, [False, True, False]))
    assert (facts.messages, facts.invalid, facts.pending_messages) == (3, 3, 1)
    count_batch(facts, [], [], TH)
    assert facts.messages == 3
