"""In-memory sink and control link, to run the emulator loop in unit tests without a broker; `late_by`.

The idea of bytewax's testing sources and sinks: the emulator takes any `Sink` and any
`ControlLink`, so a test runs the real loop (pacing, binarizer, fault knobs, status) and
asserts on the messages collected here.

    sink, control = MemorySink(), MemoryControl(settings)
    StormEmulator(settings, sink=sink, control=control, changes={"rate": 1000}).run(duration=1)
    assert len(sink.values) == 1000
"""

from __future__ import annotations

import collections
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from pipeline.contract.fields import EVENT_TIME
from pipeline.contract.validate import validate
from pipeline.emulator.binarizer import EncodedBatch, transaction_id_of
from pipeline.emulator.control import DesiredState, LocalControl
from pipeline.settings import Settings


class MemorySink:
    """Collects every message; each is "delivered" when reports are served (or fails, if told to)."""

    def __init__(self, fail_every: int = 0):
        self.keys: list[bytes | None] = []
        self.values: list[bytes] = []
        self.high: list[bool] = []
        self.high_ids: list[str] = []  # transaction ids of delivered high messages
        self.fail_every = fail_every
        self.delivered = self.failed = self.high_delivered = self.backpressure_waits = 0
        self.failed_reasons: collections.Counter[str] = collections.Counter()
        self.sends = self.polls = 0
        self._pending = 0

    def send(self, batch: EncodedBatch) -> int:
        self.sends += 1
        self.keys += batch.keys
        self.values += batch.values
        self.high += batch.high
        self._pending += len(batch)
        self.poll(0)  # like StormProducer.send, which serves the reports that are ready
        return len(batch)

    def poll(self, timeout: float = 0.0) -> int:
        self.polls += 1
        served = self._pending
        for i in range(len(self.values) - served, len(self.values)):
            if self.fail_every and (i + 1) % self.fail_every == 0:
                self.failed += 1
                self.failed_reasons["_MEMORY_FAIL"] += 1
            else:
                self.delivered += 1
                if self.high[i]:
                    self.high_delivered += 1
                    self.high_ids.append(transaction_id_of(self.values[i]) or "")
        self._pending = 0
        return served

    def flush(self, timeout: float = 30.0) -> int:
        self.poll(0)
        return 0

    def queue_depth(self) -> int:
        return self._pending

    def latency_ms(self) -> tuple[float | None, float | None]:
        return (0.0, 0.0) if self.delivered else (None, None)


class MemoryControl(LocalControl):
    """A control link in memory: `set()` is seen by the emulator's next poll; statuses are kept."""

    def __init__(self, settings: Settings):
        super().__init__(settings)
        self.state: DesiredState | None = None
        self._new: DesiredState | None = None
        self.statuses: list[dict[str, Any]] = []
        self.closed = False

    def start(self, changes: dict[str, Any]) -> DesiredState:
        self.state = super().start(changes)
        return self.state

    def set(self, **changes: Any) -> DesiredState:
        current = self.state or DesiredState.defaults(self.settings)
        self.state = self._new = replace(current.with_changes(changes), version=current.version + 1)
        return self.state

    def poll(self) -> DesiredState | None:
        new, self._new = self._new, None
        return new

    def publish(self, status: dict[str, Any]) -> None:
        self.statuses.append(status)

    def close(self) -> None:
        self.closed = True


def late_by(value: bytes, now: datetime | None = None) -> timedelta:
    """How far a message's event time lies behind `now`, in either wire format."""
    now = now or datetime.now(UTC)
    return now - validate(value)[EVENT_TIME]
