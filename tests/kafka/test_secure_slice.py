"""The whole slice over SASL_SSL on the secured embedded broker, each client as its own least-privilege user.

Smoke round trip (admin), emulator (producer user) -> job (job user) -> Delta, the app's health
checks and storm control (app user); then the refusals a user meets: a wrong password, a CA
that did not sign the broker's certificate, a user without the ACL. Each refusal is one line
naming its cause, within 15 s, with no traceback and no retry loop.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from pipeline.kafka import certs
from pipeline.kafka.security import client_config, kafka_auth
from pipeline.kafka.topic import ensure_topic, log_end_offsets
from pipeline.settings import PROJECT_ROOT, Settings

pytestmark = pytest.mark.integration
REFUSAL_BUDGET_S = 15.0


@pytest.fixture
def secured(secure_broker: Settings, tmp_path: Path) -> Settings:
    """Settings on the session's secured broker: fresh topics, a fresh data folder that sees the
    broker's client file (so each process acts as the user of its role)."""
    suffix = uuid.uuid4().hex[:8]
    data = tmp_path / "data"
    data.mkdir()
    (data / "secure").symlink_to(secure_broker.data_dir / "secure", target_is_directory=True)
    settings = secure_broker.replace(data_dir=data, topic=f"tx-{suffix}", control_topic=f"ctl-{suffix}",
                                     status_topic=f"status-{suffix}", trigger_interval=1.0, compact_every=0)
    from pipeline.emulator.control import ensure_control_topics
    from pipeline.kafka.secure import grant_acls

    ensure_topic(settings)
    ensure_control_topics(settings)
    grant_acls(settings)  # the ACL table names the topics of these settings
    return settings


def _env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TORMENTA_")}
    env["TORMENTA_METRICS_PORT"] = "0"  # no metrics endpoint: tests never bind the product's ports
    env.update({"TORMENTA_BOOTSTRAP_SERVERS": settings.bootstrap_servers, "TORMENTA_TOPIC": settings.topic,
                "TORMENTA_CONTROL_TOPIC": settings.control_topic, "TORMENTA_STATUS_TOPIC": settings.status_topic,
                "TORMENTA_DATA_DIR": str(settings.data_dir), "TORMENTA_CONTROLLER_PORT": str(settings.controller_port),
                "TORMENTA_TRIGGER_INTERVAL": "1s", "TORMENTA_COMPACT_EVERY": "0", "TORMENTA_DRIVER_MEMORY": "1g",
                "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


def _cli(settings: Settings, *args: str, timeout: float = 180, **env: str) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=PROJECT_ROOT, env=_env(settings, **env),
                         capture_output=True, text=True, timeout=timeout)
    return out, time.monotonic() - t0


def _as_user(settings: Settings, role: str, **overrides: str) -> dict[str, str]:
    """Explicit TORMENTA_KAFKA_* variables for `role`'s user of the secured broker (then `overrides`)."""
    auth = kafka_auth(settings, role)
    env = {"TORMENTA_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "TORMENTA_KAFKA_SASL_MECHANISM": auth.mechanism,
           "TORMENTA_KAFKA_USERNAME": auth.username, "TORMENTA_KAFKA_PASSWORD": auth.password.get_secret_value(),
           "TORMENTA_KAFKA_CA_FILE": str(auth.ca_file)}
    env.update(overrides)
    return env


def test_smoke_round_trip_as_the_admin(secured):
    out, _ = _cli(secured, "smoke", "--timeout", "30")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"OK: round trip through {secured.bootstrap_servers}")


def test_emulator_to_job_to_delta_each_as_its_own_user(secured):
    from deltalake import DeltaTable

    emu, _ = _cli(secured, "emulate", "--full-speed", "--max-records", "3000", "--quiet", "--seed", "7",
                  "--record-ids", str(secured.data_dir / "ids.txt"))
    assert emu.returncode == 0, emu.stderr
    produced = sum(log_end_offsets(secured, role="app").values())
    assert produced == 3000
    high = set((secured.data_dir / "ids.txt").read_text().split())
    assert high, "the sample has sales over the threshold"
    job, _ = _cli(secured, "job", "--once", "--query", "high_value", timeout=420)
    assert job.returncode == 0, job.stderr[-3000:]
    table = DeltaTable(str(secured.table_path("high_value"))).to_pyarrow_table(columns=["transaction_id"])
    assert set(table.column("transaction_id").to_pylist()) == high


def test_app_health_and_storm_control_as_the_app_user(secured):
    from pipeline.emulator.control import EmulatorControl
    from pipeline.read import health

    part, facts = health.topic_health(secured, broker_up=True, timeout=10)
    assert part.state == health.UP and facts.partitions == secured.partitions, part
    with EmulatorControl(secured, "slice", role="app") as ctl:
        assert kafka_auth(secured, ctl.role).username == "tormenta-app"
        state = ctl.update(rate=1234)
        assert state.rate == 1234
    with EmulatorControl(secured, "slice", role="app") as again:
        assert again.desired_state().rate == 1234


def _refused(out: subprocess.CompletedProcess, seconds: float, cause: str) -> str:
    assert out.returncode != 0, out.stdout
    lines = out.stderr.strip().splitlines()
    assert seconds < REFUSAL_BUDGET_S, f"took {seconds:.1f}s: {out.stderr[-2000:]}"
    assert "Traceback" not in out.stderr and len(lines) == 1, out.stderr[-3000:]
    assert cause in lines[0], lines[0]
    return lines[0]


def test_a_wrong_password_is_one_line_naming_it(secured):
    out, took = _cli(secured, "smoke", **_as_user(secured, "admin", TORMENTA_KAFKA_PASSWORD="not-the-password"))
    _refused(out, took, "Kafka authentication failed for user 'tormenta-admin'")


def test_a_broker_certificate_from_another_ca_is_one_line_naming_it(secured, tmp_path):
    _, other_ca = certs.make_ca()
    (tmp_path / "other-ca.pem").write_bytes(certs.cert_pem(other_ca))
    out, took = _cli(secured, "smoke", **_as_user(secured, "admin", TORMENTA_KAFKA_CA_FILE=str(tmp_path / "other-ca.pem")))
    line = _refused(out, took, "the broker's TLS certificate is not trusted by the CA bundle")
    assert "other-ca.pem" in line


def test_a_user_without_the_acl_is_one_line_naming_the_topic(secured):
    # The app user may not write transactions: the emulator started as the app is refused.
    out, took = _cli(secured, "emulate", "--max-records", "10", "--quiet", "--no-control", **_as_user(secured, "app"))
    _refused(out, took, f"user 'tormenta-app' is not authorised for topic {secured.topic}")
    # The producer user may not read them: the job started as the producer is refused before Spark starts.
    out, took = _cli(secured, "job", "--once", **_as_user(secured, "producer"))
    _refused(out, took, f"user 'tormenta-producer' is not authorised for topic {secured.topic}")


def test_a_plaintext_client_on_the_secured_port_gets_no_data(secured):
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    plain = {k: v for k, v in client_config(secured, "admin").items() if k == "bootstrap.servers"}
    with pytest.raises(KafkaException):
        AdminClient({**plain, "socket.timeout.ms": 2000}).list_topics(timeout=3)
