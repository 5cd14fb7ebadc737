"""Produce rate of the 3-node cluster (RF 2, acks=all) against the single node, and each node's RSS under load.

    .venv/bin/python bench/bench_cluster.py [--records 1000000] [--rounds 1]

In one run, on free loopback ports in a temp folder: a single embedded node (heap 1g) and a
3-node KRaft cluster (512m heap each, as ``TORMENTA_BROKER_NODES=3`` gives), never both up at
once. Each gets a fresh 3-partition topic with the replication the product gives it (1 on the
single node, 2 on the cluster, min ISR 1) and Kafka's own ProducerPerformance (the
``kafka-producer-perf-test`` of the kafka-tools jar, with the emulator's producer settings:
acks=all, idempotence, lz4, linger 20 ms) sends realistic contract records. While the
cluster is loaded, the resident memory of every node is sampled (psutil) and its peak is
checked against 1 GiB. Prints both rates, the ratio cluster / single, and the peaks.
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import psutil  # noqa: E402
from bench_producer import java_perf  # noqa: E402

from pipeline.emulator.sources import EmulatorSource  # noqa: E402
from pipeline.kafka.cluster import KafkaCluster, with_cluster  # noqa: E402
from pipeline.kafka.topic import describe_topic, ensure_topic  # noqa: E402
from pipeline.settings import Settings  # noqa: E402

GIB = 2**30


def port_run(count: int) -> int:
    """A base port with `count` free loopback ports from it on."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + count < 65535 and all(_free(base + i) for i in range(count)):
            return base


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


class RssPeaks:
    """Samples the RSS of the given pids every 0.5 s in a thread; keeps the peak of each."""

    def __init__(self, pids: dict[int, int]):
        self.procs = {node: psutil.Process(pid) for node, pid in pids.items()}
        self.peaks = dict.fromkeys(pids, 0)
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self.done.is_set():
            for node, proc in self.procs.items():
                try:
                    self.peaks[node] = max(self.peaks[node], proc.memory_info().rss)
                except psutil.Error:
                    pass
            self.done.wait(0.5)

    def __enter__(self) -> RssPeaks:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.thread.join(5)


def measure(settings: Settings, label: str, records: int, rounds: int, payload: Path) -> tuple[float, dict[int, int]]:
    """Start the embedded Kafka of `settings`, run ProducerPerformance `rounds` times; (mean rate, RSS peaks)."""
    cluster = KafkaCluster(settings)
    print(cluster.start(), flush=True)
    try:
        s = with_cluster(settings)
        pids = {nd.node.node_id: nd.read_pid() for nd in cluster.nodes}
        rates = []
        with RssPeaks(pids) as rss:
            for r in range(1, rounds + 1):
                topic = f"bench-{label}-{r}"
                ensure_topic(s.replace(topic=topic))
                rf = describe_topic(s.replace(topic=topic)).replication_factor
                rate, line = java_perf(s, topic, records, payload)
                rates.append(rate)
                print(f"{label} round {r} (RF {rf}): {rate:,.0f} tx/s   [{line.strip()}]", flush=True)
        return sum(rates) / len(rates), rss.peaks
    finally:
        print(cluster.stop(), flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=1_000_000, help="records per measurement (default 1,000,000)")
    ap.add_argument("--rounds", type=int, default=1, help="measurements per setup (default 1)")
    args = ap.parse_args(argv)
    if args.records <= 0 or args.rounds <= 0:
        ap.error("--records and --rounds must be positive")
    with tempfile.TemporaryDirectory(prefix="tormenta-bench-cluster-") as tmp:
        single = Settings.from_env({"TORMENTA_DATA_DIR": f"{tmp}/single", "TORMENTA_BROKER_HEAP": "1g",
                                    "TORMENTA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port_run(2)}"})
        single = single.replace(controller_port=single.first_bootstrap[1] + 1)
        base = port_run(6)
        three = Settings.from_env({"TORMENTA_DATA_DIR": f"{tmp}/cluster", "TORMENTA_BROKER_HEAP": "1g",
                                   "TORMENTA_BROKER_NODES": "3", "TORMENTA_BOOTSTRAP_SERVERS": f"127.0.0.1:{base}",
                                   "TORMENTA_CONTROLLER_PORT": str(base + 1)})
        payload = Path(tmp) / "payload.txt"
        sample = EmulatorSource(single.sample_file, single.threshold, seed=2).fetch(20_000, time.time()).values
        payload.write_bytes(b"\n".join(sample))
        one_rate, one_rss = measure(single, "single", args.records, args.rounds, payload)
        three_rate, three_rss = measure(three, "cluster", args.records, args.rounds, payload)
    print(f"single node (RF 1):     {one_rate:,.0f} tx/s, broker RSS peak {one_rss[1] / 2**20:,.0f} MiB")
    print(f"3-node cluster (RF 2):  {three_rate:,.0f} tx/s, ratio cluster / single = {three_rate / one_rate:.2f}")
    for node, peak in sorted(three_rss.items()):
        print(f"  node {node} RSS peak while loaded: {peak / 2**20:,.0f} MiB "
              f"({'<= 1 GiB: ok' if peak <= GIB else 'OVER 1 GiB'})")
    return 0 if all(0 < p <= GIB for p in three_rss.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
