"""The secured embedded broker on the real Kafka 4 jars (session fixture `secure_broker`).

Started secure, the admin user lists topics; a plaintext client on the secure port gets
nowhere; the producer user may write the transactions topic and the app user may not; the job
user consumes; passwords live only in 0600 files (never in the broker's config, log, command
line or the client file); ``broker status`` says it is secured; a plaintext start on the
secure storage is refused in one line.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from pipeline.kafka import secure
from pipeline.kafka.security import client_config
from pipeline.settings import PROJECT_ROOT, Settings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def topics(secure_broker: Settings) -> Settings:
    """The default topic names (the ACLs granted at start name them), created by the admin user."""
    wanted = [NewTopic(t, 1, 1) for t in (secure_broker.topic, secure_broker.status_topic, secure_broker.control_topic)]
    # A with block: the client must not be freed on its own thread (tests/kafka/test_client_lifetimes.py).
    with AdminClient(client_config(secure_broker, "admin")) as admin:
        for fut in admin.create_topics(wanted, operation_timeout=15).values():
            try:
                fut.result(30)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
    return secure_broker


def _produce(settings: Settings, role: str, topic: str, value: bytes, idempotent: bool = True) -> KafkaError | None:
    """Produce one record as `role`; the delivery error (None when written).

    (A user without WRITE on any topic cannot even get an idempotent producer id: the
    refusal then is CLUSTER_AUTHORIZATION_FAILED, so such checks produce non-idempotently.)"""
    results: list = []
    p = Producer(client_config(settings, role, {"acks": "all", "enable.idempotence": idempotent,
                                                "message.timeout.ms": 15000}))
    p.produce(topic, value, on_delivery=lambda err, _msg: results.append(err))
    p.flush(20)
    assert results, "no delivery report within 20 s"
    return results[0]


def _env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TORMENTA_")}
    env["TORMENTA_METRICS_PORT"] = "0"  # no metrics endpoint: tests never bind the product's ports
    env.update({"TORMENTA_DATA_DIR": str(settings.data_dir), "TORMENTA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
                "TORMENTA_CONTROLLER_PORT": str(settings.controller_port)})
    return env


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=PROJECT_ROOT, env=_env(settings),
                          capture_output=True, text=True, timeout=120)


def test_broker_starts_secured(secure_broker):
    node = secure_broker.broker_dir
    assert secure.is_secure(node)
    props = (node / "server.properties").read_text()
    host, port = secure_broker.first_bootstrap
    assert f"listeners=SASL_SSL://127.0.0.1:{port},CONTROLLER://127.0.0.1:{secure_broker.controller_port}" in props
    assert "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer" in props
    assert "PLAINTEXT" not in props


def test_admin_lists_topics(topics):
    md = AdminClient(client_config(topics, "admin")).list_topics(timeout=10)
    assert {topics.topic, topics.status_topic, topics.control_topic} <= set(md.topics)
    assert len(md.brokers) == 1


def test_plaintext_client_on_the_secure_port_gets_nowhere(secure_broker):
    plain = AdminClient({"bootstrap.servers": secure_broker.bootstrap_servers, "log_level": 0})
    with pytest.raises(KafkaException):
        plain.list_topics(timeout=5)


def test_wrong_password_is_refused(secure_broker):
    conf = client_config(secure_broker, "admin", {"log_level": 0})
    conf["sasl.password"] = "not-the-password"
    with pytest.raises(KafkaException):
        AdminClient(conf).list_topics(timeout=5)


def test_producer_may_write_transactions_and_the_app_may_not(topics):
    assert _produce(topics, "producer", topics.topic, b"from the producer") is None
    err = _produce(topics, "app", topics.topic, b"from the app")
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_job_user_consumes_transactions_and_may_not_write(topics):
    token = uuid.uuid4().hex.encode()
    assert _produce(topics, "producer", topics.topic, token) is None
    consumer = Consumer(client_config(topics, "job", {"group.id": f"tormenta-job-test-{uuid.uuid4().hex[:6]}",
                                                     "auto.offset.reset": "earliest", "enable.auto.commit": False}))
    try:
        consumer.subscribe([topics.topic])
        seen = []
        for _ in range(150):                 # up to 30 s
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            seen.append(msg.value())
            if token in seen:
                break
        assert token in seen
    finally:
        consumer.close()
    err = _produce(topics, "job", topics.topic, b"from the job", idempotent=False)
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_app_reads_status_and_writes_control(topics):
    assert _produce(topics, "producer", topics.status_topic, b'{"status": 1}') is None
    assert _produce(topics, "app", topics.control_topic, b'{"rate": 5}') is None
    consumer = Consumer(client_config(topics, "app", {"group.id": "tormenta-emulator-control",
                                                     "auto.offset.reset": "earliest", "enable.auto.commit": False}))
    try:
        consumer.subscribe([topics.status_topic])
        msg = None
        for _ in range(150):
            msg = consumer.poll(0.2)
            if msg is not None:
                break
        assert msg is not None and msg.error() is None and msg.value() == b'{"status": 1}'
    finally:
        consumer.close()


def test_secret_files_are_private(secure_broker):
    f = secure.files(secure_broker)
    assert stat.S_IMODE(f.dir.stat().st_mode) == 0o700
    for path in [f.password_file(r) for r in secure.USERS] + [f.jaas, f.tls.keystore, f.tls.ca_key]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_passwords_appear_only_in_their_private_files(secure_broker):
    f = secure.files(secure_broker)
    passwords = f.passwords()
    assert len(passwords) == len(secure.USERS) == 5   # admin, producer, job, app, live
    assert len(set(passwords)) == len(passwords)         # every user its own password
    allowed = {f.password_file(r).resolve() for r in secure.USERS} | {f.jaas.resolve()}
    kafka_logs = (secure_broker.broker_dir / "logs").resolve()
    for path in secure_broker.data_dir.rglob("*"):
        if not path.is_file() or path.resolve() in allowed or kafka_logs in path.resolve().parents:
            continue
        text = path.read_bytes()
        assert not any(pw.encode() in text for pw in passwords), f"a password is in {path}"
    pid = int((secure_broker.broker_dir / "broker.pid").read_text())
    cmdline = open(f"/proc/{pid}/cmdline", "rb").read()
    assert not any(pw.encode() in cmdline for pw in passwords)
    assert b"format-" not in b"".join(p.name.encode() for p in f.dir.iterdir())   # the format argument file is gone


def test_clients_json_contract(secure_broker):
    f = secure.files(secure_broker)
    doc = json.loads(f.clients.read_text())
    assert set(doc) == {"security_protocol", "sasl_mechanism", "ca_file", "users"}
    assert (doc["security_protocol"], doc["sasl_mechanism"]) == ("SASL_SSL", "SCRAM-SHA-512")
    assert doc["ca_file"] == str(f.tls.ca.resolve())
    assert doc["users"] == {role: {"username": user, "password_file": str(f.password_file(role).resolve())}
                            for role, user in secure.USERS.items()}


def test_status_says_secured(topics):
    out = _cli(topics, "broker", "status")
    assert out.returncode == 0, out.stderr
    assert re.search(r"secured: SASL_SSL with SCRAM-SHA-512 .* users tormenta-admin, tormenta-producer, "
                     r"tormenta-job, tormenta-app, tormenta-live; ACLs: \d+", out.stdout), out.stdout
    assert not any(pw in out.stdout + out.stderr for pw in secure.files(topics).passwords())


def test_plaintext_start_on_secure_storage_is_refused_in_one_line(secure_broker):
    out = _cli(secure_broker, "broker", "start")
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "formatted secure" in lines[0] and "--secure" in lines[0], out.stderr
    assert secure.files(secure_broker).clients.exists()      # the refusal changed nothing
