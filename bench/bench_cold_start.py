"""Cold start: `job --once --query high_value` over a small backlog, process start to exit, against
a bare SparkSession start plus a noop read of the same offsets, in the same run.

    .venv/bin/python bench/bench_cold_start.py [--records 10000] [--rounds 2]

Starts its own embedded broker on free loopback ports in a temp folder, loads `--records`
messages with the storm emulator, then in alternating rounds times two fresh processes:

  reference  `python -c ...`: the job's own SparkSession factory (same jars, same settings),
             then Spark reading the topic through the Kafka connector into the `noop` sink,
             then exit: what any Spark job on this box pays before it can do work;
  ours       `python -m pipeline job --once --query high_value` on a fresh data folder:
             checks, SparkSession, Delta tables, decode, dedupe, summary, four appends, exit.

Prints both wall times per round, the means and the ratio reference/ours (1.0 = the job
adds nothing to Spark's own start). Goal of the issue: ours <= 20 s. With `--archive both`
(the default) every round runs both processes with the JVM class archive that `make
install` builds (TORMENTA_JVM_ARCHIVE=true, the default) and without it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.contract.tables import HIGH_VALUE_QUERY  # noqa: E402
from pipeline.kafka.broker import EmbeddedBroker  # noqa: E402
from pipeline.kafka.topic import ensure_topic  # noqa: E402
from pipeline.settings import PROJECT_ROOT, Settings  # noqa: E402
from tests.support.ports import free_port  # noqa: E402

REFERENCE = """
import sys
from pipeline.job.runner import kafka_stream
from pipeline.job.spark import build_spark
from pipeline.settings import Settings
settings = Settings.from_env()
spark = build_spark(settings, "tormenta-cold-reference")
q = (kafka_stream(spark, settings).writeStream.format("noop").trigger(availableNow=True)
     .option("checkpointLocation", sys.argv[1]).start())
q.awaitTermination()
spark.stop()
"""


def _env(settings: Settings, data_dir: Path, archive: str = "on") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TORMENTA_")}
    env.update({"TORMENTA_JVM_ARCHIVE": str(archive == "on").lower(), "TORMENTA_BOOTSTRAP_SERVERS": settings.bootstrap_servers, "TORMENTA_TOPIC": settings.topic,
                "TORMENTA_DATA_DIR": str(data_dir), "TORMENTA_COMPACT_EVERY": "0"})
    return env


def timed(cmd: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    done = subprocess.run(cmd, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=900)
    took = time.perf_counter() - t
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} failed ({done.returncode}): {done.stderr[-2000:]}")
    return took


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=10_000, help="messages in the backlog (default 10,000)")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds (default 2)")
    ap.add_argument("--archive", choices=("on", "off", "both"), default="both",
                    help="map the JVM class archive (`make install` builds it), not, or both in each round")
    args = ap.parse_args(argv)
    if args.records <= 0 or args.rounds <= 0:
        ap.error("--records and --rounds must be positive")
    with tempfile.TemporaryDirectory(prefix="tormenta-bench-cold-") as tmp:
        base = Settings.from_env({"TORMENTA_DATA_DIR": f"{tmp}/broker", "TORMENTA_BROKER_HEAP": "1g",
                                  "TORMENTA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
                                  "TORMENTA_CONTROLLER_PORT": str(free_port()), "TORMENTA_TOPIC": "bench-cold"})
        broker = EmbeddedBroker(base)
        print(broker.start().message, flush=True)
        try:
            from pipeline.emulator.storm import StormEmulator

            ensure_topic(base)
            summary = StormEmulator(base, control=False, full_speed=True, seed=3).run(max_records=args.records)
            print(f"backlog: {summary['delivered']:,} messages in {base.topic}", flush=True)
            modes = ("on", "off") if args.archive == "both" else (args.archive,)
            if "on" in modes:
                from pipeline.job.jvmoptions import archive_path

                if not archive_path(base).is_file():
                    raise SystemExit("no JVM class archive for this checkout: run `make install` "
                                     "(or `python -m pipeline jvm-archive`), or pass --archive off")
            times: dict[tuple[str, str], list[float]] = {(m, w): [] for m in modes for w in ("reference", "ours")}
            for round_ in range(1, args.rounds + 1):
                for mode in modes:
                    tag = f"{round_}-{mode}"
                    ref = timed([sys.executable, "-c", REFERENCE, f"{tmp}/ref-ckpt-{tag}"],
                                _env(base, Path(tmp) / f"ref-{tag}", mode))
                    ours = timed([sys.executable, "-m", "pipeline", "job", "--once", "--query", HIGH_VALUE_QUERY],
                                 _env(base, Path(tmp) / f"ours-{tag}", mode))
                    times[(mode, "reference")].append(ref)
                    times[(mode, "ours")].append(ours)
                    print(f"round {round_}, class archive {mode}: reference (SparkSession + noop read) {ref:.1f} s, "
                          f"job --once {ours:.1f} s, ratio {ref / ours:.2f}", flush=True)
            for mode in modes:
                ref_mean, ours_mean = (sum(v) / len(v) for v in (times[(mode, "reference")], times[(mode, "ours")]))
                print(f"mean over {args.rounds} round(s), class archive {mode}: reference {ref_mean:.1f} s, "
                      f"job --once {ours_mean:.1f} s, ratio {ref_mean / ours_mean:.2f}; goal job --once <= 20 s: "
                      f"{'met' if ours_mean <= 20 else 'NOT met'}")
        finally:
            print(broker.stop())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
