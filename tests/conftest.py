"""Shared fixtures: a real Kafka broker per test session, unique topics per test, one Spark session;
more in the tests/support modules listed in `pytest_plugins` (secured broker, sample transactions,
the dashboard's demo data, the whole-product run the supervision and monitoring tests share).

Integration tests start the real embedded broker (Maven jars) on free loopback ports in a
temporary folder and stop it afterwards, also when a test fails.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from pipeline.kafka.broker import EmbeddedBroker
from pipeline.kafka.topic import ensure_topic
from pipeline.metrics.ports import SPAN
from pipeline.settings import Settings
from tests.support.ports import free_port, port_run
from tests.support.stack import make_settings

# Fixtures defined in tests/support, available to every test.
pytest_plugins = ["tests.support.secure_fixtures", "tests.support.emulator_fixtures", "tests.support.apptest",
                  "tests.support.product_run"]

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    """A real single-node KRaft broker for the whole session; yields its Settings."""
    data = tmp_path_factory.mktemp("broker-data")
    # Its own metrics base (a run of free ports): the JMX exporter agent serves at base + 10.
    settings = make_settings(data, bootstrap_servers=f"127.0.0.1:{free_port()}", controller_port=free_port(),
                             broker_heap="768m", metrics_port=port_run(SPAN))
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
