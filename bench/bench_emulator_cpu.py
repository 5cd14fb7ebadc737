"""CPU the emulator costs at a paced rate: smooth flow (default) vs --burst, side by side.

    .venv/bin/python bench/bench_emulator_cpu.py [--rate 50000] [--seconds 20] [--rounds 1] [--format json]

Starts its own embedded broker on free loopback ports in a temp folder (stopped at the
end). Each round runs ``python -m pipeline emulate --rate R --duration S --no-control``
as a child process twice on fresh topics, once smooth and once with ``--burst``, and
reads the child's user+sys CPU from ``os.wait4`` (all its threads, librdkafka's
included). A third run with ``--max-records 1`` measures the start-up (loading and
pre-encoding the samples) that both runs contain. It prints both CPU figures, the same
without the start-up, the records each run delivered and the ratio smooth / burst; the
goal is a ratio <= 1.25.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.contract.wire import JSON, WIRE_FORMATS  # noqa: E402
from pipeline.kafka.broker import EmbeddedBroker  # noqa: E402
from pipeline.kafka.topic import ensure_topic  # noqa: E402
from pipeline.settings import Settings  # noqa: E402
from tests.support.ports import free_port  # noqa: E402


def emulator_cpu(settings: Settings, topic: str, args: list[str], out: Path) -> tuple[float, dict]:
    """(user+sys CPU seconds, summary) of one emulator process."""
    ensure_topic(settings.replace(topic=topic))
    env = {**os.environ, "TORMENTA_BOOTSTRAP_SERVERS": settings.bootstrap_servers, "TORMENTA_TOPIC": topic,
           "TORMENTA_DATA_DIR": str(settings.data_dir), "TORMENTA_WIRE_FORMAT": settings.wire_format}
    with out.open("w") as stdout:
        proc = subprocess.Popen([sys.executable, "-m", "pipeline", "emulate", "--no-control", "--quiet", *args],
                                cwd=ROOT, env=env, stdout=stdout, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"emulator {' '.join(args)} exited with {proc.returncode}")
    return usage.ru_utime + usage.ru_stime, json.loads(out.read_text())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=50_000, help="target rate, tx/s (default 50,000)")
    ap.add_argument("--seconds", type=float, default=20, help="length of each run (default 20)")
    ap.add_argument("--rounds", type=int, default=1, help="rounds of (smooth, burst) (default 1)")
    ap.add_argument("--format", default=JSON, choices=WIRE_FORMATS, help=f"wire format (default {JSON})")
    args = ap.parse_args(argv)
    if args.rate <= 0 or args.seconds <= 0 or args.rounds <= 0:
        ap.error("--rate, --seconds and --rounds must be positive")
    with tempfile.TemporaryDirectory(prefix="tormenta-cpu-") as tmp:
        base = Settings.from_env({"TORMENTA_DATA_DIR": tmp, "TORMENTA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
                                  "TORMENTA_CONTROLLER_PORT": str(free_port()), "TORMENTA_WIRE_FORMAT": args.format})
        broker = EmbeddedBroker(base)
        print(broker.start().message, flush=True)
        try:
            out = Path(tmp) / "summary.json"
            startup, _ = emulator_cpu(base, "cpu-startup", ["--rate", "1000", "--max-records", "1"], out)
            print(f"start-up (load and pre-encode the samples, one record): {startup:.2f} s CPU", flush=True)
            paced = ["--rate", str(args.rate), "--duration", str(args.seconds)]
            ratios = []
            for round_ in range(1, args.rounds + 1):
                cpu = {}
                for mode, extra in (("smooth", []), ("burst", ["--burst"])):
                    cpu[mode], summary = emulator_cpu(base, f"cpu-{mode}-{round_}", paced + extra, out)
                    print(f"round {round_} {mode:<6}: {cpu[mode]:6.2f} s CPU ({cpu[mode] - startup:6.2f} s after "
                          f"start-up) for {summary['delivered']:,} delivered in {summary['duration_s']:.1f} s, "
                          f"failed {summary['failed']}", flush=True)
                ratios.append(cpu["smooth"] / cpu["burst"])
                print(f"round {round_} ratio smooth / burst = {ratios[-1]:.2f} (after start-up: "
                      f"{(cpu['smooth'] - startup) / (cpu['burst'] - startup):.2f})", flush=True)
        finally:
            print(broker.stop())
    worst = max(ratios)
    print(f"{args.format} at {args.rate:,.0f} tx/s for {args.seconds:g} s: worst ratio smooth / burst {worst:.2f} "
          f"(goal <= 1.25: {'met' if worst <= 1.25 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
