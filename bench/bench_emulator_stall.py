"""What a broker stall leaves in the emulator's memory, with and without the minute trim round.

    .venv/bin/python bench/bench_emulator_stall.py [--rate 10000] [--stall 25] [--after 150] [--rounds 1]

Starts its own embedded broker on free loopback ports in a temp folder (stopped at the end).
Each round runs ``python -m pipeline emulate --rate R --no-control`` twice as a child process,
once as it ships (``procs.trim`` gives freed C memory back once a minute) and once with the
round turned off, and in each: waits 90 s of steady production, stops the broker's JVM
(SIGSTOP) for ``--stall`` seconds, so librdkafka's queue swells as it does while a partition has
no leader in a chaos hour, lets it go on (SIGCONT) and reads the emulator's RSS every 10 s for
``--after`` seconds. It prints the RSS before, at the end of the stall and at the end, per arm,
and the ratio of what each arm kept (end minus before): the goal is that the trimmed emulator
keeps at most a quarter of what the untrimmed one keeps.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.kafka.broker import EmbeddedBroker  # noqa: E402
from pipeline.kafka.topic import ensure_topic  # noqa: E402
from pipeline.settings import Settings  # noqa: E402
from tests.support.ports import free_port  # noqa: E402

WARM_S = 90.0
READ_EVERY_S = 10.0
GOAL = 0.25   # the trimmed emulator keeps at most a quarter of what the untrimmed one keeps


def _rss_mib(proc: psutil.Process) -> float:
    return proc.memory_info().rss / 2**20


def one_arm(settings: Settings, broker_pid: int, topic: str, trimmed: bool, args) -> tuple[float, float, float]:
    """(RSS before the stall, at its end, `--after` s later), MiB, of one emulator process."""
    ensure_topic(settings.replace(topic=topic))
    env = {**os.environ, "TORMENTA_BOOTSTRAP_SERVERS": settings.bootstrap_servers, "TORMENTA_TOPIC": topic,
           "TORMENTA_DATA_DIR": str(settings.data_dir), "TORMENTA_METRICS_PORT": "0", "MALLOC_ARENA_MAX": "2"}
    off = "" if trimmed else "import pipeline.procs.trim as t; t.start = lambda *a, **k: None; "
    code = (f"{off}import sys; from pipeline.cli import main; "
            f"sys.exit(main(['emulate', '--rate', '{args.rate:g}', '--no-control', '--quiet']))")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        me = psutil.Process(proc.pid)
        time.sleep(WARM_S)
        before = _rss_mib(me)
        os.kill(broker_pid, signal.SIGSTOP)
        try:
            time.sleep(args.stall)
            stalled = _rss_mib(me)
        finally:
            os.kill(broker_pid, signal.SIGCONT)
        end = time.monotonic() + args.after
        while time.monotonic() < end:
            time.sleep(READ_EVERY_S)
            if proc.poll() is not None:
                raise SystemExit(f"the emulator exited with {proc.returncode} after the stall")
        return before, stalled, _rss_mib(me)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=10_000, help="emulator rate, tx/s (default 10,000)")
    ap.add_argument("--stall", type=float, default=25, help="seconds the broker is stopped (default 25)")
    ap.add_argument("--after", type=float, default=150, help="seconds read after the stall (default 150, > one trim round)")
    ap.add_argument("--rounds", type=int, default=1, help="rounds of (as shipped, without the trim) (default 1)")
    args = ap.parse_args(argv)
    if args.rate <= 0 or args.stall <= 0 or args.rounds <= 0 or args.after < 70:
        ap.error("--rate, --stall and --rounds must be positive and --after at least 70 s (one trim round)")
    worst = 0.0
    with tempfile.TemporaryDirectory(prefix="tormenta-stall-") as tmp:
        base = Settings.from_env({"TORMENTA_DATA_DIR": tmp, "TORMENTA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
                                  "TORMENTA_CONTROLLER_PORT": str(free_port())})
        broker = EmbeddedBroker(base)
        print(broker.start().message, flush=True)
        try:
            pid = int(broker.pid_file.read_text().strip())
            for round_ in range(1, args.rounds + 1):
                kept = {}
                for label, trimmed in (("as shipped (trim)", True), ("without the trim", False)):
                    before, stalled, after = one_arm(base, pid, f"stall-{round_}-{int(trimmed)}", trimmed, args)
                    kept[trimmed] = max(0.0, after - before)
                    print(f"round {round_} {label:<18}: RSS {before:6.1f} MiB before, {stalled:6.1f} at the end of the "
                          f"{args.stall:g} s stall, {after:6.1f} {args.after:g} s later (kept {after - before:+.1f})",
                          flush=True)
                ratio = kept[True] / kept[False] if kept[False] > 0 else float("inf")
                worst = max(worst, ratio)
                print(f"round {round_}: kept with the trim / without = {ratio:.2f}", flush=True)
        finally:
            print(broker.stop())
    return _verdict(worst)


def _verdict(worst: float) -> int:
    """Print the worst round against the goal; 0 either way (a bench reports, it does not gate)."""
    print(f"worst ratio kept with / without the trim {worst:.2f} (goal <= {GOAL:g}: "
          f"{'met' if worst <= GOAL else 'NOT met'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
