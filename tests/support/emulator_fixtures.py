"""Helpers for the emulator's tests: the sample transactions (fixture `samples`, registered in
tests/conftest.py), read a topic back, run an emulator in a thread."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from pipeline.kafka.topic import log_end_offsets
from pipeline.settings import Settings

SAMPLE_FILE = Path(__file__).resolve().parents[2] / "samples" / "transactions.jsonl.gz"


@pytest.fixture(scope="session")
def samples() -> list[dict]:
    """The sample transactions the emulator draws from, loaded once per session (treat as read-only)."""
    from pipeline.emulator.sources import load_samples

    return load_samples(SAMPLE_FILE)


def topic_count(settings: Settings, topic: str | None = None) -> int:
    return sum(log_end_offsets(settings, topic).values())


def read_all(settings: Settings, topic: str | None = None, timeout: float = 20.0) -> list:
    """Every message of a topic (all partitions), as confluent_kafka Message objects."""
    from confluent_kafka import Consumer, TopicPartition

    topic = topic or settings.topic
    ends = log_end_offsets(settings, topic)
    c = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": "emulator-tests",
                  "enable.auto.commit": False})
    try:
        c.assign([TopicPartition(topic, p, 0) for p in ends])
        out, want = [], sum(ends.values())
        deadline = time.monotonic() + timeout
        while len(out) < want and time.monotonic() < deadline:
            out.extend(m for m in c.consume(2000, 0.5) if m.error() is None)
        assert len(out) == want, f"read {len(out)} of {want} messages from {topic}"
        return out
    finally:
        c.close()


class Background:
    """Run StormEmulator.run() in a thread; always stopped and joined by the test."""

    def __init__(self, emulator, **run_kwargs):
        self.emulator = emulator
        self.stop = threading.Event()
        self.summary: dict | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, kwargs=run_kwargs, daemon=True)

    def _run(self, **kwargs) -> None:
        try:
            self.summary = self.emulator.run(stop_event=self.stop, **kwargs)
        except BaseException as exc:  # surfaced by join()
            self.error = exc

    def __enter__(self) -> Background:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(60)

    def join(self, timeout: float = 30.0) -> dict:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "emulator did not stop"
        if self.error:
            raise self.error
        return self.summary
