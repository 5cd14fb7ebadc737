"""``python -m pipeline run``: the whole product on the embedded default, in one command.

Starts (or reuses) the local broker (``TORMENTA_BROKER_NODES`` nodes: one by default, or a
local KRaft cluster whose every node is then the children's bootstrap servers), creates the topics, then launches the Spark job, the
live lane (unless ``TORMENTA_LIVE=false``), the storm emulator and the Streamlit app as child processes with their logs in
``<data_dir>/run/*.log``, prints the URL and waits. Ctrl-C (or SIGTERM) stops every
process it started, children first, the broker last. A child that dies is reported with
the end of its log.

``TORMENTA_SECURE=1`` starts the broker (or cluster) secured (``pipeline.kafka.secure``):
its client file ``<data_dir>/secure/clients.json`` gives the job, the emulator and the app
each its own SCRAM user over SASL_SSL, and the children get that data folder.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from pipeline.auth.login import AuthConfig, load_secrets, secrets_files
from pipeline.auth.loopback import check_bind
from pipeline.errors import TormentaError
from pipeline.kafka.broker import port_open
from pipeline.kafka.cluster import KafkaCluster, with_cluster
from pipeline.kafka.security import client_file
from pipeline.kafka.topic import ensure_all_topics
from pipeline.procs.child import Child
from pipeline.settings import PROJECT_ROOT, Settings, format_duration


def register(sub) -> None:
    p = sub.add_parser("run", help="run everything: broker, topics, job, live lane, emulator and the app (Ctrl-C stops all)")
    p.add_argument("--no-emulator", action="store_true", help="do not start the storm emulator")
    p.add_argument("--no-app", action="store_true", help="do not start the Streamlit app")
    p.set_defaults(func=run_cmd)


def _start(name: str, cmd: list[str], run_dir: Path, bootstrap: str) -> Child:
    """Start one child of the run, its output in ``<run_dir>/<name>.log``, its pid in ``<name>.pid``."""
    child = Child(name, cmd, run_dir / f"{name}.log", pid_file=run_dir / f"{name}.pid",
                  env=dict(os.environ, TORMENTA_BOOTSTRAP_SERVERS=bootstrap)).start()
    print(f"  {name:<9} pid {child.pid:<7} log {child.log_path}")
    return child


def app_command(settings: Settings, secrets: list[Path] | None = None) -> list[str]:
    """The `streamlit run` command of the app, bound to TORMENTA_APP_ADDRESS.

    Checked before anything starts: an incomplete [auth] in the secrets file, or an address
    beyond loopback without a login, is a SettingsError (one line, exit 2)."""
    login = AuthConfig.from_secrets(load_secrets(secrets if secrets is not None else secrets_files(PROJECT_ROOT)))
    check_bind(settings.app_address, login)
    return [sys.executable, "-m", "streamlit", "run", str(PROJECT_ROOT / "streamlit_app.py"),
            "--server.address", settings.app_address, "--server.port", str(settings.app_port),
            "--server.headless", "true", "--browser.gatherUsageStats", "false"]


def run_cmd(settings: Settings, args) -> int:
    app_cmd = None if args.no_app else app_command(settings)  # login and address checked before anything starts
    py = sys.executable
    run_dir = settings.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    if not args.no_app and port_open("127.0.0.1", settings.app_port):
        raise TormentaError(f"port {settings.app_port} is taken (is the app already running?); "
                            "set TORMENTA_APP_PORT to a free port")
    broker = KafkaCluster(settings)
    started_broker = not any(nd.status().running for nd in broker.nodes)
    print(broker.start())
    if broker.secure:  # the children find the client file under the same (absolute) data folder
        os.environ["TORMENTA_DATA_DIR"] = str(settings.data_dir.resolve())
        print(f"  secured: job, live lane, emulator and app connect with their own users from {client_file(settings)}")
    settings = with_cluster(settings)
    boot = settings.bootstrap_servers
    children: list[Child] = []
    stopping = False

    def on_signal(signum, _frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        for info in ensure_all_topics(settings):
            print(info.describe())
        print("starting:")
        children.append(_start("job", [py, "-m", "pipeline", "job"], run_dir, boot))
        if settings.live:  # the live lane: a second Spark application (TORMENTA_LIVE=false: not started)
            children.append(_start("live", [py, "-m", "pipeline", "live"], run_dir, boot))
        if not args.no_emulator:
            children.append(_start("emulator", [py, "-m", "pipeline", "emulate", "--rate", f"{settings.emulator_rate:g}"],
                                   run_dir, boot))
        if not args.no_app:
            children.append(_start("app", app_cmd, run_dir, boot))
        print()
        print(f"Tormenta is running. Open http://127.0.0.1:{settings.app_port}" if not args.no_app else "Tormenta is running.")
        print(f"  ingest interval {format_duration(settings.ingest_interval)}, record lifetime "
              f"{format_duration(settings.retention)}, processing interval {format_duration(settings.trigger_interval)}")
        print(f"  first rows reach the Delta tables in {settings.delta_dir} after one processing interval.")
        print("Press Ctrl-C to stop everything.")
        reported: set[str] = set()
        while not stopping:
            for c in children:
                if c.poll() is not None and c.name not in reported:
                    reported.add(c.name)
                    print(f"\n{c.name} exited with code {c.returncode}; last lines of {c.log_path}:\n"
                          f"{c.tail(12, indent='    ')}")
            time.sleep(0.5)
    finally:
        print("\nstopping ...")
        for c in reversed(children):
            c.stop(30.0)
            print(f"  {c.name} stopped")
        if started_broker:
            print("  " + broker.stop().replace("\n", "\n  "))
    return 0
