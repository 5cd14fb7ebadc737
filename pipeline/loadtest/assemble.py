"""A run's `LoadTestResult` from what it left behind: judge every step, reconcile, gather the facts.

The run (`pipeline.loadtest.runner.LoadTest`, seen here only through the `Run` protocol, so
this module never imports the runner) hands over how its load phase ended (`Outcome`); this
reads the run's Delta tables (``batch_metrics``, ``high_value``), the ids
the emulator recorded, the topic's files on every broker node, and the machine's facts.
"""

from __future__ import annotations

import logging
import os
import platform
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from pipeline.contract.tables import BATCH_METRICS, HIGH_VALUE
from pipeline.kafka.cluster import KafkaCluster
from pipeline.loadtest import reconcile, verdict
from pipeline.loadtest.freshness import Freshness
from pipeline.loadtest.plan import Plan, StepWindow
from pipeline.loadtest.progress import Progress
from pipeline.loadtest.result import LoadTestResult, TopicFacts
from pipeline.settings import Settings

log = logging.getLogger(__name__)


class Run(Protocol):
    """What the result needs of the run that hands itself over (`runner.LoadTest` has it)."""

    run_id: str
    dir: Path
    plan: Plan
    progress: Progress
    windows: list[StepWindow]
    settings: Settings
    run_settings: Settings
    cluster: KafkaCluster
    outage: dict[str, Any]


@dataclass
class Outcome:
    """How the load phase ended."""

    samples: list[dict[str, Any]] = field(default_factory=list)
    emulator_summary: dict[str, Any] = field(default_factory=dict)
    caught_up: bool = False
    job_rc: int | None = None
    state: str = "done"
    error: str | None = None
    alerts: dict[str, Any] = field(default_factory=dict)   # `pipeline.loadtest.alerts.StepAlerts.collect`


def machine_facts() -> dict[str, Any]:
    import psutil

    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    facts: dict[str, Any] = {
        "host": platform.node(), "os": platform.platform(), "cpu_model": model,
        "logical_cores": psutil.cpu_count(), "physical_cores": psutil.cpu_count(logical=False),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
    }
    try:
        out = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=20)
        facts["java"] = (out.stderr or out.stdout).splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        facts["java"] = "unknown"
    for mod in ("pyspark", "confluent_kafka", "deltalake", "delta"):
        try:
            from importlib.metadata import version

            facts[mod] = version({"delta": "delta-spark", "confluent_kafka": "confluent-kafka"}.get(mod, mod))
        except Exception:  # noqa: BLE001 - a fact we can do without
            pass
    return facts


def read_batches(run_settings: Settings) -> list[dict[str, Any]]:
    """The run's batch metrics so far ([] while the table is missing or mid-commit)."""
    try:
        return reconcile.read_batches(run_settings.table_path(BATCH_METRICS))
    except Exception as exc:  # noqa: BLE001 - a table mid-commit; the next read will do
        log.debug("batch metrics not readable yet: %s", exc)
        return []


def build_result(test: Run, out: Outcome, facts: dict[str, Any], broker_pid: int | None) -> LoadTestResult:
    """Judge every step, reconcile, and gather the facts of the run."""
    rs, plan, progress = test.run_settings, test.plan, test.progress
    batches = read_batches(rs)
    ids, event_times, batch_ids = reconcile.read_high_value(rs.table_path(HIGH_VALUE))
    fresh = Freshness.measure(rs.table_path(HIGH_VALUE), event_times, batch_ids, batches)
    steps = [verdict.step_stats(w, out.samples, batches, plan.trigger_s, freshness=fresh.in_window(w))
             for w in test.windows]
    last = out.samples[-1] if out.samples else {}
    return LoadTestResult(
        run_id=test.run_id, plan=plan,
        summary=verdict.summarise(steps, plan.peak_rate, plan.ceiling, trigger_s=plan.trigger_s,
                                  dedupe_window_s=rs.dedup_window, cores=rs.job_cores),
        reconciliation=_reconcile(test.dir, ids, event_times, batches, out, last),
        state=out.state, error=out.error,
        started=datetime.fromtimestamp(progress.started, UTC).isoformat(timespec="seconds"),
        finished=datetime.now(UTC).isoformat(timespec="seconds"),
        t0=out.samples[0]["t"] if out.samples else progress.started, windows=list(test.windows), steps=steps,
        caught_up=out.caught_up, freshness_all=fresh.overall(), batch_freshness=fresh.per_batch(batches),
        batches=batches,
        emulator={k: v for k, v in out.emulator_summary.items() if k != "sent_by_minute"},
        job_exit_code=out.job_rc, topic=_topic_facts(test, last), settings=_settings_facts(test, broker_pid),
        machine=facts | {"load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
        events=list(progress.events), report=str(test.dir / "report.html"), broker_outage=dict(test.outage),
        live=_live_lane(rs, ids, test.windows), alerts=dict(out.alerts))


def _reconcile(run_dir: Path, ids: list[str], event_times: np.ndarray, batches: list[dict[str, Any]],
               out: Outcome, last: dict[str, Any]) -> reconcile.Reconciliation:
    """Ids the emulator delivered vs ids in Delta, per minute, and the totals along the pipe."""
    emu = out.emulator_summary
    rec = reconcile.compare_ids(reconcile.read_ids(run_dir / "ids.txt"), ids)
    rec.windows = reconcile.per_window(emu.get("sent_by_minute") or [], event_times)
    rec.totals = {
        "emulator_sent": emu.get("sent"), "emulator_delivered": emu.get("delivered"),
        "emulator_failed": emu.get("failed"), "emulator_over_threshold_delivered": emu.get("over_threshold_delivered"),
        "broker_log_end": last.get("log_end"), "job_committed": last.get("job_offset"),
        "job_input_rows": int(sum(int(b.get("input_rows") or 0) for b in batches)),
        "high_value_rows": len(ids),
    }
    rec.complete = out.caught_up
    if not out.caught_up:
        rec.note = ("the job had not caught up when the run ended: ids still in the topic count as lost here "
                    f"({last.get('lag_records')} records were behind)")
    return rec


def _live_lane(rs: Settings, ids: list[str], windows: list[StepWindow]) -> dict[str, Any]:
    """Every Delta high-value id on the live topic? The lane's latency per step. {} without a lane."""
    if not rs.live:
        return {}
    from pipeline.live.reconcile import (
        latency_per_window,
        live_log_end,
        read_live_topic,
        read_when_settled,
        reconcile_live,
    )

    try:  # the lane may still be writing when the job has caught up: wait until it has too
        rows, waited = read_when_settled(set(ids), lambda: read_live_topic(rs), lambda: live_log_end(rs))
    except Exception as exc:  # noqa: BLE001 - the run's result is kept; the report says why this part is empty
        return {"error": f"the live topic could not be read: {exc}"}
    rec = reconcile_live(ids, rows)
    steps = latency_per_window(rows, [(w.start, w.end) for w in windows])
    return {"reconciliation": rec.as_dict(), "sentence": rec.sentence(), "settle_wait_s": waited,
            "steps": [{"step": w.label, "rate": w.rate, **lat} for w, lat in zip(windows, steps)]}


def _topic_facts(test: Run, last: dict[str, Any]) -> TopicFacts:
    disk, log_end = _topic_disk_bytes(test), last.get("log_end") or 0
    return TopicFacts(test.run_settings.topic, test.run_settings.partitions, log_end, disk,
                      round(disk / log_end, 1) if disk and log_end else None)


def _settings_facts(test: Run, broker_pid: int | None) -> dict[str, Any]:
    rs = test.run_settings
    return {
        "bootstrap_servers": rs.bootstrap_servers, "partitions": rs.partitions,
        "trigger_interval_s": test.plan.trigger_s, "threshold": str(rs.threshold),
        "max_offsets_per_trigger": rs.max_offsets_per_trigger, "job_cores": rs.job_cores,
        "dedup_window_s": rs.dedup_window,
        "shuffle_partitions": rs.effective_shuffle_partitions, "driver_memory": rs.driver_memory,
        "broker_heap": test.settings.broker_heap, "ingest_interval_s": rs.ingest_interval,
        "retention_s": rs.retention, "compact_every": 0, "data_dir": str(rs.data_dir), "broker_pid": broker_pid,
    }


def _topic_disk_bytes(test: Run) -> int | None:
    """Bytes of the run's topic on disk, every replica on every node; None if no node holds it."""
    total, found = 0, False
    for node in test.cluster.specs:
        for p in range(test.run_settings.partitions):
            d = node.dir / "logs" / f"{test.run_settings.topic}-{p}"
            if d.is_dir():
                found = True
                total += sum(f.stat().st_size for f in d.glob("*.log"))
    return total if found else None
