"""The storm emulator's metrics, fed off the hot path.

- once per status (every second): target and achieved rate, running or not, the sent /
  delivered / failed counters (the emulator's own cumulative counts, added as deltas), and
  the delivery latency histogram from the latencies the producer already samples (one
  probe per chunk plus the over-threshold messages it tracks): nothing is added per message;
- every `STATS_INTERVAL_MS` from librdkafka's statistics callback (a JSON document served
  by the producer's poll()): the local queue (`msg_cnt`) and each broker's average round
  trip (`brokers[*].rtt.avg`, microseconds over the statistics window).

bench/bench_producer.py --part metrics measures the cost: the emulator at full speed with
metrics off and on (and scraped), side by side.
"""

from __future__ import annotations

import itertools
import json
import logging
import math

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from pipeline.metrics.serve import new_registry

log = logging.getLogger(__name__)
STATS_INTERVAL_MS = 5000
# 1 ms .. 2 min: a healthy acks=all round trip is milliseconds; message.timeout.ms is 120 s
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120)
COUNTS = ("sent", "delivered", "failed")


class EmulatorMetrics:
    """Every tormenta_emulator_* series of one emulator process, in its own registry."""

    def __init__(self, registry: CollectorRegistry | None = None):
        r = self.registry = registry if registry is not None else new_registry()
        self.target = Gauge("tormenta_emulator_target_transactions_per_second", "The rate the emulator is asked "
                            "for now (0 paused or stopped, NaN at full speed or for a self-paced source)", registry=r)
        self.achieved = Gauge("tormenta_emulator_achieved_transactions_per_second", "Transactions sent per second "
                              "over the last status interval", registry=r)
        self.running = Gauge("tormenta_emulator_running", "1 while the storm runs, 0 paused or stopped", registry=r)
        self.counters = {
            "sent": Counter("tormenta_emulator_sent_total", "Transactions handed to the producer", registry=r),
            "delivered": Counter("tormenta_emulator_delivered_total", "Messages the broker acknowledged", registry=r),
            "failed": Counter("tormenta_emulator_delivery_failed_total", "Messages whose delivery failed",
                              registry=r),
        }
        self.latency = Histogram("tormenta_emulator_delivery_latency_seconds", "Produce to acknowledgement, "
                                 "sampled (one probe per chunk and the tracked over-threshold messages)",
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.queue = Gauge("tormenta_emulator_producer_queue_messages", "Messages in the producer's local queue "
                           "(librdkafka statistics msg_cnt)", registry=r)
        self.rtt = Gauge("tormenta_emulator_broker_rtt_seconds", "Average request round trip to the broker over "
                         "the last statistics window (librdkafka statistics)", ["broker"], registry=r)
        self._last = dict.fromkeys(COUNTS, 0)
        self._latencies_seen = 0

    def producer_overrides(self) -> dict:
        """What the producer needs for the statistics callback."""
        return {"statistics.interval.ms": STATS_INTERVAL_MS, "stats_cb": self.on_stats}

    def on_status(self, status: dict, sink=None) -> None:
        """One emulator status (see StormEmulator._status) and the sink's latency samples."""
        running = status.get("state") == "running"
        target = status.get("target_rate")
        self.target.set(0.0 if not running else math.nan if target is None else float(target))
        self.achieved.set(float(status.get("achieved_rate") or 0.0))
        self.running.set(1 if running else 0)
        for name in COUNTS:
            now = int(status.get(name) or 0)
            # A new run in the same process starts its counts at 0 again: add what it has.
            delta = now - self._last[name] if now >= self._last[name] else now
            if delta:
                self.counters[name].inc(delta)
            self._last[name] = now
        if sink is not None:
            self._observe_latencies(sink)

    def _observe_latencies(self, sink) -> None:
        total = getattr(sink, "latency_samples", None)
        samples = getattr(sink, "latencies", None)
        if total is None or samples is None:
            return
        new = total - self._latencies_seen if total >= self._latencies_seen else total
        self._latencies_seen = total
        # the newest `new` samples (the buffer keeps the last few thousand), without copying it
        for seconds in itertools.islice(reversed(samples), max(0, new)):
            self.latency.observe(seconds)

    def on_stats(self, stats_json: str) -> None:
        """librdkafka's statistics callback (served from poll()); never raises into the producer."""
        try:
            stats = json.loads(stats_json)
            self.queue.set(int(stats.get("msg_cnt", 0)))
            for broker in (stats.get("brokers") or {}).values():
                node = int(broker.get("nodeid", -1))
                if node < 0:
                    continue  # the bootstrap entry, not a broker of the cluster
                avg_us = (broker.get("rtt") or {}).get("avg", 0)
                self.rtt.labels(str(node)).set(float(avg_us) / 1e6)
        except (ValueError, TypeError, AttributeError) as exc:
            log.debug("librdkafka statistics not read: %s", exc)
