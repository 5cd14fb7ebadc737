"""Binarizer and fault injection: records -> wire bytes.

The wire format is the contract's UTF-8 JSON (key = person_id as UTF-8). No compact
binary encoding is offered: the hot path already splices ids into pre-serialized JSON
templates, so a binary codec could only save bytes on the wire, which lz4 compression
mostly recovers, while every consumer would need a second decoder (see docs/EMULATOR.md).

`FaultInjector` applies the emulator's fault knobs to an encoded batch: duplicate
deliveries (the same key and bytes sent twice), malformed messages (bytes that break the
contract in one of several ways) and late events (event time moved into the past).
All knobs are 0 by default, and then a batch passes through untouched.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np

from pipeline.contract import Invalid, parse_timestamp
from pipeline.emulator.sources import Batch, EncodedBatch, iso_utc, to_json_bytes


class JsonBinarizer:
    """Contract JSON as UTF-8; key = person_id as UTF-8."""

    def __init__(self, threshold: Decimal = Decimal("1500")):
        self.threshold = Decimal(threshold)

    def encode(self, batch: Batch) -> EncodedBatch:
        if isinstance(batch, EncodedBatch):
            return batch
        out = EncodedBatch()
        for record in batch:
            if isinstance(record, (bytes, bytearray)):
                out.keys.append(None)
                out.values.append(bytes(record))
                out.high.append(False)
                continue
            out.keys.append(str(record["person_id"]).encode())
            out.values.append(to_json_bytes(record))
            out.high.append(_is_high(record.get("amount"), self.threshold))
        return out


def _is_high(amount: Any, threshold: Decimal) -> bool:
    try:
        return Decimal(str(amount)) > threshold
    except (ArithmeticError, ValueError):
        return False


def _malformed_variants(value: bytes) -> list[bytes]:
    """Ways a message can break the contract, each caught by a different job rule."""
    try:
        record = json.loads(value, parse_float=Decimal)
    except ValueError:
        return [value[: max(1, len(value) // 2)]]
    no_amount = {k: v for k, v in record.items() if k != "amount"}
    return [
        value[: max(1, len(value) // 2)],                    # truncated: not JSON
        to_json_bytes({**record, "amount": -abs(Decimal(str(record.get("amount", 1)))) or -1}),
        to_json_bytes(no_amount),                            # missing required field
        to_json_bytes({**record, "timestamp": "yesterday"}),  # unparseable timestamp
        b"\xff\xfenot utf-8",                                 # not UTF-8 at all
    ]


class FaultInjector:
    """Duplicates, malformed messages and late events, as shares of the records (0..1)."""

    def __init__(self, duplicates: float = 0.0, malformed: float = 0.0, late: float = 0.0,
                 late_seconds: float = 900.0, seed: int | None = None):
        self.rng = np.random.default_rng(seed)
        self.configure(duplicates=duplicates, malformed=malformed, late=late, late_seconds=late_seconds)
        self.counts = {"duplicates": 0, "malformed": 0, "late": 0}

    def configure(self, *, duplicates: float = 0.0, malformed: float = 0.0, late: float = 0.0,
                  late_seconds: float = 900.0) -> None:
        self.duplicates, self.malformed, self.late = float(duplicates), float(malformed), float(late)
        self.late_seconds = float(late_seconds)

    @property
    def active(self) -> bool:
        return self.duplicates > 0 or self.malformed > 0 or self.late > 0

    def apply(self, batch: EncodedBatch, now: float) -> EncodedBatch:
        n = len(batch)
        if not self.active or n == 0:
            return batch
        keys, values, high = list(batch.keys), list(batch.values), list(batch.high)
        if self.late > 0:
            late_ts = iso_utc(now - self.late_seconds)
            for i in np.flatnonzero(self.rng.random(n) < self.late).tolist():
                moved = _restamp(values[i], late_ts)
                if moved is not None:
                    values[i] = moved
                    self.counts["late"] += 1
        if self.malformed > 0:
            for i in np.flatnonzero(self.rng.random(n) < self.malformed).tolist():
                variants = _malformed_variants(values[i])
                values[i] = variants[int(self.rng.integers(0, len(variants)))]
                high[i] = False
                self.counts["malformed"] += 1
        if self.duplicates > 0:
            dup = set(np.flatnonzero(self.rng.random(n) < self.duplicates).tolist())
            if dup:
                out = EncodedBatch()
                for i in range(n):
                    out.keys.append(keys[i])
                    out.values.append(values[i])
                    out.high.append(high[i])
                    if i in dup:
                        # The copy is never "tracked": the id was already recorded once.
                        out.keys.append(keys[i])
                        out.values.append(values[i])
                        out.high.append(False)
                self.counts["duplicates"] += len(dup)
                return out
        return EncodedBatch(keys, values, high)


def _restamp(value: bytes, timestamp: str) -> bytes | None:
    try:
        record = json.loads(value, parse_float=Decimal)
        parse_timestamp(record["timestamp"])
    except (ValueError, KeyError, TypeError, Invalid):
        return None
    record["timestamp"] = timestamp
    return to_json_bytes(record)


def late_by(value: bytes, now: datetime | None = None) -> timedelta:
    """How far a message's event time lies behind `now` (tests and docs)."""
    now = now or datetime.now(UTC)
    return now - parse_timestamp(json.loads(value)["timestamp"])
