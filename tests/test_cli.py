"""The command line: clear one-line errors for bad input, and the stack commands on a real broker."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.errors import JavaError, SettingsError
from pipeline.kafka.broker import EmbeddedBroker
from pipeline.procs.jvm import java_version
from pipeline.settings import Settings, parse_duration
from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parent.parent


def cli(*args, env=None, timeout=120):
    full = os.environ.copy()
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=ROOT, env=full, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("var,value,expect", [
    ("TORMENTA_THRESHOLD", "abc", "TORMENTA_THRESHOLD='abc' is not a number"),
    ("TORMENTA_TRIGGER_INTERVAL", "0", "must be greater than zero"),
    ("TORMENTA_TRIGGER_INTERVAL", "soon", "is not a duration"),
    ("TORMENTA_PARTITIONS", "-1", "allowed: 1..1000"),
    ("TORMENTA_BOOTSTRAP_SERVERS", "localhost", "is not a host:port list"),
    ("TORMENTA_TOPIC", "bad topic!", "is not a valid Kafka topic name"),
    ("TORMENTA_DRIVER_MEMORY", "lots", "is not a JVM memory size"),
    ("TORMENTA_FAIL_ON_DATA_LOSS", "maybe", "is not a boolean"),
    ("TORMENTA_KAFKA_SECURITY_PROTOCOL", "TLS", "allowed: PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"),
    ("TORMENTA_KAFKA_SASL_MECHANISM", "OAUTHBEARER", "allowed: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512"),
    ("TORMENTA_KAFKA_CA_FILE", "/no/such/ca.pem", "TORMENTA_KAFKA_CA_FILE='/no/such/ca.pem' cannot be read"),
    ("TORMENTA_KAFKA_PASSWORD_FILE", "/no/such/pw", "TORMENTA_KAFKA_PASSWORD_FILE='/no/such/pw' cannot be read"),
])
def test_bad_settings_give_one_line_error(var, value, expect, tmp_path):
    out = cli("broker", "status", env={var: value, "TORMENTA_DATA_DIR": str(tmp_path)})
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expect in lines[0], out.stderr
    assert "Traceback" not in out.stderr


def test_tls_without_a_ca_is_refused_before_anything_starts(tmp_path):
    env = {"TORMENTA_DATA_DIR": str(tmp_path / "data"), "TORMENTA_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
           "TORMENTA_KAFKA_USERNAME": "u", "TORMENTA_KAFKA_PASSWORD": "p"}
    out = cli("job", "--once", env=env)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip() == ("error: TORMENTA_KAFKA_SECURITY_PROTOCOL=SASL_SSL needs TORMENTA_KAFKA_CA_FILE; "
                                  "allowed: the PEM bundle of the CA that signed the brokers' certificates")
    assert not (tmp_path / "data").exists()  # nothing started, nothing written


def test_bad_cli_values_are_refused(tmp_path):
    out = cli("broker", "restart", env={"TORMENTA_DATA_DIR": str(tmp_path)})
    assert out.returncode == 2 and "invalid choice: 'restart'" in out.stderr and "Traceback" not in out.stderr
    out = cli("smoke", "--timeout", "-1", env={"TORMENTA_DATA_DIR": str(tmp_path)})
    assert out.returncode == 2 and "--timeout" in out.stderr


def test_all_errors_are_collected():
    with pytest.raises(SettingsError) as err:
        Settings.from_env({"TORMENTA_THRESHOLD": "x", "TORMENTA_JOB_CORES": "0"})
    assert "TORMENTA_THRESHOLD" in str(err.value) and "TORMENTA_JOB_CORES" in str(err.value)


def test_durations():
    assert parse_duration("1m") == 60 and parse_duration("1 minute") == 60 and parse_duration("500ms") == 0.5
    assert parse_duration("1d") == 86400 and parse_duration("90") == 90


def test_defaults_follow_the_contract():
    s = Settings.from_env({})
    assert (s.topic, s.partitions, s.retention_ms, s.trigger_interval, str(s.threshold)) == \
        ("transactions", 3, 86_400_000, 60.0, "1500")
    assert s.first_bootstrap[0] == "127.0.0.1"
    assert s.job_cores == (os.cpu_count() or 2)
    assert s.effective_shuffle_partitions == round(s.job_cores * 2.5)
    assert Settings.from_env({"TORMENTA_JOB_CORES": "4"}).effective_shuffle_partitions == 10


def test_java_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(JavaError, match="install a JDK"):
        java_version()


def test_stop_and_status_when_not_running(tmp_path):
    env = {"TORMENTA_DATA_DIR": str(tmp_path), "TORMENTA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"}
    out = cli("broker", "stop", env=env)
    assert out.returncode == 0 and "not running" in out.stdout
    out = cli("broker", "status", env=env)
    assert out.returncode == 3 and "python -m pipeline broker start" in out.stdout


def test_job_without_broker_says_how_to_fix(tmp_path):
    env = {"TORMENTA_DATA_DIR": str(tmp_path), "TORMENTA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"}
    out = cli("job", "--once", env=env)
    assert out.returncode == 1 and "python -m pipeline broker start" in out.stderr and "Traceback" not in out.stderr


def test_broker_refuses_non_loopback(tmp_path):
    from pipeline.errors import BrokerError

    with pytest.raises(BrokerError, match="loopback"):
        EmbeddedBroker(Settings.from_env({"TORMENTA_BOOTSTRAP_SERVERS": "10.1.2.3:9092", "TORMENTA_DATA_DIR": str(tmp_path)}))


def test_cluster_id_never_starts_with_a_dash():
    from pipeline.kafka.broker import _cluster_id

    # 0xF8.. encodes to a leading "-" in URL-safe base64; the generator must draw again.
    draws = iter([bytes([0xF8]) + bytes(15), bytes([0xF9]) * 16, bytes([0x10]) * 16])
    cid = _cluster_id(lambda: next(draws))
    assert cid == "EBAQEBAQEBAQEBAQEBAQEA" and len(cid) == 22
    assert all(not _cluster_id().startswith("-") for _ in range(2000))


@pytest.mark.integration
def test_storage_format_takes_any_cluster_id(tmp_path, monkeypatch):
    """Kafka's own format tool must accept the id even if it looked like an option (CI once drew one)."""
    import pipeline.kafka.broker as broker_mod

    dash_id = "-" + "A" * 21
    monkeypatch.setattr(broker_mod, "_cluster_id", lambda: dash_id)
    b = EmbeddedBroker(Settings.from_env({"TORMENTA_DATA_DIR": str(tmp_path),
                                          "TORMENTA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
                                          "TORMENTA_CONTROLLER_PORT": str(free_port())}))
    b._write_config()
    b._format_storage()
    meta = (b.dir / "logs" / "meta.properties").read_text()
    assert f"cluster.id={dash_id}" in meta


@pytest.mark.integration
def test_broker_lifecycle_topic_and_smoke(tmp_path):
    env = {"TORMENTA_DATA_DIR": str(tmp_path), "TORMENTA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
           "TORMENTA_CONTROLLER_PORT": str(free_port()), "TORMENTA_BROKER_HEAP": "512m"}
    try:
        out = cli("broker", "start", env=env)
        assert out.returncode == 0 and "broker started" in out.stdout, out.stderr
        out = cli("broker", "start", env=env)
        assert out.returncode == 0 and "already running" in out.stdout
        out = cli("topic", "describe", env=env)
        assert out.returncode == 1 and "python -m pipeline topic create" in out.stderr
        out = cli("topic", "create", env=env)
        assert out.returncode == 0 and "partitions=3" in out.stdout and "retention.ms=86400000" in out.stdout
        out = cli("topic", "create", env=env)  # idempotent
        assert out.returncode == 0 and "transactions exists" in out.stdout
        out = cli("smoke", env=env)
        assert out.returncode == 0 and out.stdout.startswith("OK: round trip"), out.stderr
    finally:
        out = cli("broker", "stop", env=env)
    assert "stopped" in out.stdout
    out = cli("broker", "status", env=env)
    assert out.returncode == 3


@pytest.mark.parametrize("args,env,expect", [
    (("broker", "start", "--nodes", "2"), {}, "--nodes=2 is not a node count; allowed: 1, or 3..9"),
    (("broker", "status", "--nodes", "10"), {}, "--nodes=10 is not a node count"),
    (("broker", "status"), {"TORMENTA_BROKER_NODES": "0"}, "TORMENTA_BROKER_NODES='0' is not a node count"),
    (("broker", "start"), {"TORMENTA_BROKER_NODES": "x"}, "allowed: 1, or 3..9"),
    (("broker", "start"), {"TORMENTA_BROKER_NODES": "3", "TORMENTA_CONTROLLER_PORT": "9094"}, "collide"),
    (("topic", "create"), {"TORMENTA_REPLICATION": "many"}, "allowed: auto or 1..9"),
    (("loadtest", "--kill-broker-at", "2", "--scale", "0.1"), {}, "--kill-broker-at needs a cluster"),
])
def test_cluster_bad_input_is_one_line_exit_2(tmp_path, args, env, expect):
    full = {"TORMENTA_DATA_DIR": str(tmp_path), "TORMENTA_BOOTSTRAP_SERVERS": "127.0.0.1:9092", **env}
    started = time.monotonic()
    out = cli(*args, env=full, timeout=30)
    assert out.returncode == 2 and time.monotonic() - started < 20
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and expect in lines[0] and "Traceback" not in out.stderr, out.stderr


def test_cluster_start_refuses_an_occupied_node_port(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # node 2's client port (base + 2) is the one that is taken
        env = {"TORMENTA_DATA_DIR": str(tmp_path), "TORMENTA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port - 2}",
               "TORMENTA_CONTROLLER_PORT": str(port - 1), "TORMENTA_BROKER_NODES": "3"}
        out = cli("broker", "start", env=env, timeout=30)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 1 and len(lines) == 1 and f"port {port}" in lines[0] and "node 2" in lines[0], out.stderr
    assert not list(tmp_path.glob("broker/node-*/broker.pid"))   # nothing was started
