"""Capacity calculator: from a rate to broker disk, micro-batch sizes and parallelism.

Pure arithmetic with every assumption written next to the number it drives, so the page
and ``python -m pipeline capacity --rate 50000`` show the same figures::

    plan = capacity(CapacityInput(rate=50_000, record_bytes=220, replication=3,
                                  retention_s=86400, trigger_s=60, partitions=3))
    plan.disk_per_broker_bytes, plan.records_per_batch, plan.warnings

Kafka stores each record in a v2 record batch: the value and key plus a few bytes of
per-record framing (varint lengths, timestamp and offset deltas) -- ``overhead_bytes``;
compression (the emulator uses lz4) divides the whole by ``compression_ratio``. A
partition deletes whole segments only, so up to one extra segment per partition replica
outlives the retention. Spark's Kafka source reads one partition per task, so more cores
than partitions leaves cores idle during the read.
"""

from __future__ import annotations

import gzip
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import SettingsError

SEGMENT_BYTES = 256 * 1024 * 1024  # log.segment.bytes of the embedded broker
DISK_MARGIN = 0.25                 # keep disks below 80 % full
# Spark 4.2's streaming dedupe finds the expired keys by reading every key of its state in
# every batch. Measured by the job's per-batch state line: 0.56-0.68 us of task time per
# key held (RocksDB, 19-28 M keys, run 20261206-022504-6335 of docs/LOADTEST.md).
EVICTION_US_PER_KEY = 0.6


@dataclass(frozen=True)
class CapacityInput:
    rate: float                       # transactions per second
    record_bytes: float = 220.0       # average JSON value
    key_bytes: float = 8.0            # person_id key
    overhead_bytes: float = 12.0      # v2 per-record framing
    compression_ratio: float = 1.0    # on-disk bytes = raw / ratio (1 = none assumed)
    replication: int = 1
    brokers: int = 1
    retention_s: float = 86400.0
    trigger_s: float = 60.0
    partitions: int = 3
    cores: int = 2
    max_offsets_per_trigger: int = 6_000_000
    segment_bytes: int = SEGMENT_BYTES
    disk_margin: float = DISK_MARGIN
    job_throughput: float | None = None  # measured records per busy second of the job (load test)
    dedupe_window_s: float = 600.0    # TORMENTA_DEDUP_WINDOW: the dedupe state holds rate x window keys
    eviction_us_per_key: float = EVICTION_US_PER_KEY

    def validated(self) -> CapacityInput:
        checks = [("rate", self.rate >= 0), ("record_bytes", self.record_bytes > 0), ("key_bytes", self.key_bytes >= 0),
                  ("overhead_bytes", self.overhead_bytes >= 0), ("compression_ratio", self.compression_ratio >= 1),
                  ("replication", self.replication >= 1), ("brokers", self.brokers >= 1),
                  ("retention_s", self.retention_s > 0), ("trigger_s", self.trigger_s > 0),
                  ("partitions", self.partitions >= 1), ("cores", self.cores >= 1),
                  ("max_offsets_per_trigger", self.max_offsets_per_trigger >= 1),
                  ("disk_margin", 0 <= self.disk_margin < 10),
                  ("job_throughput", self.job_throughput is None or self.job_throughput > 0),
                  ("dedupe_window_s", self.dedupe_window_s >= 0), ("eviction_us_per_key", self.eviction_us_per_key >= 0)]
        bad = [name for name, ok in checks if not ok]
        if bad:
            raise SettingsError(f"capacity input out of range: {', '.join(bad)} (rates/sizes >= 0, counts >= 1, "
                                "compression ratio >= 1)")
        if self.replication > self.brokers:
            raise SettingsError(f"replication factor {self.replication} needs at least {self.replication} brokers "
                                f"(got {self.brokers})")
        return self


@dataclass
class CapacityPlan:
    inputs: dict[str, Any]
    bytes_per_record_on_disk: float
    ingress_bytes_per_s: float
    bytes_per_day: float
    retained_bytes_one_copy: float
    segment_slack_bytes: float
    disk_total_bytes: float
    disk_per_broker_bytes: float
    records_per_batch: float
    records_per_batch_capped: float
    bytes_per_batch_raw: float
    tasks_per_batch: int
    task_waves: int
    idle_cores_during_read: int
    records_per_task: float
    partition_bytes_per_s: float
    dedupe_state_keys: float
    eviction_s_per_batch: float
    est_batch_s: float | None
    max_rate_for_trigger: float | None
    assumptions: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def rows(self) -> list[tuple[str, str]]:
        """(figure, value) pairs for display."""
        r = [
            ("Bytes per record on disk", f"{self.bytes_per_record_on_disk:,.1f} B"),
            ("Ingress into the broker", f"{human_bytes(self.ingress_bytes_per_s)}/s"),
            ("Volume per day (one copy)", human_bytes(self.bytes_per_day)),
            ("Retained data (one copy)", human_bytes(self.retained_bytes_one_copy)),
            ("Segment slack (all replicas)", human_bytes(self.segment_slack_bytes)),
            ("Broker disk needed, cluster", human_bytes(self.disk_total_bytes)),
            ("Broker disk needed, per broker", human_bytes(self.disk_per_broker_bytes)),
            ("Records per micro-batch", f"{self.records_per_batch:,.0f}"),
            ("Bytes per micro-batch (uncompressed)", human_bytes(self.bytes_per_batch_raw)),
            ("Spark tasks reading each batch", f"{self.tasks_per_batch} (= partitions)"),
            ("Task waves on the job's cores", f"{self.task_waves}"),
            ("Records per task", f"{self.records_per_task:,.0f}"),
            ("Ingress per partition", f"{human_bytes(self.partition_bytes_per_s)}/s"),
        ]
        if self.dedupe_state_keys:
            r.append(("Dedupe state (rate × dedupe window)", f"{self.dedupe_state_keys:,.0f} keys"))
            r.append(("Eviction scan per batch (every key read)", f"{self.eviction_s_per_batch:,.1f} s"))
        if self.est_batch_s is not None:
            r.append(("Estimated batch duration (measured throughput + eviction)", f"{self.est_batch_s:,.1f} s"))
        if self.max_rate_for_trigger is not None:
            r.append(("Highest rate the job can take at this trigger", f"{self.max_rate_for_trigger:,.0f} tx/s"))
        return r


def human_bytes(n: float) -> str:
    n = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.2f} {unit}"
        n /= 1000
    return f"{n:,.2f} PB"


def capacity(inp: CapacityInput) -> CapacityPlan:
    inp = inp.validated()
    per_record = (inp.record_bytes + inp.key_bytes + inp.overhead_bytes) / inp.compression_ratio
    ingress = inp.rate * per_record
    retained = ingress * inp.retention_s
    slack = inp.partitions * inp.replication * min(inp.segment_bytes, retained / inp.partitions if inp.partitions else 0)
    total = (retained * inp.replication + slack) * (1 + inp.disk_margin)
    per_batch = inp.rate * inp.trigger_s
    capped = min(per_batch, inp.max_offsets_per_trigger)
    waves = math.ceil(inp.partitions / inp.cores)
    keys = inp.rate * inp.dedupe_window_s
    scan_s_per_key = inp.eviction_us_per_key / 1e6 / inp.cores   # wall time per key held, all cores reading
    eviction = keys * scan_s_per_key
    est = max_rate = None
    if inp.job_throughput:
        est = capped / inp.job_throughput + eviction
        # A batch of rate x trigger records takes rate x (trigger / throughput + window x scan):
        # above this rate it takes longer than the trigger (and never above the throughput).
        max_rate = min(inp.job_throughput,
                       inp.trigger_s / (inp.trigger_s / inp.job_throughput + inp.dedupe_window_s * scan_s_per_key))
    warnings = _warnings(inp, per_batch, waves, est, keys, eviction)
    assumptions = _assumptions(inp, per_record)
    return CapacityPlan(
        inputs=asdict(inp), bytes_per_record_on_disk=per_record, ingress_bytes_per_s=ingress,
        bytes_per_day=ingress * 86400, retained_bytes_one_copy=retained, segment_slack_bytes=slack,
        disk_total_bytes=total, disk_per_broker_bytes=total / inp.brokers, records_per_batch=per_batch,
        records_per_batch_capped=capped, bytes_per_batch_raw=per_batch * (inp.record_bytes + inp.key_bytes),
        tasks_per_batch=inp.partitions, task_waves=waves, idle_cores_during_read=max(0, inp.cores - inp.partitions),
        records_per_task=capped / inp.partitions, partition_bytes_per_s=ingress / inp.partitions,
        dedupe_state_keys=keys, eviction_s_per_batch=eviction, est_batch_s=est, max_rate_for_trigger=max_rate,
        assumptions=assumptions, warnings=warnings,
    )

def _warnings(inp: CapacityInput, per_batch: float, waves: int, est: float | None,
              keys: float, eviction: float) -> list[str]:
    """What in these figures would hurt: capped batches, idle cores, batches longer than the trigger,
    a dedupe state whose eviction scan takes much of the trigger."""
    warnings: list[str] = []
    if eviction > inp.trigger_s / 4:
        warnings.append(f"the dedupe state holds {keys:,.0f} keys (rate × "
                        f"{inp.dedupe_window_s:g} s window) once the window has passed, and every batch reads them "
                        f"all to evict the expired ones: ≈{eviction:,.1f} s of each {inp.trigger_s:g} s trigger "
                        "(a longer trigger or a shorter dedupe window lowers the share)")
    if per_batch > inp.max_offsets_per_trigger:
        warnings.append(f"{per_batch:,.0f} records arrive per trigger but a batch reads at most "
                        f"{inp.max_offsets_per_trigger:,} (maxOffsetsPerTrigger): the lag grows by "
                        f"{per_batch - inp.max_offsets_per_trigger:,.0f} records per interval")
    if inp.partitions < inp.cores:
        warnings.append(f"{inp.partitions} partitions < {inp.cores} cores: {inp.cores - inp.partitions} core(s) "
                        "idle while reading Kafka (add partitions or set minPartitions)")
    elif inp.partitions % inp.cores:
        warnings.append(f"{inp.partitions} partitions on {inp.cores} cores: the last of {waves} waves leaves "
                        f"{inp.cores - inp.partitions % inp.cores} core(s) idle (use a multiple of the cores)")
    if est is not None and est > inp.trigger_s:
        warnings.append(f"at the measured job throughput ({inp.job_throughput:,.0f} records/s) a batch takes "
                        f"≈{est:,.1f} s > trigger {inp.trigger_s:g} s: batches run back to back")
    if inp.job_throughput and inp.rate > inp.job_throughput:
        warnings.append(f"rate {inp.rate:,.0f} tx/s exceeds the measured job throughput "
                        f"{inp.job_throughput:,.0f} records/s: the job falls behind whatever the trigger")
    return warnings


def _assumptions(inp: CapacityInput, per_record: float) -> list[str]:
    """Every assumption, with the figure it drives."""
    assumptions = [
        f"record on disk = (value {inp.record_bytes:g} B + key {inp.key_bytes:g} B + framing {inp.overhead_bytes:g} B)"
        f" / compression {inp.compression_ratio:g} = {per_record:,.1f} B",
        f"retention {inp.retention_s:,.0f} s × replication {inp.replication} on {inp.brokers} broker(s), "
        "evenly spread",
        f"up to one extra {human_bytes(inp.segment_bytes)} segment per partition replica outlives the retention "
        "(Kafka deletes whole segments)",
        f"{inp.disk_margin:.0%} free-space margin on top",
        f"Spark's Kafka source: one task per partition ({inp.partitions}); {inp.cores} job cores",
        "batch bytes are uncompressed values + keys (what the job decodes)",
    ]
    if inp.dedupe_window_s:
        assumptions.append(f"dedupe state = rate × window ({inp.dedupe_window_s:g} s); Spark reads every key each "
                           f"batch to evict: {inp.eviction_us_per_key:g} µs of task time per key, on {inp.cores} "
                           "job cores (measured at 19-28 M keys)")
    if inp.job_throughput:
        assumptions.append(f"job throughput {inp.job_throughput:,.0f} records per busy second, measured by a "
                           "load test on this machine (batch overhead ignored); batch time = records / "
                           "throughput + the eviction scan")
    return assumptions


def sample_record_bytes(sample_file: Path, limit: int = 2000) -> float | None:
    """Average value size of the first `limit` sample transactions (the emulator's source), or None."""
    try:
        opener = gzip.open if sample_file.suffix == ".gz" else open
        total = n = 0
        with opener(sample_file, "rb") as fh:
            for line in fh:
                line = line.strip()
                if line:
                    total += len(line)
                    n += 1
                if n >= limit:
                    break
        return total / n if n else None
    except OSError:
        return None


def measured_inputs(result: Any) -> dict[str, float]:
    """Calculator inputs measured by a load test (a `LoadTestResult`, or None): the job's best
    throughput under load (records per busy second) and the on-disk bytes per record of the
    run's topic. (Typed loosely: the result module judges steps with this calculator.)"""
    if result is None:
        return {}
    out: dict[str, float] = {}
    rates = [s.job_throughput for s in result.steps if s.job_throughput]
    if rates:
        out["job_throughput"] = round(max(rates))
    if result.topic.bytes_per_record_on_disk:
        out["bytes_per_record_on_disk"] = float(result.topic.bytes_per_record_on_disk)
    return out


def compression_ratio_for(record_bytes: float, on_disk_bytes: float | None, key_bytes: float = 8.0,
                          overhead_bytes: float = 12.0) -> float:
    """Compression ratio implied by a measured on-disk size per record (>= 1; 1 when unknown)."""
    if not on_disk_bytes or on_disk_bytes <= 0:
        return 1.0
    return max(1.0, round((record_bytes + key_bytes + overhead_bytes) / on_disk_bytes, 2))
