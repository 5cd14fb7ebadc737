"""Fault injection: the emulator's fault knobs applied to an encoded batch.

Duplicate deliveries (the same key and bytes sent twice), malformed messages (bytes that
break the contract in one of several ways, per wire format) and late events (event time
moved into the past, still valid). All knobs are 0 by default, and then a batch passes
through untouched. The wire-format specific parts (how to re-stamp a message, how to
break it) come from the binarizer in use, so the knobs work the same for JSON and Avro.
"""

from __future__ import annotations

import numpy as np

from pipeline.emulator.binarizer import EncodedBatch, JsonBinarizer


class FaultInjector:
    """Duplicates, malformed messages and late events, as shares of the records (0..1)."""

    def __init__(self, duplicates: float = 0.0, malformed: float = 0.0, late: float = 0.0,
                 late_seconds: float = 900.0, seed: int | None = None, wire=None):
        self.rng = np.random.default_rng(seed)
        self.wire = wire if wire is not None else JsonBinarizer()
        self.configure(duplicates=duplicates, malformed=malformed, late=late, late_seconds=late_seconds)
        self.counts = {"duplicates": 0, "malformed": 0, "late": 0}

    def configure(self, *, duplicates: float = 0.0, malformed: float = 0.0, late: float = 0.0,
                  late_seconds: float = 900.0) -> None:
        self.duplicates, self.malformed, self.late = float(duplicates), float(malformed), float(late)
        self.late_seconds = float(late_seconds)

    @property
    def active(self) -> bool:
        return self.duplicates > 0 or self.malformed > 0 or self.late > 0

    def _picked(self, n: int, share: float) -> list[int]:
        return np.flatnonzero(self.rng.random(n) < share).tolist() if share > 0 else []

    def apply(self, batch: EncodedBatch, now: float) -> EncodedBatch:
        n = len(batch)
        if not self.active or n == 0:
            return batch
        keys, values, high = list(batch.keys), list(batch.values), list(batch.high)
        for i in self._picked(n, self.late):
            moved = self.wire.restamp(values[i], now - self.late_seconds)
            if moved is not None:
                values[i] = moved
                self.counts["late"] += 1
        for i in self._picked(n, self.malformed):
            variants = self.wire.malformed_variants(values[i])
            values[i] = variants[int(self.rng.integers(0, len(variants)))]
            high[i] = False
            self.counts["malformed"] += 1
        dup = set(self._picked(n, self.duplicates))
        if not dup:
            return EncodedBatch(keys, values, high)
        self.counts["duplicates"] += len(dup)
        out = EncodedBatch()
        for i in range(n):
            # The copy is never "high": its id was already counted (and recorded) once.
            copies = ((keys[i], values[i], high[i]), (keys[i], values[i], False)) if i in dup else \
                ((keys[i], values[i], high[i]),)
            for key, value, flag in copies:
                out.keys.append(key)
                out.values.append(value)
                out.high.append(flag)
        return out

