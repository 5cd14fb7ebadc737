"""``python -m pipeline run``: the whole product on the embedded default, in one command.

Starts (or reuses) the local broker (``TORMENTA_BROKER_NODES`` nodes: one by default, or a
local KRaft cluster whose every node is then the children's bootstrap servers), creates the topics, then launches the Spark job, the
live lane (unless ``TORMENTA_LIVE=false``), the storm emulator and the Streamlit app as child processes with their logs in
``<data_dir>/run/*.log``, prints the URL and waits. Ctrl-C (or SIGTERM) stops every
process it started, children first, the broker last.

The children are one list of (name, command) parts (`child_parts`). A part that exits, and
a broker node that `run` started and that dies, is started again by the supervisor
(`pipeline.procs.supervise`: 1 s doubling to 60 s, five exits within 10 minutes = crash
loop, left down with one line and the end of its log). ``<run_dir>/parts.json`` holds each
part's state for the Overview page, and with ``TORMENTA_METRICS_PORT`` set the same figures
are served on 127.0.0.1 at the run's metrics port (``tormenta_part_*``).

With ``TORMENTA_MONITORING`` on (the default) and a metrics port, Prometheus and Alertmanager are
two more parts (`pipeline.monitoring.stack`): configuration under ``<data_dir>/monitoring/``,
loopback only, the Prometheus URL printed with the app's.

``TORMENTA_SECURE=1`` starts the broker (or cluster) secured (``pipeline.kafka.secure``):
its client file ``<data_dir>/secure/clients.json`` gives the job, the emulator and the app
each its own SCRAM user over SASL_SSL, and the children get that data folder.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from pipeline.auth.login import AuthConfig, load_secrets, secrets_files
from pipeline.auth.loopback import check_bind
from pipeline.errors import TormentaError
from pipeline.kafka.broker import EmbeddedBroker, port_open
from pipeline.kafka.cluster import KafkaCluster, with_cluster
from pipeline.kafka.security import client_file
from pipeline.kafka.topic import ensure_all_topics
from pipeline.metrics import ports
from pipeline.monitoring import stack as monitoring
from pipeline.procs.child import Child, product_env
from pipeline.procs.supervise import ChildPart, Supervisor, serve_metrics, stop_metrics
from pipeline.settings import PROJECT_ROOT, Settings, format_duration


def register(sub) -> None:
    p = sub.add_parser("run", help="run everything: broker, topics, job, live lane, emulator and the app (Ctrl-C stops all)")
    p.add_argument("--no-emulator", action="store_true", help="do not start the storm emulator")
    p.add_argument("--no-app", action="store_true", help="do not start the Streamlit app")
    p.set_defaults(func=run_cmd)


NEEDS_KAFKA = ("job", "live", "emulator")  # parts that exit when no broker answers


def _start(sup: Supervisor, name: str, cmd: list[str], run_dir: Path, bootstrap: str) -> None:
    """Start one child of the run under `sup`, its output in ``<run_dir>/<name>.log``, its pid in ``<name>.pid``."""
    child = Child(name, cmd, run_dir / f"{name}.log", pid_file=run_dir / f"{name}.pid",
                  env=product_env(os.environ, TORMENTA_BOOTSTRAP_SERVERS=bootstrap))
    sup.add(ChildPart(child), needs=name in NEEDS_KAFKA)
    print(f"  {name:<12} pid {child.pid:<7} log {child.log_path}")


def kafka_down(bootstrap: str) -> Callable[[], str | None]:
    """The supervisor's dependency probe: why Kafka is down (no bootstrap server accepts a
    connection), or None. A part that needs Kafka and exits meanwhile is no crash loop."""
    servers = [s.rsplit(":", 1) for s in bootstrap.split(",") if s.strip()]

    def probe() -> str | None:
        if any(port_open(host.strip(), int(port), timeout=1.0) for host, port in servers):
            return None
        return f"no Kafka broker answers at {bootstrap}"
    return probe


class NodePart:
    """A broker node that `run` started, as a supervised part: restarted with `KafkaCluster.relaunch`."""

    def __init__(self, cluster: KafkaCluster, node: EmbeddedBroker):
        self.cluster, self.node = cluster, node
        self.name = "broker" if cluster.size == 1 else f"broker-{node.node.node_id}"
        self.log_path = node.log_file

    @property
    def pid(self) -> int | None:
        return self.node.proc.pid if self.node.proc is not None else None

    def start(self) -> int:
        return self.cluster.relaunch(self.node.node.node_id)

    def poll(self) -> int | None:
        return self.node.proc.poll() if self.node.proc is not None else None

    def cleanup(self) -> None:
        self.node.pid_file.unlink(missing_ok=True)

    def stop(self) -> None:
        self.node.stop()

    def tail(self, lines: int) -> str:
        return Child(self.name, [], self.log_path).tail(lines, indent="    ")


def child_parts(settings: Settings, args, app_cmd: list[str] | None) -> list[tuple[str, list[str]]]:
    """What `run` starts after the topics, in order, as (name, command); stopped in reverse order."""
    py = sys.executable
    parts = [("job", [py, "-m", "pipeline", "job"])]
    if settings.live:  # the live lane: a second Spark application (TORMENTA_LIVE=false: not started)
        parts.append(("live", [py, "-m", "pipeline", "live"]))
    if not args.no_emulator:
        parts.append(("emulator", [py, "-m", "pipeline", "emulate", "--rate", f"{settings.emulator_rate:g}"]))
    if app_cmd is not None:
        parts.append(("app", app_cmd))
    # Prometheus and Alertmanager, last: stopped first, so stopping the run sends no "down" alerts
    # (TORMENTA_MONITORING=false or TORMENTA_METRICS_PORT=0: none)
    return parts + monitoring.parts(settings, [name for name, _ in parts])


def app_command(settings: Settings, secrets: list[Path] | None = None) -> list[str]:
    """The `streamlit run` command of the app, bound to TORMENTA_APP_ADDRESS.

    Checked before anything starts: an incomplete [auth] in the secrets file, or an address
    beyond loopback without a login, is a SettingsError (one line, exit 2)."""
    login = AuthConfig.from_secrets(load_secrets(secrets if secrets is not None else secrets_files(PROJECT_ROOT)))
    check_bind(settings.app_address, login)
    return [sys.executable, "-m", "streamlit", "run", str(PROJECT_ROOT / "streamlit_app.py"),
            "--server.address", settings.app_address, "--server.port", str(settings.app_port),
            "--server.headless", "true", "--browser.gatherUsageStats", "false",
            # no hot reload in a running product: the watcher follows every write under the project
            # (the data folder: broker logs, Delta, checkpoints) and took a quarter of the app's CPU
            "--server.fileWatcherType", "none",
            # no full garbage collection after every script run (page view, fragment rerun): it
            # walks every object of the process each time; `procs.trim` collects once a minute
            "--runner.postScriptGC", "false"]


def run_cmd(settings: Settings, args) -> int:
    app_cmd = None if args.no_app else app_command(settings)  # login and address checked before anything starts
    run_dir = settings.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    if not args.no_app and port_open("127.0.0.1", settings.app_port):
        raise TormentaError(f"port {settings.app_port} is taken (is the app already running?); "
                            "set TORMENTA_APP_PORT to a free port")
    stopping = False

    def on_signal(signum, _frame):
        nonlocal stopping
        stopping = True

    # from here on Ctrl-C only asks to stop: a broker start under way finishes, then all stops in order
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    broker = KafkaCluster(settings)
    started_broker = not any(nd.status().running for nd in broker.nodes)
    print(broker.start())
    if broker.secure:  # the children find the client file under the same (absolute) data folder
        os.environ["TORMENTA_DATA_DIR"] = str(settings.data_dir.resolve())
        print(f"  secured: job, live lane, emulator and app connect with their own users from {client_file(settings)}")
    settings = with_cluster(settings)
    sup = Supervisor(run_dir, dependency_down=kafka_down(settings.bootstrap_servers))
    server = None
    try:
        for nd in broker.nodes:  # only the nodes this run started are watched (and restarted)
            if nd.proc is not None:
                sup.add(NodePart(broker, nd), kind="broker", started=True)
        for info in ensure_all_topics(settings) if not stopping else []:
            print(info.describe())
        print("starting:")
        for name, cmd in child_parts(settings, args, app_cmd):
            if not stopping:
                _start(sup, name, cmd, run_dir, settings.bootstrap_servers)
        if settings.metrics_port:
            port = ports.port_of(settings.metrics_port, ports.RUN)
            server = serve_metrics(sup, port)
            if server is not None:
                print(f"  metrics of the parts on http://127.0.0.1:{port}/metrics")
        _running_message(settings, args)
        while not stopping:
            sup.tick()
            time.sleep(0.5)
    finally:
        print("\nstopping ...")
        sup.stop_children(report=print)
        stop_metrics(server)
        if started_broker:
            sup.mark_stopped()
            print("  " + broker.stop().replace("\n", "\n  "))
            for nd in broker.nodes:  # reap the nodes this process spawned: a JVM whose main thread is
                if nd.proc is not None:  # gone may still be ending its other threads (no zombie outlives run)
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        nd.proc.wait(15)
        sup.remove()
    return 0


def _running_message(settings: Settings, args) -> None:
    print()
    print(f"Tormenta is running. Open http://127.0.0.1:{settings.app_port}" if not args.no_app else "Tormenta is running.")
    print(f"  ingest interval {format_duration(settings.ingest_interval)}, record lifetime "
          f"{format_duration(settings.retention)}, processing interval {format_duration(settings.trigger_interval)}")
    print(f"  first rows reach the Delta tables in {settings.delta_dir} after one processing interval.")
    if monitoring.enabled(settings):
        print(f"  Prometheus {monitoring.prometheus_url(settings)} (alerts: /alerts), "
              f"Alertmanager {monitoring.alertmanager_url(settings)}")
    print("Press Ctrl-C to stop everything; a part that exits is started again (see parts.json in "
          f"{settings.run_dir}).", flush=True)
