"""Sub-commands ``emulate`` (run the storm emulator) and ``storm`` (steer a running one).

    python -m pipeline emulate [--rate R | --per-tick N --interval T | --preset NAME | --full-speed]
                               [--profile NAME [k=v ...]] [--duration S] [--max-records N]
                               [--no-control] [--record-ids PATH] [--replay FILE [--replay-speed X]]
                               [--duplicates P] [--malformed P] [--late P] [--late-seconds S]
                               [--format json|avro] [--burst]
    python -m pipeline storm set [--rate R | --per-tick N | --preset NAME] [--interval T] [--profile ...]
    python -m pipeline storm pause|resume|stop|show
    python -m pipeline storm status [--json] [--watch]
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from pipeline.emulator.presets import MAX_RATE, PRESETS, PROFILES, check_number
from pipeline.errors import SettingsError
from pipeline.procs import trim
from pipeline.settings import Settings, parse_duration


def register(sub) -> None:
    p = sub.add_parser("emulate", help="run the storm emulator (a long-lived producer of transactions)")
    _rate_args(p)
    p.add_argument("--full-speed", action="store_true", help="ignore the rate: produce as fast as possible")
    p.add_argument("--burst", action="store_true",
                   help="release each tick's records at once at the tick boundary (default: smooth flow)")
    p.add_argument("--duration", help="stop after this long (e.g. 60, 5m); default: run until stopped")
    p.add_argument("--max-records", type=int, help="stop after this many source records")
    p.add_argument("--no-control", action="store_true",
                   help="do not read/write the control topic nor publish status (a standalone run)")
    p.add_argument("--name", default="default", help="emulator name = key in the control/status topics")
    p.add_argument("--record-ids", metavar="PATH",
                   help="write the transaction_id of every delivered record over the threshold, one per line")
    p.add_argument("--replay", metavar="FILE", help="replay a JSON-lines capture instead of emulating")
    p.add_argument("--replay-speed", type=float,
                   help="replay at the capture's own pace times X (default: at the set rate)")
    p.add_argument("--seed", type=int, help="random seed of the sampler and fault injection")
    p.add_argument("--format", dest="wire_format", metavar="json|avro",
                   help="wire format of the values: json (contract JSON) or avro (Confluent framing); "
                        "default: TORMENTA_WIRE_FORMAT")
    p.add_argument("--quiet", action="store_true", help="no live status line")
    p.set_defaults(func=emulate_cmd)

    s = sub.add_parser("storm", help="steer a running emulator: set, pause, resume, stop, status, show")
    s.add_argument("--name", default="default", help="emulator name (default: default)")
    ssub = s.add_subparsers(dest="storm_action", required=True, parser_class=sub._parser_class)
    ps = ssub.add_parser("set", help="change rate, interval, profile or faults")
    _rate_args(ps)
    ps.set_defaults(func=storm_set_cmd)
    for action, state in (("pause", "paused"), ("resume", "running"), ("stop", "stopped")):
        pa = ssub.add_parser(action, help=f"set the desired state to {state}")
        pa.set_defaults(func=storm_state_cmd, state=state)
    pt = ssub.add_parser("status", help="the latest status the emulator published")
    pt.add_argument("--json", action="store_true", help="print the status as JSON")
    pt.add_argument("--watch", action="store_true", help="refresh every second until Ctrl-C")
    pt.add_argument("--max-age", type=float, default=5.0, help="ignore statuses older than this (s)")
    pt.set_defaults(func=storm_status_cmd)
    pw = ssub.add_parser("show", help="print the desired state from the control topic")
    pw.set_defaults(func=storm_show_cmd)


def _rate_args(p) -> None:
    g = p.add_argument_group("rate, profile and faults")
    g.add_argument("--rate", type=float, help="base rate in transactions per second")
    g.add_argument("--per-tick", type=float, help="records per tick (rate = per-tick / interval)")
    g.add_argument("--interval", help="tick interval (e.g. 1, 1s, 500ms)")
    g.add_argument("--preset", help=f"rate preset: {', '.join(repr(k) + f' ({v:,} tx/s)' for k, v in PRESETS.items())}")
    g.add_argument("--profile", nargs="+", metavar=("NAME", "K=V"),
                   help=f"load profile and its parameters, e.g. --profile spike factor=3 every=30; "
                        f"profiles: {', '.join(PROFILES)}")
    g.add_argument("--duplicates", type=float, help="share of records delivered twice (0..1)")
    g.add_argument("--malformed", type=float, help="share of records replaced by malformed bytes (0..1)")
    g.add_argument("--late", type=float, help="share of records with a late event time (0..1)")
    g.add_argument("--late-seconds", help="how late a late event is (default 900s)")


def changes_from_args(args) -> dict[str, Any]:
    """Explicit command-line values as desired-state changes (validated later)."""
    changes: dict[str, Any] = {}
    if args.interval is not None:
        changes["ingest_interval"] = parse_duration(args.interval, name="--interval")
    given = [n for n in ("rate", "per_tick", "preset") if getattr(args, n) is not None]
    if len(given) > 1:
        raise SettingsError(f"give only one of --rate, --per-tick and --preset (got {', '.join(given)})")
    for name in given:
        changes[name] = getattr(args, name)
    if args.profile:
        profile: dict[str, Any] = {"name": args.profile[0]}
        for item in args.profile[1:]:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise SettingsError(f"profile parameter {item!r} must look like key=value, e.g. factor=3")
            profile[key] = value
        changes["profile"] = profile
    faults: dict[str, Any] = {}
    for key in ("duplicates", "malformed", "late"):
        if getattr(args, key) is not None:
            faults[key] = getattr(args, key)
    if args.late_seconds is not None:
        faults["late_seconds"] = parse_duration(args.late_seconds, name="--late-seconds")
    if faults:
        changes["faults"] = faults
    return changes


def check_changes(settings: Settings, changes: dict[str, Any]) -> None:
    """Refuse a bad value before any broker is contacted (the control checks the changes again
    against the running emulator's state). A per-tick count's rate depends on that state's
    tick, so only its own range is checked here."""
    from pipeline.emulator.control import DesiredState

    if "rate" in changes:
        check_number("--rate", changes["rate"], 0, MAX_RATE)
    if "per_tick" in changes:
        check_number("--per-tick", changes["per_tick"], 0, MAX_RATE * 3600)
    DesiredState.defaults(settings).with_changes({k: v for k, v in changes.items() if k != "per_tick"})


def wire_format_from_args(settings: Settings, args) -> str:
    """--format, else the setting; a value other than json or avro is refused."""
    from pipeline.contract.wire import WIRE_FORMATS

    value = settings.wire_format if args.wire_format is None else args.wire_format.strip().lower()
    if value not in WIRE_FORMATS:
        raise SettingsError(f"--format={args.wire_format} is not allowed; allowed: {', '.join(WIRE_FORMATS)}")
    return value


def _status_line(st: dict[str, Any]) -> str:
    target = "max" if st.get("target_rate") is None else f"{st['target_rate']:,.0f}"
    reasons = ", ".join(f"{k}={v}" for k, v in (st.get("failed_reasons") or {}).items())
    lat = st.get("latency_p50_ms")
    lat_text = "-" if lat is None else f"{lat:.0f}/{st.get('latency_p99_ms') or 0:.0f} ms"
    return (f"{st['state']:<7} target {target} tx/s  achieved {st['achieved_rate']:,.0f} tx/s  "
            f"sent {st['sent']:,}  delivered {st['delivered']:,}  failed {st['failed']:,}"
            f"{' (' + reasons + ')' if reasons else ''}  queue {st['queue_depth']:,}  p50/p99 {lat_text}  "
            f"profile {st['profile']['name']}  {st.get('wire_format', '?')}")


def emulate_cmd(settings: Settings, args) -> int:
    from pipeline.emulator.sources import FileReplaySource
    from pipeline.emulator.storm import StormEmulator

    if args.max_records is not None and args.max_records <= 0:
        raise SettingsError(f"--max-records={args.max_records} must be > 0")
    duration = parse_duration(args.duration, name="--duration") if args.duration else None
    if args.replay_speed is not None and not args.replay:
        raise SettingsError("--replay-speed needs --replay FILE")
    if args.replay_speed is not None and args.replay_speed <= 0:
        raise SettingsError(f"--replay-speed={args.replay_speed} must be > 0 (1.0 = original pace)")
    if args.replay and not Path(args.replay).is_file():
        problem = "is a folder, not a file" if Path(args.replay).is_dir() else "is missing"
        raise SettingsError(f"--replay: the replay file {args.replay} {problem}; allowed: a JSON-lines capture file "
                            "(.jsonl or .jsonl.gz)")
    wire_format = wire_format_from_args(settings, args)
    source = FileReplaySource(args.replay, speed=args.replay_speed) if args.replay else None
    tty = sys.stderr.isatty()
    last_print = [0.0]
    metrics, endpoint = _metrics(settings)

    def show(st: dict[str, Any]) -> None:
        if args.quiet:
            return
        if tty:
            print("\r\033[K" + _status_line(st), end="", file=sys.stderr, flush=True)
        elif time.monotonic() - last_print[0] >= 10:
            last_print[0] = time.monotonic()
            print(_status_line(st), file=sys.stderr, flush=True)

    emulator = StormEmulator(settings, source, name=args.name, control=not args.no_control,
                             changes=changes_from_args(args), record_ids=args.record_ids,
                             full_speed=args.full_speed, burst=args.burst, seed=args.seed, on_status=show,
                             wire_format=wire_format, metrics=metrics)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    # librdkafka's queue grows while a partition has no leader (a broker lost or stalled) and is
    # freed when it drains, but glibc kept the pages: +17 MiB for good after a broker kill in the
    # chaos hour 20261206-192528-3ec8; a 25 s broker stall took the process 104 -> 173 MiB for
    # good, and with this round 164 -> 97 MiB within the minute
    trim.start()
    try:
        summary = emulator.run(duration=duration, max_records=args.max_records, stop_event=stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if endpoint is not None:
            endpoint.close()
    if tty and not args.quiet:
        print(file=sys.stderr)
    print(json.dumps(summary, indent=2))
    return 0 if summary["failed"] == 0 else 1


def _metrics(settings: Settings):
    """(EmulatorMetrics, its endpoint) at TORMENTA_METRICS_PORT + 2; (None, None) when metrics are off."""
    if settings.metrics_port == 0:
        return None, None
    import logging

    from pipeline.metrics import ports
    from pipeline.metrics.emulator import EmulatorMetrics
    from pipeline.metrics.serve import serve

    metrics = EmulatorMetrics()
    return metrics, serve(settings, ports.EMULATOR, metrics.registry, logging.getLogger("pipeline.emulator"))


def storm_set_cmd(settings: Settings, args) -> int:
    from pipeline.emulator.control import EmulatorControl

    changes = changes_from_args(args)
    if not changes:
        raise SettingsError("nothing to set; give --rate, --per-tick, --interval, --preset, --profile or a fault")
    check_changes(settings, changes)
    with EmulatorControl(settings, args.name) as ctl:
        state = ctl.set_desired(**changes)
    print(json.dumps(state))
    return 0


def storm_state_cmd(settings: Settings, args) -> int:
    from pipeline.emulator.control import EmulatorControl

    with EmulatorControl(settings, args.name) as ctl:
        state = ctl.set_desired(state=args.state)
    print(f"emulator {args.name}: desired state {state['state']} (version {state['version']})")
    return 0


def storm_show_cmd(settings: Settings, args) -> int:
    from pipeline.emulator.control import EmulatorControl

    with EmulatorControl(settings, args.name) as ctl:
        print(json.dumps(ctl.desired(), indent=2))
    return 0


def storm_status_cmd(settings: Settings, args) -> int:
    from pipeline.emulator.control import EmulatorControl

    with EmulatorControl(settings, args.name) as ctl:
        while True:
            st = ctl.latest_status(max_age_s=args.max_age)
            if st is None:
                print(f"no status from emulator {args.name!r} in the last {args.max_age:g} s "
                      "(is `python -m pipeline emulate` running?)")
                if not args.watch:
                    return 3
            else:
                print(json.dumps(st, indent=2) if args.json else _status_line(st), flush=True)
            if not args.watch:
                return 0
            time.sleep(1.0)
