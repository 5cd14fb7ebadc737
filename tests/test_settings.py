"""The settings object: declared defaults, one clear line per bad value, validated copies."""

import os
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import SecretStr

from pipeline.errors import SettingsError
from pipeline.settings import PREFIX, PROJECT_ROOT, SPECS, Settings, format_duration, parse_duration, spark_interval

DEFAULTS = {
    "bootstrap_servers": "127.0.0.1:9092", "controller_port": 9093, "topic": "transactions", "partitions": 3,
    "retention": 86400.0, "data_dir": Path("data").resolve(), "jars_dir": PROJECT_ROOT / ".cache" / "jars", "jvm_archive": True,
    "trigger_interval": 60.0, "summary_interval": 3600.0, "threshold": Decimal("1500"), "dedup_window": 600.0,
    "agg_window": 60.0, "max_offsets_per_trigger": 6_000_000, "fail_on_data_loss": True,
    "job_cores": os.cpu_count() or 2, "shuffle_partitions": 0, "driver_memory": "2g", "broker_heap": "1g",
    "broker_nodes": 1, "replication": 0, "compact_every": 30, "app_port": 8501, "emulator_rate": 2000.0, "ingest_interval": 1.0,
    "sample_file": PROJECT_ROOT / "samples" / "transactions.jsonl.gz",
    "control_topic": "tormenta.emulator.control", "status_topic": "tormenta.emulator.status", "wire_format": "avro",
    "spark_master": "local", "executor_memory": "1g", "driver_host": "127.0.0.1", "storage_uri": "local",
    "storage_endpoint": "", "storage_region": "us-east-1", "storage_access_key": SecretStr(""), "storage_access_key_file": None,
    "storage_secret_key": SecretStr(""), "storage_secret_key_file": None, "storage_path_style": False,
    "kafka_security_protocol": "PLAINTEXT", "kafka_sasl_mechanism": "SCRAM-SHA-512", "kafka_username": "",
    "kafka_password": SecretStr(""), "kafka_password_file": None, "kafka_ca_file": None, "kafka_cert_file": None,
    "kafka_key_file": None, "secure": False, "app_address": "127.0.0.1",
    "sql_max_rows": 10_000, "sql_timeout": 30.0,
    "live": True, "live_topic": "transactions.high_value.live", "live_retention": 3600.0,
    "metrics_port": 9400, "monitoring": True, "alert_webhook": "",
}

# One bad value per kind of setting (and per way of being bad), with what the message must say.
BAD = [
    ("PARTITIONS", "0", "is out of range; allowed: 1..1000"),
    ("PARTITIONS", "three", "is not a whole number; allowed: 1..1000"),
    ("APP_PORT", "70000", "allowed: 1..65535"),
    ("JOB_CORES", "many", "is not a whole number; allowed: 1..256"),
    ("EMULATOR_RATE", "-5", "is out of range; allowed: 0..2000000"),
    ("EMULATOR_RATE", "fast", "is not a number"),
    ("TRIGGER_INTERVAL", "soon", "is not a duration; allowed: a positive number with an optional unit"),
    ("TRIGGER_INTERVAL", "0s", "must be greater than zero"),
    ("RETENTION", "30s", "is out of range; allowed: 1 minute .. 365 days"),
    ("FAIL_ON_DATA_LOSS", "maybe", "is not a boolean; allowed: true/false"),
    ("DRIVER_MEMORY", "lots", "is not a JVM memory size; allowed: e.g. 512m, 1g, 2g"),
    ("BROKER_HEAP", "1t", "is not a JVM memory size"),
    ("TOPIC", "bad topic!", "is not a valid Kafka topic name; allowed: 1-249 of letters"),
    ("STATUS_TOPIC", "x" * 250, "is not a valid Kafka topic name"),
    ("BOOTSTRAP_SERVERS", "localhost", "is not a host:port list; allowed: e.g. 127.0.0.1:9092"),
    ("BOOTSTRAP_SERVERS", "h1:9092,h2:99999", "is not a host:port list"),
    ("WIRE_FORMAT", "xml", "is not allowed; allowed: json, avro"),
    ("THRESHOLD", "abc", "is not a number; allowed: a finite amount >= 0"),
    ("THRESHOLD", "-1", "is out of range; allowed: a finite amount >= 0"),
    ("THRESHOLD", "NaN", "is out of range"),
    ("DATA_DIR", "  ", "is empty; allowed: a file or folder path"),
    ("SPARK_MASTER", "mesos://h:5050", "is not a Spark master; allowed: local, local[N], spark://host:port, yarn"),
    ("STORAGE_URI", "s3://bucket/x", "is not a storage location; allowed: local, or s3a://bucket/prefix"),
    ("STORAGE_ENDPOINT", "minio:9000", "is not an endpoint URL; allowed: empty (AWS) or http(s)://host[:port]"),
    ("KAFKA_SECURITY_PROTOCOL", "TLS", "is not allowed; allowed: PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"),
    ("KAFKA_SASL_MECHANISM", "GSSAPI", "is not allowed; allowed: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512"),
    ("KAFKA_CA_FILE", "/no/such/ca.pem", "cannot be read (No such file or directory); allowed: a readable PEM file"),
    ("KAFKA_PASSWORD_FILE", "/no/such/password", "cannot be read (No such file or directory); allowed: a readable file"),
    ("SECURE", "perhaps", "is not a boolean"),
    ("SQL_MAX_ROWS", "0", "is out of range; allowed: 1..1000000"),
    ("SQL_TIMEOUT", "forever", "is not a duration; allowed: a positive number with an optional unit"),
    ("SQL_TIMEOUT", "2h", "is out of range; allowed: 100 ms .. 1 hour"),
    ("LIVE", "sometimes", "is not a boolean"),
    ("LIVE_TOPIC", "live topic", "is not a valid Kafka topic name"),
    ("LIVE_RETENTION", "10s", "is out of range; allowed: 1 minute .. 365 days"),
    ("METRICS_PORT", "80", "is not a metrics base port; allowed: 0 (off) or 1024..65500"),
    ("METRICS_PORT", "65530", "is not a metrics base port; allowed: 0 (off) or 1024..65500"),
    ("MONITORING", "sometimes", "is not a boolean; allowed: true/false"),
    ("ALERT_WEBHOOK", "slack", "is not a webhook URL; allowed: empty (no notifications) or http(s)://host[:port]/path"),
]


def test_every_default():
    s = Settings.from_env({})
    assert s.model_dump() == DEFAULTS
    assert (s.retention_ms, s.first_bootstrap, s.delta_dir, s.table_path("t")) == \
        (86_400_000, ("127.0.0.1", 9092), s.data_dir / "delta", s.data_dir / "delta" / "t")


def test_the_mapping_given_is_the_only_environment(monkeypatch):
    monkeypatch.setenv("TORMENTA_TOPIC", "from-os")
    assert Settings.from_env({}).topic == "transactions"
    assert Settings.from_env().topic == "from-os" and Settings().topic == "from-os"
    assert Settings.from_env({"TORMENTA_TOPIC": ""}).topic == "transactions"  # empty = default


@pytest.mark.parametrize("var,value,expect", BAD)
def test_a_bad_value_gives_one_line_naming_variable_value_and_what_is_allowed(var, value, expect):
    with pytest.raises(SettingsError) as err:
        Settings.from_env({PREFIX + var: value})
    message = str(err.value)
    assert message.startswith(f"{PREFIX}{var}={value!r} ") and expect in message and "\n" not in message


CA = "<a PEM file of a CA certificate>"  # replaced by the `ca_file` fixture's path in the test


@pytest.fixture
def ca_file(tmp_path) -> Path:
    from pipeline.kafka.certs import cert_pem, make_ca

    path = tmp_path / "ca.pem"
    path.write_bytes(cert_pem(make_ca()[1]))
    return path


KAFKA_INCOMPLETE = [
    ({"SECURITY_PROTOCOL": "SSL"}, ["TORMENTA_KAFKA_SECURITY_PROTOCOL=SSL needs TORMENTA_KAFKA_CA_FILE; allowed: the PEM bundle"]),
    ({"SECURITY_PROTOCOL": "SASL_PLAINTEXT"}, ["SASL_PLAINTEXT needs TORMENTA_KAFKA_USERNAME; allowed: the SASL user name",
                                              "SASL_PLAINTEXT needs TORMENTA_KAFKA_PASSWORD or TORMENTA_KAFKA_PASSWORD_FILE"]),
    ({"SECURITY_PROTOCOL": "SASL_SSL", "CA_FILE": CA, "USERNAME": "u"}, ["needs TORMENTA_KAFKA_PASSWORD or"]),
    ({"SECURITY_PROTOCOL": "SSL", "CA_FILE": CA, "CERT_FILE": __file__},
     ["mutual TLS needs both TORMENTA_KAFKA_CERT_FILE and TORMENTA_KAFKA_KEY_FILE; allowed: both or neither"]),
    ({"CERT_FILE": __file__, "KEY_FILE": __file__}, ["TORMENTA_KAFKA_SECURITY_PROTOCOL=PLAINTEXT has no TLS; allowed: SSL"]),
]


@pytest.mark.parametrize("values,expect", KAFKA_INCOMPLETE)
def test_incomplete_kafka_security_is_refused_one_line_per_problem(values, expect, ca_file):
    with pytest.raises(SettingsError) as err:
        Settings.from_env({f"{PREFIX}KAFKA_{k}": str(ca_file) if v is CA else v for k, v in values.items()})
    lines = str(err.value).splitlines()
    assert len(lines) == len(expect) and all(e in line for e, line in zip(expect, lines, strict=True))


def test_complete_kafka_security_is_accepted(tmp_path, ca_file):
    secret = tmp_path / "password"
    secret.write_text("s3cr3t\n")
    s = Settings.from_env({f"{PREFIX}KAFKA_SECURITY_PROTOCOL": "sasl_ssl", f"{PREFIX}KAFKA_CA_FILE": str(ca_file),
                           f"{PREFIX}KAFKA_USERNAME": "u", f"{PREFIX}KAFKA_PASSWORD_FILE": str(secret),
                           f"{PREFIX}KAFKA_SASL_MECHANISM": "scram-sha-256"})
    assert (s.kafka_security_protocol, s.kafka_sasl_mechanism) == ("SASL_SSL", "SCRAM-SHA-256")
    assert "s3cr3t" not in repr(s)


@pytest.mark.parametrize("content", [
    b"-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n",
    b"not a certificate at all\n",
    b"",
])
def test_a_ca_file_without_a_certificate_is_refused_naming_the_file(tmp_path, content):
    path = tmp_path / "not-a-ca.pem"
    path.write_bytes(content)
    with pytest.raises(SettingsError) as err:
        Settings.from_env({f"{PREFIX}KAFKA_SECURITY_PROTOCOL": "SSL", f"{PREFIX}KAFKA_CA_FILE": str(path)})
    assert str(err.value) == (f"{PREFIX}KAFKA_CA_FILE={str(path)!r} holds no PEM certificate; allowed: a PEM file "
                              "of CA certificates (-----BEGIN CERTIFICATE----- blocks)")


def test_a_real_ca_private_key_is_refused_and_its_certificate_accepted(tmp_path):
    from cryptography.hazmat.primitives import serialization

    from pipeline.kafka.certs import cert_pem, make_ca

    key, cert = make_ca()
    key_file, cert_file = tmp_path / "ca.key", tmp_path / "ca.pem"
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_file.write_bytes(cert_pem(cert))
    with pytest.raises(SettingsError, match="ca.key' holds no PEM certificate"):
        Settings.from_env({f"{PREFIX}KAFKA_CA_FILE": str(key_file)})
    assert Settings.from_env({f"{PREFIX}KAFKA_CA_FILE": str(cert_file)}).kafka_ca_file == cert_file


def test_every_problem_is_collected_one_line_each():
    with pytest.raises(SettingsError) as err:
        Settings.from_env({"TORMENTA_THRESHOLD": "x", "TORMENTA_JOB_CORES": "0", "TORMENTA_TOPIC": "a b"})
    lines = str(err.value).splitlines()
    assert sorted(line.split("=")[0] for line in lines) == ["TORMENTA_JOB_CORES", "TORMENTA_THRESHOLD", "TORMENTA_TOPIC"]


@pytest.mark.parametrize("text,seconds", [("60", 60), ("60s", 60), ("1m", 60), ("1 minute", 60), ("500ms", 0.5),
                                          ("1h", 3600), ("2 hours", 7200), ("1d", 86400), ("1.5m", 90)])
def test_duration_texts(text, seconds):
    assert parse_duration(text) == seconds
    assert Settings.from_env({"TORMENTA_SUMMARY_INTERVAL": text}).summary_interval == seconds


def test_duration_helpers():
    with pytest.raises(SettingsError, match=r"^--every='1 fortnight' is not a duration"):
        parse_duration("1 fortnight", name="--every")
    assert [format_duration(s) for s in (0.5, 1, 90, 60, 7200, 86400)] == \
        ["500 ms", "1 second", "90 seconds", "1 minute", "2 hours", "1 day"]
    assert (spark_interval(60), spark_interval(0.5), spark_interval(1.5)) == \
        ("60 seconds", "500 milliseconds", "1500 milliseconds")


def test_job_cores_and_shuffle_partitions():
    assert Settings.from_env({"TORMENTA_JOB_CORES": "AUTO"}).job_cores == (os.cpu_count() or 2)
    four = Settings.from_env({"TORMENTA_JOB_CORES": "4"})
    assert (four.job_cores, four.effective_shuffle_partitions) == (4, 10)
    assert four.replace(shuffle_partitions=7).effective_shuffle_partitions == 7


def test_replace_validates_and_copies():
    s = Settings.from_env({})
    with pytest.raises(SettingsError, match=r"^TORMENTA_PARTITIONS=0 is out of range; allowed: 1\.\.1000$"):
        s.replace(partitions=0)
    with pytest.raises(SettingsError, match="TORMENTA_TRIGGER_INTERVAL=0.01 is out of range"):
        s.replace(trigger_interval=0.01)
    with pytest.raises(SettingsError, match="'partition' is not a setting; allowed: bootstrap_servers"):
        s.replace(partition=2)
    fast = s.replace(trigger_interval=1.0, data_dir="relative", threshold=99.5, fail_on_data_loss="no")
    assert (fast.trigger_interval, fast.data_dir, fast.threshold, fast.fail_on_data_loss) == \
        (1.0, Path("relative").resolve(), Decimal("99.5"), False)
    assert fast.topic == s.topic and s.trigger_interval == 60.0  # the original is untouched


def test_replace_does_not_read_the_environment_again(monkeypatch):
    s = Settings.from_env({})
    monkeypatch.setenv("TORMENTA_TOPIC", "from-os")
    assert s.replace(partitions=2).topic == "transactions"


def test_overrides_of_from_env_are_validated_too():
    assert Settings.from_env({}, topic="t1").topic == "t1"
    with pytest.raises(SettingsError, match="TORMENTA_TOPIC='no way'"):
        Settings.from_env({}, topic="no way")


def test_settings_are_frozen_and_hashable():
    s = Settings.from_env({})
    with pytest.raises(ValueError, match="frozen"):
        s.topic = "other"  # type: ignore[misc]
    assert hash(s) == hash(Settings.from_env({})) and s.replace(topic="b") != s


def test_each_setting_is_declared_once_with_its_documentation():
    assert [spec.attr for spec in SPECS] == list(Settings.model_fields) == list(DEFAULTS)
    assert all(spec.env == PREFIX + spec.attr.upper() and spec.help for spec in SPECS)
    # The documented default text is the default: reading it back gives the default value.
    shown = {spec.env: spec.default for spec in SPECS if spec.attr not in ("jars_dir", "sample_file")}
    assert Settings.from_env(shown) == Settings.from_env({})
    assert {s.attr: s.default for s in SPECS}["jars_dir"] == "./.cache/jars"
