"""Shared fixtures: a real Kafka broker per test session, unique topics per test, one Spark session.

Integration tests start the real embedded broker (Maven jars) on free loopback ports in a
temporary folder and stop it afterwards, also when a test fails.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from pipeline.kafka.broker import EmbeddedBroker
from pipeline.kafka.topic import ensure_topic
from pipeline.settings import Settings
from tests.support.ports import free_port
from tests.support.secure_fixtures import secure_broker  # noqa: F401 - the session's secured broker fixture

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def make_settings(data_dir: Path, **env: str) -> Settings:
    base = {"TORMENTA_DATA_DIR": str(data_dir)}
    base.update({f"TORMENTA_{k.upper()}": str(v) for k, v in env.items()})
    return Settings.from_env(base)


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    """A real single-node KRaft broker for the whole session; yields its Settings."""
    data = tmp_path_factory.mktemp("broker-data")
    settings = make_settings(data, bootstrap_servers=f"127.0.0.1:{free_port()}", controller_port=free_port(),
                             broker_heap="768m")
    b = EmbeddedBroker(settings)
    b.start()
    try:
        yield settings
    finally:
        b.stop()


@pytest.fixture
def stack(broker, tmp_path) -> Settings:
    """Settings on the session broker with a fresh topic name and data folder for this test."""
    suffix = uuid.uuid4().hex[:8]
    settings = broker.replace(
        data_dir=tmp_path / "data", topic=f"tx-{suffix}", control_topic=f"ctl-{suffix}",
        status_topic=f"status-{suffix}", trigger_interval=1.0, compact_every=0,
    )
    ensure_topic(settings)
    return settings


def produce(settings: Settings, values: list, topic: str | None = None) -> None:
    """Produce raw values (dict -> contract JSON, str/bytes as they are) and wait for delivery."""
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": settings.bootstrap_servers, "enable.idempotence": True, "acks": "all"})
    errors = []
    for v in values:
        key = v.get("person_id", "k").encode() if isinstance(v, dict) else None
        raw = json.dumps(v).encode() if isinstance(v, dict) else (v.encode() if isinstance(v, str) else v)
        p.produce(topic or settings.topic, raw, key=key, on_delivery=lambda e, m: e and errors.append(e))
    assert p.flush(30) == 0 and not errors, errors


def tx(tid: str, amount, ts: str = "2026-11-24T19:12:03.123456Z", **extra) -> dict:
    return {"transaction_id": tid, "person_id": extra.pop("person_id", "P1"), "merchant_id": "M1",
            "amount": amount, "timestamp": ts, **extra}


@pytest.fixture(scope="session")
def spark_session(tmp_path_factory):
    """One SparkSession for the test session (the job's own factory), stopped at the end."""
    from pipeline.job.spark import build_spark

    settings = make_settings(tmp_path_factory.mktemp("spark"), driver_memory="2g")
    spark = build_spark(settings, "tormenta-tests")
    yield spark
    spark.stop()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
