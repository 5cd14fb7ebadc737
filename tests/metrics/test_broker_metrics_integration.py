"""The session broker's JMX exporter agent: loopback only, promtool-clean, the KRaft series with real values."""

from __future__ import annotations

import pytest

from pipeline.metrics import ports
from tests.support.metrics import names, promtool_check, samples, scrape, value
from tests.support.stack import produce, tx
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


def _bytes(url: str, name: str, topic: str) -> float:
    return samples(scrape(url)).get((name, frozenset({("topic", topic)})), 0.0)


def _read_all(settings, count: int) -> None:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": "metrics-test",
                  "enable.auto.commit": False})
    try:
        c.assign([TopicPartition(settings.topic, p, 0) for p in range(3)])
        got: list = []
        wait_for(lambda: got.extend(m for m in c.consume(100, 0.5) if m.error() is None) or len(got) >= count, 60,
                 f"{count} records back from {settings.topic}")
    finally:
        c.close()


def test_broker_agent_serves_the_kraft_series(stack):
    url = f"http://127.0.0.1:{ports.port_of(stack.metrics_port, ports.BROKER, 1)}/metrics"
    produce(stack, [tx(f"b-{i}", 100 + i, person_id=f"P{i}") for i in range(50)])
    _read_all(stack, 50)
    # The broker's meters count what was written and read: wait until the topic's bytes show.
    wait_for(lambda: _bytes(url, "kafka_server_bytes_in_total", stack.topic) > 50 * 60, 60, f"bytes in on {url}")
    wait_for(lambda: _bytes(url, "kafka_server_bytes_out_total", stack.topic) > 50 * 60, 60, f"bytes out on {url}")
    text = scrape(url)
    promtool_check(text)
    found = samples(text)
    assert value(found, "kafka_server_under_replicated_partitions") == 0
    assert value(found, "kafka_server_under_min_isr_partitions") == 0
    assert value(found, "kafka_controller_offline_partitions") == 0
    assert value(found, "kafka_controller_active_controllers") == 1   # one node: it is the controller
    assert value(found, "kafka_network_request_total_time_seconds", request="Produce", percentile="99") >= 0
    assert value(found, "kafka_network_request_total_time_seconds", request="Produce", percentile="50") >= 0
    # Narrow rules: nothing from the MBeans left out (a wide pattern would bring hundreds).
    kafka = {n for n in names(found) if n.startswith("kafka_")}
    assert kafka == {"kafka_server_under_replicated_partitions", "kafka_server_under_min_isr_partitions",
                     "kafka_controller_offline_partitions", "kafka_controller_active_controllers",
                     "kafka_server_bytes_in_total", "kafka_server_bytes_out_total",
                     "kafka_network_request_total_time_seconds"}, kafka


def _listening(port: int) -> list[str]:
    """Local addresses (hex, as /proc/net shows them) listening on `port`, IPv4 and IPv6."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in open(table).read().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state == "0A" and int(local.split(":")[1], 16) == port:   # 0A = LISTEN
                found.append(local.split(":")[0])
    return found


def test_broker_agent_binds_loopback_only(stack):
    port = ports.port_of(stack.metrics_port, ports.BROKER, 1)
    # 127.0.0.1 in /proc's byte order, as an IPv4 socket or an IPv4-mapped IPv6 one (Java's dual stack)
    loopback = {"0100007F", "0000000000000000FFFF00000100007F"}
    addrs = _listening(port)
    assert addrs and set(addrs) <= loopback, addrs
