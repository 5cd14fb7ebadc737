"""After a run: did every high-value transaction of Delta reach the live topic, and how fast?

`read_live_topic` reads the whole live topic once (assigned partitions, no group) into
`LiveRow`s; `reconcile_live` compares them with the ids of Delta's high_value table:
missed (in Delta, never on the live topic: must be 0), extra (on the live topic, not in
Delta), duplicates (the same id written more than once: at-least-once delivery), and the
lane's latency per time window: the live record's own Kafka timestamp (when the lane wrote
it) minus the input record's (`source_timestamp`). Meant for the load test's steps and the
bench; pure apart from the reading.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.live.tail import parse_record
from pipeline.settings import Settings

MAX_EXAMPLES = 10


@dataclass(frozen=True)
class LiveRow:
    transaction_id: str
    source_ms: int
    written_ms: int

    @property
    def latency_ms(self) -> int:
        return self.written_ms - self.source_ms


def live_log_end(settings: Settings, role: str = "admin") -> int:
    """The live topic's log-end offsets summed over its partitions (0 when it does not exist)."""
    from confluent_kafka import Consumer, TopicPartition

    from pipeline.kafka.security import client_config

    topic = settings.live_topic
    c = Consumer(client_config(settings, role, {"group.id": "tormenta-offsets", "enable.auto.commit": False}))
    try:
        md = c.list_topics(topic, timeout=10)
        parts = sorted(md.topics[topic].partitions) if topic in md.topics else []
        return sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts)
    finally:
        c.close()


def read_when_settled(expected_ids: set[str], read: Callable[[], list[LiveRow]], log_end: Callable[[], int], *,
                      timeout: float = 120.0, quiet: float = 10.0, every: float = 1.0,
                      clock: Callable[[], float] = time.monotonic,
                      sleep: Callable[[float], None] = time.sleep) -> tuple[list[LiveRow], float]:
    """The live topic once the lane has caught up: (rows, seconds waited).

    The lane runs beside the job and may still be writing when the job has caught up. Read
    until every expected id is there; else until the topic's log end has not moved for
    `quiet` seconds (the lane has nothing more to write), or `timeout` passed."""
    start = clock()
    last_end, moved_at = log_end(), clock()
    rows = read()  # reads at least up to last_end
    while reconcile_live(expected_ids, rows).missed and clock() - start < timeout:
        sleep(every)
        end = log_end()
        if end != last_end:
            last_end, moved_at = end, clock()
            rows = read()
        elif clock() - moved_at >= quiet:
            break  # nothing new for `quiet` seconds: what is missing stays missing
    return rows, round(clock() - start, 1)


def read_live_topic(settings: Settings, role: str = "admin", timeout: float = 30.0) -> list[LiveRow]:
    """Every live record now on the topic (up to the log-end offsets seen at the start)."""
    from confluent_kafka import Consumer, TopicPartition

    from pipeline.kafka.security import client_config

    topic = settings.live_topic
    c = Consumer(client_config(settings, role, {"group.id": "tormenta-offsets", "enable.auto.commit": False}))
    try:
        md = c.list_topics(topic, timeout=10)
        parts = sorted(md.topics[topic].partitions) if topic in md.topics else []
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in parts}
        c.assign([TopicPartition(topic, p, low) for p, (low, _) in ends.items()])
        todo = {p for p, (low, high) in ends.items() if high > low}
        rows: list[LiveRow] = []
        deadline = time.monotonic() + timeout
        while todo and time.monotonic() < deadline:
            for msg in c.consume(5000, 0.5):
                if msg.error() is not None:
                    continue
                s = parse_record(msg.key(), msg.value(), msg.timestamp()[1], 0)
                if s is not None:
                    rows.append(LiveRow(s.transaction_id, s.source_ms, s.written_ms))
                if msg.offset() >= ends[msg.partition()][1] - 1:
                    todo.discard(msg.partition())
        return rows
    finally:
        c.close()


def latency(rows: list[LiveRow]) -> dict[str, float | None]:
    lat = np.asarray([r.latency_ms for r in rows], dtype=float)
    if not lat.size:
        return {"n": 0, "p50": None, "p95": None, "p99": None}
    return {"n": int(lat.size), **{f"p{q}": float(np.percentile(lat, q)) for q in (50, 95, 99)}}


@dataclass(frozen=True)
class LiveReconciliation:
    delta_ids: int
    live_ids: int
    missed: int
    extra: int
    duplicates: int
    missed_examples: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return self.missed == 0

    def as_dict(self) -> dict[str, Any]:
        return {"delta_ids": self.delta_ids, "live_ids": self.live_ids, "missed": self.missed, "extra": self.extra,
                "duplicates": self.duplicates, "missed_examples": list(self.missed_examples), "ok": self.ok}

    def sentence(self) -> str:
        if self.ok:
            return (f"Every one of the {self.delta_ids:,} high-value transactions in Delta reached the live topic "
                    f"({self.duplicates:,} written more than once).")
        return (f"{self.missed:,} of {self.delta_ids:,} high-value transactions in Delta never reached the live "
                f"topic (e.g. {', '.join(self.missed_examples[:3])}).")


def reconcile_live(delta_ids: list[str] | set[str], rows: list[LiveRow]) -> LiveReconciliation:
    counts = Counter(r.transaction_id for r in rows)
    expected = set(delta_ids)
    missed = sorted(expected - counts.keys())
    return LiveReconciliation(len(expected), len(counts), len(missed), len(counts.keys() - expected),
                              sum(n - 1 for n in counts.values()), tuple(missed[:MAX_EXAMPLES]))


def latency_per_window(rows: list[LiveRow], windows: list[tuple[float, float]]) -> list[dict[str, float | None]]:
    """The lane's latency of the records whose input arrived in each [start, end) (epoch seconds)."""
    return [latency([r for r in rows if start * 1000 <= r.source_ms < end * 1000]) for start, end in windows]
