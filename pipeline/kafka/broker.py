"""The embedded local Kafka 4 broker (one combined KRaft broker+controller on loopback).

It runs the real Apache Kafka broker from the Maven jars in ``<jars_dir>/broker``:
storage is formatted on first start (``kafka.tools.StorageTool format``), the server is
``kafka.Kafka server.properties`` with a capped heap, and its pid lives in
``<data_dir>/broker/broker.pid``.

    python -m pipeline broker start|stop|status
"""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass

from pipeline.errors import BrokerError
from pipeline.kafka.jvm import broker_classpath, java_version
from pipeline.kafka.procs import signal_reaches
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


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def pid_alive(pid: int) -> bool:
    if not signal_reaches(os.kill, pid):
        return False
    # A zombie child still answers kill(0); treat it as dead.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return True


@dataclass
class BrokerStatus:
    running: bool
    pid: int | None
    address: str
    answers: bool
    message: str


class EmbeddedBroker:
    """Start, stop and inspect the local single-node broker."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.host, self.port = settings.first_bootstrap
        if self.host not in ("127.0.0.1", "localhost", "::1") and not self.host.startswith("127."):
            raise BrokerError(
                f"the embedded broker only binds to loopback, but TORMENTA_BOOTSTRAP_SERVERS names {self.host}; "
                "use 127.0.0.1:PORT for the embedded broker"
            )
        self.dir = settings.broker_dir
        self.pid_file = self.dir / "broker.pid"
        self.log_file = self.dir / "broker.log"
        self.config_file = self.dir / "server.properties"

    # ---- files --------------------------------------------------------------------
    def _write_config(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        c = self.settings.controller_port
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{self.host}:{c}",
            "listeners": f"PLAINTEXT://{self.host}:{self.port},CONTROLLER://{self.host}:{c}",
            "advertised.listeners": f"PLAINTEXT://{self.host}:{self.port}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.dir / "logs"),
            "num.partitions": "3",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "3",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
            "num.network.threads": "2",
            "num.io.threads": "4",
            "log.segment.bytes": str(256 * 1024 * 1024),
            "log.retention.check.interval.ms": "60000",
        }
        self.config_file.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        (self.dir / "log4j2.properties").write_text(LOG4J2)

    def _java(self, main: str, *args: str, heap: str = "256m") -> list[str]:
        return [
            "java",
            f"-Xmx{heap}",
            f"-Dlog4j2.configurationFile={self.dir / 'log4j2.properties'}",
            "-cp",
            broker_classpath(self.settings.jars_dir),
            main,
            *args,
        ]

    def _format_storage(self) -> None:
        if (self.dir / "logs" / "meta.properties").exists():
            return
        cmd = self._java("kafka.tools.StorageTool", "format", f"--cluster-id={_cluster_id()}",
                         f"--config={self.config_file}", "--ignore-formatted")
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            raise BrokerError(f"formatting KRaft storage failed: {(out.stderr or out.stdout).strip()[-500:]}")

    def read_pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    # ---- commands -------------------------------------------------------------------
    def status(self) -> BrokerStatus:
        pid = self.read_pid()
        answers = port_open(self.host, self.port)
        address = f"{self.host}:{self.port}"
        if pid and answers:
            msg = f"broker running (pid {pid}) on {address}"
        elif pid:
            msg = f"broker process {pid} is up but {address} does not answer yet"
        elif answers:
            msg = f"no embedded broker is running, but something answers on {address} (an external broker?)"
        else:
            msg = f"broker is not running on {address}; start it with `python -m pipeline broker start`"
        return BrokerStatus(bool(pid), pid, address, answers, msg)

    def start(self, timeout: float = 90.0) -> BrokerStatus:
        current = self.status()
        if current.running:
            return BrokerStatus(True, current.pid, current.address, current.answers,
                                f"broker already running (pid {current.pid}) on {current.address}")
        if current.answers:
            raise BrokerError(f"port {self.port} on {self.host} is already taken by another process; "
                              "stop it or set TORMENTA_BOOTSTRAP_SERVERS to a free port")
        if self.settings.controller_port == self.port:
            raise BrokerError(f"the controller port and the client port are both {self.port}; "
                              "set TORMENTA_CONTROLLER_PORT to another port")
        if port_open(self.host, self.settings.controller_port):
            raise BrokerError(f"controller port {self.settings.controller_port} is already taken; "
                              "set TORMENTA_CONTROLLER_PORT to a free port")
        java_version()
        self._write_config()
        self._format_storage()
        heap = self.settings.broker_heap
        cmd = self._java("kafka.Kafka", str(self.config_file), heap=heap)
        cmd[1:1] = [f"-Xms{min_heap(heap)}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
                    "-Djava.awt.headless=true"]
        with open(self.log_file, "ab") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, cwd=self.dir)
        self.pid_file.write_text(str(proc.pid))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise BrokerError(f"broker exited with code {proc.returncode} during start-up; last log lines:\n"
                                  + self._log_tail())
            if port_open(self.host, self.port) and self._metadata_ok():
                return BrokerStatus(True, proc.pid, f"{self.host}:{self.port}", True,
                                    f"broker started (pid {proc.pid}) on {self.host}:{self.port}")
            time.sleep(0.3)
        self.stop()
        raise BrokerError(f"broker did not answer within {timeout:.0f}s; see {self.log_file}")

    def _metadata_ok(self) -> bool:
        from confluent_kafka.admin import AdminClient

        try:
            md = AdminClient({"bootstrap.servers": f"{self.host}:{self.port}"}).list_topics(timeout=2)
            return bool(md.brokers)
        except Exception:  # noqa: BLE001 - "not yet" while the broker boots
            return False

    def _log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 30.0) -> str:
        pid = self.read_pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return "broker is not running; nothing to stop"
        os.killpg(pid, signal.SIGTERM) if _is_group_leader(pid) else os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and pid_alive(pid):
            _reap(pid)
            time.sleep(0.2)
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
            time.sleep(0.5)
            _reap(pid)
            msg = f"broker (pid {pid}) did not stop within {timeout:.0f}s and was killed"
        else:
            msg = f"broker (pid {pid}) stopped"
        self.pid_file.unlink(missing_ok=True)
        return msg


def min_heap(heap: str) -> str:
    """Initial heap: half the cap, at most 512m (start-up is faster, RSS stays small)."""
    n, unit = int(heap[:-1]), heap[-1]
    mb = n * 1024 if unit == "g" else n
    return f"{max(64, min(512, mb // 2))}m"


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
