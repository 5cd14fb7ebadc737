"""Sub-commands ``loadtest`` (the closed-loop volumetric test) and ``capacity`` (the calculator).

    python -m pipeline loadtest [--profile christmas|normal-day|smoke] [--scale X] [--trigger S]
                                [--ceiling TX_S] [--normal TX_S] [--peak TX_S] [--no-beyond]
                                [--keep-topic] [--catch-up-timeout S] [--no-prime]
                                [--prime-seconds S] [--prime-timeout S]
    python -m pipeline loadtest --list | --report RUN_ID | --stop RUN_ID
    python -m pipeline capacity --rate 50000 [--record-bytes B] [--replication N] [--brokers N]
                                [--retention 1d] [--trigger 1m] [--partitions N] [--cores N]
                                [--compression X] [--job-throughput R] [--json]

Ctrl-C (or SIGTERM) during a load test ends the current step, lets the job catch up
briefly and still writes the report; a second Ctrl-C skips the catch-up.
"""

from __future__ import annotations

import json
import signal
import threading

from pipeline.errors import SettingsError
from pipeline.settings import Settings, parse_duration


def register(sub) -> None:
    from pipeline.loadtest.options import add_arguments
    from pipeline.loadtest.soak_options import add_soak_arguments

    p = sub.add_parser("loadtest", help="closed-loop load test with a verdict, reconciliation and an HTML report")
    add_arguments(p)
    add_soak_arguments(p)
    p.add_argument("--json", action="store_true", help="print the result summary as JSON")
    p.add_argument("--list", action="store_true", help="list the runs in <data_dir>/loadtests")
    p.add_argument("--report", metavar="RUN_ID", help="rebuild the HTML report of a run from its saved files")
    p.add_argument("--stop", metavar="RUN_ID", help="ask a running load test to stop cleanly")
    p.set_defaults(func=loadtest_cmd)

    c = sub.add_parser("capacity", help="capacity calculator: broker disk, micro-batch sizes, partitions vs cores")
    c.add_argument("--rate", type=float, required=True, help="transactions per second")
    c.add_argument("--record-bytes", type=float, help="average record value size (default: measured on the samples)")
    c.add_argument("--replication", type=int, default=1, help="replication factor (default 1)")
    c.add_argument("--brokers", type=int, help="number of brokers (default: the replication factor)")
    c.add_argument("--retention", help="record lifetime (default: TORMENTA_RETENTION)")
    c.add_argument("--trigger", help="micro-batch trigger (default: TORMENTA_TRIGGER_INTERVAL)")
    c.add_argument("--partitions", type=int, help="topic partitions (default: TORMENTA_PARTITIONS)")
    c.add_argument("--cores", type=int, help="job cores (default: TORMENTA_JOB_CORES)")
    c.add_argument("--compression", type=float, default=1.0, help="compression ratio on disk (default 1 = none)")
    c.add_argument("--job-throughput", type=float, help="measured job records per busy second (from a load test)")
    c.add_argument("--json", action="store_true", help="print the figures as JSON")
    c.set_defaults(func=capacity_cmd)


def loadtest_cmd(settings: Settings, args) -> int:
    from pipeline.loadtest import runs
    from pipeline.loadtest.options import LoadTestOptions
    from pipeline.loadtest.report import rebuild
    from pipeline.loadtest.soak_options import SOAK, refuse_soak_flags

    if args.list:
        for r in runs.list_runs(settings):
            print(_run_line(r))
        return 0
    if args.report:
        soak = settings.data_dir / "soaks" / args.report
        if soak.is_dir():
            from pipeline.loadtest.soak_report import rebuild as rebuild_soak

            print(rebuild_soak(soak))
            return 0
        print(rebuild(runs.runs_dir(settings) / args.report))
        return 0
    if args.stop:
        ok = runs.request_stop(settings, args.stop)
        print(f"stop requested for {args.stop}" if ok else f"no running load test {args.stop}")
        return 0 if ok else 3
    if args.profile == SOAK:
        return soak_cmd(settings, args)
    refuse_soak_flags(args)
    options = LoadTestOptions.from_args(args)
    if options.scale <= 0:
        raise SettingsError(f"--scale={options.scale:g} must be > 0")
    result = _run_with_signals(settings, options)
    print(json.dumps(_json_summary(result), indent=2) if args.json else _text_summary(result))
    if result.state == "failed":
        print(f"error: {result.error}")
        return 1
    return 0 if result.reconciliation.ok else 1


def soak_cmd(settings: Settings, args) -> int:
    """``--profile soak``: run the soak; print the report's path and a one-line verdict (exit 0 = pass)."""
    from pipeline.loadtest.soak import Soak
    from pipeline.loadtest.soak_options import SoakOptions

    options = SoakOptions.from_args(args)
    stop = threading.Event()

    def on_signal(*_):
        if stop.is_set():  # the second request: give up on the reconciliation (run is still stopped)
            raise KeyboardInterrupt
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        soak = Soak(settings, options, run_id=args.run_id)
        print(f"soak {soak.run_id}: {options.rate:,.0f} tx/s for {options.duration_s:g} s, trigger {options.trigger_s:g} s"
              + (", chaos" if options.chaos else "") + (f", outage {options.outage_s:g} s" if options.outage_s else "")
              + f"; files in {soak.dir}", flush=True)
        result = soak.run(stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(json.dumps({k: result.get(k) for k in ("run_id", "state", "verdict", "problems", "report")}, indent=2)
          if args.json else soak_line(result))
    return 0 if result.get("verdict") == "pass" else 1


def soak_line(result: dict) -> str:
    """The report's path and the one-line verdict."""
    rec = result.get("reconciliation") or {}
    crit = result.get("criteria") or []
    failed = [c["name"] for c in crit if c.get("passed") is False]
    kills = result.get("kills") or []
    back = [k for k in kills if k.get("healthy_s") is not None]
    return (f"report: {result.get('report')}\n"
            f"soak {result.get('verdict', 'fail').upper()}: {sum(c.get('passed') is True for c in crit)}/{len(crit)} "
            f"criteria pass" + (f" (failed: {', '.join(failed)})" if failed else "")
            + f"; {rec.get('lost', '?')} lost, {rec.get('duplicated', '?')} duplicated"
            + (f"; {len(back)}/{len(kills)} kills recovered" if kills else "")
            + (f"; problems: {', '.join(result.get('problems') or [])}" if result.get("problems") else ""))


def _run_with_signals(settings: Settings, options):
    """Run the test; the first SIGINT/SIGTERM stops it cleanly, the second skips the catch-up."""
    from pipeline.loadtest.runner import LoadTest

    stop, abort = threading.Event(), threading.Event()

    def on_signal(*_):
        if stop.is_set():
            abort.set()
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        test = LoadTest(settings, options, abort_event=abort)
        print(test.plan.describe(), flush=True)
        print(f"run {test.run_id}: files in {test.dir}", flush=True)
        return test.run(stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run_line(r) -> str:
    res = r.result
    if res is None:
        return f"{r.run_id}  {r.state:<8} {r.problem or ''}"
    return (f"{r.run_id}  {r.state:<8} {res.plan.name:<11} max sustainable {res.summary.max_sustainable_rate}  "
            f"limiting {res.summary.limiting_stage}  {r.report or ''}")


def _json_summary(result) -> dict:
    rec = result.reconciliation
    return {"run_id": result.run_id, "state": result.state, "summary": result.summary.as_dict(),
            "steps": [{"label": s.label, "verdict": s.verdict, "limiting_stage": s.limiting_stage,
                       "reasons": s.reasons} for s in result.steps],
            "reconciliation": {"expected": rec.expected, "actual_unique": rec.actual_unique, "lost": rec.lost,
                               "duplicated": rec.duplicated, "unexpected": rec.unexpected, "ok": rec.ok,
                               "complete": rec.complete},
            "report": result.report}


def _text_summary(result) -> str:
    rec = result.reconciliation
    lines = [""] + [f"  {s.label:<24} {s.verdict:<9} {'; '.join(s.reasons)}" for s in result.steps]
    lines += [result.summary.answer,
              f"reconciliation: lost {rec.lost:,}, duplicated {rec.duplicated:,}, unexpected {rec.unexpected:,} "
              f"of {rec.expected:,} high-value ids", f"report: {result.report}"]
    return "\n".join(lines)


def capacity_cmd(settings: Settings, args) -> int:
    from pipeline.loadtest.capacity import CapacityInput, capacity, sample_record_bytes

    record = args.record_bytes or sample_record_bytes(settings.sample_file) or 220.0
    inp = CapacityInput(
        rate=args.rate, record_bytes=record, replication=args.replication,
        brokers=args.brokers or args.replication,
        retention_s=parse_duration(args.retention, name="--retention") if args.retention else settings.retention,
        trigger_s=parse_duration(args.trigger, name="--trigger") if args.trigger else settings.trigger_interval,
        partitions=args.partitions or settings.partitions, cores=args.cores or settings.job_cores,
        compression_ratio=args.compression, max_offsets_per_trigger=settings.max_offsets_per_trigger,
        job_throughput=args.job_throughput, dedupe_window_s=settings.dedup_window)
    plan = capacity(inp)
    if args.json:
        print(json.dumps(plan.as_dict(), indent=2))
        return 0
    width = max(len(k) for k, _ in plan.rows())
    print(f"capacity for {args.rate:,.0f} tx/s")
    for k, v in plan.rows():
        print(f"  {k:<{width}}  {v}")
    print("assumptions:")
    for a in plan.assumptions:
        print(f"  - {a}")
    for w in plan.warnings:
        print(f"warning: {w}")
    return 0
