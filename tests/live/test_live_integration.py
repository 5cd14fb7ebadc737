"""The live lane on the real broker and real Spark (Real-time Mode): exact ids, JSON values,
kill -9 and restart, and its refusals.

One lane process serves the module (a Spark start costs a minute on a loaded 2-core box):
the exact-ids test runs first, then the kill -9 test kills it and starts it again on the
same checkpoint. Every wait is on an observable condition: the ids on the live topic.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from pipeline.contract.live import LIVE_FIELDS
from pipeline.contract.tables import RECORD_COLUMNS
from pipeline.kafka.topic import ensure_live_topic, ensure_topic
from pipeline.live import health
from pipeline.metrics import ports
from pipeline.settings import PROJECT_ROOT, Settings
from tests.support.metrics import promtool_check, samples, scrape, value
from tests.support.ports import port_run
from tests.support.stack import produce, tx
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration
FIRST_OUTPUT_S = 300  # a cold Spark start plus the decode's code generation, on a box shared with others


def avro_tx(tid: str, amount: str) -> bytes:
    """A contract transaction in the Confluent-framed Avro wire format."""
    from datetime import UTC, datetime
    from decimal import Decimal

    from pipeline.contract import avro

    return avro.encode_reference({"transaction_id": tid, "person_id": "P2", "merchant_id": "M2",
                                  "amount": Decimal(amount), "timestamp": datetime(2026, 12, 24, 18, 0, 1, tzinfo=UTC)})


def lane_env(settings: Settings, **more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TORMENTA_")}
    env.update({"TORMENTA_BOOTSTRAP_SERVERS": settings.bootstrap_servers, "TORMENTA_TOPIC": settings.topic,
                "TORMENTA_LIVE_TOPIC": settings.live_topic, "TORMENTA_DATA_DIR": str(settings.data_dir),
                "TORMENTA_CONTROLLER_PORT": str(settings.controller_port),
                "TORMENTA_METRICS_PORT": str(settings.metrics_port)})
    env.update({f"TORMENTA_{k.upper()}": v for k, v in more.items()})
    return env


class Lane:
    """`python -m pipeline live` as a child process, in its own process group, output to a log."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.log = settings.data_dir / "live.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> Lane:
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "pipeline", "live"], cwd=PROJECT_ROOT,
                                         env=lane_env(self.settings), stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)


class LiveReader:
    """Everything on the live topic so far (a fresh assignment at the beginning, no group)."""

    def __init__(self, settings: Settings):
        self.topic = settings.live_topic
        self.consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": "tests-live",
                                  "enable.auto.commit": False, "fetch.wait.max.ms": 50})
        self.consumer.assign([TopicPartition(self.topic, p, 0) for p in range(3)])
        self.records: list[tuple[str, dict]] = []

    def ids(self) -> set[str]:
        for msg in self.consumer.consume(1000, 0.2):
            if msg.error() is None:
                self.records.append((msg.key().decode(), json.loads(msg.value())))
        return {k for k, _ in self.records}

    def has(self, wanted: set[str]):
        return lambda: wanted <= self.ids()

    def close(self) -> None:
        self.consumer.close()


def produce_to_partitions(settings: Settings, ids: list[str], amount: float) -> None:
    """One high-value record per partition (a marker: once it is out, all before it in that partition are)."""
    p = Producer({"bootstrap.servers": settings.bootstrap_servers, "enable.idempotence": True})
    for part, tid in enumerate(ids):
        p.produce(settings.topic, json.dumps(tx(tid, amount)).encode(), partition=part)
    assert p.flush(30) == 0


@pytest.fixture(scope="module")
def lane(broker, tmp_path_factory):
    suffix = uuid.uuid4().hex[:8]
    settings = broker.replace(data_dir=tmp_path_factory.mktemp("live") / "data", topic=f"tx-live-{suffix}",
                              live_topic=f"live-{suffix}", metrics_port=port_run(ports.SPAN))
    ensure_topic(settings)
    ensure_live_topic(settings)
    running = Lane(settings).start()
    reader = LiveReader(settings)
    try:
        yield running, reader
    finally:
        running.kill()
        reader.close()


def test_live_topic_holds_exactly_the_high_value_ids_as_json(lane):
    running, reader = lane
    s = running.settings
    high = {"j-1600", "j-1500.01", "j-big", "a-1600", "a-1500.01"}
    produce(s, [
        tx("j-1600", 1600), tx("j-1500.01", 1500.01), tx("j-big", 9_999_999.99, merchant_category="travel",
                                                         country="ES"),
        tx("j-1500", 1500), tx("j-low", 12.5), tx("j-neg", -2000),
        tx("j-str", "2000"),                                  # a quoted amount is invalid: skipped
        '{"transaction_id": "j-broken", "amount": 5000',      # not JSON
        tx("j-3dec", 1600.123),                               # more than 2 decimals
        avro_tx("a-1600", "1600.00"), avro_tx("a-1500.01", "1500.01"), avro_tx("a-1500", "1500.00"),
        avro_tx("a-low", "3.00"), avro_tx("a-trail", "1700.00") + b"\x00\x01",  # trailing bytes: skipped
        b"\x00\x00",                                          # an Avro frame too short
    ])
    wait_for(reader.has(high), FIRST_OUTPUT_S, "the high-value ids on the live topic", process=running.proc,
             log=running.log, every=0.3)
    # Everything produced before a marker in the same partition has been read by then.
    markers = [f"marker-{p}" for p in range(3)]
    produce_to_partitions(s, markers, 5000)
    wait_for(reader.has(set(markers)), 120, "the partition markers", process=running.proc, log=running.log,
             every=0.3)
    assert reader.ids() == high | set(markers)
    for key, doc in reader.records:
        assert key == doc["transaction_id"]
        assert set(LIVE_FIELDS) <= set(doc), doc
        assert isinstance(doc["source_timestamp"], int) and doc["source_timestamp"] > 1_700_000_000_000
    docs = {k: d for k, d in reader.records}
    assert docs["j-big"]["amount"] == 9_999_999.99 and docs["j-big"]["country"] == "ES"
    assert docs["j-big"]["merchant_category"] == "travel"
    assert docs["a-1500.01"]["amount"] == 1500.01
    assert docs["j-1600"]["event_time"] == "2026-11-24T19:12:03.123456Z"  # microseconds kept, UTC
    assert set(RECORD_COLUMNS) <= set(docs["a-1600"])


def test_lane_metrics_count_its_output_and_its_latency(lane):
    """The lane's endpoint counts every record it wrote (this module's lane process wrote all of the
    live topic), each with its latency."""
    running, reader = lane
    url = f"http://127.0.0.1:{ports.port_of(running.settings.metrics_port, ports.LIVE)}/metrics"
    ids = [f"metrics-{p}" for p in range(3)]
    produce_to_partitions(running.settings, ids, 4000)
    wait_for(reader.has(set(ids)), FIRST_OUTPUT_S, "the metrics test's ids", process=running.proc, log=running.log,
             every=0.3)
    written = len(reader.records)

    def out() -> float:
        return samples(scrape(url)).get(("tormenta_live_records_out_total", frozenset()), 0.0)
    wait_for(lambda: out() >= written, 60, f"{written} records out on {url}", process=running.proc, log=running.log)
    text = scrape(url)
    promtool_check(text)
    found = samples(text)
    assert value(found, "tormenta_live_records_out_total") == written
    assert value(found, "tormenta_live_latency_seconds_count") == written
    # Each latency is the live record's write time minus its source record's: positive, and
    # below the wait the test allows for the first output (a cold Spark start included).
    assert 0 < value(found, "tormenta_live_latency_seconds_sum") / written < FIRST_OUTPUT_S


def test_kill_minus_nine_then_restart_misses_no_high_value_id(lane):
    running, reader = lane
    s = running.settings
    before = {f"k-before-{i}" for i in range(30)}
    produce(s, [tx(t, 2000) for t in sorted(before)])
    wait_for(reader.has(before), FIRST_OUTPUT_S, "the ids before the kill", process=running.proc, log=running.log,
             every=0.3)
    # Records still in flight when the lane dies, then records while it is down.
    racing = {f"k-racing-{i}" for i in range(200)}
    produce(s, [tx(t, 1800) for t in sorted(racing)])
    running.kill()
    down = {f"k-down-{i}" for i in range(100)}
    produce(s, [tx(t, 1700) for t in sorted(down)] + [tx(f"k-low-{i}", 10) for i in range(50)])
    restarted_at = time.time()
    running.start()
    wanted = before | racing | down
    wait_for(reader.has(wanted), FIRST_OUTPUT_S, "every high-value id after the restart", process=running.proc,
             log=running.log, every=0.3)
    # Up by its heartbeat (all its tasks running), not only once the batch it resumed ends (minutes later)
    wait_for(lambda: (health.last_running(s) or 0) > restarted_at, FIRST_OUTPUT_S, "the restarted lane's heartbeat",
             process=running.proc, log=running.log)
    assert health.lane_health(s).state == "up", health.lane_health(s)
    assert not any(i.startswith("k-low") for i in reader.ids())
    # At least once: a replay may repeat some ids, never lose one.
    assert wanted <= {k for k, _ in reader.records}


# ---- refusals: one line, non-zero exit, before Spark starts -------------------------------------
def _refusal(settings: Settings, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", "live"], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=120, env=lane_env(settings, **env))


def _one_line(result: subprocess.CompletedProcess) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-2000:]
    return lines[0]


@pytest.fixture
def topics(stack) -> Settings:
    s = stack.replace(live_topic=f"live-{uuid.uuid4().hex[:8]}")
    ensure_live_topic(s)
    return s


def test_too_few_task_slots_is_refused(topics):
    r = _refusal(topics, spark_master="local[2]")
    assert r.returncode == 2
    assert "task slot per partition" in _one_line(r) and "local[2]" in r.stderr


def test_missing_live_topic_is_refused(topics):
    r = _refusal(topics, live_topic="no-such-live-topic")
    assert r.returncode == 1
    assert "no-such-live-topic does not exist" in _one_line(r) and "topic create" in r.stderr


def test_missing_transactions_topic_is_refused(topics):
    r = _refusal(topics, topic="no-such-transactions")
    assert r.returncode == 1 and "no-such-transactions does not exist" in _one_line(r)


@pytest.mark.parametrize("name,value", [("live_retention", "forever"), ("live_topic", "bad topic!"),
                                         ("live", "maybe")])
def test_bad_setting_is_refused(topics, name, value):
    r = _refusal(topics, **{name: value})
    assert r.returncode == 2
    assert f"TORMENTA_{name.upper()}" in _one_line(r)


def test_refused_acl_is_one_line(secure_broker, tmp_path):
    """On the secured broker the lane's user may read only the transactions topic the ACLs name."""
    s = secure_broker.replace(topic=f"tx-unlisted-{uuid.uuid4().hex[:6]}")
    ensure_topic(s)  # as the admin
    ensure_live_topic(s)
    env = lane_env(s)
    r = subprocess.run([sys.executable, "-m", "pipeline", "live"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                       timeout=120, env=env)
    assert r.returncode == 1
    line = _one_line(r)
    assert s.topic in line and ("not authori" in line.lower() or "acl" in line.lower()), line


def test_live_user_reads_transactions_and_writes_only_the_live_topic(secure_broker):
    """The ACL rows of tormenta-live, on the real authorizer (no Spark needed)."""
    from confluent_kafka import KafkaError

    from pipeline.kafka.security import check_read_access, client_config

    s = secure_broker
    ensure_topic(s)  # as the admin; the ACLs granted at start name the default topics
    ensure_live_topic(s)
    check_read_access(s, "live", s.topic, group="tormenta-live-access-check")  # raises when refused

    def write(topic: str):
        results: list = []
        p = Producer(client_config(s, "live", {"acks": "all", "enable.idempotence": False,
                                               "message.timeout.ms": 15000}))
        p.produce(topic, b"{}", on_delivery=lambda err, _m: results.append(err))
        p.flush(20)
        return results[0]

    assert write(s.live_topic) is None
    err = write(s.topic)
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
