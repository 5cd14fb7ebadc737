"""The live topic's tail, shared by every reader in one process (the Live page, tests, benches).

`LiveTail` assigns itself every partition of ``TORMENTA_LIVE_TOPIC`` at the records of the
last `LOOKBACK_S` seconds (no consumer group joins, nothing is committed), and a background
thread keeps polling into a bounded buffer of `LiveSale` rows. The live lane writes at
least once, so a transaction_id seen before is dropped and counted (`duplicates`).
`snapshot()` hands out a consistent copy; the figures the page shows come from the pure
functions below it, which the unit tests call on hand-made rows.

    tail = LiveTail(settings).start()
    snap = tail.snapshot()
    window_totals(snap.sales, now_ms, 10)         # (count, amount) over the last 10 s
    tail.close()
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from datetime import UTC, datetime

import pandas as pd

from pipeline.contract.fields import AMOUNT, COUNTRY, EVENT_TIME, MERCHANT_CATEGORY, MERCHANT_ID, TRANSACTION_ID
from pipeline.contract.live import SOURCE_TIMESTAMP
from pipeline.settings import Settings

log = logging.getLogger(__name__)
LOOKBACK_S = 300          # the page's longest view: the per-second chart of 5 minutes
CAPACITY = 50_000         # rows kept (newest); ~10 min of high-value sales at a 50k tx/s storm
SEEN_CAPACITY = 200_000   # transaction ids remembered for dropping duplicates
ROLE = "app"              # the dashboard's Kafka identity reads the live topic
GROUP = "tormenta-offsets"  # librdkafka wants a group id; assign() never joins or commits it


@dataclass(frozen=True)
class LiveSale:
    transaction_id: str
    amount: float
    merchant_id: str | None
    merchant_category: str | None
    country: str | None
    event_time: str | None
    source_ms: int          # the input record's Kafka timestamp (ms)
    written_ms: int         # the live record's Kafka timestamp: when the lane wrote it
    received_ms: int        # when this process read it

    @property
    def latency_ms(self) -> int:
        """Event -> live topic -> here: the receive time minus the input record's timestamp."""
        return self.received_ms - self.source_ms


def parse_record(key: bytes | None, value: bytes | None, written_ms: int, received_ms: int) -> LiveSale | None:
    """One live-topic record -> LiveSale, or None when it is not a live record (never raises)."""
    try:
        doc = json.loads(value or b"")
        tid = doc[TRANSACTION_ID]
        return LiveSale(str(tid), float(doc[AMOUNT]), doc.get(MERCHANT_ID), doc.get(MERCHANT_CATEGORY),
                        doc.get(COUNTRY), doc.get(EVENT_TIME), int(doc[SOURCE_TIMESTAMP]), int(written_ms),
                        int(received_ms))
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


@dataclass(frozen=True)
class TailSnapshot:
    sales: tuple[LiveSale, ...]    # oldest first, duplicates dropped
    duplicates: int
    malformed: int
    last_received_ms: int | None
    error: str | None              # the consumer's last error, if any (e.g. a refused ACL)


class DedupBuffer:
    """Bounded rows plus a bounded memory of ids: a repeated transaction_id is dropped and counted."""

    def __init__(self, capacity: int = CAPACITY, seen_capacity: int = SEEN_CAPACITY):
        self.rows: deque[LiveSale] = deque(maxlen=capacity)
        self.seen: OrderedDict[str, None] = OrderedDict()
        self.seen_capacity = seen_capacity
        self.duplicates = 0

    def add(self, sale: LiveSale) -> bool:
        if sale.transaction_id in self.seen:
            self.duplicates += 1
            return False
        self.seen[sale.transaction_id] = None
        if len(self.seen) > self.seen_capacity:
            self.seen.popitem(last=False)
        self.rows.append(sale)
        return True


class LiveTail:
    """One consumer of the live topic with a background poller (start it once per process)."""

    def __init__(self, settings: Settings, *, lookback_s: float = LOOKBACK_S, capacity: int = CAPACITY):
        self.settings = settings
        self.lookback_s = lookback_s
        self.buffer = DedupBuffer(capacity)
        self.malformed = 0
        self.last_received_ms: int | None = None
        self.error: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> LiveTail:
        self._thread = threading.Thread(target=self._run, name="tormenta-live-tail", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def snapshot(self) -> TailSnapshot:
        with self._lock:
            return TailSnapshot(tuple(self.buffer.rows), self.buffer.duplicates, self.malformed,
                                self.last_received_ms, self.error)

    # ---- the poller ---------------------------------------------------------------------
    def _consumer(self):
        from confluent_kafka import Consumer

        from pipeline.kafka.security import client_config

        return Consumer(client_config(self.settings, ROLE, {
            "group.id": GROUP, "enable.auto.commit": False, "enable.auto.offset.store": False,
            "fetch.wait.max.ms": 50, "error_cb": self._on_error}))

    def _on_error(self, err) -> None:
        with self._lock:
            self.error = err.str() if hasattr(err, "str") else str(err)

    def _assign(self, consumer) -> bool:
        from confluent_kafka import OFFSET_END, TopicPartition

        topic = self.settings.live_topic
        md = consumer.list_topics(topic, timeout=5)
        t = md.topics.get(topic)
        if t is None or t.error is not None or not t.partitions:
            with self._lock:
                self.error = f"live topic {topic} is not there yet ({t.error.str() if t and t.error else 'no partitions'})"
            return False
        since = int((time.time() - self.lookback_s) * 1000)
        wanted = [TopicPartition(topic, p, since) for p in sorted(t.partitions)]
        found = consumer.offsets_for_times(wanted, timeout=10)
        # No record that new in a partition: librdkafka answers -1 (the end).
        consumer.assign([TopicPartition(topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_END)
                         for tp in found])
        with self._lock:
            self.error = None
        return True

    def _run(self) -> None:
        consumer = None
        try:
            consumer = self._consumer()
            while not self._stop.is_set() and not self._assign(consumer):
                self._stop.wait(2.0)
            while not self._stop.is_set():
                for msg in consumer.consume(500, 0.2):
                    if msg.error() is not None:
                        self._on_error(msg.error())
                        continue
                    self._take(msg)
        except Exception as exc:  # noqa: BLE001 - the page shows it; the tail must never take the app down
            log.warning("live tail stopped: %s", exc)
            with self._lock:
                self.error = str(exc)
        finally:
            if consumer is not None:
                consumer.close()

    def _take(self, msg) -> None:
        now = int(time.time() * 1000)
        _, written = msg.timestamp()
        sale = parse_record(msg.key(), msg.value(), written, now)
        with self._lock:
            self.last_received_ms = now
            if sale is None:
                self.malformed += 1
            else:
                self.buffer.add(sale)


# ---- figures (pure) ---------------------------------------------------------------------------
def window_totals(sales: tuple[LiveSale, ...] | list[LiveSale], now_ms: int, seconds: float) -> tuple[int, float]:
    """(count, amount) of the sales whose input record arrived in the last `seconds`."""
    since = now_ms - seconds * 1000
    picked = [s.amount for s in sales if since < s.source_ms <= now_ms]
    return len(picked), round(sum(picked), 2)


def per_second(sales, now_ms: int, span_s: int = LOOKBACK_S) -> pd.DataFrame:
    """Count and amount per second over the last `span_s` seconds (every second present, zeros included)."""
    end = now_ms // 1000
    seconds = pd.RangeIndex(end - span_s + 1, end + 1)
    df = pd.DataFrame([(s.source_ms // 1000, s.amount) for s in sales], columns=["second", "amount"])
    df = df[df["second"].between(seconds[0], seconds[-1])]
    grouped = df.groupby("second")["amount"].agg(["count", "sum"]).reindex(seconds, fill_value=0)
    return pd.DataFrame({"time": pd.to_datetime(seconds * 1000, unit="ms", utc=True),
                         "count": grouped["count"].astype(int).to_numpy(),
                         "amount": grouped["sum"].astype(float).round(2).to_numpy()})


def latency_quantiles(sales, now_ms: int, span_s: float = 60) -> dict[str, float | int | None]:
    """Event -> live topic -> this reader, p50/p95/p99 in ms over the sales received in the last `span_s`."""
    lat = sorted(s.latency_ms for s in sales if s.received_ms > now_ms - span_s * 1000)
    if not lat:
        return {"n": 0, "p50": None, "p95": None, "p99": None}
    return {"n": len(lat), **{f"p{q}": float(pd.Series(lat).quantile(q / 100)) for q in (50, 95, 99)}}


def ticker(sales, now_ms: int, n: int = 20) -> pd.DataFrame:
    """The newest `n` sales, newest first, with their age."""
    newest = sorted(sales, key=lambda s: s.source_ms, reverse=True)[:n]
    return pd.DataFrame({
        "amount": [s.amount for s in newest],
        "merchant": [s.merchant_id for s in newest],
        "category": [s.merchant_category for s in newest],
        "country": [s.country for s in newest],
        "age": [format_age(now_ms - s.source_ms) for s in newest],
        "transaction_id": [s.transaction_id for s in newest],
    })


def format_age(ms: int) -> str:
    ms = max(0, int(ms))
    if ms < 1000:
        return f"{ms} ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    return f"{ms // 60_000} min {ms % 60_000 // 1000} s"


def per_minute(sales, now_ms: int, minutes: int = 5) -> pd.DataFrame:
    """Live count per complete minute of the input record's Kafka timestamp (high_value's ingest_time), the last `minutes`."""
    this_minute = now_ms // 60_000
    wanted = list(range(this_minute - minutes, this_minute))
    counts = {m: 0 for m in wanted}
    for s in sales:
        m = s.source_ms // 60_000
        if m in counts:
            counts[m] += 1
    return pd.DataFrame({"minute": [datetime.fromtimestamp(m * 60, UTC) for m in wanted],
                         "live": [counts[m] for m in wanted]})


def provisional_vs_settled(live: pd.DataFrame, settled: dict[datetime, int]) -> pd.DataFrame:
    """The live count per minute next to Delta's settled count for that minute, and the difference."""
    out = live.copy()
    out["settled"] = [settled.get(m, 0) for m in out["minute"]]
    out["difference"] = out["live"] - out["settled"]
    return out
