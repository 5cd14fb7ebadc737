"""The emulator's Kafka producer: idempotent, acks=all, lz4, batched for throughput.

Every delivery report is counted (delivered, failed with the error name as reason).
Ordinary messages share one cheap callback that only counts; "tracked" messages (those
over the threshold, plus one latency probe per chunk) get a second callback that also
samples the delivery latency and, when asked, records the transaction id of a delivered
over-threshold record. A full local queue is backpressure, not an error: on BufferError
the producer serves delivery reports for a moment and retries the same message.

`Sink` is what the emulator needs from a producer; `StormProducer` is the real one (it
wraps confluent-kafka's Producer) and the tests' `MemorySink` (tests/support/memory.py) collects the
messages in memory for unit tests.
"""

from __future__ import annotations

import collections
from typing import IO, Protocol

from pipeline.emulator.binarizer import EncodedBatch, transaction_id_of
from pipeline.errors import EmulatorError
from pipeline.kafka.security import client_config, explain, kafka_auth
from pipeline.settings import Settings

# Tuned on the 2-core box (bench/bench_producer.py): large lz4 batches and a few ms of
# linger let librdkafka's thread keep up with the Python loop.
PRODUCER_CONFIG = {
    "enable.idempotence": True,
    "acks": "all",
    "compression.type": "lz4",
    "linger.ms": 20,
    "batch.size": 1_000_000,
    "batch.num.messages": 100_000,
    "queue.buffering.max.messages": 500_000,
    "queue.buffering.max.kbytes": 262_144,
    "message.timeout.ms": 120_000,
    "statistics.interval.ms": 0,
}


class Sink(Protocol):
    """Where the emulator sends its batches, and the delivery counts it reports."""

    delivered: int
    failed: int
    failed_reasons: collections.Counter[str]
    high_delivered: int
    backpressure_waits: int

    def send(self, batch: EncodedBatch) -> int:
        """Enqueue a batch (blocks while the queue is full); returns how many were enqueued."""
        ...

    def poll(self, timeout: float = 0.0) -> int:
        """Serve delivery reports, waiting at most `timeout` seconds for one."""
        ...

    def flush(self, timeout: float = 30.0) -> int:
        """Wait for every report; returns how many messages were still queued (then purged)."""
        ...

    def queue_depth(self) -> int: ...

    def latency_ms(self) -> tuple[float | None, float | None]: ...


class StormProducer:
    """Counts every delivery report; never drops a message on a full queue."""

    def __init__(self, settings: Settings, topic: str | None = None, *, record_ids: IO[str] | None = None,
                 overrides: dict | None = None):
        from confluent_kafka import Producer

        self.topic = topic or settings.topic
        self.delivered = 0
        self.failed = 0
        self.failed_reasons: collections.Counter[str] = collections.Counter()
        self.high_delivered = 0
        self.enqueued = 0
        self.backpressure_waits = 0
        self.latencies: collections.deque[float] = collections.deque(maxlen=4096)
        self.latency_samples = 0  # samples taken so far (the deque keeps the newest): metrics read the new ones
        self.record_ids = record_ids
        self.refusal: str | None = None
        self._auth = kafka_auth(settings, "producer")
        config = client_config(settings, "producer", {**PRODUCER_CONFIG, "on_delivery": self._on_delivery,
                                                      "error_cb": self._on_error})
        config.update(overrides or {})
        try:
            self._producer = Producer(config)
        except Exception as exc:  # KafkaException for a bad config
            raise EmulatorError(f"cannot create the Kafka producer: {exc}") from None
        self.client_errors: collections.Counter[str] = collections.Counter()

    # ---- delivery reports (called from poll()/flush() on this thread) -----------------
    def _on_delivery(self, err, msg) -> None:
        if err is None:
            self.delivered += 1
        else:
            self.failed += 1
            self.failed_reasons[err.name()] += 1
            self._refused(err)

    def _refused(self, err) -> None:
        """Remember the first refusal (password, certificate, ACL): the emulator stops on it."""
        if self.refusal is None:
            self.refusal = explain(err, self._auth, self.topic)

    def _on_tracked(self, err, msg) -> None:
        if not self._on_probe(err, msg):
            return
        self.high_delivered += 1
        if self.record_ids is not None:
            tid = transaction_id_of(msg.value())
            if tid is not None:
                self.record_ids.write(tid + "\n")

    def _on_error(self, err) -> None:
        # Client-level errors (broker down, ...) are retried by librdkafka; count them for status.
        # A refusal (authentication, certificate) is retried for ever: remember it to stop on it.
        self.client_errors[err.name()] += 1
        self._refused(err)

    # ---- sending --------------------------------------------------------------------
    def send(self, batch: EncodedBatch, probe: bool = True) -> int:
        """Enqueue a batch; blocks (serving reports) while the local queue is full.

        The first message of a batch is a latency probe (`probe`); messages over the
        threshold get the tracking callback; all others the counting default callback.
        """
        n = len(batch)
        if n == 0:
            return 0
        pos = 0
        if probe and not batch.high[0]:
            self._produce_one(batch.keys[0], batch.values[0], self._on_probe)
            pos = 1
        while pos < n:
            pos = self._send_from(batch, pos)
            if pos < n:
                # Backpressure: let librdkafka drain the queue, then go on from this message.
                self.backpressure_waits += 1
                self._producer.poll(0.05)
        self.enqueued += n
        self._producer.poll(0)
        return n

    def _send_from(self, batch: EncodedBatch, start: int) -> int:
        """Produce from `start` on; returns the index of the first message not enqueued."""
        produce, topic, tracked = self._producer.produce, self.topic, self._on_tracked
        keys, values, high = batch.keys, batch.values, batch.high
        i = start
        try:
            # The hot loop: no per-message branches beyond `high`, no allocations.
            for i in range(start, len(values)):
                if high[i]:
                    produce(topic, values[i], keys[i], on_delivery=tracked)
                else:
                    produce(topic, values[i], keys[i])
        except BufferError:
            return i
        return len(values)

    def _produce_one(self, key, value, callback) -> None:
        while True:
            try:
                self._producer.produce(self.topic, value, key, on_delivery=callback)
                return
            except BufferError:
                self.backpressure_waits += 1
                self._producer.poll(0.05)

    def _on_probe(self, err, msg) -> bool:
        """Count one report and sample its latency; True when it was delivered."""
        if err is not None:
            self.failed += 1
            self.failed_reasons[err.name()] += 1
            self._refused(err)
            return False
        self.delivered += 1
        latency = msg.latency()
        if latency is not None:
            self.latencies.append(latency)
            self.latency_samples += 1
        return True

    def poll(self, timeout: float = 0.0) -> int:
        return self._producer.poll(timeout)

    def queue_depth(self) -> int:
        return len(self._producer)

    def latency_ms(self) -> tuple[float | None, float | None]:
        if not self.latencies:
            return None, None
        data = sorted(self.latencies)
        p50 = data[len(data) // 2]
        p99 = data[min(len(data) - 1, int(len(data) * 0.99))]
        return round(p50 * 1000, 2), round(p99 * 1000, 2)

    def flush(self, timeout: float = 30.0) -> int:
        """Wait for outstanding reports; what is still queued after `timeout` is purged and
        reported as failed (reason _PURGE_QUEUE / _PURGE_INFLIGHT), never silently lost."""
        remaining = self._producer.flush(timeout)
        if remaining:
            self._producer.purge()
            self._producer.flush(5)
        return remaining

    def close(self) -> None:
        """Destroy the Kafka handle now, on this thread (call `flush` first): the handle holds this
        object's callbacks, so without it the pair, with its threads and sockets, would wait for
        the garbage collector."""
        self._producer.close()
