"""The broker node's JVM option for the JMX exporter agent: loopback, its port, and the cases without one."""

from __future__ import annotations

import socket

from pipeline.metrics import ports
from pipeline.metrics.broker import RULES, agent_options
from tests.support.ports import port_run
from tests.support.stack import make_settings


def _jars(tmp_path, with_agent: bool = True):
    folder = tmp_path / "jars" / "broker"
    folder.mkdir(parents=True)
    if with_agent:
        (folder / "jmx_prometheus_javaagent-1.0.1.jar").write_bytes(b"jar")
    return tmp_path / "jars"


def test_agent_binds_loopback_at_the_nodes_port(tmp_path):
    base = port_run(ports.SPAN)
    s = make_settings(tmp_path, metrics_port=base, jars_dir=_jars(tmp_path))
    log = tmp_path / "broker.log"
    (opt,) = agent_options(s, 2, log)
    jar = tmp_path / "jars" / "broker" / "jmx_prometheus_javaagent-1.0.1.jar"
    assert opt == f"-javaagent:{jar}=127.0.0.1:{base + 11}:{RULES}"
    assert RULES.is_file() and not log.exists()


def test_no_agent_when_metrics_are_off(tmp_path):
    s = make_settings(tmp_path, jars_dir=_jars(tmp_path))        # make_settings: TORMENTA_METRICS_PORT=0
    assert agent_options(s, 1, tmp_path / "broker.log") == []


def test_a_missing_jar_or_a_taken_port_is_one_warning_line_and_no_agent(tmp_path):
    base = port_run(ports.SPAN)
    log = tmp_path / "broker.log"
    no_jar = make_settings(tmp_path, metrics_port=base, jars_dir=_jars(tmp_path, with_agent=False))
    assert agent_options(no_jar, 1, log) == []
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", base + 10))
        taken.listen()
        s = make_settings(tmp_path, metrics_port=base, jars_dir=tmp_path / "other")
        (tmp_path / "other" / "broker").mkdir(parents=True)
        (tmp_path / "other" / "broker" / "jmx_prometheus_javaagent-1.0.1.jar").write_bytes(b"jar")
        assert agent_options(s, 1, log) == []
    lines = log.read_text().splitlines()
    assert len(lines) == 2 and all("metrics of broker node 1 are off" in line for line in lines)
    assert "make jars" in lines[0] and f"127.0.0.1:{base + 10} is taken" in lines[1]


def test_a_port_left_in_time_wait_by_a_killed_node_still_gets_the_agent(tmp_path):
    """A node killed while Prometheus held a scrape connection leaves its port in TIME_WAIT for a
    minute (the server side closed first); the restarted node must get its agent back."""
    base = port_run(ports.SPAN)
    port = base + 10
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen()
    client = socket.create_connection(("127.0.0.1", port))
    served, _ = listener.accept()
    served.close()          # the node's side closes first, as when it is killed: TIME_WAIT on `port`
    listener.close()
    client.recv(1)          # the scraper sees the close, and closes too
    client.close()
    with socket.socket() as plain:  # without SO_REUSEADDR the port looks taken
        try:
            plain.bind(("127.0.0.1", port))
            in_time_wait = False
        except OSError:
            in_time_wait = True
    assert in_time_wait
    log = tmp_path / "broker.log"
    s = make_settings(tmp_path, metrics_port=base, jars_dir=_jars(tmp_path))
    assert len(agent_options(s, 1, log)) == 1 and not log.exists()
