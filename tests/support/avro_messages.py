"""Avro transactions as the emulator sends them, and the soak reconciliation's one-message count
to hold the batch reader (pipeline.loadtest.avro_scan) and the topic scan against."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal

from pipeline.emulator.binarizer import AvroBinarizer
from pipeline.loadtest.soak_reconcile import TopicFacts, _count, classify

TH = Decimal("1500")


def rec(i: int, **over):
    base = {"transaction_id": f"T{i:09d}", "person_id": f"P{i % 977:05d}", "merchant_id": f"M{i % 131:04d}",
            "amount": Decimal(i % 400_000) / 100 + Decimal("0.01"),
            "timestamp": datetime(2026, 12, 24, 18, tzinfo=UTC), "currency": "EUR" if i % 3 else None,
            "merchant_category": "toys", "country": None if i % 5 else "ES", "channel": "web"}
    return base | over


def emulator_messages(n: int, seed: int = 7) -> list[bytes]:
    """What the emulator sends: its templates, rendered as in a storm."""
    rows = [{k: (v.isoformat() if isinstance(v, datetime) else v)
             for k, v in rec(i, amount=Decimal((i + 1) * 6101) / 100).items()}
            for i in range(50)]   # 61.01 .. 3,050.50: half over the threshold
    templates = AvroBinarizer().templates(rows)
    pick = random.Random(seed)
    index = [pick.randrange(len(rows)) for _ in range(n)]
    return templates.render(b"S20261224-", 1, index, 1_798_000_000.0)


def one_by_one(values, pending=None) -> TopicFacts:
    facts = TopicFacts()
    for i, v in enumerate(values):
        _count(facts, classify(v, TH), pending=bool(pending and pending[i]))
    return facts


def same(a: TopicFacts, b: TopicFacts) -> None:
    assert (a.messages, a.valid, a.invalid, a.pending_messages) == (b.messages, b.valid, b.invalid, b.pending_messages)
    assert Counter(a.valid_hashes) == Counter(b.valid_hashes)
    assert Counter(a.pending_valid_hashes) == Counter(b.pending_valid_hashes)
    assert Counter(a.high_value_ids) == Counter(b.high_value_ids)
    assert Counter(a.pending_high_value_ids) == Counter(b.pending_high_value_ids)
