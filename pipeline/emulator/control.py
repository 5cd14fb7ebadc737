"""Live control of a running storm emulator from another process.

The *desired state* lives in a compacted Kafka topic (``settings.control_topic``), one
record per emulator name (key ``"default"``), value a JSON object::

    {"state": "running" | "paused" | "stopped",
     "rate": 10000.0,                  # base rate, tx/s (the profile shapes it)
     "ingest_interval": 1.0,           # tick, seconds (records per tick = rate x tick)
     "profile": {"name": "steady"},    # see pipeline.emulator.presets
     "faults": {"duplicates": 0.0, "malformed": 0.0, "late": 0.0, "late_seconds": 900},
     "version": 7, "updated_at": "2026-11-24T19:12:03Z",
     "changed_by": "olga@example.com", "changed_at": "2026-11-24T19:12:03Z",   # who wrote it, when
     "audit": [{"version": 7, "changed_by": ..., "changed_at": ..., "change": {"rate": [2000.0, 10000.0]}}, ...]}

The audit list (the last changes, newest first) travels from record to record, so the
Storm control page can show who changed what even after compaction dropped old records.
The emulator reads only the desired-state keys and ignores the audit keys.

Because the topic is compacted, the last desired state survives a restart of the
emulator, the dashboard or the broker. The emulator follows the topic with a consumer it
polls every few milliseconds, so a change takes effect well within a second.

The emulator publishes one JSON status per second to ``settings.status_topic`` (key = the
name); `EmulatorControl.latest_status()` and `status_history()` read them back for the
dashboard and the ``storm status`` command.

    with EmulatorControl(settings) as ctl:
        ctl.set_desired(rate=50_000, profile={"name": "spike", "factor": 3})
        print(ctl.latest_status())

In the emulator the desired state is a `DesiredState` dataclass (with `Faults`); the
dashboard API (`desired()`, `set_desired()`) keeps speaking the JSON-like dict. The
emulator talks to control through a `ControlLink`: `KafkaControlLink` (the topics above)
or `LocalControl` (a standalone run, ``--no-control``).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from pipeline.emulator.audit import local_user, signed
from pipeline.emulator.presets import MAX_RATE, check_number, make_profile, preset_rate
from pipeline.errors import EmulatorError, SettingsError
from pipeline.kafka.security import client_config
from pipeline.settings import Settings

log = logging.getLogger(__name__)

STATES = ("running", "paused", "stopped")
FAULT_SHARES = ("duplicates", "malformed", "late")
CHANGE_KEYS = ("state", "rate", "per_tick", "ingest_interval", "preset", "profile", "faults")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Faults:
    """The fault knobs: shares of the records (0..1) and how late a late event is (s)."""

    duplicates: float = 0.0
    malformed: float = 0.0
    late: float = 0.0
    late_seconds: float = 900.0

    def with_changes(self, changes: Any) -> Faults:
        if not isinstance(changes, dict):
            raise SettingsError(f"faults={changes!r} must be an object like {{\"duplicates\": 0.01}}")
        bad = sorted(set(changes) - {*FAULT_SHARES, "late_seconds"})
        if bad:
            raise SettingsError(f"unknown fault {', '.join(bad)}; allowed: {', '.join(FAULT_SHARES)}, late_seconds")
        checked = {key: check_number("late_seconds", value, 0, 30 * 86400) if key == "late_seconds"
                   else check_number(f"faults.{key}", value, 0, 1) for key, value in changes.items()}
        return replace(self, **checked)


@dataclass(frozen=True)
class DesiredState:
    """What the emulator should do: the record of one emulator name in the control topic."""

    rate: float  # base rate, tx/s (the profile shapes it)
    ingest_interval: float  # the tick, seconds
    state: str = "running"
    profile: dict[str, Any] = field(default_factory=lambda: {"name": "steady"})
    faults: Faults = Faults()
    version: int = 0
    updated_at: str | None = None

    @classmethod
    def defaults(cls, settings: Settings) -> DesiredState:
        return cls(rate=float(settings.emulator_rate), ingest_interval=float(settings.ingest_interval))

    @property
    def per_tick(self) -> float:
        return self.rate * self.ingest_interval

    def as_dict(self) -> dict[str, Any]:
        """The JSON form written to the control topic (and shown by `storm show`)."""
        return {"state": self.state, "rate": self.rate, "ingest_interval": self.ingest_interval,
                "profile": dict(self.profile), "faults": asdict(self.faults), "version": self.version,
                "updated_at": self.updated_at}

    def with_changes(self, changes: dict[str, Any]) -> DesiredState:
        """Validate `changes` and return the merged state (version not bumped)."""
        unknown = sorted(set(changes) - set(CHANGE_KEYS))
        if unknown:
            raise SettingsError(f"unknown emulator setting {', '.join(unknown)}; allowed: {', '.join(CHANGE_KEYS)}")
        changes = {k: v for k, v in changes.items() if v is not None}
        new: dict[str, Any] = {}
        if "state" in changes:
            if changes["state"] not in STATES:
                raise SettingsError(f"state={changes['state']!r} is not allowed; allowed: {', '.join(STATES)}")
            new["state"] = changes["state"]
        if "ingest_interval" in changes:
            new["ingest_interval"] = check_number("ingest_interval", changes["ingest_interval"], 0, 3600,
                                                  lo_open=True)
        rate = _rate_of(changes, new.get("ingest_interval", self.ingest_interval))
        if rate is not None:
            new["rate"] = rate
        if "profile" in changes:
            new["profile"] = make_profile(changes["profile"]).as_dict()
        if "faults" in changes:
            new["faults"] = self.faults.with_changes(changes["faults"])
        return replace(self, **new)

    @classmethod
    def from_wire(cls, settings: Settings, raw: Any) -> DesiredState:
        """A desired state read from the topic, merged over the defaults and validated."""
        if not isinstance(raw, dict):
            raise SettingsError("desired state is not a JSON object")
        changes = {k: raw[k] for k in CHANGE_KEYS if k in raw and k not in ("per_tick", "preset")}
        state = cls.defaults(settings).with_changes(changes)
        return replace(state, version=int(raw.get("version") or 0), updated_at=raw.get("updated_at"))


def _rate_of(changes: dict[str, Any], ingest_interval: float) -> float | None:
    """The base rate given by one of rate, per_tick (over the interval) or preset; None if none."""
    given = [k for k in ("rate", "per_tick", "preset") if k in changes]
    if len(given) > 1:
        raise SettingsError(f"give only one of rate, per_tick and preset (got {', '.join(given)})")
    if "rate" in changes:
        return check_number("rate", changes["rate"], 0, MAX_RATE)
    if "per_tick" in changes:
        per_tick = check_number("per_tick", changes["per_tick"], 0, MAX_RATE * 3600)
        return check_number("rate (per_tick / ingest_interval)", per_tick / ingest_interval, 0, MAX_RATE)
    if "preset" in changes:
        return preset_rate(changes["preset"])
    return None


def _consumer(settings: Settings, role: str):
    from confluent_kafka import Consumer

    return Consumer(client_config(settings, role, {
        "group.id": "tormenta-emulator-control", "enable.auto.commit": False, "enable.partition.eof": False,
        "fetch.wait.max.ms": 50, "socket.timeout.ms": 5000}))


def ensure_control_topics(settings: Settings, role: str = "admin") -> None:
    from pipeline.kafka.topic import ensure_topic

    ensure_topic(settings, settings.control_topic, partitions=1,
                 config={"cleanup.policy": "compact", "retention.ms": "-1"}, role=role)
    ensure_topic(settings, settings.status_topic, partitions=1,
                 config={"cleanup.policy": "delete", "retention.ms": str(6 * 3600 * 1000)}, role=role)


def _read_range(consumer, topic: str, start: int, end: int, timeout: float = 10.0) -> list:
    """Messages of partition 0 in [start, end)."""
    from confluent_kafka import TopicPartition

    if end <= start:
        return []
    consumer.assign([TopicPartition(topic, 0, start)])
    out: list = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # consume() waits until it has num_messages or the timeout passed: ask for exactly
        # what is left, so a read of a few records returns as soon as they arrive.
        left = end - (out[-1].offset() + 1 if out else start)
        for msg in consumer.consume(num_messages=max(1, min(1000, left)), timeout=0.2):
            if msg.error() is None:
                out.append(msg)
                if msg.offset() >= end - 1:
                    return out
        if out and out[-1].offset() >= end - 1:
            return out
        # Compaction can leave gaps: stop once the fetch position has passed the end.
        if consumer.position([TopicPartition(topic, 0)])[0].offset >= end:
            return out
    raise EmulatorError(f"reading {topic} timed out after {timeout:.0f}s (offsets {start}..{end})")


def _state_of(settings: Settings, msg) -> DesiredState | None:
    """The desired state in one control message; a tombstone means the defaults; None if invalid."""
    if msg.value() is None:
        return DesiredState.defaults(settings)
    try:
        return DesiredState.from_wire(settings, json.loads(msg.value()))
    except (ValueError, SettingsError) as exc:
        log.warning("ignoring invalid desired state at %s offset %d: %s", msg.topic(), msg.offset(), exc)
        return None


class EmulatorControl:
    """Read and write the desired state of one emulator; read its published status."""

    def __init__(self, settings: Settings, name: str = "default", role: str = "app"):
        if not name:
            raise SettingsError("emulator name must not be empty")
        self.settings = settings
        self.role = role  # Kafka identity: the app, the emulator's producer, or the admin (CLI, load test)
        self.name = name
        self._key = name.encode()
        self._consumer = None
        self._producer = None
        self._topics_ready = False

    # ---- lifecycle ------------------------------------------------------------------
    def _ready(self) -> None:
        if not self._topics_ready:
            ensure_control_topics(self.settings, self.role)
            self._topics_ready = True

    def _get_consumer(self):
        self._ready()
        if self._consumer is None:
            self._consumer = _consumer(self.settings, self.role)
        return self._consumer

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
        if self._producer is not None:
            self._producer.flush(5)
            self._producer.purge()   # what 5 s did not deliver was already reported; close() would wait for it
            self._producer.close()
            self._producer = None

    def __enter__(self) -> EmulatorControl:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- desired state ----------------------------------------------------------------
    def desired_state(self) -> DesiredState:
        """The latest desired state in the control topic (the defaults if nothing was written)."""
        return self._latest()[0]

    def _latest(self) -> tuple[DesiredState, dict[str, Any]]:
        """The latest desired state and its raw record ({} for none or a tombstone), which carries the audit."""
        from confluent_kafka import TopicPartition

        consumer = self._get_consumer()
        topic = self.settings.control_topic
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        state, raw = DesiredState.defaults(self.settings), {}
        for msg in _read_range(consumer, topic, low, high):
            if msg.key() == self._key:
                found = _state_of(self.settings, msg)
                if found is not None:
                    state, raw = found, (json.loads(msg.value()) if msg.value() is not None else {})
        return state, raw

    def desired(self) -> dict[str, Any]:
        """`desired_state()` as the JSON-like dict the dashboard shows."""
        return self.desired_state().as_dict()

    def update(self, *, changed_by: str | None = None, **changes: Any) -> DesiredState:
        """Validate `changes`, merge them into the current state, bump the version and write it.

        The record carries who made the change, as the caller says (`changed_by`: the signed-in
        user's e-mail in the dashboard; None = this process's OS account, `audit.local_user()`),
        when (`changed_at`, UTC) and the audit trail (`pipeline.emulator.audit`)."""
        current, raw = self._latest()
        state = replace(current.with_changes(changes), version=current.version + 1, updated_at=now_iso())
        self._write(signed(current.as_dict(), state.as_dict(), raw, changed_by or local_user()))
        return state

    def set_desired(self, *, changed_by: str | None = None, **changes: Any) -> dict[str, Any]:
        """`update()` for the dashboard and the CLI: returns the written state as a dict."""
        return self.update(changed_by=changed_by, **changes).as_dict()

    def audit_trail(self, limit: int = 10) -> list[dict[str, Any]]:
        """The last `limit` changes of the desired state, newest first (who, when, what changed)."""
        trail = self._latest()[1].get("audit")
        return [e for e in trail if isinstance(e, dict)][:limit] if isinstance(trail, list) else []

    def _write(self, state: dict[str, Any]) -> None:
        from confluent_kafka import Producer

        self._ready()
        if self._producer is None:
            self._producer = Producer(client_config(self.settings, self.role, {"acks": "all", "linger.ms": 0}))
        errors: list = []
        self._producer.produce(self.settings.control_topic, json.dumps(state).encode(), key=self._key,
                               on_delivery=lambda err, msg: err and errors.append(err))
        if self._producer.flush(10) or errors:
            reason = errors[0].str() if errors else "timed out"
            raise EmulatorError(f"writing the desired state to {self.settings.control_topic} failed: {reason}")

    # ---- status -----------------------------------------------------------------------
    def _statuses_since(self, since_epoch: float) -> list[dict[str, Any]]:
        from confluent_kafka import TopicPartition

        consumer = self._get_consumer()
        topic = self.settings.status_topic
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        if high <= low:
            return []
        found = consumer.offsets_for_times([TopicPartition(topic, 0, int(since_epoch * 1000))], timeout=10)
        start = found[0].offset
        if start < 0:  # nothing at or after that time
            return []
        out = []
        for msg in _read_range(consumer, topic, max(start, low), high):
            if msg.key() != self._key or msg.value() is None:
                continue
            try:
                status = json.loads(msg.value())
            except ValueError:
                continue
            if isinstance(status, dict):
                out.append(status)
        return out

    def latest_status(self, max_age_s: float = 5.0) -> dict[str, Any] | None:
        statuses = self._statuses_since(time.time() - max_age_s)
        return statuses[-1] if statuses else None

    def status_history(self, seconds: float = 300) -> list[dict[str, Any]]:
        return self._statuses_since(time.time() - seconds)


class ControlFollower:
    """The emulator's side: follows the control topic and reports new desired states."""

    def __init__(self, settings: Settings, name: str = "default"):
        from confluent_kafka import TopicPartition

        self.settings = settings
        self._key = name.encode()
        ensure_control_topics(settings, "producer")
        self._consumer = _consumer(settings, "producer")
        self._consumer.assign([TopicPartition(settings.control_topic, 0, -2)])  # OFFSET_BEGINNING
        self.version: int | None = None

    def poll(self) -> DesiredState | None:
        """The newest desired state received since the last call, or None (never blocks)."""
        newest = None
        for msg in self._consumer.consume(num_messages=100, timeout=0):
            if msg.error() is None and msg.key() == self._key:
                newest = _state_of(self.settings, msg) or newest
        if newest is not None:
            self.version = newest.version
        return newest

    def close(self) -> None:
        self._consumer.close()


class StatusPublisher:
    """Publishes the emulator's status (one JSON per call) to the status topic."""

    def __init__(self, settings: Settings, name: str = "default"):
        from confluent_kafka import Producer

        self.topic = settings.status_topic
        self._key = name.encode()
        self.failed = 0
        self._producer = Producer(client_config(settings, "producer", {"acks": "1", "linger.ms": 0,
                                                                       "message.timeout.ms": 10_000}))

    def _report(self, err, msg) -> None:
        if err is not None:
            self.failed += 1

    def publish(self, status: dict[str, Any]) -> None:
        try:
            self._producer.produce(self.topic, json.dumps(status).encode(), key=self._key, on_delivery=self._report)
        except BufferError:
            self.failed += 1
        self._producer.poll(0)

    def close(self) -> None:
        self._producer.flush(5)
        self._producer.purge()   # a status is worth nothing late; close() would wait for its timeout
        self._producer.close()


class ControlLink(Protocol):
    """The emulator's side of control: its starting state, new states, and where status goes."""

    def start(self, changes: dict[str, Any]) -> DesiredState:
        """The state to start from, with the explicit `changes` (e.g. from the command line) merged in."""
        ...

    def poll(self) -> DesiredState | None:
        """A new desired state, or None (never blocks)."""
        ...

    def publish(self, status: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class LocalControl:
    """No control topic: the defaults plus the given changes, for the whole run; status is not published."""

    def __init__(self, settings: Settings):
        self.settings = settings

    def start(self, changes: dict[str, Any]) -> DesiredState:
        return DesiredState.defaults(self.settings).with_changes(changes)

    def poll(self) -> DesiredState | None:
        return None

    def publish(self, status: dict[str, Any]) -> None:
        return None

    def close(self) -> None:
        return None


class KafkaControlLink:
    """The control topic (desired state, followed live) and the status topic of one emulator name."""

    def __init__(self, settings: Settings, name: str = "default"):
        self.settings, self.name = settings, name
        self._follower: ControlFollower | None = None
        self._publisher: StatusPublisher | None = None

    def start(self, changes: dict[str, Any]) -> DesiredState:
        with EmulatorControl(self.settings, self.name, role="producer") as ctl:
            state = ctl.desired_state()
            changes = dict(changes)
            # Starting the emulator is a request to run: a "stopped" left from last time is lifted.
            if state.state == "stopped" and "state" not in changes:
                changes["state"] = "running"
            if changes:
                state = ctl.update(**changes)
        self._follower = ControlFollower(self.settings, self.name)
        self._publisher = StatusPublisher(self.settings, self.name)
        return state

    def poll(self) -> DesiredState | None:
        return self._follower.poll() if self._follower is not None else None

    def publish(self, status: dict[str, Any]) -> None:
        if self._publisher is not None:
            self._publisher.publish(status)

    def close(self) -> None:
        if self._publisher is not None:
            self._publisher.close()
        if self._follower is not None:
            self._follower.close()
        self._publisher = self._follower = None
