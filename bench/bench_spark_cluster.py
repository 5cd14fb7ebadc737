"""Benchmark: the job's 3M-record batch on a Spark standalone cluster against local mode.

    .venv/bin/python bench/bench_spark_cluster.py [--records 3000000] [--cluster-cores 1]

Loads the messages once into a fresh topic (the storm emulator, as bench/bench_job.py),
then in the same run times the same offsets, each mode with its own tables and
checkpoint and after a warm-up batch of its own:

  local    `local[N]` (N = TORMENTA_JOB_CORES, all cores of this machine), driver = executor;
  cluster  a real standalone master and one worker (--cluster-cores, 1 GiB) from pyspark's
           distribution on loopback; the driver in this process ships the jars and the
           `pipeline` package to the worker's executor.

For each: Spark reading the offsets into `noop` (the floor) and our high-value batch
(decode, dedupe, summary, four Delta appends). Prints the times, the ratio local/cluster
and the same per core. Everything it starts is stopped at the end.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_job import load, noop_time, ours_time  # noqa: E402

from pipeline.kafka.broker import EmbeddedBroker  # noqa: E402
from pipeline.kafka.topic import ensure_topic  # noqa: E402
from pipeline.settings import Settings  # noqa: E402
from tests.support.ports import free_port  # noqa: E402
from tests.support.spark_standalone import StandaloneCluster  # noqa: E402

WARMUP_RECORDS = 20_000


def time_mode(settings: Settings, tmp: Path, mode: str, topics: tuple[str, str]) -> dict:
    """Warm up on the small topic, then noop and ours on the big one, in one SparkSession."""
    from pipeline.job.spark import build_spark

    spark = build_spark(settings, f"tormenta-bench-{mode}")
    try:
        warm = settings.replace(topic=topics[0], data_dir=tmp / f"{mode}-warm")
        ours_time(spark, warm)
        big = settings.replace(topic=topics[1], data_dir=tmp / mode)
        noop = noop_time(spark, big, tmp / f"{mode}-noop")
        ours, stages = ours_time(spark, big)
        master = spark.sparkContext.master
    finally:
        spark.stop()
    return {"mode": mode, "master": master, "cores": settings.job_cores, "noop_s": noop, "ours_s": ours,
            "stages": stages}


def report(r: dict) -> None:
    stages = ", ".join(f"{k} {v:.2f} s" for k, v in r["stages"].items())
    print(f"{r['mode']:>7} ({r['master']}, {r['cores']} core(s)): noop {r['noop_s']:6.2f} s, "
          f"ours {r['ours_s']:6.2f} s ({stages})", flush=True)


def run(args, tmp: Path) -> tuple[dict, dict]:
    base = Settings.from_env({
        "TORMENTA_DATA_DIR": str(tmp / "base"), "TORMENTA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        "TORMENTA_CONTROLLER_PORT": str(free_port()), "TORMENTA_COMPACT_EVERY": "0",
        "TORMENTA_MAX_OFFSETS_PER_TRIGGER": str(max(args.records * 2, 1000)),
        "TORMENTA_DRIVER_MEMORY": "2g", "TORMENTA_EXECUTOR_MEMORY": "1g", "TORMENTA_BROKER_HEAP": "768m",
    })
    broker = EmbeddedBroker(base)
    broker.start()
    try:
        topics = ("bench-warm", "bench-big")
        for topic, n in zip(topics, (WARMUP_RECORDS, args.records)):
            ensure_topic(base.replace(topic=topic))
            took = load(base.replace(topic=topic), n)
            print(f"loaded {n:,} messages into {topic} in {took:.1f} s", flush=True)
        local = time_mode(base, tmp, "local", topics)
        report(local)
        with StandaloneCluster(tmp / "standalone", cores=args.cluster_cores, memory="1g") as cluster:
            on_cluster = base.replace(spark_master=cluster.url, job_cores=args.cluster_cores)
            remote = time_mode(on_cluster, tmp, "cluster", topics)
        report(remote)
    finally:
        broker.stop()
    return local, remote


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=3_000_000)
    ap.add_argument("--cluster-cores", type=int, default=1)
    args = ap.parse_args()
    if args.records <= 0 or not 1 <= args.cluster_cores <= 64:
        ap.error("--records must be positive and --cluster-cores 1..64")
    logging.basicConfig(level=logging.WARNING)
    tmp = Path(tempfile.mkdtemp(prefix="tormenta-bench-cluster-"))
    try:
        local, remote = run(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ratio = local["ours_s"] / remote["ours_s"]
    per_core = (local["ours_s"] * local["cores"]) / (remote["ours_s"] * remote["cores"])
    print(f"{args.records:,}-message batch: local {local['ours_s']:.1f} s on {local['cores']} cores, "
          f"cluster {remote['ours_s']:.1f} s on {remote['cores']} core(s): ratio local/cluster {ratio:.2f}, "
          f"per core {per_core:.2f}; noop floor local {local['noop_s']:.1f} s, cluster {remote['noop_s']:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
