"""Stack commands: ``broker``, ``topic`` and ``smoke``.

    python -m pipeline broker start [--secure]|stop|status
    python -m pipeline topic create|describe
    python -m pipeline smoke
"""

from __future__ import annotations

import time
import uuid

from pipeline.errors import BrokerError, SettingsError
from pipeline.kafka import secure
from pipeline.kafka.cluster import KafkaCluster, with_cluster
from pipeline.kafka.security import KafkaAccessError, client_config
from pipeline.kafka.topic import describe_topic, ensure_all_topics, ensure_topic
from pipeline.settings import Settings


def register(sub) -> None:
    p = sub.add_parser("broker", help="start, stop or inspect the embedded local Kafka broker (or cluster)")
    p.add_argument("action", choices=("start", "stop", "status"))
    p.add_argument("--nodes", type=int, metavar="N", help="1, or 3..9 for a local KRaft cluster "
                   "(default TORMENTA_BROKER_NODES)")
    p.add_argument("--secure", action="store_true", help="start secured: SASL_SSL with SCRAM users, TLS, ACLs; "
                   "writes <data_dir>/secure/clients.json for the other commands (default TORMENTA_SECURE)")
    p.set_defaults(func=broker_cmd)
    p = sub.add_parser("topic", help="create or describe the transactions topic")
    p.add_argument("action", choices=("create", "describe"))
    p.set_defaults(func=topic_cmd)
    p = sub.add_parser("smoke", help="produce a hello message and read it back")
    p.add_argument("--timeout", type=float, default=15.0, help="seconds to wait for the message (default 15)")
    p.set_defaults(func=smoke_cmd)


def broker_cmd(settings: Settings, args) -> int:
    if args.nodes is not None:
        try:
            settings = settings.replace(broker_nodes=args.nodes)
        except SettingsError:
            raise SettingsError(f"--nodes={args.nodes} is not a node count; allowed: 1, or 3..9 "
                                "(a KRaft quorum needs a majority of 3+ voters)") from None
    cluster = KafkaCluster(settings, secure=getattr(args, "secure", False) or settings.secure)
    if args.action == "start":
        print(cluster.start())
    elif args.action == "stop":
        print(cluster.stop())
    else:
        if cluster.size == 1:
            st = cluster.nodes[0].status()
            print(st.message)
            up = st.running and st.answers
        else:
            cst = cluster.status()
            print("\n".join(cst.lines()))
            up = cst.up == cluster.size
        if up and any(secure.is_secure(nd.dir) for nd in cluster.nodes):
            print(secure.summary(settings, cluster.bootstrap))
        return 0 if up else 3
    return 0


def topic_cmd(settings: Settings, args) -> int:
    settings = with_cluster(settings)
    if args.action == "create":
        for info in ensure_all_topics(settings):
            print(info.describe())
    else:
        print(describe_topic(settings).describe())
    return 0


def smoke(settings: Settings, timeout: float = 15.0) -> float:
    """Round trip through the broker; returns milliseconds. Raises BrokerError saying which part failed."""
    from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

    topic = f"{settings.topic}.smoke"
    try:
        ensure_topic(settings, topic, partitions=1, config={"retention.ms": "3600000"})
    except KafkaAccessError:
        raise
    except Exception as exc:
        raise BrokerError(f"smoke: cannot reach the broker at {settings.bootstrap_servers}: {exc}") from None
    token = uuid.uuid4().hex
    delivered: list = []
    producer = Producer(client_config(settings, "admin", {"acks": "all", "enable.idempotence": True}))
    start = time.perf_counter()
    producer.produce(topic, f"hello {token}".encode(), key=b"smoke",
                     on_delivery=lambda err, msg: delivered.append((err, msg)))
    if producer.flush(timeout) or not delivered:
        raise BrokerError(f"smoke: produce to {topic} timed out after {timeout:.0f}s (producer side)")
    err, msg = delivered[0]
    if err is not None:
        raise BrokerError(f"smoke: produce failed: {err.str()}")
    consumer = Consumer(client_config(settings, "admin", {"group.id": f"tormenta-smoke-{token}",
                                                          "enable.auto.commit": False}))
    try:
        consumer.assign([TopicPartition(topic, msg.partition(), msg.offset())])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = consumer.poll(0.2)
            if got is None:
                continue
            if got.error():
                raise BrokerError(f"smoke: consume failed: {got.error().str()}")
            if got.value() == f"hello {token}".encode():
                return (time.perf_counter() - start) * 1000
        raise BrokerError(f"smoke: message was produced but not read back within {timeout:.0f}s (consumer side)")
    except KafkaException as exc:
        raise BrokerError(f"smoke: consumer failed: {exc}") from None
    finally:
        consumer.close()


def smoke_cmd(settings: Settings, args) -> int:
    if args.timeout <= 0:
        from pipeline.errors import SettingsError

        raise SettingsError(f"--timeout={args.timeout} must be greater than zero")
    settings = with_cluster(settings)
    ms = smoke(settings, args.timeout)
    print(f"OK: round trip through {settings.bootstrap_servers} in {ms:.1f} ms")
    return 0
