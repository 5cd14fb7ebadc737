"""Topic management for the transactions topic (and the emulator's control/status topics).

    python -m pipeline topic create|describe

`create` is idempotent: an existing topic is described, not recreated. Defaults follow the
transactions contract: 3 partitions, retention one day, cleanup.policy=delete. Replication
is ``TORMENTA_REPLICATION`` (auto = 2 on a cluster of 2+ brokers, else 1; a factor above the
broker count is refused) with ``min.insync.replicas`` = factor - 1 (at least 1): with RF 2 an
``acks=all`` write needs one copy, so writes go on while one broker is down (docs/CLUSTER.md).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from pipeline.errors import SettingsError, TopicError
from pipeline.kafka.security import KafkaAccessError, RefusalWatch, explain, watched_config
from pipeline.settings import Settings


def replication_for(settings: Settings, brokers: int) -> tuple[int, int]:
    """(replication factor, min.insync.replicas) for a topic on `brokers` brokers.

    SettingsError when TORMENTA_REPLICATION asks for more copies than there are brokers."""
    rf = settings.replication or (2 if brokers >= 2 else 1)
    if rf > brokers:
        raise SettingsError(f"TORMENTA_REPLICATION={rf} is more than the {brokers} broker(s) the cluster has; "
                            f"allowed: auto or 1..{brokers}")
    return rf, max(1, rf - 1)


@dataclass
class TopicInfo:
    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str]
    created: bool = False

    def describe(self) -> str:
        keys = ("retention.ms", "cleanup.policy", "min.insync.replicas", "compression.type")
        cfg = ", ".join(f"{k}={self.config[k]}" for k in keys if k in self.config)
        verb = "created" if self.created else "exists"
        return (f"topic {self.name} {verb}: partitions={self.partitions} "
                f"replication={self.replication_factor} {cfg}")


class WatchedAdmin(AdminClient):
    """An AdminClient whose `watch` holds the first security refusal the broker gave it.

    Open it in a `with` block, which destroys it on the thread that leaves the block. Otherwise
    it can be freed on its own librdkafka thread, which aborts the process: that thread
    completes the client's futures in Python and may drop the last reference to an exception
    whose traceback still holds the client (once in a CI run: "calling rd_kafka_destroy() from
    librdkafka owned thread is prohibited"; tests/kafka/test_client_lifetimes.py makes it certain).
    """
    watch: RefusalWatch


def admin(settings: Settings, role: str = "admin") -> WatchedAdmin:
    """`role`'s admin client; use it as a context manager (see `WatchedAdmin`)."""
    conf, watch = watched_config(settings, role, {"socket.timeout.ms": 5000})
    client = WatchedAdmin(conf)
    client.watch = watch
    return client


def _broker_count(client: WatchedAdmin, timeout: float) -> int:
    """Brokers in the cluster's metadata; asked in short steps so that a refusal (password,
    certificate), which librdkafka would retry until `timeout`, stops it at once in one line."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return len(client.list_topics(timeout=max(0.1, min(1.0, deadline - time.monotonic()))).brokers)
        except KafkaException as exc:
            client.poll(0)  # serve the error callback
            client.watch.check()
            if time.monotonic() >= deadline:
                raise TopicError(f"cannot reach Kafka: {exc.args[0].str() if exc.args else exc}; "
                                 "start the local broker with `python -m pipeline broker start`") from None


def describe_topic(settings: Settings, name: str | None = None, timeout: float = 10, role: str = "admin") -> TopicInfo:
    """Partitions, replication and (for the admin role, which may read configs) the topic's config."""
    name = name or settings.topic
    with admin(settings, role) as client:
        return _describe(client, name, timeout, role)


def _describe(client: WatchedAdmin, name: str, timeout: float, role: str) -> TopicInfo:
    _broker_count(client, timeout)
    md = client.list_topics(topic=name, timeout=timeout)
    t = md.topics.get(name)
    if t is not None and t.error is not None and t.error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
        raise KafkaAccessError(explain(t.error, client.watch.auth, name))
    if t is None or t.error is not None:
        raise TopicError(f"topic {name} does not exist; create it with `python -m pipeline topic create`")
    parts = list(t.partitions.values())
    rf = len(parts[0].replicas) if parts else 0
    res = ConfigResource(ConfigResource.Type.TOPIC, name)
    try:
        cfg = client.describe_configs([res])[res].result(timeout=timeout)
    except KafkaException as exc:
        if exc.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART:  # the node asked has not learnt of it yet
            raise TopicError(f"topic {name} does not exist on every node yet; try again in a moment") from None
        if role == "admin" or exc.args[0].code() != KafkaError.TOPIC_AUTHORIZATION_FAILED:
            raise
        cfg = {}  # a least-privilege user may see the topic but not its configuration
    return TopicInfo(name, len(parts), rf, {k: v.value for k, v in cfg.items() if v.value is not None})


def ensure_topic(settings: Settings, name: str | None = None, *, partitions: int | None = None,
                 config: dict[str, str] | None = None, timeout: float = 15, role: str = "admin") -> TopicInfo:
    """Create the topic if missing (contract defaults), else describe it."""
    name = name or settings.topic
    with admin(settings, role) as client:
        created = _create_if_missing(settings, client, name, partitions, config, timeout)
    if not created:
        return describe_topic(settings, name, timeout, role)
    info = _described_once_visible(settings, name, timeout, role)
    info.created = True
    return info


def _create_if_missing(settings: Settings, client: WatchedAdmin, name: str, partitions: int | None,
                       config: dict[str, str] | None, timeout: float) -> bool:
    """Create topic `name` unless it exists; True when this call asked for its creation."""
    rf, min_isr = replication_for(settings, _broker_count(client, timeout))
    md = client.list_topics(timeout=timeout)
    if name in md.topics and md.topics[name].error is None:
        return False
    cfg = {"retention.ms": str(settings.retention_ms), "cleanup.policy": "delete", "min.insync.replicas": str(min_isr)}
    cfg.update(config or {})
    new = NewTopic(name, num_partitions=partitions or settings.partitions, replication_factor=rf, config=cfg)
    fut = client.create_topics([new], operation_timeout=timeout)[name]
    try:
        fut.result(timeout=timeout)
    except KafkaException as exc:
        err = exc.args[0]
        if err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
            raise KafkaAccessError(f"{explain(err, client.watch.auth, name)} (to create it, run "
                                   "`python -m pipeline topic create` as the admin)") from None
        if err.name() != "TOPIC_ALREADY_EXISTS":
            raise TopicError(f"creating topic {name} failed: {err.str()}") from None
    return True


def _described_once_visible(settings: Settings, name: str, timeout: float, role: str) -> TopicInfo:
    """Describe a just-created topic. On a cluster the broker that answers may learn of it a
    moment after the controller created it, so "does not exist" is asked again until `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return describe_topic(settings, name, timeout, role)
        except TopicError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.1)


LIVE_PARTITIONS = 3  # the live lane's output topic (its readers tail every partition)


def ensure_live_topic(settings: Settings, timeout: float = 15) -> TopicInfo:
    """The live lane's topic: 3 partitions, retention TORMENTA_LIVE_RETENTION, RF like the others."""
    return ensure_topic(settings, settings.live_topic, partitions=LIVE_PARTITIONS, timeout=timeout,
                        config={"cleanup.policy": "delete", "retention.ms": str(int(settings.live_retention * 1000))})


def ensure_all_topics(settings: Settings) -> list[TopicInfo]:
    """Transactions topic, the emulator's compacted control topic and status topic, the live lane's topic."""
    return [
        ensure_topic(settings),
        ensure_topic(settings, settings.control_topic, partitions=1,
                     config={"cleanup.policy": "compact", "retention.ms": "-1"}),
        ensure_topic(settings, settings.status_topic, partitions=1,
                     config={"cleanup.policy": "delete", "retention.ms": str(6 * 3600 * 1000)}),
        ensure_live_topic(settings),
    ]


def log_end_offsets(settings: Settings, name: str | None = None, timeout: float = 10,
                    role: str = "admin") -> dict[int, int]:
    """High watermark per partition (what has been written so far)."""
    from confluent_kafka import Consumer, TopicPartition

    name = name or settings.topic
    conf, _ = watched_config(settings, role, {"group.id": "tormenta-offsets", "enable.auto.commit": False})
    consumer = Consumer(conf)
    try:
        md = consumer.list_topics(name, timeout=timeout)
        if name not in md.topics or md.topics[name].error is not None:
            raise TopicError(f"topic {name} does not exist; create it with `python -m pipeline topic create`")
        ends = {}
        for p in md.topics[name].partitions:
            _, high = consumer.get_watermark_offsets(TopicPartition(name, p), timeout=timeout)
            ends[p] = high
        return ends
    finally:
        consumer.close()
