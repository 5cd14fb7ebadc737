"""The end of a soak, while ``run`` still runs: reconcile by id, judge, and write the files and the report.

`finish(soak, handed)` fills ``soak.result`` (reconciliation, sales_agg count, criteria,
kills, outage, browser, verdict) and writes ``samples.json`` and ``report.html`` in the
soak's folder; it returns the report's path. What cannot be measured (the soak failed
before it sampled, the topic cannot be read) is said in the result, never raised.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import psutil

from pipeline.contract.tables import BATCH_METRICS, HIGH_VALUE, TABLES
from pipeline.job.spark import state_folder_batches
from pipeline.job.tables import UpkeepPlan
from pipeline.loadtest import soak_verdict as sv
from pipeline.loadtest.soak_events import outage_figures

log = logging.getLogger(__name__)


def back_to_normal(samples: list[dict[str, Any]], since: float, normal_lag: float | None) -> float | None:
    """Pure: the first sample time from `since` on with records behind ≤ `normal_lag`; `since`
    itself without a bound, None when the lag never came back down."""
    if normal_lag is None:
        return since
    for s in samples:
        lag = s.get("lag_records")
        if s["t"] >= since and lag is not None and lag <= normal_lag:
            return float(s["t"])
    return None


def excluded_periods(kills: list[dict[str, Any]], outage: dict[str, Any] | None, trigger_s: float,
                     t_end: float, samples: list[dict[str, Any]] | None = None,
                     normal_lag: float | None = None) -> list[sv.Excluded]:
    """Pure: from each kill (and the outage start) until healthy and, with `samples`, records behind
    back to `normal_lag` (what a restart left behind is not constant input), caught up for the
    outage, + two triggers (run end if never)."""
    out = []
    for k in kills:
        if k.get("at"):
            healthy = k.get("healthy_at")
            until = (back_to_normal(samples, healthy, normal_lag) if healthy and samples is not None else healthy) or t_end
            out.append(sv.Excluded(k["at"], until + 2 * trigger_s, str(k.get("part", ""))))
    if outage and outage.get("started_at"):
        until = outage.get("caught_up_at") or t_end
        out.append(sv.Excluded(outage["started_at"], until + 2 * trigger_s, "outage"))
    return out


def memory_failures(log_path: Path) -> int:
    """OutOfMemoryError lines in the job's log (all its runs)."""
    try:
        return log_path.read_text(errors="replace").count("OutOfMemoryError")
    except OSError:
        return 0


def processed_offsets(handed: dict[str, Any], checkpoint: Path, topic: str) -> dict[int, int] | None:
    """None when the job caught up (it processed the whole topic), else its committed end offsets
    per partition ({} when it committed nothing): what the reconciliation may expect in Delta."""
    if handed.get("caught_up"):
        return None
    from pipeline.loadtest.sampling import checkpoint_offsets

    return checkpoint_offsets(checkpoint, topic).get("committed_by_partition") or {}


def _reconcile(soak, handed: dict[str, Any]) -> None:
    from pipeline.contract.tables import HIGH_VALUE_QUERY
    from pipeline.loadtest.soak_reconcile import reconcile_soak, scan_topic

    rs = soak.stack.settings
    try:  # the committed offsets first, then the topic and Delta (which holds at least what was committed)
        processed = processed_offsets(handed, rs.checkpoint_dir / HIGH_VALUE_QUERY, rs.topic)
        facts = scan_topic(handed["kafka"], rs.topic, rs.threshold, processed=processed)
        rec, sales = reconcile_soak(facts, rs.delta_dir)
        soak.result["reconciliation"] = rec.as_dict()
        soak.result["sales_agg"] = sales
        soak.event(f"reconciliation: {rec.sentence()} sales_agg counts {sales['sales_agg_count']} vs "
                   f"{sales['distinct_valid']:,} distinct valid transactions")
    except Exception as exc:  # noqa: BLE001 - the report says why there is no reconciliation
        soak.result["reconciliation"] = {"error": f"{type(exc).__name__}: {exc}", "ok": False}
        soak.event(f"reconciliation failed: {exc}")


def _freshness(rs, batches: list[dict[str, Any]]):
    from pipeline.loadtest.freshness import Freshness
    from pipeline.loadtest.reconcile import read_high_value

    _, times, batch_ids = read_high_value(rs.delta_dir / HIGH_VALUE)
    return Freshness.measure(rs.delta_dir / HIGH_VALUE, times, batch_ids, batches)


def _judge(soak, handed: dict[str, Any], batches: list[dict[str, Any]]) -> list[sv.Criterion]:
    o, rs = soak.options, soak.stack.settings
    fresh = _freshness(rs, batches)
    outage = soak.result.get("outage")
    excluded = excluded_periods(handed["kills"], outage, o.trigger_s, handed["t_end"], handed["samples"],
                                o.rate * o.trigger_s)   # one batch's worth at the steady rate
    free_mb = psutil.disk_usage(str(rs.data_dir)).free / 2**20
    steady = [s for s in handed["samples"] if handed["t0"] <= s["t"] <= handed["t_end"]]  # not the wind-down
    inputs = sv.SoakInputs(samples=steady, batches=[b for b in batches if float(b["trigger_time"]) <= handed["t_end"]], t0=handed["t0"], t_end=handed["t_end"],
                           rate=o.rate, trigger_s=o.trigger_s, dedupe_s=rs.dedup_window, retention_s=rs.retention,
                           free_mb=free_mb, excluded=excluded, event_times=fresh.event_times,
                           freshness_s=fresh.seconds, state_history_s=state_folder_batches() * o.trigger_s,
                           compaction_cycle_batches=UpkeepPlan(TABLES, rs.compact_every).batches_to_first_cycle())
    soak.result["freshness"] = fresh.overall()
    soak.result["batch_freshness"] = fresh.per_batch(batches)
    return sv.judge(inputs)


def finish(soak, handed: dict[str, Any]) -> Path:
    from pipeline.loadtest.reconcile import read_batches
    from pipeline.loadtest.soak_report import write_report

    r = soak.result
    r["finished"] = time.time()
    samples = handed.get("samples", [])
    if handed:
        rs, o = soak.stack.settings, soak.options
        _reconcile(soak, handed)
        batches = read_batches(rs.delta_dir / BATCH_METRICS)
        r["batches"] = batches
        r["kills"] = handed["kills"]
        r["browser"] = handed["browser"]
        r["caught_up"] = handed["caught_up"]
        r["parts_at_end"] = handed["parts"]
        r["t0"], r["t_end"] = handed["t0"], handed["t_end"]
        state = handed.get("outage")
        if state is not None:
            r["outage"] = outage_figures(state, samples, batches, sv.LAG_BATCHES * o.rate * o.trigger_s)
            r["outage"]["memory_failures"] = memory_failures(rs.run_dir / "job.log")
        try:
            criteria = _judge(soak, handed, batches)
        except Exception as exc:  # noqa: BLE001 - the report still says what is known
            log.exception("soak verdict failed")
            criteria = [sv.Criterion("verdict", False, f"{type(exc).__name__}: {exc}")]
        r["criteria"] = [c.as_dict() for c in criteria]
        r["verdict"] = verdict_of(r, criteria)
    else:
        r["criteria"], r["verdict"] = [], "fail"
    if r["state"] == "running":
        r["state"] = "done"
    (soak.dir / "samples.json").write_text(json.dumps(samples, default=str))
    return write_report(soak.dir, r, samples, soak.events)


def verdict_of(r: dict[str, Any], criteria: list[sv.Criterion]) -> str:
    """Pure: 'pass' only when every criterion passed or could not tell, the reconciliation is clean
    and complete (the job caught up), the sales_agg count matches, every kill recovered, the outage had no memory failure and the
    browser's visits all loaded (but those under way while the chaos had killed the app)."""
    rec = r.get("reconciliation") or {}
    problems = [c.name for c in criteria if c.passed is False]
    if not rec.get("ok"):
        problems.append("reconciliation")
    if rec.get("complete") is False:
        problems.append(f"job not caught up: {rec.get('not_yet_processed', 0):,} high-value ids not yet processed")
    if not (r.get("sales_agg") or {}).get("ok"):
        problems.append("sales_agg count")
    problems += [f"kill of {k['part']}" for k in r.get("kills", []) if k.get("problem") and k.get("at")]
    if (r.get("outage") or {}).get("memory_failures"):
        problems.append("memory failure after the outage")
    browser = r.get("browser") or {}
    if browser.get("failed"):
        # visits under way while the chaos had the app down are the kill's doing, not a page's;
        # only the listed failures (the first 50) can be excused
        interrupted = [f for f in browser.get("failures") or [] if sv.interrupted_by_app_kill(f, r.get("kills") or [])]
        browser["interrupted"] = len(interrupted)
        if browser["failed"] > len(interrupted):
            problems.append("page visits")
    if r.get("state") == "failed":
        problems.append("run failed")
    r["problems"] = problems
    return "fail" if problems else "pass"

