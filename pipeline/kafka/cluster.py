"""The embedded Kafka, one node or a local cluster of 3..9 KRaft nodes on loopback.

``TORMENTA_BROKER_NODES`` picks the size. Every node runs the same Maven jars as a combined
broker+controller (``process.roles=broker,controller``), so the controller quorum has as
many voters as there are nodes and survives the loss of any minority. Node *i* (1-based)
listens on the configured bootstrap port + 2(i-1) for clients and the controller port +
2(i-1) for the quorum (defaults 9092/9094/9096 and 9093/9095/9097), keeps its files in
``<data_dir>/broker/node-<i>/`` and all nodes share one cluster id (``cluster.id`` there)
and one static ``controller.quorum.voters``. One node (the default) is the plain
``EmbeddedBroker`` in ``<data_dir>/broker``.

    python -m pipeline broker start [--secure]|stop|status      (all nodes)

Secured (``--secure`` / ``TORMENTA_SECURE=1``), all nodes share ``<data_dir>/secure/`` (one CA,
one node certificate, one set of SCRAM users) and talk SASL_SSL between brokers and mutual
TLS on the controller listeners (``pipeline.kafka.secure``).
"""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass, field

from pipeline.errors import BrokerError, SettingsError
from pipeline.kafka import secure as sec
from pipeline.kafka.broker import BrokerStatus, EmbeddedBroker, NodeSpec, _cluster_id, brokers_seen_from, single_node
from pipeline.kafka.security import client_config
from pipeline.settings import Settings

QUORUM_GONE_GRACE_S = 20.0   # how long a node left without its quorum may go on stopping before SIGKILL


def nodes_in_service(settings: Settings, timeout: float = 3.0) -> set[int]:
    """The nodes that answer metadata on their own client port and list themselves in it.

    The cluster's metadata alone lists a node killed with -9 until its session times out,
    seconds later; a node that answers on its own port is running again (a KRaft broker
    opens its listener once it has caught up with the metadata log)."""
    return {spec.node_id for spec in node_specs(settings)
            if spec.node_id in (brokers_seen_from(settings, f"{spec.host}:{spec.port}", timeout) or ())}


def node_specs(settings: Settings) -> list[NodeSpec]:
    """Each node's id, ports, folder and the shared voter list; SettingsError when ports collide."""
    n = settings.broker_nodes
    if n == 1:
        return [single_node(settings)]
    host, base = settings.first_bootstrap
    ctl = settings.controller_port
    ports = [(base + 2 * i, ctl + 2 * i) for i in range(n)]
    flat = [p for pair in ports for p in pair]
    if max(flat) > 65535 or len(set(flat)) != len(flat):
        raise SettingsError(
            f"{n} nodes need client ports {base}, {base + 2}, ... and controller ports {ctl}, {ctl + 2}, ..., "
            f"which collide or pass 65535; allowed: TORMENTA_CONTROLLER_PORT and the bootstrap port at least "
            f"{2 * n} apart (or an odd distance), e.g. 9092 and 9093")
    voters = ",".join(f"{i + 1}@{host}:{c}" for i, (_, c) in enumerate(ports))
    rf = min(n, settings.replication or 2)
    return [NodeSpec(i + 1, host, p, c, settings.broker_dir / f"node-{i + 1}", voters, n, rf)
            for i, (p, c) in enumerate(ports)]


def cluster_bootstrap(settings: Settings) -> str:
    """Every node's client address (the configured servers for one node)."""
    if settings.broker_nodes == 1:
        return settings.bootstrap_servers
    return ",".join(spec.address for spec in node_specs(settings))


def with_cluster(settings: Settings) -> Settings:
    """The settings with every node of the embedded cluster as bootstrap servers."""
    servers = cluster_bootstrap(settings)
    return settings if servers == settings.bootstrap_servers else settings.replace(bootstrap_servers=servers)


@dataclass
class PartitionFact:
    topic: str
    partition: int
    leader: int          # -1: no leader
    replicas: list[int]
    isr: list[int]


@dataclass
class ClusterStatus:
    nodes: list[tuple[NodeSpec, BrokerStatus]]
    controller: int | None = None
    partitions: list[PartitionFact] = field(default_factory=list)
    error: str | None = None     # why the metadata could not be read

    @property
    def up(self) -> int:
        return sum(1 for _, st in self.nodes if st.running and st.answers)

    @property
    def under_replicated(self) -> list[PartitionFact]:
        return [p for p in self.partitions if len(p.isr) < len(p.replicas)]

    def lines(self) -> list[str]:
        out = []
        for spec, st in self.nodes:
            state = "up" if st.running and st.answers else "starting" if st.running else "down"
            out.append(f"node {spec.node_id}: {state:<8} pid {st.pid or '-':<8} client {spec.address} "
                       f"controller {spec.host}:{spec.controller_port}")
        out.append(f"active controller: node {self.controller}" if self.controller else
                   "active controller: unknown (no quorum answers)")
        urp = self.under_replicated
        if self.error:
            out.append(f"partitions: unknown ({self.error})")
        else:
            out.append(f"under-replicated partitions: {len(urp)}" +
                       (" (" + ", ".join(f"{p.topic}-{p.partition}" for p in urp[:10]) + ")" if urp else ""))
        return out


def describe_partitions(bootstrap: str, timeout: float = 3.0, settings: Settings | None = None,
                        role: str = "admin") -> list[PartitionFact]:
    """Leader, replicas and in-sync replicas of every partition (KafkaException when unreachable).

    The client is `role`'s under `settings` (the environment's when None); a secured broker lists
    only the topics that user may describe."""
    from confluent_kafka.admin import AdminClient

    conf = client_config(settings or Settings.from_env(), role, {"socket.timeout.ms": int(timeout * 1000)},
                         bootstrap=bootstrap)
    with AdminClient(conf) as client:
        md = client.list_topics(timeout=timeout)
    return [PartitionFact(t.topic, p.id, p.leader, list(p.replicas), list(p.isrs))
            for t in md.topics.values() if t.error is None for p in t.partitions.values()]


def cluster_accepts(settings: Settings, addresses: list[str], brokers: int, replication: int,
                    timeout: float = 3.0) -> str | None:
    """None when the cluster takes a replicated topic now, else what is still missing (one phrase).

    Asked through every node in turn: the cluster description lists all `brokers` brokers
    (registered and unfenced) and a controller; then the controller is asked to validate
    (not create) a topic of 3 partitions and `replication` copies. A node that answers
    metadata is not enough: right after start one node may still see fewer brokers, and a
    replicated topic created then fails (issue 19, once in five starts)."""
    from confluent_kafka.admin import AdminClient

    for i, addr in enumerate(addresses):
        conf = client_config(settings, "admin", {"log_level": 0, "socket.timeout.ms": int(timeout * 1000)},
                             bootstrap=addr)
        with AdminClient(conf) as client:  # destroyed here, never by the collector (see topic.WatchedAdmin)
            try:
                desc = client.describe_cluster(request_timeout=timeout).result(timeout=timeout + 1)
            except Exception as exc:  # noqa: BLE001 - "not yet" while the nodes boot
                return f"{addr} does not describe the cluster yet ({type(exc).__name__})"
            if len(desc.nodes) < brokers or desc.controller is None:
                return (f"{addr} sees {len(desc.nodes)} of {brokers} brokers"
                        + ("" if desc.controller else ", no controller"))
            if i == len(addresses) - 1:
                return _replicated_topic_refusal(client, replication, timeout)
    return None


def _replicated_topic_refusal(client, replication: int, timeout: float) -> str | None:
    """None when the controller would create a topic of 3 partitions and `replication` copies."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import NewTopic

    probe = NewTopic("tormenta.start-check", num_partitions=3, replication_factor=replication)
    try:
        client.create_topics([probe], validate_only=True, request_timeout=timeout)[probe.topic].result(timeout + 1)
    except KafkaException as exc:
        err = exc.args[0]
        if err.code() != KafkaError.TOPIC_ALREADY_EXISTS:
            return f"a topic of {replication} copies is refused yet ({err.str()})"
    except Exception as exc:  # noqa: BLE001 - a timeout: not yet
        return f"the controller does not answer yet ({type(exc).__name__})"
    return None


class KafkaCluster:
    """Start, stop, inspect and crash the nodes of the embedded Kafka."""

    def __init__(self, settings: Settings, secure: bool | None = None):
        self.settings = settings
        self.secure = settings.secure if secure is None else secure   # how `start` runs the nodes
        self.specs = node_specs(settings)
        self.nodes = [EmbeddedBroker(settings, spec, self.secure) for spec in self.specs]
        self.bootstrap = ",".join(spec.address for spec in self.specs)

    @property
    def size(self) -> int:
        return len(self.nodes)

    def node(self, node_id: int) -> EmbeddedBroker:
        return self.nodes[node_id - 1]

    def _cluster_id(self) -> str | None:
        """The id all nodes share, drawn once and kept next to their folders (None for one node)."""
        if self.size == 1:
            return None
        path = self.settings.broker_dir / "cluster.id"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(_cluster_id())
        return path.read_text().strip()

    def start(self, timeout: float = 120.0) -> str:
        """Start every node that is not running; return once the cluster accepts a replicated topic (`cluster_accepts`).

        One line per node."""
        if self.size == 1:
            return self.nodes[0].start(timeout).message
        sec.prepare(self.settings, [nd.dir for nd in self.nodes], self.secure)
        todo = [nd for nd in self.nodes if not nd.status().running]
        for nd in todo:
            nd.check_ports()
        cid = self._cluster_id()
        for nd in todo:
            nd.launch(cid)
        deadline = time.monotonic() + timeout
        try:
            for nd in todo:
                if not nd.wait_ready(deadline, brokers=self.size):
                    raise BrokerError(f"{nd.name} did not join the {self.size}-node cluster within {timeout:.0f}s; "
                                      f"see {nd.log_file}")
            self._wait_accepts(deadline, timeout)
            if self.secure:
                sec.grant_acls(self.settings, self.bootstrap)
        except BrokerError:
            self.stop()
            raise
        lines = [f"{nd.name} {'started' if nd in todo else 'already running'} (pid {nd.read_pid()}) on "
                 f"{nd.node.address}" for nd in self.nodes]
        mode = self.nodes[0].mode
        return "\n".join(lines + [f"cluster of {self.size} nodes ready, {mode}; bootstrap servers {self.bootstrap}"])

    def _wait_accepts(self, deadline: float, timeout: float) -> None:
        """Return once the cluster takes what the next command asks of it (`cluster_accepts`); BrokerError at the deadline."""
        while (why := cluster_accepts(self.settings, [s.address for s in self.specs], self.size,
                                      self.specs[0].replication)) is not None:
            if time.monotonic() >= deadline:
                raise BrokerError(f"the {self.size}-node cluster did not become ready within {timeout:.0f}s: {why}")
            time.sleep(0.3)

    def start_node(self, node_id: int, timeout: float = 90.0) -> int:
        """(Re)start one node of a running cluster and wait until the cluster lists it; its pid."""
        nd = self.node(node_id)
        sec.prepare(self.settings, [n.dir for n in self.nodes], nd.secure)
        nd.check_ports()
        pid = nd.launch(self._cluster_id())
        if not nd.wait_ready(time.monotonic() + timeout, brokers=self.size):
            raise BrokerError(f"{nd.name} did not rejoin within {timeout:.0f}s; see {nd.log_file}")
        return pid

    def relaunch(self, node_id: int) -> int:
        """Spawn one node again (after it died) without waiting for it; its pid (BrokerError when its ports are taken).

        The supervisor of `run` calls this; the node rejoins the quorum by itself (its storage and,
        secured, its files are there from the first start)."""
        nd = self.node(node_id)
        nd.check_ports()
        return nd.launch(self._cluster_id())

    def stop(self, timeout: float = 60.0, alone_grace: float = QUORUM_GONE_GRACE_S) -> str:
        """SIGTERM every node at once (no node waits for the others), then wait for each; one line per node.

        Every node is a controller voter, and a node's broker finishes its controlled shutdown only
        with the controllers' quorum. All nodes asking at once usually leaves the quorum up long
        enough, but now and then (a busy box) one node is still in its controlled shutdown when
        the others have exited, and it cannot finish alone: Kafka would keep it waiting for
        minutes. Once fewer nodes run than a quorum needs, those left get `alone_grace` seconds,
        then SIGKILL (a dirty shutdown, as Kafka's own system tests end such a node; its logs are
        recovered at its next start) and their line says so."""
        started = [(nd, nd.terminate()) for nd in self.nodes]
        lines = {nd.name: f"{nd.name} is not running; nothing to stop" for nd, pid in started if not pid}
        running = [(nd, pid) for nd, pid in started if pid]
        deadline, quorum = time.monotonic() + timeout, self.size // 2 + 1
        alone_since: float | None = None
        while running and time.monotonic() < deadline:
            for nd, pid in list(running):
                if nd.gone(pid):
                    lines[nd.name] = nd.finish_stop(pid, time.monotonic())
                    running.remove((nd, pid))
            if running and self.size > 1 and len(running) < quorum:
                alone_since = alone_since or time.monotonic()
                if time.monotonic() - alone_since >= alone_grace:
                    for nd, pid in running:
                        nd.kill_pid(pid)
                        lines[nd.name] = (f"{nd.name} (pid {pid}) stopped: killed {alone_grace:.0f} s after the rest of "
                                          f"its quorum had exited (a node cannot finish its controlled shutdown "
                                          f"alone; its logs are recovered at its next start)")
                    running = []
            time.sleep(0.1)
        for nd, pid in running:
            lines[nd.name] = nd.finish_stop(pid, deadline)
        return "\n".join(lines[nd.name] for nd in self.nodes)

    def status(self, with_controller: bool = True) -> ClusterStatus:
        st = ClusterStatus([(nd.node, nd.status()) for nd in self.nodes])
        live = ",".join(spec.address for spec, s in st.nodes if s.answers)
        if not live:
            st.error = "no node answers"
            return st
        try:
            st.partitions = describe_partitions(live, settings=self.settings)
        except Exception as exc:  # noqa: BLE001 - status reports, it never raises
            st.error = type(exc).__name__
        if with_controller:
            st.controller = self.active_controller()
        return st

    def leader_of(self, topic: str, timeout: float = 5.0) -> int | None:
        """The node that leads the first partition of `topic` that has a leader."""
        for p in sorted(describe_partitions(self.bootstrap, timeout, self.settings), key=lambda p: p.partition):
            if p.topic == topic and p.leader > 0:
                return p.leader
        return None

    def active_controller(self, timeout: float = 30.0) -> int | None:
        """The quorum leader, as Kafka's ``kafka-metadata-quorum describe --status`` reports it."""
        from pipeline.procs.jvm import broker_classpath

        live = [spec for spec, st in ((nd.node, nd.status()) for nd in self.nodes) if st.running]
        if not live:
            return None
        controllers = ",".join(f"{s.host}:{s.controller_port}" for s in live)
        cmd = ["java", "-Xmx128m", "-XX:TieredStopAtLevel=1", "-cp", broker_classpath(self.settings.jars_dir),
               "org.apache.kafka.tools.MetadataQuorumCommand", "--bootstrap-controller", controllers,
               *self._controller_client_config(live), "describe", "--status"]
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired):
            return None
        m = re.search(r"^LeaderId:\s+(\d+)", out.stdout, re.M)
        return int(m.group(1)) if m else None

    def _controller_client_config(self, live: list[NodeSpec]) -> list[str]:
        """``--command-config`` for a secured cluster: mutual TLS with the node certificate (no password)."""
        if not any(sec.is_secure(spec.dir) for spec in live):
            return []
        f = sec.files(self.settings)
        path = f.dir / "controller-client.properties"
        path.write_text(f"security.protocol=SSL\nssl.keystore.type=PEM\nssl.keystore.location={f.tls.keystore.resolve()}\n"
                        f"ssl.truststore.type=PEM\nssl.truststore.location={f.tls.ca.resolve()}\n")
        return ["--command-config", str(path)]
