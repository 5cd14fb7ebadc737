"""Rate accuracy of the storm emulator at 10,000 and 50,000 tx/s.

    .venv/bin/python bench/bench_rate_accuracy.py [--seconds 60] [--rates 10000,50000]

Starts its own embedded broker on free loopback ports in a temp folder (stopped at the
end). For each rate it runs the emulator (smooth pacing, 1 s tick) for `--seconds` and
then counts, independently of the emulator's own bookkeeping, how many records the
broker holds per 10-second window of their producer timestamps (offsets_for_times on
every partition). It prints the error of each window against rate x 10 s; the goal is
|error| <= 1 % per window at 50,000 tx/s.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.emulator.storm import StormEmulator  # noqa: E402
from pipeline.kafka.broker import EmbeddedBroker
from pipeline.kafka.security import client_config  # noqa: E402
from pipeline.kafka.topic import ensure_topic, log_end_offsets  # noqa: E402
from pipeline.settings import Settings  # noqa: E402
from tests.support.ports import free_port  # noqa: E402

WINDOW = 10.0


def window_counts(settings: Settings, seconds: float) -> list[int]:
    """Records per 10 s window of producer timestamps, from the first record on."""
    from confluent_kafka import Consumer, TopicPartition

    ends = log_end_offsets(settings)
    c = Consumer(client_config(settings, "admin", {"group.id": "bench-rate", "enable.auto.commit": False}))
    try:
        first = []
        for p, end in ends.items():
            if end == 0:
                continue
            c.assign([TopicPartition(settings.topic, p, 0)])
            msg = None
            while msg is None or msg.error() is not None:
                msg = c.poll(5)
            first.append(msg.timestamp()[1])
        t0 = min(first)

        def offsets_at(ms: int) -> int:
            found = c.offsets_for_times([TopicPartition(settings.topic, p, ms) for p in ends], timeout=10)
            return sum(ends[tp.partition] if tp.offset < 0 else tp.offset for tp in found)

        edges = [offsets_at(int(t0 + k * WINDOW * 1000)) for k in range(int(seconds // WINDOW) + 1)]
        return [b - a for a, b in zip(edges, edges[1:])]
    finally:
        c.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="run length per rate (default 60; >= 10)")
    ap.add_argument("--rates", default="10000,50000", help="comma-separated rates in tx/s")
    args = ap.parse_args(argv)
    if args.seconds < WINDOW:
        ap.error("--seconds must be at least 10")
    with tempfile.TemporaryDirectory(prefix="tormenta-rate-") as tmp:
        base = Settings.from_env({"TORMENTA_DATA_DIR": tmp, "TORMENTA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
                                  "TORMENTA_CONTROLLER_PORT": str(free_port())})
        broker = EmbeddedBroker(base)
        print(broker.start().message, flush=True)
        worst_all = 0.0
        try:
            for rate in (float(r) for r in args.rates.split(",")):
                settings = base.replace(topic=f"rate-{int(rate)}")
                ensure_topic(settings)
                # One extra second so the last full window is complete.
                summary = StormEmulator(settings, control=False, changes={"rate": rate}).run(duration=args.seconds + 1)
                counts = window_counts(settings, args.seconds)
                expected = rate * WINDOW
                errors = [(n - expected) / expected for n in counts]
                worst = max(abs(e) for e in errors)
                worst_all = max(worst_all, worst) if rate >= 50_000 else worst_all
                print(f"rate {rate:,.0f} tx/s: sent {summary['sent']:,} in {summary['duration_s']:.1f} s, "
                      f"delivered {summary['delivered']:,}, failed {summary['failed']}, skipped by the pacer "
                      f"{summary.get('skipped', 0)}")
                for k, (n, e) in enumerate(zip(counts, errors)):
                    print(f"  window {k * WINDOW:>5.0f}-{(k + 1) * WINDOW:<5.0f}s: {n:>9,} records  error {e:+.3%}")
                print(f"  worst window error {worst:.3%}", flush=True)
        finally:
            print(broker.stop())
    print(f"goal |error| <= 1% per 10 s window at 50,000 tx/s: {'met' if worst_all <= 0.01 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
