"""The storm emulator: client source -> binarizer -> fault injection -> sink (producer) -> topic.

`StormEmulator.run()` is one long-lived loop cut in *slices* of `slice_s` (20 ms). Each slice

1. polls the control link (a new desired state -- rate, profile, pause, resume, stop,
   faults -- takes effect at once, without a restart),
2. asks the drift-free `Pacer` how many records are owed and fetches that many from the
   source (at most `chunk_max` per chunk), encodes them in the wire format
   (``settings.wire_format``: json or avro), applies the fault knobs and hands the whole
   chunk to the sink in one call,
3. serves the delivery reports once, and sleeps until the next slice: the loop never
   spins, so the cores stay with the broker and the streaming job. Only at full speed, for
   a self-paced source with records ready, or with a backlog of more than one chunk does
   it go straight on.

Once per second it publishes a status record (target vs achieved rate, delivered, failed
with reasons, queue depth, delivery latency p50/p99, per-minute counts, wire format).

It ends on `duration`, `max_records`, a set `stop_event` (SIGINT/SIGTERM in the CLI), a
"stopped" desired state, or an exhausted replay; then it flushes the sink and returns a
summary. Run it with ``python -m pipeline emulate`` (see docs/EMULATOR.md). The sink and
the control link are pluggable: the tests' `tests/support/memory.py` has in-memory ones, so the
loop runs in unit tests without a broker.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from pipeline.contract.wire import WIRE_FORMATS
from pipeline.emulator.binarizer import make_binarizer
from pipeline.emulator.control import ControlLink, DesiredState, KafkaControlLink, LocalControl, now_iso
from pipeline.emulator.faults import FaultInjector
from pipeline.emulator.pacing import Pacer
from pipeline.emulator.presets import make_profile
from pipeline.emulator.producer import Sink, StormProducer
from pipeline.emulator.sources import ClientSource, EmulatorSource
from pipeline.errors import EmulatorError
from pipeline.kafka.security import KafkaAccessError
from pipeline.settings import Settings

log = logging.getLogger(__name__)


def _minute_iso(minute: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:00Z", time.gmtime(minute * 60))


@dataclass
class _Run:
    """Everything one call of `run()` keeps between slices."""

    desired: DesiredState
    link: ControlLink
    sink: Sink
    pacer: Pacer
    t0: float
    ids_file: IO[str] | None = None
    profile_start: float = 0.0
    records: int = 0
    sent: int = 0
    over_sent: int = 0
    by_minute: dict[int, list[int]] = field(default_factory=dict)
    stopped_by: str | None = None
    next_slice: float = 0.0
    next_status: float = 0.0
    last_status: tuple[float, int, int] = (0.0, 0, 0)  # time, sent, delivered
    end: float = 0.0


class StormEmulator:
    """Produces transactions to ``settings.topic`` at a controlled rate."""

    def __init__(self, settings: Settings, source: ClientSource | None = None, *, name: str = "default",
                 control: bool | ControlLink = True, changes: dict[str, Any] | None = None,
                 record_ids: Path | str | None = None, full_speed: bool = False, burst: bool = False,
                 seed: int | None = None, chunk_max: int = 5000, status_interval: float = 1.0,
                 on_status: Callable[[dict[str, Any]], None] | None = None, producer_overrides: dict | None = None,
                 sink: Sink | None = None, wire_format: str | None = None, slice_s: float = 0.02,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time,
                 sleep: Callable[[float], object] | None = None, metrics=None):
        self.settings = settings
        # pipeline.metrics.emulator.EmulatorMetrics: fed once per status and by librdkafka's statistics
        self.metrics = metrics
        self.name = name
        self.changes = dict(changes or {})
        # Validate explicit changes now, so bad CLI values fail before anything starts.
        self.desired = DesiredState.defaults(settings).with_changes(self.changes)
        self.control = control
        self.wire_format = wire_format or settings.wire_format
        if self.wire_format not in WIRE_FORMATS:
            raise EmulatorError(f"wire format {self.wire_format!r} is not allowed; allowed: {', '.join(WIRE_FORMATS)}")
        if sink is not None and record_ids:
            raise EmulatorError("record_ids is written by the Kafka producer; give either a sink or record_ids")
        self.record_ids = Path(record_ids) if record_ids else None
        self.full_speed, self.burst = full_speed, burst
        self.chunk_max = max(1, int(chunk_max))
        self.slice_s = slice_s
        self.status_interval = status_interval
        self.on_status = on_status
        self.producer_overrides = producer_overrides
        self.sink = sink
        self.clock, self.wall, self.sleep = clock, wall, sleep
        self.binarizer = make_binarizer(self.wire_format, settings.threshold)
        self.source = source if source is not None else EmulatorSource(
            settings.sample_file, settings.threshold, seed=seed, binarizer=self.binarizer)
        if getattr(self.source, "wire_format", self.wire_format) != self.wire_format:
            raise EmulatorError(f"the source encodes {self.source.wire_format}, the emulator writes {self.wire_format}; "
                                "give the source the emulator's binarizer")
        self.faults = FaultInjector(seed=seed, wire=self.binarizer)
        self.status: dict[str, Any] | None = None

    # ---- the loop ---------------------------------------------------------------------------
    def run(self, duration: float | None = None, max_records: int | None = None,
            stop_event: threading.Event | None = None) -> dict[str, Any]:
        if duration is not None and duration <= 0:
            raise EmulatorError(f"duration {duration} must be > 0 seconds")
        if max_records is not None and max_records <= 0:
            raise EmulatorError(f"max_records {max_records} must be > 0")
        # Sleeping on the stop event makes a signal end the sleep at once.
        sleep = self.sleep or (stop_event.wait if stop_event is not None else time.sleep)
        run = self._open()
        try:
            while run.stopped_by is None:
                now = self.clock()
                run.stopped_by = self._stop_reason(run, now, duration, max_records, stop_event) or \
                    self._follow_control(run, now)
                if run.stopped_by is None:
                    self._publish_status(run, now)
                    self._slice(run, max_records, sleep)
        finally:
            self._close(run)
        refusal = getattr(run.sink, "refusal", None)
        if refusal:  # the broker refused this producer: one line, not a run of failed deliveries
            raise KafkaAccessError(refusal)
        return self._summary(run)

    def _open(self) -> _Run:
        link = self.control if not isinstance(self.control, bool) else (
            KafkaControlLink(self.settings, self.name) if self.control else LocalControl(self.settings))
        ids_file = None
        try:
            sink = self.sink
            if sink is None:
                from pipeline.kafka.topic import ensure_topic

                ensure_topic(self.settings, role="producer")
                ids_file = self.record_ids.open("w", encoding="utf-8") if self.record_ids else None
                overrides = {**(self.metrics.producer_overrides() if self.metrics else {}), **(self.producer_overrides or {})}
                sink = StormProducer(self.settings, record_ids=ids_file, overrides=overrides)
            desired = self.desired = link.start(self.changes)
        except BaseException:
            link.close()
            if ids_file is not None:
                ids_file.close()
            raise
        self.faults.configure(**asdict(desired.faults))
        t0 = self.clock()
        pacer = Pacer(self._rate_fn(desired, t0), tick=desired.ingest_interval, burst=self.burst, clock=self.clock)
        if desired.state == "paused":
            pacer.pause()
        return _Run(desired, link, sink, pacer, t0, ids_file, profile_start=t0, next_slice=t0, next_status=t0,
                    last_status=(t0, 0, 0))

    def _stop_reason(self, run: _Run, now: float, duration: float | None, max_records: int | None,
                     stop_event: threading.Event | None) -> str | None:
        if stop_event is not None and stop_event.is_set():
            return "signal"
        if getattr(run.sink, "refusal", None):
            return "refused"
        if duration is not None and now - run.t0 >= duration:
            return "duration"
        if max_records is not None and run.records >= max_records:
            return "max_records"
        return None

    def _follow_control(self, run: _Run, now: float) -> str | None:
        new = run.link.poll()
        if new is not None and new.version != run.desired.version:
            old, pacer = run.desired, run.pacer
            if new.profile != old.profile:
                run.profile_start = now
            if new.state == "paused" and old.state != "paused":
                pacer.pause()
            elif new.state == "running" and old.state == "paused":
                pacer.resume()
            pacer.set_rate_fn(self._rate_fn(new, run.profile_start), tick=new.ingest_interval)
            self.faults.configure(**asdict(new.faults))
            log.info("desired state v%s: %s %.0f tx/s profile %s", new.version, new.state, new.rate,
                     new.profile["name"])
            run.desired = self.desired = new
        return "control" if run.desired.state == "stopped" else None

    def _slice(self, run: _Run, max_records: int | None, sleep: Callable[[float], object]) -> None:
        """One slice: send what is owed (one chunk), serve the reports, sleep until the next slice."""
        got = 0
        if run.desired.state != "paused":
            n = self.chunk_max if self.full_speed or self.source.self_paced else min(run.pacer.due(), self.chunk_max)
            if max_records is not None:
                n = min(n, max_records - run.records)
            got = self._send_chunk(run, n) if n > 0 else 0
            if self.source.exhausted:
                run.stopped_by = "exhausted"
                return
            # Full speed, a self-paced source with records ready, or a backlog: go straight on.
            if got > 0 and (self.full_speed or self.source.self_paced or got >= self.chunk_max):
                return
        if got == 0:  # sending a chunk has served the reports already
            run.sink.poll(0)
        now = self.clock()
        if run.next_slice > now:
            sleep(run.next_slice - now)
            run.next_slice += self.slice_s
        else:  # the slice overran: start the grid again from now
            run.next_slice = now + self.slice_s

    def _send_chunk(self, run: _Run, n: int) -> int:
        at = self.wall()
        batch = self.binarizer.encode(self.source.fetch(n, at))
        got = len(batch)
        if got == 0:
            return 0
        run.records += got
        run.pacer.record(got)
        batch = self.faults.apply(batch, at)
        run.sink.send(batch)
        high = sum(batch.high)
        run.sent += len(batch)
        run.over_sent += high
        counts = run.by_minute.setdefault(int(at // 60), [0, 0])
        counts[0] += len(batch)
        counts[1] += high
        return got

    def _close(self, run: _Run) -> None:
        try:
            remaining = run.sink.flush(30)
            if remaining:
                log.warning("%d messages were still queued after 30 s and were purged (counted as failed)", remaining)
        finally:
            if run.ids_file is not None:
                run.ids_file.close()
            run.end = self.clock()
            self.status = {**self._status(run, run.end, 0.0, 0.0), "state": "stopped"}
            run.link.publish(self.status)
            if self.metrics is not None:
                self.metrics.on_status(self.status, run.sink)
            run.link.close()
            if run.sink is not self.sink:  # the producer `_open` made: its threads end here
                run.sink.close()

    # ---- status and summary ---------------------------------------------------------------------
    def _rate_fn(self, desired: DesiredState, profile_start: float) -> Callable[[float], float]:
        profile = make_profile(desired.profile)
        base = float(desired.rate)
        return lambda t: profile.rate(base, t - profile_start)

    def _publish_status(self, run: _Run, now: float) -> None:
        if now < run.next_status:
            return
        last_t, last_sent, last_delivered = run.last_status
        dt = max(1e-6, now - last_t)
        delivered = run.sink.delivered
        self.status = self._status(run, now, (run.sent - last_sent) / dt, (delivered - last_delivered) / dt)
        run.last_status = (now, run.sent, delivered)
        run.next_status = now + self.status_interval
        run.link.publish(self.status)
        if self.metrics is not None:
            self.metrics.on_status(self.status, run.sink)
        if self.on_status is not None:
            self.on_status(self.status)

    @staticmethod
    def _minutes(by_minute: dict[int, list[int]], last: int | None = None) -> list[dict[str, Any]]:
        keys = sorted(by_minute)
        if last is not None:
            keys = keys[-last:]
        return [{"minute": _minute_iso(m), "sent": by_minute[m][0], "over_threshold": by_minute[m][1]} for m in keys]

    def _counts(self, run: _Run) -> dict[str, Any]:
        """The counters that status and summary share."""
        sink = run.sink
        p50, p99 = sink.latency_ms()
        return {"records": run.records, "sent": run.sent, "delivered": sink.delivered, "failed": sink.failed,
                "failed_reasons": dict(sink.failed_reasons), "over_threshold_sent": run.over_sent,
                "over_threshold_delivered": sink.high_delivered, "backpressure_waits": sink.backpressure_waits,
                "skipped": run.pacer.skipped, "latency_p50_ms": p50, "latency_p99_ms": p99,
                "wire_format": self.wire_format}

    def _status(self, run: _Run, now: float, achieved: float, delivered_rate: float) -> dict[str, Any]:
        desired = run.desired
        if self.full_speed or self.source.self_paced:
            target = None
        else:
            target = 0.0 if desired.state != "running" else round(run.pacer.rate_fn(now), 1)
        return {
            "name": self.name, "state": desired.state, "time": now_iso(), "pid": os.getpid(),
            "target_rate": target, "base_rate": desired.rate, "achieved_rate": round(achieved, 1),
            "delivered_rate": round(delivered_rate, 1), "ingest_interval": desired.ingest_interval,
            "per_tick": round(desired.per_tick, 3), "profile": desired.profile, "faults": asdict(desired.faults),
            "version": desired.version, **self._counts(run), "queue_depth": run.sink.queue_depth(),
            "sent_by_minute": self._minutes(run.by_minute, last=10), "fault_counts": dict(self.faults.counts),
            "uptime_s": round(now - run.t0, 1),
        }

    def _summary(self, run: _Run) -> dict[str, Any]:
        duration_s = max(1e-9, run.end - run.t0)
        return {
            "name": self.name, "stopped_by": run.stopped_by, **self._counts(run),
            "duplicates": self.faults.counts["duplicates"], "malformed": self.faults.counts["malformed"],
            "late": self.faults.counts["late"], "duration_s": round(duration_s, 3),
            "achieved_rate": round(run.sent / duration_s, 1), "sent_by_minute": self._minutes(run.by_minute),
            "record_ids": str(self.record_ids) if self.record_ids else None, "desired_version": run.desired.version,
        }
