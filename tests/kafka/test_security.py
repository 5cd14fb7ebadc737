"""pipeline.kafka.security: one source of every Kafka client's security, and one line per refusal."""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka import KafkaError

from pipeline.errors import SettingsError
from pipeline.kafka import security
from pipeline.kafka.security import (
    KafkaAccessError,
    KafkaAuth,
    RefusalWatch,
    client_config,
    explain,
    java_options,
    kafka_auth,
    pinned,
    security_env,
)
from pipeline.settings import PROJECT_ROOT, Settings

SECRET = "pa\"ss\\w0rd-never-shown"


def _ca_pem() -> bytes:
    from pipeline.kafka.certs import cert_pem, make_ca

    return cert_pem(make_ca()[1])


def _secured(tmp_path: Path, **env: str) -> Settings:
    (tmp_path / "ca.pem").write_bytes(_ca_pem())
    (tmp_path / "pw").write_text(SECRET + "\n")
    base = {"TORMENTA_DATA_DIR": str(tmp_path / "data"), "TORMENTA_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "TORMENTA_KAFKA_CA_FILE": str(tmp_path / "ca.pem"), "TORMENTA_KAFKA_USERNAME": "alice",
            "TORMENTA_KAFKA_PASSWORD_FILE": str(tmp_path / "pw")}
    return Settings.from_env({**base, **env})


def _client_file(tmp_path: Path) -> Settings:
    """A data folder holding the client file a secured embedded broker writes."""
    secure = tmp_path / "data" / "secure"
    secure.mkdir(parents=True)
    (secure / "ca.pem").write_bytes(_ca_pem())
    users = {}
    for role in security.ROLES:
        (secure / f"{role}.password").write_text(f"pw-of-{role}")
        users[role] = {"username": f"tormenta-{role}", "password_file": str(secure / f"{role}.password")}
    (secure / "clients.json").write_text(json.dumps({"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
                                                     "ca_file": str(secure / "ca.pem"), "users": users}))
    return Settings.from_env({"TORMENTA_DATA_DIR": str(tmp_path / "data")})


@pytest.mark.parametrize("command", [("job", "--once"), ("emulate", "--max-records", "1", "--no-control"),
                                     ("storm", "status"), ("smoke",)])
def test_a_ca_file_without_a_certificate_stops_every_kafka_command_before_it_starts(tmp_path, command):
    """The CA's private key given as the CA bundle: one line naming the file, exit 2, no
    client built (the job used to end in a KafkaException traceback)."""
    key = tmp_path / "ca-key.pem"
    key.write_text("-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n")
    env = {**os.environ, "TORMENTA_DATA_DIR": str(tmp_path / "data"), "TORMENTA_KAFKA_SECURITY_PROTOCOL": "SSL",
           "TORMENTA_KAFKA_CA_FILE": str(key), "TORMENTA_BOOTSTRAP_SERVERS": "127.0.0.1:9"}
    out = subprocess.run([sys.executable, "-m", "pipeline", *command], cwd=PROJECT_ROOT, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip() == (f"error: TORMENTA_KAFKA_CA_FILE={str(key)!r} holds no PEM certificate; allowed: "
                                  "a PEM file of CA certificates (-----BEGIN CERTIFICATE----- blocks)")
    assert out.stdout == ""


def test_plaintext_is_the_default_and_adds_nothing(tmp_path):
    s = Settings.from_env({"TORMENTA_DATA_DIR": str(tmp_path)})
    assert client_config(s, "job", {"group.id": "g"}) == {"bootstrap.servers": "127.0.0.1:9092", "group.id": "g",
                                                          "logger": security.CLIENT_LOG}
    assert java_options(s, "job") == {}


def test_sasl_ssl_from_settings_gives_librdkafka_and_java_the_same_identity(tmp_path):
    s = _secured(tmp_path)
    conf = client_config(s, "producer", {"acks": "all"})
    assert conf == {"bootstrap.servers": "127.0.0.1:9092", "security.protocol": "sasl_ssl",
                    "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "alice", "sasl.password": SECRET,
                    "ssl.ca.location": str(tmp_path / "ca.pem"), "acks": "all", "logger": security.CLIENT_LOG}
    opts = java_options(s, "job")
    assert opts["security.protocol"] == "SASL_SSL" and opts["sasl.mechanism"] == "SCRAM-SHA-512"
    assert (opts["ssl.truststore.type"], opts["ssl.truststore.location"]) == ("PEM", str(tmp_path / "ca.pem"))
    # The JAAS line quotes the password so that quotes and backslashes survive.
    assert opts["sasl.jaas.config"] == ('org.apache.kafka.common.security.scram.ScramLoginModule required '
                                        'username="alice" password="pa\\"ss\\\\w0rd-never-shown";')


def test_plain_mechanism_uses_the_plain_login_module(tmp_path):
    s = _secured(tmp_path, TORMENTA_KAFKA_SASL_MECHANISM="plain", TORMENTA_KAFKA_SECURITY_PROTOCOL="sasl_plaintext")
    assert java_options(s, "job")["sasl.jaas.config"].startswith("org.apache.kafka.common.security.plain.PlainLoginModule")
    assert "ssl.ca.location" not in client_config(s, "job") and "ssl.truststore.location" not in java_options(s, "job")


def test_mutual_tls_gives_certificate_and_key_and_a_private_java_keystore(tmp_path):
    (tmp_path / "c.pem").write_text("-----CERT-----\n")
    (tmp_path / "k.pem").write_text("-----KEY-----\n")
    s = _secured(tmp_path, TORMENTA_KAFKA_SECURITY_PROTOCOL="SSL", TORMENTA_KAFKA_CERT_FILE=str(tmp_path / "c.pem"),
                 TORMENTA_KAFKA_KEY_FILE=str(tmp_path / "k.pem"))
    conf = client_config(s, "admin")
    assert (conf["security.protocol"], conf["ssl.certificate.location"], conf["ssl.key.location"]) == \
        ("ssl", str(tmp_path / "c.pem"), str(tmp_path / "k.pem"))
    assert "sasl.username" not in conf
    opts = java_options(s, "job", keystore_dir=tmp_path / "ks")
    keystore = Path(opts["ssl.keystore.location"])
    assert opts["ssl.keystore.type"] == "PEM" and keystore.read_text() == "-----KEY-----\n-----CERT-----\n"
    assert keystore.stat().st_mode & 0o777 == 0o600


def test_the_secured_brokers_client_file_gives_each_role_its_own_user(tmp_path):
    s = _client_file(tmp_path)
    for role in security.ROLES:
        conf = client_config(s, role)
        assert (conf["sasl.username"], conf["sasl.password"]) == (f"tormenta-{role}", f"pw-of-{role}")
        assert conf["ssl.ca.location"] == str(s.data_dir / "secure" / "ca.pem")
    assert kafka_auth(s, "job").describe() == (f"SASL_SSL SCRAM-SHA-512 as tormenta-job CA {s.data_dir}/secure/ca.pem "
                                                "(clients.json, user for job)")


def test_explicit_settings_win_over_the_client_file(tmp_path):
    _client_file(tmp_path)
    s = _secured(tmp_path)
    assert client_config(s, "job")["sasl.username"] == "alice"


def test_a_broken_client_file_is_one_clear_line(tmp_path):
    s = _client_file(tmp_path)
    (s.data_dir / "secure" / "clients.json").write_text("{}")
    with pytest.raises(SettingsError, match=r"client file .*clients.json is unreadable or incomplete.*restart it"):
        client_config(s, "app")


def test_unknown_role_is_refused(tmp_path):
    with pytest.raises(ValueError, match="allowed: admin, producer, job, app"):
        kafka_auth(Settings.from_env({"TORMENTA_DATA_DIR": str(tmp_path)}), "root")


def test_pinning_keeps_the_identity_when_the_data_folder_moves(tmp_path):
    s = pinned(_client_file(tmp_path), "admin").replace(data_dir=tmp_path / "elsewhere")
    conf = client_config(s, "producer")  # every role of the pinned settings is the admin
    assert (conf["sasl.username"], conf["sasl.password"]) == ("tormenta-admin", "pw-of-admin")
    env = security_env(s)
    assert env["TORMENTA_KAFKA_USERNAME"] == "tormenta-admin" and env["TORMENTA_KAFKA_PASSWORD"] == ""
    child = Settings.from_env({**env, "TORMENTA_DATA_DIR": str(tmp_path / "child")})
    assert client_config(child, "job")["sasl.password"] == "pw-of-admin"


class _Err:
    def __init__(self, code: int, text: str):
        self._code, self._text = code, text

    def code(self) -> int:
        return self._code

    def str(self) -> str:
        return self._text


AUTH = KafkaAuth("SASL_SSL", "SCRAM-SHA-512", "tormenta-app", ca_file=Path("/ca.pem"))


@pytest.mark.parametrize("code,text,expect", [
    (KafkaError._AUTHENTICATION, "SASL authentication error: Authentication failed during authentication due to "
     "invalid credentials with SASL mechanism SCRAM-SHA-512", "Kafka authentication failed for user 'tormenta-app'"),
    (KafkaError._SSL, "ssl:///127.0.0.1:9092/bootstrap: SSL handshake failed: error:0A000086:SSL routines::"
     "certificate verify failed", "the broker's TLS certificate is not trusted by the CA bundle /ca.pem"),
    (KafkaError.TOPIC_AUTHORIZATION_FAILED, "Broker: Topic authorization failed",
     "user 'tormenta-app' is not authorised for topic transactions"),
    (KafkaError.GROUP_AUTHORIZATION_FAILED, "Broker: Group authorization failed",
     "user 'tormenta-app' is not authorised for consumer group g1"),
])
def test_each_refusal_is_one_line_naming_its_cause(code, text, expect):
    line = explain(_Err(code, text), AUTH, "transactions", "g1")
    assert expect in line and "\n" not in line


def test_other_errors_are_not_refusals_and_the_watch_keeps_the_first_refusal():
    assert explain(_Err(KafkaError._TRANSPORT, "Connection refused"), AUTH) is None
    watch = RefusalWatch(AUTH, "transactions")
    watch(_Err(KafkaError._TRANSPORT, "Connection refused"))
    watch(_Err(KafkaError.GROUP_AUTHORIZATION_FAILED, "Group authorization failed"))
    watch.check()  # nothing yet: a group refusal waits for the topic's verdict
    assert "consumer group" in watch.group_reason
    watch(_Err(KafkaError._AUTHENTICATION, "SASL authentication error"))
    watch(_Err(KafkaError._SSL, "certificate verify failed"))
    with pytest.raises(KafkaAccessError, match="authentication failed"):
        watch.check()


def test_no_client_builds_its_own_config():
    """Only pipeline/kafka/security.py may name bootstrap.servers: every client goes through it."""
    offenders = []
    for path in [*(PROJECT_ROOT / "pipeline").rglob("*.py"), *(PROJECT_ROOT / "pages").rglob("*.py"),
                 *(PROJECT_ROOT / "bench").rglob("*.py"), PROJECT_ROOT / "streamlit_app.py"]:
        if path.name == "security.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in ("bootstrap.servers", "kafka.bootstrap.servers"):
                offenders.append(f"{path.relative_to(PROJECT_ROOT)}:{node.lineno}")
    assert offenders == []
