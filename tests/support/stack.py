"""Settings, records and a producer for the tests that talk to a real broker (the fixtures are in tests/conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.settings import Settings


def make_settings(data_dir: Path, **env: str) -> Settings:
    """Settings read only from TORMENTA_DATA_DIR=`data_dir` and `env` (keys without the prefix).

    Metrics are off (TORMENTA_METRICS_PORT=0) unless `env` gives a base port: a test never
    binds the product's default ports."""
    base = {"TORMENTA_DATA_DIR": str(data_dir), "TORMENTA_METRICS_PORT": "0"}
    base.update({f"TORMENTA_{k.upper()}": str(v) for k, v in env.items()})
    return Settings.from_env(base)


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
    """A contract transaction as a dict (person P1, merchant M1 unless given)."""
    return {"transaction_id": tid, "person_id": extra.pop("person_id", "P1"), "merchant_id": "M1",
            "amount": amount, "timestamp": ts, **extra}
