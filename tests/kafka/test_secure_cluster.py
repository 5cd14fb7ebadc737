"""A secured 3-node KRaft cluster on the real jars: SASL_SSL between brokers, mutual TLS in the quorum.

Started with ``secure=True``, every node joins (inter-broker SCRAM as tormenta-admin, the
controllers accept only the node certificate), the quorum answers over mutual TLS, a topic
with replication factor 2 is written by the producer user with acks=all and read back by the
job user, and the cluster stops. Slow: three JVMs on a 2-core box.
"""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer

from pipeline.kafka import secure
from pipeline.kafka.cluster import KafkaCluster, describe_partitions, with_cluster
from pipeline.kafka.security import client_config
from pipeline.kafka.topic import ensure_topic
from pipeline.settings import Settings
from tests.support.ports import port_run

pytestmark = [pytest.mark.integration, pytest.mark.slow]
RECORDS = 200


def test_secure_cluster_replicates_with_least_privilege_users(tmp_path):
    base = port_run(6)
    settings = Settings.from_env({"TORMENTA_DATA_DIR": str(tmp_path / "data"), "TORMENTA_BROKER_NODES": "3",
                                  "TORMENTA_BOOTSTRAP_SERVERS": f"127.0.0.1:{base}",
                                  "TORMENTA_CONTROLLER_PORT": str(base + 1), "TORMENTA_BROKER_HEAP": "768m",
                                  "TORMENTA_TOPIC": f"tx-{uuid.uuid4().hex[:6]}"})
    cluster = KafkaCluster(settings, secure=True)
    try:
        started = time.monotonic()
        out = cluster.start(timeout=180)
        print(f"secure 3-node cluster ready in {time.monotonic() - started:.1f} s")
        assert "cluster of 3 nodes ready, secured (SASL_SSL)" in out
        assert all(secure.is_secure(nd.dir) for nd in cluster.nodes)
        s = with_cluster(settings)
        info = ensure_topic(s)                     # as tormenta-admin; auto replication = 2 on 3 brokers
        assert info.replication_factor == 2
        secure.grant_acls(s)                       # idempotent; this topic name is the settings' one

        errors: list = []
        producer = Producer(client_config(s, "producer", {"acks": "all", "enable.idempotence": True}))
        for i in range(RECORDS):
            producer.produce(s.topic, f"r{i}".encode(), key=str(i).encode(),
                             on_delivery=lambda err, _m: err and errors.append(err))
        assert producer.flush(60) == 0 and not errors, errors

        parts = [p for p in describe_partitions(s.bootstrap_servers, 10, s) if p.topic == s.topic]
        assert len(parts) == s.partitions and all(len(p.replicas) == 2 and len(p.isr) == 2 for p in parts)

        consumer = Consumer(client_config(s, "job", {"group.id": f"tormenta-job-{uuid.uuid4().hex[:6]}",
                                                    "auto.offset.reset": "earliest", "enable.auto.commit": False}))
        got: set[bytes] = set()
        try:
            consumer.subscribe([s.topic])
            deadline = time.monotonic() + 60
            while len(got) < RECORDS and time.monotonic() < deadline:
                msg = consumer.poll(0.5)
                if msg is not None:
                    assert msg.error() is None, msg.error()
                    got.add(msg.value())
        finally:
            consumer.close()
        assert got == {f"r{i}".encode() for i in range(RECORDS)}

        st = cluster.status()
        assert st.up == 3 and st.controller in (1, 2, 3) and not st.under_replicated   # quorum read over mTLS
    finally:
        print(cluster.stop())
    assert cluster.status(with_controller=False).up == 0
