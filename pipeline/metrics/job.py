"""The Spark job's metrics (``query`` = high_value | sales_hourly), fed once per batch.

Two feeds, neither a per-field Py4J walk:

- the query's progress, one JSON document per trigger (`StreamingQuery.lastProgress`,
  polled by the runner's watch loop; `recentProgress` once when batches went by between
  two polls): batch duration, input rows, offsets behind latest per partition, state rows
  and bytes, the time of the last finished batch. State rows only while Spark counts them:
  the job runs RocksDB with ``trackTotalNumberOfRows`` off (counting costs a state read per
  message), so by default ``tormenta_job_state_rows`` is absent and ``tormenta_job_state_bytes``
  (the state store's memory) is the size signal. `progress_figures` is the pure mapping;
  the unit tests feed it real-shaped progress JSON;
- what the high-value batch writer already counts per batch (`batch_written`): rows
  written per table, duplicates dropped, quarantined rows, event-time lag.

Counters only ever go up: a progress is counted once per (run id, batch id, timestamp),
so a query restarted inside the process (a new run id, batch ids going on from its
checkpoint) adds to them. A process restart starts them at 0, which Prometheus' rate()
and increase() understand.

The oldest unprocessed record's age (for the retention-risk alert) is the age, at scrape
time, of the Kafka timestamp of the first record after the last batch's end offset, on
the partitions that were behind; a small background lookup (one record per lagging
partition, assign only, nothing committed) finds it after each batch that left records
behind.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from pipeline.contract.tables import HIGH_VALUE_QUERY
from pipeline.metrics.serve import new_registry
from pipeline.settings import Settings

log = logging.getLogger(__name__)
# 0.1 s .. 10 min: a small test batch, a 10k batch of a few seconds, a batch as slow as its one-minute trigger and beyond
BATCH_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 90, 120, 300, 600)
LOOKUP_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class ProgressFigures:
    """What one progress document says, in base units."""

    query: str
    key: tuple[str, int, str]            # (run id, batch id, timestamp): the same progress is counted once
    ran_batch: bool                      # False: an idle trigger (no data, no batch)
    duration_s: float
    input_rows: int
    finished_at: float                   # unix time the trigger ended
    state_rows: int | None               # None: Spark does not count them (RocksDB row tracking off)
    state_bytes: int
    # topic -> partition -> (end offset, latest offset) of each Kafka source
    offsets: dict[str, dict[int, tuple[int, int]]] = field(default_factory=dict)

    def behind(self) -> dict[tuple[str, int], int]:
        return {(t, p): max(0, latest - end) for t, parts in self.offsets.items() for p, (end, latest) in parts.items()}


def _unix(ts: str) -> float:
    """Spark's progress timestamp ('2026-12-05T00:40:00.123Z') as unix time."""
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def _offsets(value) -> dict[str, dict[str, int]]:
    """A source offset as the progress carries it: a JSON object, a JSON string, or null."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return value if isinstance(value, dict) else {}


def _kafka_offsets(sources: list[dict]) -> dict[str, dict[int, tuple[int, int]]]:
    found: dict[str, dict[int, tuple[int, int]]] = {}
    for src in sources:
        if not str(src.get("description", "")).startswith("Kafka"):
            continue  # the hourly query's Delta source has no partitions
        end, latest = _offsets(src.get("endOffset")), _offsets(src.get("latestOffset"))
        for topic, parts in end.items():
            if not isinstance(parts, dict):
                continue
            top = latest.get(topic) if isinstance(latest.get(topic), dict) else {}
            found[topic] = {int(p): (int(o), int(top.get(p, o))) for p, o in parts.items()}
    return found


def _key(progress: dict) -> tuple[str, int, str]:
    return str(progress.get("runId")), int(progress.get("batchId", -1)), str(progress.get("timestamp"))


def _state_rows(operators: list[dict]) -> int | None:
    """Rows in the state stores; None when Spark does not count them: with RocksDB's
    `trackTotalNumberOfRows` off (the job turns it off: counting costs a read per message)
    numRowsTotal stays 0 while rows are being added."""
    if not operators:  # a query without state (the hourly rollup): no rows to report
        return None
    total = sum(int(op.get("numRowsTotal") or 0) for op in operators)
    updated = sum(int(op.get("numRowsUpdated") or 0) for op in operators)
    return None if total == 0 and updated > 0 else total


# What one batch's state store did, from Spark's own progress (stateOperators), in the order
# they are logged: rows written and evicted, then where the state's time went (ms summed
# over the batch's tasks). RocksDB's figures are absent with another state store provider.
STATE_FIGURES = (
    ("numRowsUpdated", "updated"), ("numRowsRemoved", "evicted"), ("allUpdatesTimeMs", "updates_ms"),
    ("allRemovalsTimeMs", "evictions_ms"), ("commitTimeMs", "commit_ms"),
    ("rocksdbGetLatency", "get_ms"), ("rocksdbPutLatency", "put_ms"),
    ("rocksdbCommitFlushLatency", "flush_ms"), ("rocksdbCommitCheckpointLatency", "checkpoint_ms"),
    ("rocksdbTotalCompactionLatencyMs", "compaction_ms"), ("rocksdbWriterStallLatencyMs", "stall_ms"),
    ("rocksdbSstFileSize", "sst_bytes"), ("memoryUsedBytes", "memory_bytes"),
)


def state_summary(operators: list[dict]) -> str | None:
    """One line of what the batch's state stores did (`STATE_FIGURES`), or None without state."""
    if not operators:
        return None
    parts = []
    for key, label in STATE_FIGURES:
        values = [op.get(key, (op.get("customMetrics") or {}).get(key)) for op in operators]
        values = [int(v) for v in values if isinstance(v, (int, float))]
        if values:
            parts.append(f"{label} {sum(values):,}")
    return ", ".join(parts) or None


def progress_figures(progress: dict) -> ProgressFigures:
    """One StreamingQueryProgress JSON document (as a dict) -> the figures the metrics need."""
    durations = progress.get("durationMs") or {}
    duration_s = float(durations.get("triggerExecution", progress.get("batchDuration", 0)) or 0) / 1000
    operators = progress.get("stateOperators") or []
    return ProgressFigures(
        query=str(progress.get("name") or ""),
        key=_key(progress),
        ran_batch="addBatch" in durations,
        duration_s=duration_s,
        input_rows=int(progress.get("numInputRows") or 0),
        finished_at=_unix(progress["timestamp"]) + duration_s,
        state_rows=_state_rows(operators),
        state_bytes=sum(int(op.get("memoryUsedBytes") or 0) for op in operators),
        offsets=_kafka_offsets(progress.get("sources") or []),
    )


class JobMetrics:
    """Every tormenta_job_* series of one job process, in its own registry."""

    def __init__(self, settings: Settings, registry: CollectorRegistry | None = None, *, find_timestamps=None):
        self.settings = settings
        # (settings, {(topic, partition): offset}) -> {(topic, partition): Kafka timestamp ms}
        self.find_timestamps = find_timestamps or first_timestamps
        r = self.registry = registry if registry is not None else new_registry()
        q = ["query"]
        self.batch_duration = Histogram("tormenta_job_batch_duration_seconds", "Wall time of one micro-batch "
                                        "(trigger execution)", q, buckets=BATCH_BUCKETS, registry=r)
        self.trigger_interval = Gauge("tormenta_job_trigger_interval_seconds", "The query's trigger interval",
                                      q, registry=r)
        self.input_rows = Counter("tormenta_job_input_rows_total", "Rows the query read", q, registry=r)
        self.rows_written = Counter("tormenta_job_rows_written_total", "Rows appended to a Delta table",
                                    ["query", "table"], registry=r)
        self.duplicates = Counter("tormenta_job_duplicates_dropped_total", "Redelivered transactions the "
                                  "dedupe dropped", q, registry=r)
        self.quarantined = Counter("tormenta_job_quarantined_rows_total", "Messages sent to the quarantine table",
                                   q, registry=r)
        self.behind = Gauge("tormenta_job_offsets_behind_latest", "Records in the topic after the last batch's "
                            "end offset, per partition", ["query", "topic", "partition"], registry=r)
        self.event_lag = Gauge("tormenta_job_event_time_lag_seconds", "Trigger time minus the newest event time "
                               "of the last batch with data", q, registry=r)
        self.last_batch = Gauge("tormenta_job_last_batch_timestamp_seconds", "Unix time the last micro-batch "
                                "finished", q, registry=r)
        self.last_progress = Gauge("tormenta_job_last_progress_timestamp_seconds", "Unix time of the query's "
                                   "last trigger, idle ones included (the query is alive)", q, registry=r)
        self.state_rows = Gauge("tormenta_job_state_rows", "Rows in the query's streaming state (dedupe); only "
                                "while Spark counts them", q, registry=r)
        self.state_bytes = Gauge("tormenta_job_state_bytes", "Memory the query's state store uses", q, registry=r)
        self.oldest_age = Gauge("tormenta_job_oldest_unprocessed_age_seconds", "Age of the oldest record in the "
                                "topic that no batch has processed yet (0: none)", q, registry=r)
        self.retention = Gauge("tormenta_topic_retention_seconds", "Record lifetime in the topic", ["topic"],
                               registry=r)
        self.retention.labels(settings.topic).set(settings.retention)
        self._seen: dict[str, tuple[str, int, str]] = {}
        self._rows_untracked: set[str] = set()  # queries whose state rows Spark does not count
        self._oldest_ms: dict[str, int | None] = {}
        self._lookup: threading.Thread | None = None
        self.oldest_age.labels(HIGH_VALUE_QUERY).set_function(lambda: self._age(HIGH_VALUE_QUERY))

    # ---- feeds -------------------------------------------------------------------
    def query_started(self, query: str, interval_s: float) -> None:
        self.trigger_interval.labels(query).set(interval_s)
        for series in (self.input_rows, self.duplicates, self.quarantined):
            series.labels(query)  # present at 0 from the start
        self.batch_duration.labels(query)

    def observe_progress(self, progress: dict) -> bool:
        """Count one progress document; False when it was counted before."""
        fig = progress_figures(progress)
        if self._seen.get(fig.query) == fig.key:
            return False
        self._seen[fig.query] = fig.key
        q = fig.query
        self.last_progress.labels(q).set(fig.finished_at)
        self.input_rows.labels(q).inc(fig.input_rows)
        for (topic, part), n in fig.behind().items():
            self.behind.labels(q, topic, str(part)).set(n)
        if fig.ran_batch:
            if summary := state_summary(progress.get("stateOperators") or []):
                log.info("%s batch %s state: %s", q, progress.get("batchId"), summary)
            self.batch_duration.labels(q).observe(fig.duration_s)
            self.last_batch.labels(q).set(fig.finished_at)
            if fig.state_rows is None:
                if q not in self._rows_untracked:
                    self._rows_untracked.add(q)
                    with contextlib.suppress(KeyError):  # a 0 set by an earlier batch is no figure
                        self.state_rows.remove(q)
            elif q not in self._rows_untracked:
                self.state_rows.labels(q).set(fig.state_rows)
            self.state_bytes.labels(q).set(fig.state_bytes)
        if q == HIGH_VALUE_QUERY and fig.offsets:
            self._find_oldest(q, fig)
        return True

    def batch_written(self, query: str, written: dict[str, int], *, quarantined: int = 0,
                      duplicates: int | None = None, event_lag_s: float | None = None) -> None:
        """What a batch writer counted: rows per table it appended (not a replay it skipped)."""
        for table, rows in written.items():
            self.rows_written.labels(query, table).inc(rows)
        self.quarantined.labels(query).inc(quarantined)
        if duplicates:
            self.duplicates.labels(query).inc(duplicates)
        if event_lag_s is not None:
            self.event_lag.labels(query).set(event_lag_s)

    # ---- polling the queries (the runner's watch loop) ----------------------------
    def poll(self, handle) -> None:
        """Count the query's new progress: lastProgress (one JSON per call), and recentProgress
        once when more than one trigger went by since the last poll or the query restarted. Never raises."""
        try:
            last = handle.lastProgress
            if last is None:
                return
            doc = json.loads(last.json)
            seen = self._seen.get(str(doc.get("name") or ""))
            if seen == _key(doc):
                return
            docs = [doc]
            if seen is None or seen[0] != _key(doc)[0] or _key(doc)[1] > seen[1] + 1:
                docs = [json.loads(p.json) for p in handle.recentProgress] or docs
            for d in docs:
                run, _, ts = _key(d)
                if seen is None or run != seen[0] or ts > seen[2]:
                    self.observe_progress(d)
        except Exception as exc:  # noqa: BLE001 - a metric, never a reason to stop the job
            log.debug("query progress not read: %s", exc)

    # ---- the oldest unprocessed record ------------------------------------------------
    def _age(self, query: str) -> float:
        ms = self._oldest_ms.get(query)
        return 0.0 if ms is None else max(0.0, time.time() - ms / 1000)

    def _find_oldest(self, query: str, fig: ProgressFigures) -> None:
        lagging = {(t, p): end for t, parts in fig.offsets.items() for p, (end, latest) in parts.items() if latest > end}
        if not lagging:
            self._oldest_ms[query] = None
            return
        if self._lookup is not None and self._lookup.is_alive():
            return  # one lookup at a time; the next batch asks again
        self._lookup = threading.Thread(target=self._lookup_oldest, args=(query, lagging), daemon=True,
                                        name="tormenta-metrics-oldest")
        self._lookup.start()

    def _lookup_oldest(self, query: str, lagging: dict[tuple[str, int], int]) -> None:
        try:
            found = self.find_timestamps(self.settings, lagging)
        except Exception as exc:  # noqa: BLE001 - a metric, never a reason to stop the job
            log.debug("oldest unprocessed record not found: %s", exc)
            return
        if found:
            self._oldest_ms[query] = min(found.values())


def first_timestamps(settings: Settings, at: dict[tuple[str, int], int],
                     timeout: float = LOOKUP_TIMEOUT_S) -> dict[tuple[str, int], int]:
    """Kafka timestamp (ms) of the record at each (topic, partition) -> offset; a partition
    whose record is gone or late within `timeout` is left out."""
    from confluent_kafka import Consumer, TopicPartition

    from pipeline.kafka.security import client_config

    consumer = Consumer(client_config(settings, "job", {"group.id": "tormenta-offsets", "enable.auto.commit": False,
                                                        "enable.partition.eof": False}))
    try:
        consumer.assign([TopicPartition(t, p, o) for (t, p), o in at.items()])
        found: dict[tuple[str, int], int] = {}
        deadline = time.monotonic() + timeout
        while len(found) < len(at) and time.monotonic() < deadline:
            for msg in consumer.consume(len(at), 0.2):
                key = (msg.topic(), msg.partition())
                if msg.error() is None and key in at and key not in found:
                    found[key] = msg.timestamp()[1]
                    consumer.pause([TopicPartition(*key)])
        return found
    finally:
        consumer.close()

