"""Command line of Tormenta: ``python -m pipeline <command>``.

    broker start|stop|status    the embedded local Kafka 4 broker (KRaft, loopback)
    topic create|describe       the transactions topic (+ emulator control/status topics)
    smoke                       produce one message and read it back, with the round trip
    emulate ...                 the storm emulator (see `emulate --help`)
    storm ...                   steer a running emulator (rate, profile, pause, resume, stop)
    job [--once]                the Spark streaming job
    live                        the live lane (Spark Real-time Mode -> live topic)
    sql "QUERY"                 run Spark SQL over the Delta tables
    run                         everything: broker, topics, job, emulator and the app

Each subsystem adds its own sub-commands through a ``register(subparsers)`` function, so
this module only wires them. Every deliberate error is printed as one line, exit code 2
for bad input and 1 for a failure of the stack.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from pipeline.errors import SettingsError, TormentaError
from pipeline.settings import Settings

# Modules that contribute sub-commands, in help order.
COMMAND_MODULES = (
    "pipeline.commands",
    "pipeline.emulator.cli",
    "pipeline.job.cli",
    "pipeline.live.cli",
    "pipeline.loadtest.cli",
    "pipeline.runall",
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, no usage dump
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m pipeline", description="Tormenta storm-data pipeline")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and name.startswith(exc.name):
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("py4j", "py4j.clientserver", "py4j.java_gateway"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # librdkafka's retry chatter (pipeline.kafka.security routes it here) only with -v.
    logging.getLogger("tormenta.kafka.client").setLevel(logging.DEBUG if args.verbose else logging.CRITICAL)
    try:
        settings = Settings.from_env()
        if settings.broker_nodes > 1:
            from pipeline.kafka.cluster import with_cluster

            # Every command started by hand reaches every node of the embedded cluster, so a
            # client that starts while one node is down still finds the others.
            settings = with_cluster(settings)
        return int(args.func(settings, args) or 0)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except TormentaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
