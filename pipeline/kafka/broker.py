"""One embedded Kafka 4 node (a combined KRaft broker+controller on loopback).

It runs the real Apache Kafka broker from the Maven jars in ``<jars_dir>/broker``:
storage is formatted on first start (``kafka.tools.StorageTool format``), the server is
``kafka.Kafka server.properties`` with a capped heap, and its pid lives in
``<node dir>/broker.pid``. The default single node lives in ``<data_dir>/broker``; a
node of a local cluster (``pipeline.kafka.cluster``) gets a `NodeSpec` with its own id,
ports, folder and the shared voter list.

    python -m pipeline broker start [--secure]|stop|status

With ``secure`` (``--secure`` or ``TORMENTA_SECURE=1``) the node runs SASL_SSL with SCRAM
users, mutual TLS between controllers and KRaft's ACL authorizer (``pipeline.kafka.secure``).
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import BrokerError
from pipeline.kafka import secure as sec
from pipeline.kafka.security import client_config
from pipeline.metrics.broker import agent_options
from pipeline.procs.group import signal_reaches
from pipeline.procs.jvm import broker_classpath, java_version, service_heap_options
from pipeline.procs.net import port_open
from pipeline.procs.tmpdir import empty
from pipeline.settings import Settings

LOG4J2 = """\
status = warn
appender.file.type = Console
appender.file.name = OUT
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
logger.kafka.name = kafka
logger.kafka.level = WARN
logger.kafka.additivity = false
logger.kafka.appenderRef.out.ref = OUT
logger.state.name = state.change.logger
logger.state.level = WARN
logger.apache.name = org.apache.kafka
logger.apache.level = WARN
"""


def _cluster_id(draw=lambda: uuid.uuid4().bytes) -> str:
    """A fresh Kafka cluster id: 16 random bytes in URL-safe base64 without padding.

    Like Kafka's own ``Uuid.randomUuid``, an id that would start with ``-`` is drawn
    again: command-line parsers read such a value as an option (1 draw in 64 did so).
    """
    while True:
        cid = base64.urlsafe_b64encode(draw()).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def pid_alive(pid: int) -> bool:
    if not signal_reaches(os.kill, pid):
        return False
    # A zombie child still answers kill(0); treat it as dead.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return True


def brokers_seen_from(settings: Settings, address: str, timeout: float = 3.0) -> set[int] | None:
    """The broker ids in the metadata that the node at ``address`` answers with; None when it
    does not answer. Both start-up (does the node list the whole cluster?) and the soak's
    health reading (does a node answer on its own port and list itself?) ask this."""
    from confluent_kafka.admin import AdminClient

    try:
        with AdminClient(client_config(settings, "admin", {"log_level": 0}, bootstrap=address)) as client:
            return set(client.list_topics(timeout=timeout).brokers)
    except Exception:  # noqa: BLE001 - no answer (booting, killed, refused) reads as None
        return None


@dataclass(frozen=True)
class NodeSpec:
    """Where one node listens and keeps its files, and the quorum it belongs to."""

    node_id: int
    host: str
    port: int
    controller_port: int
    dir: Path
    voters: str          # controller.quorum.voters, the same on every node
    nodes: int = 1       # size of the cluster (sets the internal topics' replication)
    replication: int = 1  # default.replication.factor of topics created without one

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def single_node(settings: Settings) -> NodeSpec:
    host, port = settings.first_bootstrap
    c = settings.controller_port
    return NodeSpec(1, host, port, c, settings.broker_dir, f"1@{host}:{c}")


def check_loopback(host: str) -> None:
    if host not in ("127.0.0.1", "localhost", "::1") and not host.startswith("127."):
        raise BrokerError(
            f"the embedded broker only binds to loopback, but TORMENTA_BOOTSTRAP_SERVERS names {host}; "
            "use 127.0.0.1:PORT for the embedded broker"
        )


@dataclass
class BrokerStatus:
    running: bool
    pid: int | None
    address: str
    answers: bool
    message: str


class EmbeddedBroker:
    """Start, stop and inspect one local node (the single-node default unless `node` is given)."""

    def __init__(self, settings: Settings, node: NodeSpec | None = None, secure: bool | None = None,
                 extra_props: Callable[[dict[str, str]], dict[str, str]] | None = None):
        self.settings = settings
        # bench/ only: a function of the server properties giving changes to them (e.g. a second listener)
        self.extra_props = extra_props
        self.secure = settings.secure if secure is None else secure   # how `start` formats and runs it
        self.node = node or single_node(settings)
        self.host, self.port = self.node.host, self.node.port
        check_loopback(self.host)
        self.dir = self.node.dir
        self.pid_file = self.dir / "broker.pid"
        self.log_file = self.dir / "broker.log"
        self.config_file = self.dir / "server.properties"
        self.proc: subprocess.Popen | None = None

    # ---- files --------------------------------------------------------------------
    def _write_config(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        n, c = self.node, self.node.controller_port
        internal_rf = min(3, n.nodes)  # offsets and transaction state: 3 copies on a cluster
        props = {
            "process.roles": "broker,controller",
            "node.id": str(n.node_id),
            "controller.quorum.voters": n.voters,
            "listeners": f"PLAINTEXT://{self.host}:{self.port},CONTROLLER://{self.host}:{c}",
            "advertised.listeners": f"PLAINTEXT://{self.host}:{self.port}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.dir / "logs"),
            "num.partitions": "3",
            "offsets.topic.replication.factor": str(internal_rf),
            "offsets.topic.num.partitions": "3",
            "transaction.state.log.replication.factor": str(internal_rf),
            "transaction.state.log.min.isr": str(min(2, internal_rf)),
            "share.coordinator.state.topic.replication.factor": str(internal_rf),
            "share.coordinator.state.topic.min.isr": str(min(2, internal_rf)),
            "default.replication.factor": str(n.replication),
            # RF 2 with min ISR 1: acks=all writes go on while one copy is down (docs/CLUSTER.md)
            "min.insync.replicas": "1",
            # a killed node is fenced (and its partitions get new leaders) after 6 s, not 9
            "broker.session.timeout.ms": "6000",
            "broker.heartbeat.interval.ms": "1000",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
            "num.network.threads": "2",
            "num.io.threads": "4",
            "log.segment.bytes": str(256 * 1024 * 1024),
            "log.retention.check.interval.ms": "60000",
        }
        if self.secure:
            props.update(sec.server_properties(self.settings, self.host, self.port, c))
        if self.extra_props is not None:
            props.update(self.extra_props(props))
        self.config_file.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        (self.dir / "log4j2.properties").write_text(LOG4J2)

    def _java(self, main: str, *args: str, heap: str = "256m") -> list[str]:
        """``java`` with a capped heap, this node's log4j2 file and the broker classpath, then `main` and `args`
        (`main` may be an ``@argfile`` holding the main class and its arguments)."""
        return [
            "java",
            f"-Xmx{heap}",
            f"-Dlog4j2.configurationFile={self.dir / 'log4j2.properties'}",
            "-cp",
            broker_classpath(self.settings.jars_dir),
            main,
            *args,
        ]

    def _format_storage(self, cluster_id: str | None = None) -> None:
        if (self.dir / "logs" / "meta.properties").exists():
            return
        args = ["kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id or _cluster_id()}",
                f"--config={self.config_file}", "--ignore-formatted"]
        files = sec.files(self.settings)
        argfile = files.dir / f"format-{self.node.node_id}.args"
        if self.secure:  # the SCRAM users, from a 0600 argument file (never on the command line)
            cmd = self._java(f"@{files.scram_argfile(argfile, args)}")
        else:
            cmd = self._java(*args)
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        finally:
            argfile.unlink(missing_ok=True)
        if out.returncode != 0:
            detail = (out.stderr or out.stdout).strip()[-500:]
            raise BrokerError(f"formatting KRaft storage failed: {files.hide(detail) if self.secure else detail}")
        sec.mark_mode(self.dir, self.secure)

    def read_pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    # ---- commands -------------------------------------------------------------------
    @property
    def name(self) -> str:
        return "broker" if self.node.nodes == 1 else f"node {self.node.node_id}"

    def status(self) -> BrokerStatus:
        pid = self.read_pid()
        answers = port_open(self.host, self.port)
        address, name = self.node.address, self.name
        if pid and answers:
            msg = f"{name} running (pid {pid}) on {address}"
        elif pid:
            msg = f"{name} process {pid} is up but {address} does not answer yet"
        elif answers:
            msg = f"no embedded {name} is running, but something answers on {address} (an external broker?)"
        else:
            msg = f"{name} is not running on {address}; start it with `python -m pipeline broker start`"
        return BrokerStatus(bool(pid), pid, address, answers, msg)

    def check_ports(self) -> None:
        """Refuse (BrokerError, one line) when this node's client or controller port is taken."""
        c = self.node.controller_port
        if c == self.port:
            raise BrokerError(f"the controller port and the client port are both {self.port}; "
                              "set TORMENTA_CONTROLLER_PORT to another port")
        if port_open(self.host, self.port):
            raise BrokerError(f"port {self.port} on {self.host} ({self.name}) is already taken by another process; "
                              "stop it or set TORMENTA_BOOTSTRAP_SERVERS to a free port")
        if port_open(self.host, c):
            raise BrokerError(f"controller port {c} ({self.name}) is already taken; "
                              "set TORMENTA_CONTROLLER_PORT to a free port")

    def command(self) -> list[str]:
        """The broker's java command line: its heap reserved at start, G1 with Kafka's pause goal."""
        heap = node_heap(self.settings.broker_heap, self.node.nodes)
        cmd = self._java("kafka.Kafka", str(self.config_file), heap=heap)
        cmd[1:1] = [*service_heap_options(heap).split(), "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
                    "-Djava.awt.headless=true", f"-Djava.io.tmpdir={self.tmp_dir}",
                    *(sec.jvm_options(self.settings) if self.secure else []),
                    # Kafka's JMX metrics for Prometheus on 127.0.0.1 (none when TORMENTA_METRICS_PORT=0)
                    *agent_options(self.settings, self.node.node_id, self.log_file)]
        return cmd

    @property
    def tmp_dir(self) -> Path:
        """The node JVM's ``java.io.tmpdir``: lz4-java unpacks its native library there on every start."""
        return self.dir / "tmp"

    def launch(self, cluster_id: str | None = None) -> int:
        """Write the config, format storage if new, empty the node's temp folder, spawn the JVM; returns its pid
        (does not wait). Callers launch only a node that is not running (its ports are free), so what the
        temp folder holds was left by a node that ended: a kill -9 leaves its lz4 library behind."""
        java_version()
        self._write_config()
        self._format_storage(cluster_id)
        empty(self.tmp_dir)
        with open(self.log_file, "ab") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True, cwd=self.dir)
        self.pid_file.write_text(str(self.proc.pid))
        return self.proc.pid

    def wait_ready(self, deadline: float, brokers: int = 1) -> bool:
        """Poll until this node answers metadata listing `brokers` brokers; False at the deadline.

        Raises BrokerError at once when the process exits during start-up."""
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise BrokerError(f"{self.name} exited with code {self.proc.returncode} during start-up; "
                                  "last log lines:\n" + self._log_tail())
            if port_open(self.host, self.port) and self._metadata_ok(brokers):
                return True
            time.sleep(0.3)
        return False

    @property
    def mode(self) -> str:
        return "secured (SASL_SSL)" if self.secure else "plaintext"

    def start(self, timeout: float = 90.0) -> BrokerStatus:
        sec.prepare(self.settings, [self.dir], self.secure)   # refuses the other mode on existing storage
        current = self.status()
        if current.running:
            if self.secure:
                sec.grant_acls(self.settings, self.node.address)
            return BrokerStatus(True, current.pid, current.address, current.answers,
                                f"{self.name} already running (pid {current.pid}) on {current.address}, {self.mode}")
        self.check_ports()
        pid = self.launch()
        if self.wait_ready(time.monotonic() + timeout):
            if self.secure:
                try:
                    sec.grant_acls(self.settings, self.node.address)
                except BrokerError:
                    self.stop()
                    raise
            return BrokerStatus(True, pid, self.node.address, True, f"{self.name} started (pid {pid}) on "
                                f"{self.node.address}, {self.mode}")
        self.stop()
        raise BrokerError(f"{self.name} did not answer within {timeout:.0f}s; see {self.log_file}")

    def _metadata_ok(self, brokers: int = 1) -> bool:
        return len(brokers_seen_from(self.settings, self.node.address, timeout=2) or ()) >= brokers

    def _log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def terminate(self) -> int | None:
        """Send SIGTERM (clean shutdown) to the node's process group; its pid, or None if not running."""
        pid = self.read_pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return None
        os.killpg(pid, signal.SIGTERM) if _is_group_leader(pid) else os.kill(pid, signal.SIGTERM)
        return pid

    def kill(self) -> int | None:
        """SIGKILL the node at once (a crash, as in `kill -9`); the pid file stays, like after a crash."""
        pid = self.read_pid()
        if pid is None:
            return None
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        _wait_gone(pid, deadline)
        # the listeners close as the last of the JVM's threads goes, a moment after the pid
        while port_open(self.host, self.port, timeout=0.2) and time.monotonic() < deadline:
            time.sleep(0.05)
        return pid

    def finish_stop(self, pid: int, deadline: float) -> str:
        """Wait for a terminated node until `deadline`, then SIGKILL it; one line saying which."""
        if _wait_gone(pid, deadline):
            msg = f"{self.name} (pid {pid}) stopped"
        else:
            os.kill(pid, signal.SIGKILL)
            _wait_gone(pid, time.monotonic() + 10)
            msg = f"{self.name} (pid {pid}) did not stop in time and was killed"
        self.pid_file.unlink(missing_ok=True)
        return msg

    def gone(self, pid: int) -> bool:
        """Whether the terminated node's process has exited (reaped if it is our child); never waits."""
        return _wait_gone(pid, time.monotonic())

    def kill_pid(self, pid: int) -> None:
        """SIGKILL a terminated node that cannot finish stopping; wait until it is gone."""
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _wait_gone(pid, time.monotonic() + 10)
        self.pid_file.unlink(missing_ok=True)

    def stop(self, timeout: float = 30.0) -> str:
        pid = self.terminate()
        if pid is None:
            return f"{self.name} is not running; nothing to stop"
        return self.finish_stop(pid, time.monotonic() + timeout)


def _wait_gone(pid: int, deadline: float) -> bool:
    """Reap and poll until `pid` is gone (True) or the deadline passes (False)."""
    while pid_alive(pid):
        _reap(pid)
        if time.monotonic() >= deadline:
            return not pid_alive(pid)
        time.sleep(0.1)
    return True


def _mb(heap: str) -> int:
    n, unit = int(heap[:-1]), heap[-1]
    return n * 1024 if unit == "g" else n


def node_heap(heap: str, nodes: int) -> str:
    """Heap of one node: TORMENTA_BROKER_HEAP for a single node, half of it (>= 256m) per node of a cluster."""
    return heap if nodes == 1 else f"{max(256, _mb(heap) // 2)}m"


def _is_group_leader(pid: int) -> bool:
    try:
        return os.getpgid(pid) == pid
    except OSError:
        return False


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    except OSError:
        pass
