"""The live lane's metrics: its latency and records out, measured on its own output.

Spark's Real-time Mode reports no per-record latency in its progress (4.2), and the
query's rows do not know when the Kafka sink writes them. The live topic does: each
record's Kafka timestamp is the moment the lane's sink wrote it (the lane sets no
timestamp column, so the producer stamps it), and its value carries ``source_timestamp``,
the input record's Kafka timestamp. So a small consumer in the lane's process tails the
live topic from its end (assigned partitions, nothing committed) and observes, per record,

    latency = live record's Kafka timestamp - source_timestamp     (tormenta_live_latency_seconds)

and counts it (tormenta_live_records_out_total; a replay after a crash counts again, as it
is written again). The cost is one small read per high-value sale, a fraction of the storm,
in a Python thread beside the JVM; `source_timestamp` is found in the raw bytes without a
JSON parse.
"""

from __future__ import annotations

import logging
import threading

from prometheus_client import CollectorRegistry, Counter, Histogram

from pipeline.contract.live import SOURCE_TIMESTAMP
from pipeline.metrics.serve import new_registry
from pipeline.settings import Settings

log = logging.getLogger(__name__)
# 10 ms .. 1 min: the lane's goal is "within a second"; the alert looks at p95 > 1 s
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30, 60)
_FIELD = f'"{SOURCE_TIMESTAMP}":'.encode()
ROLE = "live"                      # the lane's own Kafka identity (it may read its output topic)
GROUP = "tormenta-live-metrics"    # under the lane's group prefix; assign() never joins or commits it


def source_ms(value: bytes | None) -> int | None:
    """`source_timestamp` of a live record's JSON value, read off the bytes (None if absent)."""
    if not value:
        return None
    at = value.rfind(_FIELD)
    if at < 0:
        return None
    start = at + len(_FIELD)
    end = start
    while end < len(value) and value[end:end + 1] in b" 0123456789":
        end += 1
    try:
        return int(value[start:end])
    except ValueError:
        return None


class LiveMetrics:
    """tormenta_live_* of one lane process, in its own registry."""

    def __init__(self, registry: CollectorRegistry | None = None):
        r = self.registry = registry if registry is not None else new_registry()
        self.latency = Histogram("tormenta_live_latency_seconds", "Input record's Kafka timestamp to the live "
                                 "record's (written by the lane)", buckets=LATENCY_BUCKETS, registry=r)
        self.records_out = Counter("tormenta_live_records_out_total", "Records the lane wrote to the live topic",
                                   registry=r)

    def observe(self, written_ms: int, value: bytes | None) -> None:
        """One record of the live topic."""
        src = source_ms(value)
        self.records_out.inc()
        if src is not None and written_ms > 0:
            self.latency.observe(max(0.0, (written_ms - src) / 1000))


class OutputTail:
    """A thread that feeds LiveMetrics from the live topic's new records until `close()`."""

    def __init__(self, settings: Settings, metrics: LiveMetrics):
        self.settings, self.metrics = settings, metrics
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tormenta-live-metrics", daemon=True)

    def start(self) -> OutputTail:
        self._thread.start()
        return self

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        from confluent_kafka import OFFSET_END, Consumer, TopicPartition

        from pipeline.kafka.security import client_config

        topic = self.settings.live_topic
        try:
            consumer = Consumer(client_config(self.settings, ROLE, {"group.id": GROUP, "enable.auto.commit": False,
                                                                    "fetch.wait.max.ms": 50}))
        except Exception as exc:  # noqa: BLE001 - metrics are never a reason to stop the lane
            log.warning("live lane metrics are off: cannot read %s (%s)", topic, exc)
            return
        try:
            meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
            parts = sorted(meta.partitions) if meta is not None and meta.error is None else []
            consumer.assign([TopicPartition(topic, p, OFFSET_END) for p in parts])
            while not self._stop.is_set():
                for msg in consumer.consume(500, 0.2):
                    if msg.error() is None:
                        self.metrics.observe(msg.timestamp()[1], msg.value())
        except Exception as exc:  # noqa: BLE001 - metrics are never a reason to stop the lane
            log.warning("live lane metrics stopped reading %s: %s", topic, exc)
        finally:
            consumer.close()


class LaneMetrics:
    """The lane process' endpoint (TORMENTA_METRICS_PORT + 1) and its output tail; `close()` stops both."""

    def __init__(self, settings: Settings):
        from pipeline.metrics import ports
        from pipeline.metrics.serve import serve

        self.metrics = LiveMetrics()
        self.endpoint = serve(settings, ports.LIVE, self.metrics.registry, logging.getLogger("pipeline.live"))
        self.tail = OutputTail(settings, self.metrics).start() if self.endpoint is not None else None

    @classmethod
    def start(cls, settings: Settings) -> LaneMetrics | None:
        """None when metrics are off (TORMENTA_METRICS_PORT=0)."""
        return cls(settings) if settings.metrics_port else None

    def close(self) -> None:
        if self.tail is not None:
            self.tail.close()
        if self.endpoint is not None:
            self.endpoint.close()
