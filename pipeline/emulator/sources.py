"""Client sources: where the storm's transactions come from.

A source is anything with ``fetch(max_records, now) -> Batch`` (the `ClientSource`
protocol). A batch is either a list of records -- contract dicts, or raw ``bytes`` values
that are sent unchanged -- or an already encoded `EncodedBatch`. Everything downstream
(binarizer, fault injection, producer, pacing, control) is the same for every source, so
swapping the emulator for a real client feed means writing one class with a ``fetch``.

- `EmulatorSource`: draws random sample transactions and stamps each with a fresh unique
  transaction_id and the current event time. For speed it pre-serializes every sample
  once into a byte template and splices in only the id and the chunk's timestamp.
- `FileReplaySource`: replays a JSON-lines capture (optionally gzipped) in order, at its
  original pace (event-time gaps, optionally sped up) or at the emulator's set rate.
"""

from __future__ import annotations

import gzip
import json
import os
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from pipeline.contract import DEFAULT_THRESHOLD, Invalid, is_high_value, parse_timestamp, validate
from pipeline.contract.fields import AMOUNT, PERSON_ID, TIMESTAMP
from pipeline.emulator.binarizer import Batch, EncodedBatch, JsonBinarizer, iso_utc
from pipeline.errors import EmulatorError


@runtime_checkable
class ClientSource(Protocol):
    """What the emulator needs from a source of transactions."""

    #: True when the source sets its own pace (a replay at original speed); the emulator
    #: then asks it every few milliseconds instead of applying the target rate.
    self_paced: bool
    #: True once the source has nothing more to give (a finished replay); the emulator stops.
    exhausted: bool

    def fetch(self, max_records: int, now: float) -> Batch:
        """Up to `max_records` transactions; `now` is the wall-clock time (epoch seconds)."""
        ...


_SAMPLE_FIX = "set TORMENTA_SAMPLE_FILE or run `python samples/generate_samples.py`"
_REPLAY_FIX = "give --replay a JSON-lines capture (.jsonl or .jsonl.gz)"


def _open_lines(path: Path, what: str = "sample file", fix: str = _SAMPLE_FIX):
    if not path.exists():
        raise EmulatorError(f"{what} {path} does not exist; {fix}")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        return opener(path, "rb")
    except OSError as exc:
        raise EmulatorError(f"cannot read {what} {path}: {exc}") from None


def load_samples(path: Path | str) -> list[dict[str, Any]]:
    """All sample transactions of a JSON-lines file (.gz or plain); amounts kept exact."""
    path = Path(path)
    rows = []
    with _open_lines(path) as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line, parse_float=Decimal))
            except ValueError:
                raise EmulatorError(f"sample file {path} line {n} is not JSON") from None
    if not rows:
        raise EmulatorError(f"sample file {path} holds no transactions")
    return rows


class EmulatorSource:
    """N random sample transactions per fetch, each with a fresh id and the current event time.

    Ids are ``E<run>-<counter>``: a random run token (unique per process start) plus a
    counter, so they never repeat, not even across restarts, and cost a tenth of a uuid4.
    Values come already encoded in the `binarizer`'s wire format (JSON by default): every
    sample is pre-encoded once, and only the id and the timestamp are spliced in per fetch.
    """

    self_paced = False
    exhausted = False

    def __init__(self, sample_file: Path | str, threshold: Decimal = DEFAULT_THRESHOLD, *, seed: int | None = None,
                 samples: list[dict[str, Any]] | None = None, binarizer=None):
        rows = samples if samples is not None else load_samples(sample_file)
        binarizer = binarizer if binarizer is not None else JsonBinarizer(threshold)
        self.wire_format = binarizer.name
        self._rng = np.random.default_rng(seed)
        # A seeded source is reproducible (tests); otherwise the run token is random.
        token = f"{int(self._rng.integers(0, 2**32)):08x}" if seed is not None else os.urandom(4).hex()
        self.id_prefix = f"E{token}-".encode()
        self._counter = 0
        self.keys = [str(row[PERSON_ID]).encode() for row in rows]
        self.high = np.array([is_high_value(Decimal(str(row[AMOUNT])), threshold) for row in rows], dtype=bool)
        self.templates = binarizer.templates(rows)
        self.size = len(rows)

    def fetch(self, max_records: int, now: float) -> EncodedBatch:
        n = int(max_records)
        if n <= 0:
            return EncodedBatch()
        idx = self._rng.integers(0, self.size, n)
        start = self._counter
        self._counter += n
        index = idx.tolist()
        keys = self.keys
        values = self.templates.render(self.id_prefix, start, index, now)
        return EncodedBatch([keys[j] for j in index], values, self.high[idx].tolist())


class FileReplaySource:
    """Replays a JSON-lines capture in file order.

    ``speed=None`` replays at the emulator's target rate (records taken as they come);
    ``speed=1.0`` keeps the original pace given by the records' event-time gaps, 2.0 is
    twice as fast. Lines that are not valid by the contract are forwarded unchanged as
    raw bytes (a real feed sends them too; the streaming job quarantines them).
    ``restamp=True`` replaces each valid record's timestamp with the current time.
    """

    def __init__(self, path: Path | str, *, speed: float | None = None, restamp: bool = False, loop: bool = False):
        if speed is not None and speed <= 0:
            raise EmulatorError(f"replay speed {speed} must be > 0 (1.0 = original pace)")
        self.path = Path(path)
        self.speed = speed
        self.restamp = restamp
        self.loop = loop
        self.self_paced = speed is not None
        self.exhausted = False
        self.invalid = 0
        self._items: list[tuple[float | None, dict[str, Any] | bytes]] = []
        with _open_lines(self.path, "replay file", _REPLAY_FIX) as fh:
            for line in fh:
                line = line.rstrip(b"\r\n")
                if not line.strip():
                    continue
                try:
                    validate(line)
                    record = json.loads(line, parse_float=Decimal)
                    self._items.append((parse_timestamp(record[TIMESTAMP]).timestamp(), record))
                except Invalid:
                    self.invalid += 1
                    self._items.append((None, line))
        if not self._items:
            raise EmulatorError(f"capture {self.path} holds no records")
        times = [t for t, _ in self._items if t is not None]
        self._t0 = min(times) if times else 0.0
        self._pos = 0
        self._started: float | None = None
        self._last_offset = 0.0

    def __len__(self) -> int:
        return len(self._items)

    def fetch(self, max_records: int, now: float) -> list[dict[str, Any] | bytes]:
        if self.exhausted or max_records <= 0:
            return []
        if self._started is None:
            self._started = now
        out: list[dict[str, Any] | bytes] = []
        while len(out) < max_records and self._pos < len(self._items):
            t, item = self._items[self._pos]
            if self.speed is not None:
                # Invalid lines keep the pace of the record before them.
                offset = self._last_offset if t is None else (t - self._t0) / self.speed
                if offset > now - self._started:
                    break
                self._last_offset = offset
            if isinstance(item, dict) and self.restamp:
                item = {**item, TIMESTAMP: iso_utc(now)}
            out.append(item)
            self._pos += 1
        if self._pos >= len(self._items):
            if self.loop:
                self._pos, self._started, self._last_offset = 0, None, 0.0
            else:
                self.exhausted = True
        return out

