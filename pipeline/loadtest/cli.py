"""Sub-commands ``loadtest`` (the closed-loop volumetric test) and ``capacity`` (the calculator).

    python -m pipeline loadtest [--profile christmas|normal-day|smoke] [--scale X] [--trigger S]
                                [--ceiling TX_S] [--no-beyond] [--keep-topic] [--catch-up-timeout S]
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
    from pipeline.loadtest.plan import PLANS

    p = sub.add_parser("loadtest", help="closed-loop load test with a verdict, reconciliation and an HTML report")
    p.add_argument("--profile", default="christmas", choices=list(PLANS),
                   help="; ".join(f"{k}: {v['help']}" for k, v in PLANS.items()))
    p.add_argument("--scale", type=float, default=1.0, help="multiply every step duration (e.g. 0.25 for a quick run)")
    p.add_argument("--trigger", help="trigger interval of the job during the test (default: the plan's, 10 s)")
    p.add_argument("--ceiling", type=float, help="highest rate of the beyond-peak steps, tx/s")
    p.add_argument("--no-beyond", action="store_true", help="stop after the hold at the peak")
    p.add_argument("--keep-topic", action="store_true", help="keep the run's topics (default: deleted after)")
    p.add_argument("--no-prime", action="store_true",
                   help="do not warm the job on a little data before the plan (measures JVM warm-up too)")
    p.add_argument("--catch-up-timeout", type=float, default=300.0,
                   help="seconds to wait for the job to process everything after the last step (default 300)")
    p.add_argument("--run-id", help=argparse_suppress())
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


def argparse_suppress():
    import argparse

    return argparse.SUPPRESS


def loadtest_cmd(settings: Settings, args) -> int:
    from pipeline.loadtest import runner
    from pipeline.loadtest.report import rebuild

    if args.list:
        for r in runner.list_runs(settings):
            res = r.get("result") or {}
            summ = res.get("summary") or {}
            state = "running" if r["running"] else res.get("state", (r.get("progress") or {}).get("state", "?"))
            print(f"{r['run_id']}  {state:<8} {(res.get('plan') or {}).get('name', ''):<11} "
                  f"max sustainable {summ.get('max_sustainable_rate')}  limiting {summ.get('limiting_stage')}  "
                  f"{r.get('report') or ''}")
        return 0
    if args.report:
        path = rebuild(runner.runs_dir(settings) / args.report)
        print(path)
        return 0
    if args.stop:
        ok = runner.request_stop(settings, args.stop)
        print(f"stop requested for {args.stop}" if ok else f"no running load test {args.stop}")
        return 0 if ok else 3
    if args.scale <= 0:
        raise SettingsError(f"--scale={args.scale:g} must be > 0")
    trigger = parse_duration(args.trigger, name="--trigger") if args.trigger else None
    options = runner.LoadTestOptions(profile=args.profile, scale=args.scale, trigger_s=trigger, ceiling=args.ceiling,
                                     beyond=not args.no_beyond, keep_topic=args.keep_topic,
                                     catch_up_timeout_s=args.catch_up_timeout, run_id=args.run_id,
                                     prime=not args.no_prime)
    stop, abort = threading.Event(), threading.Event()

    def on_signal(*_):
        if stop.is_set():
            abort.set()
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        test = runner.LoadTest(settings, options, abort_event=abort)
        print(test.plan.describe(), flush=True)
        print(f"run {test.run_id}: files in {test.dir}", flush=True)
        result = test.run(stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    summ = result["summary"]
    rec = result["reconciliation"]
    if args.json:
        print(json.dumps({"run_id": result["run_id"], "state": result["state"], "summary": summ,
                          "steps": [{k: s[k] for k in ("label", "verdict", "limiting_stage", "reasons")}
                                    for s in result["steps"]],
                          "reconciliation": {k: rec[k] for k in ("expected", "actual_unique", "lost", "duplicated",
                                                                 "unexpected", "ok", "complete")},
                          "report": result["report"]}, indent=2))
    else:
        print()
        for s in result["steps"]:
            reasons = "; ".join(s["reasons"]) if s["reasons"] else ""
            print(f"  {s['label']:<24} {s['verdict']:<9} {reasons}")
        print(summ["answer"])
        print(f"reconciliation: lost {rec['lost']:,}, duplicated {rec['duplicated']:,}, unexpected "
              f"{rec['unexpected']:,} of {rec['expected']:,} high-value ids")
        print(f"report: {result['report']}")
    if result["state"] == "failed":
        print(f"error: {result.get('error')}")
        return 1
    return 0 if rec["ok"] else 1


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
        job_throughput=args.job_throughput)
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
