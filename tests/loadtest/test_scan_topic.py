"""The soak's topic scan against a real broker: every message of a topic read back, Avro in batches
and everything else one by one, with the job's committed offsets splitting processed from pending."""

from __future__ import annotations

import random

import pytest

from pipeline.emulator.binarizer import AvroBinarizer
from pipeline.loadtest.soak_reconcile import TopicFacts, scan_topic
from tests.support.avro_messages import emulator_messages, one_by_one, same
from tests.support.stack import produce, tx

pytestmark = pytest.mark.integration


def test_scan_topic_reads_every_message_once_and_splits_at_the_committed_offsets(stack):
    from confluent_kafka import Consumer, TopicPartition

    avro = emulator_messages(30_000)
    bad = [m for v in avro[:40] for m in AvroBinarizer.malformed_variants(v)]
    values = avro + bad + [tx(f"j{i}", 1600.5 if i % 2 else 12.5) for i in range(200)] + ["{not json"]
    random.Random(3).shuffle(values)
    produce(stack, values)
    kafka = {"bootstrap.servers": stack.bootstrap_servers}

    whole = scan_topic(kafka, stack.topic, stack.threshold, timeout_s=120)
    # the reference: every message of the topic, partition by partition, the one-message way
    c = Consumer({**kafka, "group.id": "ref", "enable.auto.commit": False})
    try:
        parts = sorted(c.list_topics(stack.topic, timeout=10).topics[stack.topic].partitions)
        ends = {p: c.get_watermark_offsets(TopicPartition(stack.topic, p), timeout=10)[1] for p in parts}
        c.assign([TopicPartition(stack.topic, p, 0) for p in parts])
        read: dict[int, list[tuple[int, bytes]]] = {p: [] for p in parts}
        while sum(len(v) for v in read.values()) < sum(ends.values()):
            for m in c.consume(10_000, timeout=1.0):
                if m.error() is None:
                    read[m.partition()].append((m.offset(), m.value()))
    finally:
        c.close()
    assert len(parts) == 3 and all(ends.values()) and sum(ends.values()) == len(values)
    ref_values = [v for p in parts for _, v in read[p]]
    ref = one_by_one(ref_values)
    same(whole, ref)
    assert whole.complete and whole.messages == len(values) and whole.invalid == len(bad) + 1
    assert len(whole.high_value_ids) > 5_000 and whole.distinct_valid() == whole.valid

    # as when the job had committed up to the middle of each partition
    processed = {p: ends[p] // 2 for p in parts}
    split = scan_topic(kafka, stack.topic, stack.threshold, timeout_s=120, processed=processed)
    flags = [o >= processed[p] for p in parts for o, _ in read[p]]
    same(split, one_by_one(ref_values, flags))
    assert not split.complete and 0 < split.pending_messages < split.messages == len(values)
    assert isinstance(split, TopicFacts)
