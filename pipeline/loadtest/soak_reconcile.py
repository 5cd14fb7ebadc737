"""After a soak: what reached the topic vs what is in Delta, by transaction id.

In a soak the emulator is the one ``run`` starts (and chaos may kill it with -9, losing
whatever it had not yet written down), so the reference is the topic itself: every
message of the run's topic from the start to its log end is read back and checked with
the contract's validator. expected = distinct transaction ids of the valid messages over
the threshold; they are compared with the ``high_value`` table's ids by
`reconcile.compare_ids` (lost, duplicated, unexpected). The distinct valid transactions
are compared with the sum of ``sales_count`` over ``sales_agg`` (each batch appends its
own partial rows).

Reading is fast for the usual case: a value that is plainly valid (Avro: the framing, three
ids of the allowed length, an amount in range and the rest of the record well formed; JSON:
an object whose fields have the right types, an amount with at most the contract's decimals
and a timestamp of the contract's pattern that Python parses) is counted without the full
validator; anything else goes through `pipeline.contract.validate.validate`, so the verdict
is the contract's. Each consumed batch's Avro messages are read all at once
(`avro_scan.scan`, about seven times the one-message way); the messages it does not call
plainly valid go the one-message way (`classify`). Distinct valid ids are kept as 64-bit
FNV-1a hashes (`avro_scan.id_hash`; an hour at 10,000 tx/s is 36 million of them).
"""

from __future__ import annotations

import json
import math
from array import array
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.contract.avro import HEADER_SIZE, MAGIC, SCHEMA_ID
from pipeline.contract.errors import Invalid
from pipeline.contract.fields import (
    AMOUNT,
    AMOUNT_SCALE,
    ID_FIELDS,
    MAX_AMOUNT,
    MAX_ID_LENGTH,
    REQUIRED_FIELDS,
    TIMESTAMP,
    TIMESTAMP_RE,
    TRANSACTION_ID,
)
from pipeline.contract.tables import HIGH_VALUE, SALES_AGG
from pipeline.contract.validate import validate
from pipeline.loadtest import avro_scan
from pipeline.loadtest.avro_scan import MAX_CENTS, MAX_MICROS, MIN_MICROS, id_hash
from pipeline.loadtest.reconcile import MAX_EXAMPLES, Reconciliation, compare_ids, read_high_value

BATCH = 10_000


@dataclass
class TopicFacts:
    """What the topic holds: messages read, valid ones, distinct valid ids, high-value ids.

    When the scan was told how far the job had committed (``processed``), the messages past
    that point are kept apart as *pending*: the job has not processed them yet, so they are
    neither expected in Delta nor, when they are there (a batch written after the offsets
    were read), unexpected.
    """

    messages: int = 0
    valid: int = 0
    invalid: int = 0
    high_value_ids: list[str] = field(default_factory=list)
    valid_hashes: array = field(default_factory=lambda: array("q"))
    complete: bool = True
    pending_messages: int = 0
    pending_high_value_ids: list[str] = field(default_factory=list)
    pending_valid_hashes: array = field(default_factory=lambda: array("q"))

    def distinct_valid(self) -> int:
        return _distinct(self.valid_hashes)

    def distinct_valid_with_pending(self) -> int:
        return _distinct(self.valid_hashes + self.pending_valid_hashes)


def _distinct(hashes: array) -> int:
    return int(np.unique(np.frombuffer(hashes, dtype=np.int64)).size) if hashes else 0


def _plain(obj: Any) -> tuple[str, Decimal] | None:
    """(transaction id, amount) when `obj` is plainly valid by the contract, else None (ask the validator)."""
    if not isinstance(obj, dict):
        return None
    for name in REQUIRED_FIELDS:
        if obj.get(name) is None:
            return None
    for name in ID_FIELDS:
        v = obj[name]
        if not isinstance(v, str) or not 1 <= len(v) <= MAX_ID_LENGTH:
            return None
    amount, ts = obj[AMOUNT], obj[TIMESTAMP]
    if not isinstance(amount, Decimal) or not amount.is_finite() or not 0 < amount <= MAX_AMOUNT \
            or amount.as_tuple().exponent < -AMOUNT_SCALE:
        return None
    if not isinstance(ts, str) or not TIMESTAMP_RE.match(ts):
        return None
    try:
        datetime.fromisoformat(ts.replace("z", "Z").replace("t", "T"))
    except ValueError:
        return None
    return obj[TRANSACTION_ID], amount


def _varint(b: bytes, i: int) -> tuple[int, int]:
    """Avro's zig-zag varint at `i`: (value, next index); IndexError past the end."""
    shift = acc = 0
    while True:
        byte = b[i]
        i += 1
        acc |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return (acc >> 1) ^ -(acc & 1), i
        shift += 7
        if shift > 63:
            raise IndexError("varint too long")


def _plain_avro(b: bytes) -> tuple[str, int] | None:
    """(transaction id, amount in cents) of a framed Avro message that is plainly valid: schema id 1,
    three ids of 1..MAX_ID_LENGTH bytes, an amount in (0, MAX_AMOUNT], the timestamp, four optional
    strings, nothing after; None = ask the validator."""
    try:
        if b[0] != MAGIC or int.from_bytes(b[1:HEADER_SIZE], "big") != SCHEMA_ID:
            return None
        i, ids = HEADER_SIZE, []
        for _ in range(3):
            n, i = _varint(b, i)
            if not 1 <= n <= MAX_ID_LENGTH:
                return None
            ids.append(b[i:i + n])
            i += n
        n, i = _varint(b, i)
        if not 1 <= n <= 8:
            return None
        cents = int.from_bytes(b[i:i + n], "big", signed=True)
        i += n
        micros, i = _varint(b, i)           # timestamp-micros: within the years Python can hold
        if not MIN_MICROS < micros < MAX_MICROS:
            return None
        for _ in range(4):                  # currency, merchant_category, country, channel: null | string
            branch, i = _varint(b, i)
            if branch == 1:
                n, i = _varint(b, i)
                i += n
            elif branch != 0:
                return None
        if i != len(b) or not 0 < cents <= MAX_CENTS:
            return None
        tid = ids[0].decode("utf-8")
        ids[1].decode("utf-8"), ids[2].decode("utf-8")
        return tid, cents
    except (IndexError, UnicodeDecodeError):
        return None


def classify(value: bytes | None, threshold: Decimal) -> tuple[str, bool] | None:
    """(transaction id, over the threshold) of a valid message, None for an invalid one."""
    if value is None:
        return None
    if value[:1] == b"\x00":
        fast = _plain_avro(value)
        if fast is not None:
            return fast[0], fast[1] > threshold * 100
    elif value[:1] == b"{":
        try:
            plain = _plain(json.loads(value, parse_float=Decimal, parse_int=Decimal))
        except (ValueError, RecursionError):
            plain = None
        if plain is not None:
            return plain[0], plain[1] > threshold
    try:
        record = validate(value)
    except Invalid:
        return None
    return record[TRANSACTION_ID], record[AMOUNT] > threshold


def scan_topic(kafka: dict[str, Any], topic: str, threshold: Decimal, timeout_s: float = 3600.0,
               processed: dict[int, int] | None = None) -> TopicFacts:
    """Read the topic from the start to its log end (taken now) and classify every message.

    `processed` (partition -> the job's committed end offset) marks the messages at or past
    it as pending; None means the job has processed the whole topic.
    """
    import time

    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    # Big fetches and a deep prefetch queue: with librdkafka's defaults (1 MB per partition and
    # fetch) `consume` itself took 31 of 36 s for 5 M messages of the soak's topic; with these,
    # 3.8 of 8 s (140 k -> 626 k messages/s). The queue stays within queued.max.messages.kbytes.
    c = Consumer({**kafka, "group.id": "tormenta-soak-reconcile", "enable.auto.commit": False,
                  "enable.partition.eof": False, "fetch.max.bytes": 52_428_800,
                  "max.partition.fetch.bytes": 16_777_216, "queued.min.messages": 1_000_000})
    facts = TopicFacts(complete=processed is None)
    try:
        parts = sorted(c.list_topics(topic, timeout=10).topics[topic].partitions)
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)[1] for p in parts}
        todo = {p for p in parts if ends[p] > 0}
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in todo])
        deadline = time.monotonic() + timeout_s
        while todo and time.monotonic() < deadline:
            values, pending = [], []
            for msg in c.consume(BATCH, timeout=1.0):
                if msg.error() is not None or msg.partition() not in todo:
                    continue
                values.append(msg.value())
                pending.append(processed is not None and msg.offset() >= processed.get(msg.partition(), 0))
                if msg.offset() >= ends[msg.partition()] - 1:
                    todo.discard(msg.partition())
            count_batch(facts, values, pending, threshold)
        if todo:
            raise TimeoutError(f"the topic was not read to its end within {timeout_s:.0f} s")
    finally:
        c.close()
    facts.complete = facts.pending_messages == 0   # the job had committed all there was after all
    return facts


def _count(facts: TopicFacts, got: tuple[str, bool] | None, pending: bool = False) -> None:
    facts.messages += 1
    if pending:
        facts.pending_messages += 1
    if got is None:
        facts.invalid += 1
        return
    tid, high = got
    facts.valid += 1
    (facts.pending_valid_hashes if pending else facts.valid_hashes).append(id_hash(tid))
    if high:
        (facts.pending_high_value_ids if pending else facts.high_value_ids).append(tid)


def count_batch(facts: TopicFacts, values: list[bytes | None], pending: list[bool], threshold: Decimal) -> None:
    """`_count` for a consumed batch: the plainly valid Avro messages read all at once
    (`avro_scan.scan`), every other message one by one (`classify`)."""
    framed = [i for i, v in enumerate(values) if v is not None and v[:1] == b"\x00"]
    fast = avro_scan.scan([values[i] for i in framed]) if framed else None
    done = np.zeros(len(values), dtype=bool)
    if fast is not None and fast.valid.any():
        where = np.asarray(framed, dtype=np.int64)
        late = np.asarray(pending, dtype=bool)[where]
        over = fast.valid & (fast.cents > math.floor(threshold * 100))   # whole cents: > t is > floor(t)
        for valid_hashes, high_ids, mask in ((facts.valid_hashes, facts.high_value_ids, ~late),
                                             (facts.pending_valid_hashes, facts.pending_high_value_ids, late)):
            valid_hashes.extend(fast.hashes[fast.valid & mask].tolist())
            high_ids.extend(fast.transaction_id(int(j)) for j in np.flatnonzero(over & mask))
        n = int(fast.valid.sum())
        facts.messages += n
        facts.valid += n
        facts.pending_messages += int((fast.valid & late).sum())
        done[where[fast.valid]] = True
    for i in np.flatnonzero(~done):
        _count(facts, classify(values[i], threshold), pending=pending[i])


def sales_count(delta_dir: Path) -> int | None:
    """Sum of ``sales_count`` over the sales_agg table (None when there is no table)."""
    from pipeline.read.readers import read_columns

    path = delta_dir / SALES_AGG
    if not (path / "_delta_log").is_dir():
        return None
    col = read_columns(path, ["sales_count"]).column("sales_count")
    return int(sum(v for v in col.to_pylist() if v is not None))


def reconcile_soak(facts: TopicFacts, delta_dir: Path) -> tuple[Reconciliation, dict[str, Any]]:
    """The high_value comparison by id, and the sales_agg count against the distinct valid transactions.

    Read Delta after the job's committed offsets (the job writes a batch before it commits
    it, so Delta holds at least what was committed). When the facts are not complete, the
    ids past the committed offsets that are not in Delta are *not yet processed*, not lost,
    and the sales_agg count can only be bounded, not matched.
    """
    ids, _, _ = read_high_value(delta_dir / HIGH_VALUE)
    return compare_soak(facts, ids, sales_count(delta_dir))


def compare_soak(facts: TopicFacts, ids: list[str], agg: int | None) -> tuple[Reconciliation, dict[str, Any]]:
    """Pure: `reconcile_soak` once Delta's high-value ids and the sales_agg count are read."""
    rec = compare_ids(facts.high_value_ids + facts.pending_high_value_ids, ids)
    distinct = facts.distinct_valid()
    rec.totals = {"topic_messages": facts.messages, "valid": facts.valid, "invalid": facts.invalid,
                  "distinct_valid": distinct, "sales_agg_count": agg}
    if facts.complete:
        return rec, {"distinct_valid": distinct, "sales_agg_count": agg, "exact": True,
                     "ok": agg is not None and agg == distinct,
                     "difference": None if agg is None else agg - distinct}
    in_delta, processed = set(ids), set(facts.high_value_ids)
    lost = sorted(processed - in_delta)
    not_yet = set(facts.pending_high_value_ids) - processed - in_delta
    rec.lost, rec.lost_examples = len(lost), lost[:MAX_EXAMPLES]
    rec.not_yet_processed, rec.complete = len(not_yet), False
    rec.note = (f"the job had not caught up: {facts.pending_messages:,} messages past its committed offsets, "
                f"{len(not_yet):,} high-value ids among them not in Delta yet (not yet processed, not lost)")
    upper = facts.distinct_valid_with_pending()
    rec.totals |= {"pending_messages": facts.pending_messages, "distinct_valid_with_pending": upper}
    return rec, {"distinct_valid": distinct, "distinct_valid_with_pending": upper, "sales_agg_count": agg,
                 "exact": False, "ok": agg is not None and distinct <= agg <= upper,
                 "difference": None if agg is None else agg - distinct}
