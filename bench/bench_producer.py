"""Producer throughput: Kafka's own ProducerPerformance vs the storm emulator (JSON and Avro), in one run.

    .venv/bin/python bench/bench_producer.py [--records 3000000] [--rounds 2] [--profile]

Starts its own embedded broker on free loopback ports in a temp folder (stopped at the
end), then measures on fresh 3-partition topics with the same settings (acks=all,
idempotence, lz4, linger 20 ms, 1 MB batches):

(a) ``org.apache.kafka.tools.ProducerPerformance`` (what users know as
    kafka-producer-perf-test) with a payload file of realistic contract records -- the
    same bytes and size the emulator sends;
(b) the emulator writing JSON and (c) the emulator writing Avro in the Confluent framing
    (StormEmulator at full speed, EmulatorSource: fresh ids, timestamps, keys, every
    delivery report counted), each timed from first produce to the last delivery report.

The three run in alternating rounds on fresh topics; it prints every rate in tx/s, the
ratio of each emulator format to ProducerPerformance per round and the ratio of the means.
The reference keeps the JSON payload (ProducerPerformance splits its payload file on a
delimiter, which binary Avro values may contain). The run length matters: over 1,000,000 records the JVM tool
is still warming up (its rate nearly doubles from 1M to 3M records), so the default is
3,000,000. ``--profile`` runs the emulator part once more under
cProfile and prints where the time goes.

``--part metrics`` measures what the emulator's Prometheus metrics cost: the emulator (Avro, full
speed) with metrics off and on, in alternating rounds on one broker; with metrics on, its
endpoint is served on loopback and scraped every second (Prometheus scrapes every 15 s). It
prints each rate and the ratio on / off.

``--tls`` (also part of the default ``--part all``) measures the cost of security on one broker:
a secured embedded broker (``broker start --secure``: SASL_SSL, SCRAM-SHA-512, ACL authorizer)
given a second, plaintext listener on loopback for this comparison only. The emulator (JSON)
and ProducerPerformance each write over the plaintext listener and over SASL_SSL as the
producer user, in alternating rounds; it prints each rate and the ratio SASL_SSL / plaintext.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.contract.wire import AVRO, JSON, WIRE_FORMATS  # noqa: E402
from pipeline.emulator.binarizer import make_binarizer  # noqa: E402
from pipeline.emulator.producer import PRODUCER_CONFIG  # noqa: E402
from pipeline.emulator.sources import EmulatorSource  # noqa: E402
from pipeline.emulator.storm import StormEmulator  # noqa: E402
from pipeline.kafka.broker import EmbeddedBroker  # noqa: E402
from pipeline.kafka.secure import grant_acls  # noqa: E402
from pipeline.kafka.security import java_client_properties  # noqa: E402
from pipeline.kafka.topic import ensure_topic, log_end_offsets  # noqa: E402
from pipeline.metrics.emulator import EmulatorMetrics  # noqa: E402
from pipeline.procs.jvm import broker_classpath  # noqa: E402
from pipeline.settings import Settings  # noqa: E402
from tests.support.ports import free_port, port_run  # noqa: E402


def java_perf(settings: Settings, topic: str, records: int, payload: Path) -> tuple[float, str]:
    props = {**java_client_properties(settings, "producer", payload.parent), "acks": "all", "enable.idempotence": "true",
             "compression.type": PRODUCER_CONFIG["compression.type"], "linger.ms": PRODUCER_CONFIG["linger.ms"],
             "batch.size": PRODUCER_CONFIG["batch.size"], "buffer.memory": 256 * 1024 * 1024}
    # The properties go in a private file, not on the command line, where a password would show in `ps`.
    config = payload.parent / "producer.properties"
    config.touch(mode=0o600)
    config.write_text("".join(f"{k}={str(v).replace(chr(92), chr(92) * 2)}\n" for k, v in props.items()))
    cmd = ["java", "-Xmx512m", "-cp", broker_classpath(settings.jars_dir), "org.apache.kafka.tools.ProducerPerformance",
           "--topic", topic, "--num-records", str(records), "--throughput", "-1", "--payload-file", str(payload),
           "--producer.config", str(config)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    lines = [line for line in out.stdout.splitlines() if "records sent" in line]
    if out.returncode != 0 or not lines:
        raise SystemExit(f"ProducerPerformance failed: {out.stderr[-2000:]}")
    m = re.search(r"([\d.]+) records/sec", lines[-1])
    return float(m.group(1)), lines[-1]


def emulator_run(settings: Settings, records: int, wire_format: str = JSON, metrics=None) -> dict:
    return StormEmulator(settings, control=False, full_speed=True, seed=1, wire_format=wire_format,
                         metrics=metrics).run(max_records=records)


def metrics_comparison(records: int, rounds: int) -> float:
    """Mean emulator rate with metrics on / off (Avro, full speed), alternating rounds on one broker."""
    import logging
    import threading

    from pipeline.metrics import ports
    from pipeline.metrics.serve import serve

    with tempfile.TemporaryDirectory(prefix="tormenta-bench-metrics-") as tmp:
        base = Settings.from_env({"TORMENTA_DATA_DIR": tmp, "TORMENTA_BROKER_HEAP": "1g", "TORMENTA_METRICS_PORT": "0",
                                  "TORMENTA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
                                  "TORMENTA_CONTROLLER_PORT": str(free_port())})
        broker = EmbeddedBroker(base)
        print(broker.start().message, flush=True)
        rates: dict[str, list[float]] = {"off": [], "on": []}
        try:
            for round_ in range(1, rounds + 1):
                for mode in ("off", "on") if round_ % 2 else ("on", "off"):
                    topic = base.replace(topic=f"bench-metrics-{mode}-{round_}")
                    ensure_topic(topic)
                    metrics, endpoint, stop = None, None, threading.Event()
                    if mode == "on":
                        metrics = TimedMetrics()
                        endpoint = serve(topic.replace(metrics_port=_metrics_base()), ports.EMULATOR, metrics.registry,
                                         logging.getLogger("bench"))
                        threading.Thread(target=_scrape_every_second, args=(endpoint.url, stop, metrics),
                                         daemon=True).start()
                    cpu0 = time.process_time()
                    try:
                        summary = emulator_run(topic, records, AVRO, metrics)
                    finally:
                        stop.set()
                        if endpoint is not None:
                            endpoint.close()
                    cpu = time.process_time() - cpu0
                    rate = summary["delivered"] / summary["duration_s"]
                    rates[mode].append(rate)
                    share = "" if metrics is None else (
                        f", metrics work {metrics.cpu_s * 1000:.1f} ms CPU = {100 * metrics.cpu_s / cpu:.2f} % of the "
                        f"process' {cpu:.1f} s ({metrics.calls} feeds, {metrics.scrapes} scrapes)")
                    print(f"round {round_} metrics {mode:<3}: {rate:,.0f} tx/s  [delivered {summary['delivered']:,}, "
                          f"failed {summary['failed']}, {summary['duration_s']:.2f} s{share}]", flush=True)
        finally:
            print(broker.stop())
    mean = {k: sum(v) / len(v) for k, v in rates.items()}
    ratio = mean["on"] / mean["off"]
    print(f"mean over {rounds} round(s): metrics off {mean['off']:,.0f} tx/s, on {mean['on']:,.0f} tx/s, "
          f"on / off = {ratio:.3f} (cost {100 * (1 - ratio):+.1f} %; goal <= 2 %)")
    return ratio


def _metrics_base() -> int:
    return port_run(22)


def _scrape_every_second(url: str, stop, metrics) -> None:
    """Scrape like Prometheus (but 15 times as often); the rendering's CPU counts as metrics work."""
    import urllib.request

    from prometheus_client import generate_latest

    while not stop.wait(1.0):
        try:
            urllib.request.urlopen(url, timeout=2).read()
        except OSError:
            continue
        t0 = time.thread_time()   # the server thread rendered the same text once: time one rendering
        generate_latest(metrics.registry)
        metrics.cpu_s += time.thread_time() - t0
        metrics.scrapes += 1


class TimedMetrics(EmulatorMetrics):
    """EmulatorMetrics that add up the CPU time of their feeds (status, librdkafka statistics)."""

    def __init__(self):
        super().__init__()
        self.cpu_s, self.calls, self.scrapes = 0.0, 0, 0

    def on_status(self, status, sink=None) -> None:
        t0 = time.thread_time()
        super().on_status(status, sink)
        self.cpu_s += time.thread_time() - t0
        self.calls += 1

    def on_stats(self, stats_json: str) -> None:
        t0 = time.thread_time()
        super().on_stats(stats_json)
        self.cpu_s += time.thread_time() - t0
        self.calls += 1


def emulator_round(base: Settings, round_: int, records: int, wire_format: str, java_rate: float) -> float:
    ours = base.replace(topic=f"bench-emulator-{wire_format}-{round_}")
    ensure_topic(ours)
    summary = emulator_run(ours, records, wire_format)
    in_topic = sum(log_end_offsets(ours).values())
    rate = summary["delivered"] / summary["duration_s"]
    print(f"round {round_} emulator {wire_format:<4}:        {rate:,.0f} tx/s   [sent {summary['sent']:,}, delivered "
          f"{summary['delivered']:,}, failed {summary['failed']}, in topic {in_topic:,}, "
          f"{summary['duration_s']:.2f} s, backpressure waits {summary['backpressure_waits']:,}, "
          f"latency p50/p99 {summary['latency_p50_ms']}/{summary['latency_p99_ms']} ms]", flush=True)
    print(f"round {round_} ratio emulator {wire_format} / ProducerPerformance = {rate / java_rate:.2f}", flush=True)
    return rate


def record_sizes(base: Settings) -> dict[str, float]:
    sizes = {}
    for fmt in WIRE_FORMATS:
        source = EmulatorSource(base.sample_file, base.threshold, seed=2, binarizer=make_binarizer(fmt))
        values = source.fetch(20_000, time.time()).values
        sizes[fmt] = sum(map(len, values)) / len(values)
    return sizes


def _with_plain_listener(port: int):
    """Server-property changes that add a plaintext loopback listener to a secured node (bench only:
    its clients are User:ANONYMOUS, made a super user so that they need no ACL rows)."""
    def change(props: dict[str, str]) -> dict[str, str]:
        return {"listeners": f"{props['listeners']},BENCH://127.0.0.1:{port}",
                "advertised.listeners": f"{props['advertised.listeners']},BENCH://127.0.0.1:{port}",
                "listener.security.protocol.map": f"{props['listener.security.protocol.map']},BENCH:PLAINTEXT",
                "super.users": f"{props['super.users']};User:ANONYMOUS"}
    return change


def tls_comparison(records: int, rounds: int) -> tuple[float, float]:
    """(emulator ratio, ProducerPerformance ratio) of SASL_SSL to plaintext on one secured broker."""
    with tempfile.TemporaryDirectory(prefix="tormenta-bench-tls-") as tmp:
        plain_port = free_port()
        secured = Settings.from_env({"TORMENTA_DATA_DIR": f"{tmp}/secured", "TORMENTA_BROKER_HEAP": "1g",
                                     "TORMENTA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
                                     "TORMENTA_CONTROLLER_PORT": str(free_port())})
        # Plaintext clients: the same broker's plaintext listener, from a data folder without a client file.
        plain = secured.replace(bootstrap_servers=f"127.0.0.1:{plain_port}", data_dir=f"{tmp}/plain")
        broker = EmbeddedBroker(secured, secure=True, extra_props=_with_plain_listener(plain_port))
        print(broker.start().message, f"+ plaintext listener on 127.0.0.1:{plain_port} (bench only)", flush=True)
        try:
            source = EmulatorSource(secured.sample_file, secured.threshold, seed=2)
            payload = Path(tmp) / "payload.txt"
            payload.write_bytes(b"\n".join(source.fetch(20_000, time.time()).values))
            rates: dict[tuple[str, str], list[float]] = {}
            for round_ in range(1, rounds + 1):
                for name, settings in (("plaintext", plain), ("SASL_SSL", secured)):
                    topic = f"bench-tls-{name.lower()}-{round_}"
                    ensure_topic(secured.replace(topic=topic))
                    if settings is secured:
                        grant_acls(secured.replace(topic=topic))  # the producer user may write it
                    java_rate, _ = java_perf(settings.replace(topic=topic), topic, records, payload)
                    summary = emulator_run(_emulator_topic(secured, settings, f"{topic}-emulator"), records)
                    rate = summary["delivered"] / summary["duration_s"]
                    rates.setdefault(("emulator", name), []).append(rate)
                    rates.setdefault(("ProducerPerformance", name), []).append(java_rate)
                    print(f"round {round_} {name:<9}: emulator {rate:,.0f} tx/s (failed {summary['failed']}), "
                          f"ProducerPerformance {java_rate:,.0f} tx/s", flush=True)
            mean = {k: sum(v) / len(v) for k, v in rates.items()}
            ratios = tuple(mean[(who, "SASL_SSL")] / mean[(who, "plaintext")] for who in ("emulator", "ProducerPerformance"))
            print(f"mean over {rounds} round(s), SASL_SSL / plaintext on the same broker: emulator "
                  f"{mean[('emulator', 'SASL_SSL')]:,.0f} / {mean[('emulator', 'plaintext')]:,.0f} tx/s = {ratios[0]:.2f}; "
                  f"ProducerPerformance {mean[('ProducerPerformance', 'SASL_SSL')]:,.0f} / "
                  f"{mean[('ProducerPerformance', 'plaintext')]:,.0f} tx/s = {ratios[1]:.2f}")
            tls_rate = mean[("emulator", "SASL_SSL")]
            print(f"  emulator over SASL_SSL: {tls_rate:,.0f} tx/s (goal >= 250,000 tx/s: "
                  f"{'met' if tls_rate >= 250_000 else 'NOT met'})")
            return ratios
        finally:
            print(broker.stop())


def _emulator_topic(secured: Settings, settings: Settings, topic: str) -> Settings:
    """`settings` on a fresh topic created (and, when secured, granted to the producer) by the admin."""
    ensure_topic(secured.replace(topic=topic))
    grant_acls(secured.replace(topic=topic))
    return settings.replace(topic=topic)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=3_000_000,
                    help="records per measurement (default 3,000,000: long enough for the JVM tool's JIT to warm up)")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds of (a), (b) and (c) (default 2)")
    ap.add_argument("--profile", action="store_true", help="profile the emulator run with cProfile")
    ap.add_argument("--part", choices=("all", "formats", "tls", "metrics"), default="all",
                    help="formats: tool vs emulator JSON/Avro on plaintext; tls: SASL_SSL vs plaintext; "
                         "metrics: the emulator with its metrics off vs on; all (default: formats and tls)")
    args = ap.parse_args(argv)
    if args.records <= 0 or args.rounds <= 0:
        ap.error("--records and --rounds must be positive")
    if args.part in ("all", "formats"):
        formats_comparison(args)
    if args.part in ("all", "tls"):
        tls_comparison(args.records, args.rounds)
    if args.part == "metrics":
        metrics_comparison(args.records, args.rounds)
    return 0


def formats_comparison(args) -> None:
    with tempfile.TemporaryDirectory(prefix="tormenta-bench-") as tmp:
        base = Settings.from_env({"TORMENTA_DATA_DIR": tmp, "TORMENTA_BROKER_HEAP": "1g",
                                  "TORMENTA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
                                  "TORMENTA_CONTROLLER_PORT": str(free_port())})
        broker = EmbeddedBroker(base)
        print(broker.start().message, flush=True)
        try:
            source = EmulatorSource(base.sample_file, base.threshold, seed=2)
            sample = source.fetch(20_000, time.time()).values
            payload = Path(tmp) / "payload.txt"
            payload.write_bytes(b"\n".join(sample))
            sizes = record_sizes(base)
            print(f"record size: {sizes[JSON]:.0f} bytes JSON, {sizes[AVRO]:.0f} bytes Avro (average, realistic "
                  f"records), {args.records:,} records per run")

            java_rates, ours = [], {fmt: [] for fmt in WIRE_FORMATS}
            for round_ in range(1, args.rounds + 1):
                # Alternate the producers so that drift in the machine's load hits all of them.
                java_topic = f"bench-java-{round_}"
                ensure_topic(base.replace(topic=java_topic))
                java_rate, java_line = java_perf(base, java_topic, args.records, payload)
                java_rates.append(java_rate)
                print(f"round {round_} ProducerPerformance:  {java_rate:,.0f} tx/s   [{java_line.strip()}]", flush=True)
                for fmt in WIRE_FORMATS:
                    ours[fmt].append(emulator_round(base, round_, args.records, fmt, java_rate))
            java_mean = sum(java_rates) / len(java_rates)
            print(f"mean over {args.rounds} round(s): ProducerPerformance {java_mean:,.0f} tx/s")
            for fmt, rates in ours.items():
                mean = sum(rates) / len(rates)
                print(f"  emulator {fmt:<4} {mean:,.0f} tx/s, ratio {mean / java_mean:.2f}   (goal >= 250,000 tx/s: "
                      f"{'met' if mean >= 250_000 else 'NOT met'}; ratio >= 1.0: {'met' if mean >= java_mean else 'not met'})")

            if args.profile:
                prof_topic = base.replace(topic="bench-profile")
                ensure_topic(prof_topic)
                profiler = cProfile.Profile()
                profiler.enable()
                emulator_run(prof_topic, min(args.records, 500_000), base.wire_format)
                profiler.disable()
                buf = io.StringIO()
                pstats.Stats(profiler, stream=buf).sort_stats("tottime").print_stats(12)
                print(buf.getvalue())
        finally:
            print(broker.stop())


if __name__ == "__main__":
    raise SystemExit(main())
