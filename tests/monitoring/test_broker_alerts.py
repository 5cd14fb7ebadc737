"""Broker alerts on the real stack: a 3-node KRaft cluster (Maven jars) with the JMX exporter agent
on each node, a topic with replication factor 2, and a real Prometheus scraping the three agents
with the product's scrape job and the rules of monitoring/alerts.yaml.

One node is killed with SIGKILL: TormentaUnderReplicatedPartitions fires for the surviving nodes
that now lead a partition the dead node replicated, and TormentaBrokerDown (scrape-based,
``up == 0``) fires for the dead node. The node is started again: both resolve. The rules are the
project's as they are but for their `for`, shortened from 1 m to 3 s (`project_rules`).

Slow (a cluster start on two cores): ``make test-unit`` skips it (marker ``slow``).
"""

from __future__ import annotations

import shutil

import pytest

from pipeline.kafka.cluster import KafkaCluster, describe_partitions, with_cluster
from pipeline.kafka.topic import describe_topic, ensure_topic
from pipeline.metrics import ports
from pipeline.monitoring.client import PrometheusClient
from tests.support.monitoring import project_rules, running_prometheus
from tests.support.ports import port_run
from tests.support.stack import make_settings
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow,
              pytest.mark.skipif(shutil.which("prometheus") is None,
                                 reason="prometheus is not installed (make monitoring)")]
DOWN, URP = "TormentaBrokerDown", "TormentaUnderReplicatedPartitions"
VICTIM = 2


def _firing(prom: PrometheusClient) -> dict[str, set[str]]:
    """Alert name -> the `node` labels it fires for."""
    found: dict[str, set[str]] = {}
    for a in prom.alerts():
        if a.state == "firing":
            found.setdefault(a.name, set()).add(a.labels.get("node", "?"))
    return found


def _nodes_up(prom: PrometheusClient) -> set[str]:
    return {r["metric"]["node"] for r in prom.query('up{job="tormenta-broker"} == 1')}


def _urp_zero(prom: PrometheusClient) -> set[str]:
    return {r["metric"]["node"] for r in prom.query("kafka_server_under_replicated_partitions == 0")}


def test_a_killed_node_fires_both_broker_alerts_and_its_restart_resolves_them(tmp_path):
    kafka, metrics = port_run(6), port_run(ports.SPAN)
    s = with_cluster(make_settings(tmp_path / "data", bootstrap_servers=f"127.0.0.1:{kafka}",
                                   controller_port=kafka + 1, broker_nodes=3, broker_heap="512m",
                                   metrics_port=metrics, topic="tx-alerts"))
    cluster = KafkaCluster(s)
    try:
        cluster.start(timeout=300)
        ensure_topic(s)
        assert describe_topic(s).replication_factor == 2
        # where the dead node's partitions go: their other replica leads them, under-replicated
        expected = {str(r) for p in describe_partitions(s.bootstrap_servers, 10, s)
                    if VICTIM in p.replicas and len(p.replicas) > 1 for r in p.replicas if r != VICTIM}
        assert expected, "no replicated partition on the victim"
        rules = project_rules(DOWN, URP, for_="3s")
        with running_prometheus(tmp_path / "prom", metrics, rules, parts=(ports.BROKER,), nodes=3) as prom:
            wait_for(lambda: _nodes_up(prom) == {"1", "2", "3"}, 120, "Prometheus scrapes the three nodes", every=1)
            wait_for(lambda: _urp_zero(prom) == {"1", "2", "3"}, 120, "no under-replicated partition", every=1)
            assert _firing(prom) == {}

            assert cluster.node(VICTIM).kill()
            firing = wait_for(lambda: (f := _firing(prom)).get(URP) == expected and DOWN in f and f, 240,
                              f"{DOWN} for node {VICTIM} and {URP} for nodes {sorted(expected)} firing", every=1)
            assert firing == {DOWN: {str(VICTIM)}, URP: expected}
            urp = next(a for a in prom.alerts() if a.name == URP)
            assert (urp.severity, urp.runbook) == ("warning", "docs/RUNBOOK.md#tormentaunderreplicatedpartitions")

            cluster.start_node(VICTIM, timeout=240)
            wait_for(lambda: not prom.alerts(), 240, "both alerts resolved after the restart", every=1,
                     log=cluster.node(VICTIM).log_file)
            assert _nodes_up(prom) == {"1", "2", "3"} and _urp_zero(prom) == {"1", "2", "3"}
    finally:
        cluster.stop()
