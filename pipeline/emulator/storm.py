"""The storm emulator: client source -> binarizer -> fault injection -> producer -> topic.

`StormEmulator.run()` is one long-lived loop. Every few milliseconds it

1. polls the control topic (a new desired state -- rate, profile, pause, resume, stop,
   faults -- takes effect at once, without a restart),
2. asks the drift-free `Pacer` how many records are owed and fetches that many from the
   source (at most `chunk_max` per step), encodes them, applies the fault knobs and hands
   them to the producer (which blocks politely on a full queue),
3. once per second publishes a status record (target vs achieved rate, delivered,
   failed with reasons, queue depth, delivery latency p50/p99, per-minute counts).

It ends on `duration`, `max_records`, a set `stop_event` (SIGINT/SIGTERM in the CLI), a
"stopped" desired state, or an exhausted replay; then it flushes the producer and returns
a summary. Run it with ``python -m pipeline emulate`` (see docs/EMULATOR.md).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.emulator.binarizer import FaultInjector, JsonBinarizer
from pipeline.emulator.control import (
    ControlFollower,
    EmulatorControl,
    StatusPublisher,
    apply_changes,
    default_desired,
    now_iso,
)
from pipeline.emulator.pacing import Pacer
from pipeline.emulator.presets import make_profile
from pipeline.emulator.producer import StormProducer
from pipeline.emulator.sources import ClientSource, EmulatorSource
from pipeline.errors import EmulatorError
from pipeline.settings import Settings

log = logging.getLogger(__name__)


def _minute_iso(minute: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:00Z", time.gmtime(minute * 60))


class StormEmulator:
    """Produces transactions to ``settings.topic`` at a controlled rate."""

    def __init__(self, settings: Settings, source: ClientSource | None = None, *, name: str = "default",
                 control: bool = True, changes: dict[str, Any] | None = None, record_ids: Path | str | None = None,
                 full_speed: bool = False, burst: bool = False, seed: int | None = None, chunk_max: int = 5000,
                 status_interval: float = 1.0, on_status: Callable[[dict[str, Any]], None] | None = None,
                 producer_overrides: dict | None = None, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time):
        self.settings = settings
        self.name = name
        self.control = control
        self.changes = dict(changes or {})
        # Validate explicit changes now, so bad CLI values fail before anything starts.
        apply_changes(default_desired(settings), self.changes)
        self.record_ids = Path(record_ids) if record_ids else None
        self.full_speed = full_speed
        self.burst = burst
        self.chunk_max = max(1, int(chunk_max))
        self.status_interval = status_interval
        self.on_status = on_status
        self.producer_overrides = producer_overrides
        self.clock, self.wall = clock, wall
        self.source = source if source is not None else EmulatorSource(settings.sample_file, settings.threshold,
                                                                       seed=seed)
        self.binarizer = JsonBinarizer(settings.threshold)
        self.faults = FaultInjector(seed=seed)
        self.desired: dict[str, Any] = default_desired(settings)
        self.status: dict[str, Any] | None = None

    # ---- desired state ----------------------------------------------------------------
    def _initial_desired(self) -> dict[str, Any]:
        if not self.control:
            return apply_changes(default_desired(self.settings), self.changes)
        with EmulatorControl(self.settings, self.name) as ctl:
            desired = ctl.desired()
            changes = dict(self.changes)
            # Starting the emulator is a request to run: a "stopped" left from last time is lifted.
            if desired["state"] == "stopped" and "state" not in changes:
                changes["state"] = "running"
            if changes:
                desired = ctl.set_desired(**changes)
        return desired

    def _rate_fn(self, desired: dict[str, Any], profile_start: float) -> Callable[[float], float]:
        profile = make_profile(desired["profile"])
        base = float(desired["rate"])
        return lambda t: profile.rate(base, t - profile_start)

    # ---- main loop ----------------------------------------------------------------------
    def run(self, duration: float | None = None, max_records: int | None = None,
            stop_event: threading.Event | None = None) -> dict[str, Any]:
        from pipeline.kafka.topic import ensure_topic

        if duration is not None and duration <= 0:
            raise EmulatorError(f"duration {duration} must be > 0 seconds")
        if max_records is not None and max_records <= 0:
            raise EmulatorError(f"max_records {max_records} must be > 0")
        ensure_topic(self.settings)
        desired = self.desired = self._initial_desired()
        follower = ControlFollower(self.settings, self.name) if self.control else None
        publisher = StatusPublisher(self.settings, self.name) if self.control else None
        ids_file = self.record_ids.open("w", encoding="utf-8") if self.record_ids else None
        producer = StormProducer(self.settings, record_ids=ids_file, overrides=self.producer_overrides)
        self.faults.configure(**desired["faults"])
        clock, wall = self.clock, self.wall
        t0 = clock()
        profile_start = t0
        pacer = Pacer(self._rate_fn(desired, profile_start), tick=desired["ingest_interval"], burst=self.burst,
                      clock=clock)
        if desired["state"] == "paused":
            pacer.pause()
        records = sent = over_sent = 0
        by_minute: dict[int, list[int]] = {}
        stopped_by = None
        last_status_t, last_status_sent, last_status_delivered = t0, 0, 0
        next_status = t0
        source = self.source
        try:
            while True:
                now = clock()
                if stop_event is not None and stop_event.is_set():
                    stopped_by = "signal"
                    break
                if duration is not None and now - t0 >= duration:
                    stopped_by = "duration"
                    break
                if max_records is not None and records >= max_records:
                    stopped_by = "max_records"
                    break
                if follower is not None:
                    new = follower.poll()
                    if new is not None and new["version"] != desired["version"]:
                        if new["profile"] != desired["profile"]:
                            profile_start = now
                        if new["state"] == "paused" and desired["state"] != "paused":
                            pacer.pause()
                        elif new["state"] == "running" and desired["state"] == "paused":
                            pacer.resume()
                        pacer.set_rate_fn(self._rate_fn(new, profile_start), tick=new["ingest_interval"])
                        self.faults.configure(**new["faults"])
                        log.info("desired state v%s: %s %.0f tx/s profile %s", new["version"], new["state"],
                                 new["rate"], new["profile"]["name"])
                        desired = self.desired = new
                    if desired["state"] == "stopped":
                        stopped_by = "control"
                        break
                if now >= next_status:
                    dt = max(1e-6, now - last_status_t)
                    self.status = self._status(desired, producer, pacer, now, t0, sent, records, over_sent, by_minute,
                                               (sent - last_status_sent) / dt,
                                               (producer.delivered - last_status_delivered) / dt)
                    last_status_t, last_status_sent, last_status_delivered = now, sent, producer.delivered
                    next_status = now + self.status_interval
                    if publisher is not None:
                        publisher.publish(self.status)
                    if self.on_status is not None:
                        self.on_status(self.status)
                if desired["state"] == "paused":
                    producer.poll(0.02)
                    continue
                if source.self_paced or self.full_speed:
                    n = self.chunk_max
                else:
                    n = min(pacer.due(), self.chunk_max)
                if max_records is not None:
                    n = min(n, max_records - records)
                if n <= 0:
                    rate = pacer.rate_fn(now)
                    producer.poll(pacer.seconds_until_due(0.02, int(rate * 0.004)))
                    continue
                at = wall()
                batch = self.binarizer.encode(source.fetch(n, at))
                got = len(batch)
                if got == 0:
                    if source.exhausted:
                        stopped_by = "exhausted"
                        break
                    producer.poll(0.005)
                    continue
                records += got
                pacer.record(got)
                batch = self.faults.apply(batch, at)
                producer.send(batch)
                high = sum(batch.high)
                sent += len(batch)
                over_sent += high
                counts = by_minute.setdefault(int(at // 60), [0, 0])
                counts[0] += len(batch)
                counts[1] += high
                if source.exhausted:
                    stopped_by = "exhausted"
                    break
        finally:
            remaining = producer.flush(30)
            if remaining:
                log.warning("%d messages were still queued after 30 s and were purged (counted as failed)", remaining)
            if ids_file is not None:
                ids_file.close()
            end = clock()
            final = self._status(desired, producer, pacer, end, t0, sent, records, over_sent, by_minute, 0.0, 0.0)
            final["state"] = "stopped"
            self.status = final
            if publisher is not None:
                publisher.publish(final)
                publisher.close()
            if follower is not None:
                follower.close()
        duration_s = max(1e-9, end - t0)
        return {
            "name": self.name,
            "stopped_by": stopped_by,
            "records": records,
            "sent": sent,
            "delivered": producer.delivered,
            "failed": producer.failed,
            "failed_reasons": dict(producer.failed_reasons),
            "duplicates": self.faults.counts["duplicates"],
            "malformed": self.faults.counts["malformed"],
            "late": self.faults.counts["late"],
            "over_threshold_sent": over_sent,
            "over_threshold_delivered": producer.high_delivered,
            "duration_s": round(duration_s, 3),
            "achieved_rate": round(sent / duration_s, 1),
            "backpressure_waits": producer.backpressure_waits,
            "skipped": pacer.skipped,
            "latency_p50_ms": final["latency_p50_ms"],
            "latency_p99_ms": final["latency_p99_ms"],
            "sent_by_minute": self._minutes(by_minute),
            "record_ids": str(self.record_ids) if self.record_ids else None,
            "desired_version": desired["version"],
        }

    @staticmethod
    def _minutes(by_minute: dict[int, list[int]], last: int | None = None) -> list[dict[str, Any]]:
        keys = sorted(by_minute)
        if last is not None:
            keys = keys[-last:]
        return [{"minute": _minute_iso(m), "sent": by_minute[m][0], "over_threshold": by_minute[m][1]} for m in keys]

    def _status(self, desired, producer: StormProducer, pacer: Pacer, now: float, t0: float, sent: int, records: int,
                over_sent: int, by_minute, achieved: float, delivered_rate: float) -> dict[str, Any]:
        p50, p99 = producer.latency_ms()
        if self.full_speed or self.source.self_paced:
            target = None
        else:
            target = 0.0 if desired["state"] != "running" else round(pacer.rate_fn(now), 1)
        return {
            "name": self.name,
            "state": desired["state"],
            "time": now_iso(),
            "pid": os.getpid(),
            "target_rate": target,
            "base_rate": desired["rate"],
            "achieved_rate": round(achieved, 1),
            "delivered_rate": round(delivered_rate, 1),
            "ingest_interval": desired["ingest_interval"],
            "per_tick": round(desired["rate"] * desired["ingest_interval"], 3),
            "profile": desired["profile"],
            "faults": desired["faults"],
            "version": desired["version"],
            "records": records,
            "sent": sent,
            "delivered": producer.delivered,
            "failed": producer.failed,
            "failed_reasons": dict(producer.failed_reasons),
            "queue_depth": producer.queue_depth(),
            "latency_p50_ms": p50,
            "latency_p99_ms": p99,
            "over_threshold_sent": over_sent,
            "over_threshold_delivered": producer.high_delivered,
            "sent_by_minute": self._minutes(by_minute, last=10),
            "fault_counts": dict(self.faults.counts),
            "backpressure_waits": producer.backpressure_waits,
            "skipped": pacer.skipped,
            "uptime_s": round(now - t0, 1),
        }
