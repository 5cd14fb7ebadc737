"""The broker nodes' metrics: the Prometheus JMX exporter java agent on each node's JVM.

    -javaagent:<jars>/broker/jmx_prometheus_javaagent-1.0.1.jar=127.0.0.1:<port>:monitoring/kafka-jmx.yaml

The agent (pinned in jvm/broker/pom.xml, copied by `make jars`) serves Kafka's own JMX
metrics at ``TORMENTA_METRICS_PORT + 10 + (node - 1)``, bound to 127.0.0.1 only, through the
narrow rules of monitoring/kafka-jmx.yaml. No agent when TORMENTA_METRICS_PORT=0; when the
jar is missing or the port is taken, one warning line goes to the node's log and the node
starts without it (the agent would stop the JVM on a taken port).
"""

from __future__ import annotations

import socket
from pathlib import Path

from pipeline.metrics import ports
from pipeline.settings import PROJECT_ROOT, Settings

AGENT_GLOB = "jmx_prometheus_javaagent-*.jar"
RULES = PROJECT_ROOT / "monitoring" / "kafka-jmx.yaml"
HOST = "127.0.0.1"


def agent_jar(jars_dir: Path) -> Path | None:
    found = sorted((jars_dir / "broker").glob(AGENT_GLOB))
    return found[-1] if found else None


def _free(port: int) -> bool:
    """Nothing listens on `port`. SO_REUSEADDR as the JVM's server socket has it: after a crash the
    port keeps the killed node's scrape connections in TIME_WAIT for a minute, which is no obstacle
    to the agent, so it must not turn the restarted node's metrics off."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def agent_options(settings: Settings, node: int, log_file: Path) -> list[str]:
    """The JVM option that runs the exporter for broker node `node` (1-based); [] when metrics
    are off or cannot be served (then one line in `log_file` says why)."""
    if settings.metrics_port == 0:
        return []
    port = ports.port_of(settings.metrics_port, ports.BROKER, node)
    jar = agent_jar(settings.jars_dir)
    problem = None
    if jar is None:
        problem = f"the JMX exporter jar is not in {settings.jars_dir / 'broker'}; run `make jars`"
    elif not RULES.is_file():
        problem = f"the exporter rules {RULES} are missing"
    elif not _free(port):
        problem = (f"port {HOST}:{port} is taken; set TORMENTA_METRICS_PORT to a free base port or 0")
    if problem:
        with open(log_file, "a", encoding="utf-8") as log:
            log.write(f"tormenta: WARNING metrics of broker node {node} are off: {problem}\n")
        return []
    return [f"-javaagent:{jar}={HOST}:{port}:{RULES}"]
