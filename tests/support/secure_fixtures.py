"""A secured embedded broker for the test session (SASL_SSL, SCRAM users, ACLs), shared by every test that wants one.

`secure_broker` starts one real single-node KRaft broker with ``--secure`` semantics on free
loopback ports in a temporary data folder and yields its Settings: their data folder holds
``secure/clients.json``, so `pipeline.kafka.security.client_config(settings, role)` gives each
role its own user. The ACL table is granted for the default topic names; a test that uses
other topics calls `pipeline.kafka.secure.grant_acls(its_settings)`.
"""

from __future__ import annotations

import pytest

from pipeline.kafka.broker import EmbeddedBroker
from pipeline.settings import Settings
from tests.support.ports import free_port


def secure_settings(data_dir, **env: str) -> Settings:
    base = {"TORMENTA_DATA_DIR": str(data_dir), "TORMENTA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
            "TORMENTA_CONTROLLER_PORT": str(free_port()), "TORMENTA_BROKER_HEAP": "512m",
            "TORMENTA_METRICS_PORT": "0"}  # no JMX agent on the product's default port (env may give a base)
    base.update({f"TORMENTA_{k.upper()}": str(v) for k, v in env.items()})
    return Settings.from_env(base)


@pytest.fixture(scope="session")
def secure_broker(tmp_path_factory):
    """A real secured single-node broker for the whole session; yields its Settings."""
    settings = secure_settings(tmp_path_factory.mktemp("secure-broker"))
    broker = EmbeddedBroker(settings, secure=True)
    broker.start()
    try:
        yield settings
    finally:
        broker.stop()
