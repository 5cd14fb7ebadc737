"""What a load test measures every second, and from where.

* **emulator**: its status record (target/achieved/delivered rate, delivery latency p50/p99,
  queue depth, failed) followed on the run's private status topic;
* **broker**: log-end offsets of the run's topic (watermarks, one long-lived consumer);
* **job**: the offsets of the last *committed* micro-batch and of the batch in flight, read
  from the query's checkpoint (``offsets/N`` is written when batch N starts, ``commits/N``
  when it is done) -- Spark commits nothing to Kafka consumer groups;
* **lag**: records = log-end minus committed offsets; seconds = age of the oldest
  unprocessed record, i.e. now minus the moment the log end passed the committed offset
  (interpolated in this sampler's own history of log-end offsets);
* **processes**: CPU (% of one core) and resident memory of the emulator, the broker, the
  job (python + its Spark JVM) and the load test itself, plus the machine's CPU (% of all
  cores), with psutil.
"""

from __future__ import annotations

import bisect
import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

log = logging.getLogger(__name__)


# ---- job offsets from the checkpoint ------------------------------------------------------
def _offsets_file(path: Path, topic: str) -> dict[int, int] | None:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    for line in lines[2:]:
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if isinstance(data, dict) and topic in data:
            return {int(p): int(o) for p, o in data[topic].items()}
    return None


def _numbered(folder: Path) -> list[int]:
    try:
        return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit())
    except OSError:
        return []


def checkpoint_offsets(checkpoint: Path, topic: str) -> dict[str, Any]:
    """Committed and in-flight offsets of a streaming query, from its checkpoint folder.

    Returns {"batches": n committed, "committed": total offset or None, "inflight": total,
    "inflight_since": mtime of the running batch's offsets file or None}.
    """
    offsets = _numbered(checkpoint / "offsets")
    commits = _numbered(checkpoint / "commits")
    # Batch ids count from 0; Spark keeps only the newest commit files (minBatchesToRetain),
    # so the count is the newest id + 1, not the number of files.
    out: dict[str, Any] = {"batches": commits[-1] + 1 if commits else 0, "committed": None, "inflight": None, "inflight_since": None,
                           "committed_by_partition": None}
    if commits:
        last = _offsets_file(checkpoint / "offsets" / str(commits[-1]), topic)
        if last is not None:
            out["committed"] = sum(last.values())
            out["committed_by_partition"] = last
    if offsets and (not commits or offsets[-1] > commits[-1]):
        running = offsets[-1]
        cur = _offsets_file(checkpoint / "offsets" / str(running), topic)
        out["inflight"] = sum(cur.values()) if cur else None
        try:
            out["inflight_since"] = (checkpoint / "offsets" / str(running)).stat().st_mtime
        except OSError:
            pass
    return out


# ---- lag in seconds ------------------------------------------------------------------------
class LogEndHistory:
    """(time, total log-end offset) pairs, to answer "when did the log end pass offset X?"."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.ends: list[int] = []

    def add(self, t: float, end: int) -> None:
        if self.ends and end < self.ends[-1]:
            end = self.ends[-1]  # watermarks never go back; ignore a stale read
        self.times.append(t)
        self.ends.append(end)

    def passed(self, offset: int) -> float | None:
        """The (interpolated) time the log end first exceeded `offset`, or None if it has not."""
        i = bisect.bisect_right(self.ends, offset)
        if i >= len(self.ends):
            return None
        if i == 0:
            return self.times[0]
        t0, t1 = self.times[i - 1], self.times[i]
        e0, e1 = self.ends[i - 1], self.ends[i]
        frac = (offset - e0) / (e1 - e0) if e1 > e0 else 1.0
        return t0 + (t1 - t0) * max(0.0, min(1.0, frac))

    def lag_seconds(self, now: float, committed: int | None) -> float | None:
        if committed is None or not self.ends:
            return None
        if committed >= self.ends[-1]:
            return 0.0
        since = self.passed(committed)
        return None if since is None else max(0.0, now - since)


# ---- processes ------------------------------------------------------------------------------
class ProcessWatch:
    """CPU (% of one core) and RSS (MB) of named process trees."""

    def __init__(self) -> None:
        self._procs: dict[int, psutil.Process] = {}
        psutil.cpu_percent(None)

    def _proc(self, pid: int) -> psutil.Process | None:
        p = self._procs.get(pid)
        if p is None:
            try:
                p = psutil.Process(pid)
                p.cpu_percent(None)  # prime: the first call always returns 0
            except psutil.Error:
                return None
            self._procs[pid] = p
        return p

    def measure(self, pid: int | None, tree: bool = True) -> tuple[float | None, float | None]:
        if pid is None:
            return None, None
        root = self._proc(pid)
        if root is None or not root.is_running():
            return None, None
        members = [root]
        if tree:
            try:
                members += [self._proc(c.pid) for c in root.children(recursive=True)]
            except psutil.Error:
                pass
        cpu = mem = 0.0
        for p in members:
            if p is None:
                continue
            try:
                with p.oneshot():
                    cpu += p.cpu_percent(None)
                    mem += p.memory_info().rss / 1e6
            except psutil.Error:
                continue
        return round(cpu, 1), round(mem, 1)

    @staticmethod
    def machine() -> float:
        return psutil.cpu_percent(None)


def listener_pid(port: int) -> int | None:
    """The pid listening on a loopback TCP port (the broker when it is not ours), or None."""
    try:
        for c in psutil.net_connections(kind="tcp"):
            if c.laddr and c.laddr.port == port and c.status == psutil.CONN_LISTEN and c.pid:
                return c.pid
    except (psutil.Error, OSError):
        return None
    return None


# ---- the sampler thread ------------------------------------------------------------------------
class Sampler:
    """Samples once per `interval` in a thread; `samples` is appended to (read it any time)."""

    def __init__(self, *, kafka: dict[str, Any], topic: str, status_topic: str, emulator_name: str, checkpoint: Path,
                 pids: Callable[[], dict[str, int | None]], target: Callable[[float], tuple[int | None, float]],
                 job_alive: Callable[[], bool], interval: float = 1.0,
                 on_sample: Callable[[dict[str, Any]], None] | None = None):
        self.kafka = kafka  # the client config (servers + security) from pipeline.kafka.security
        self.topic, self.status_topic = topic, status_topic
        self.name = emulator_name.encode()
        self.checkpoint = checkpoint
        self.pids, self.target, self.job_alive = pids, target, job_alive
        self.interval = interval
        self.on_sample = on_sample
        self.samples: list[dict[str, Any]] = []
        self.history = LogEndHistory()
        self.watch = ProcessWatch()
        self.status: dict[str, Any] | None = None
        self._stop = threading.Event()
        self._new_sample = threading.Condition()
        self._thread: threading.Thread | None = None
        self.t0 = time.time()
        self.error: str | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="loadtest-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(15)

    def wait_for(self, predicate: Callable[[dict[str, Any]], object], timeout: float,
                 stop: threading.Event | None = None) -> dict[str, Any] | None:
        """The latest sample once `predicate(sample)` holds for it, re-checked at every new sample;
        None when `timeout` seconds pass or `stop` is set first."""
        deadline = time.monotonic() + timeout
        with self._new_sample:
            while True:
                last = self.samples[-1] if self.samples else None
                if last is not None and predicate(last):
                    return last
                left = deadline - time.monotonic()
                if left <= 0 or (stop is not None and stop.is_set()):
                    return None
                # woken by each new sample; the short bound notices `stop` without a sample
                self._new_sample.wait(min(left, 0.5))

    def _add(self, sample: dict[str, Any]) -> None:
        with self._new_sample:
            self.samples.append(sample)
            self._new_sample.notify_all()
        if self.on_sample is not None:
            self.on_sample(sample)

    def _clients(self):
        from confluent_kafka import Consumer, TopicPartition

        conf = {**self.kafka, "group.id": "tormenta-loadtest-sampler",
                "enable.auto.commit": False, "enable.partition.eof": False, "fetch.wait.max.ms": 100}
        status = Consumer(conf)
        status.assign([TopicPartition(self.status_topic, 0, -1)])  # OFFSET_END: only new statuses
        marks = Consumer(conf)
        md = marks.list_topics(self.topic, timeout=10)
        parts = sorted(md.topics[self.topic].partitions) if self.topic in md.topics else [0]
        return status, marks, [TopicPartition(self.topic, p) for p in parts]

    def _loop(self) -> None:
        try:
            status, marks, parts = self._clients()
        except Exception as exc:  # noqa: BLE001 - reported in the result, the run goes on
            self.error = f"sampler could not connect: {exc}"
            log.error(self.error)
            return
        try:
            next_t = time.monotonic()
            while not self._stop.is_set():
                for msg in status.consume(num_messages=50, timeout=0):
                    if msg.error() is None and msg.key() == self.name and msg.value():
                        try:
                            self.status = json.loads(msg.value())
                        except ValueError:
                            pass
                try:
                    self._add(self.sample(marks, parts))
                except Exception as exc:  # noqa: BLE001 - one bad sample must not end the run
                    log.warning("sample failed: %s", exc)
                next_t += self.interval
                self._stop.wait(max(0.0, next_t - time.monotonic()))
        finally:
            status.close()
            marks.close()

    def sample(self, marks, parts) -> dict[str, Any]:
        now = time.time()
        log_end = 0
        for tp in parts:
            _, high = marks.get_watermark_offsets(tp, timeout=5, cached=False)
            log_end += max(0, high)
        self.history.add(now, log_end)
        ck = checkpoint_offsets(self.checkpoint, self.topic)
        committed = ck["committed"] if ck["committed"] is not None else (0 if ck["batches"] == 0 else None)
        step, target = self.target(now)
        st = self.status or {}
        fresh = bool(st) and now - _epoch(st.get("time")) < 5
        s: dict[str, Any] = {
            "t": round(now, 3), "elapsed": round(now - self.t0, 3), "step": step, "target_rate": target,
            "emu_target": st.get("target_rate") if fresh else None,
            "achieved_rate": st.get("achieved_rate") if fresh else None,
            "delivered_rate": st.get("delivered_rate") if fresh else None,
            "sent": st.get("sent"), "delivered": st.get("delivered"), "failed": st.get("failed"),
            "queue_depth": st.get("queue_depth") if fresh else None,
            "latency_p50_ms": st.get("latency_p50_ms") if fresh else None,
            "latency_p99_ms": st.get("latency_p99_ms") if fresh else None,
            "backpressure_waits": st.get("backpressure_waits"),
            "log_end": log_end, "job_offset": committed, "job_inflight": ck["inflight"], "batches": ck["batches"],
            "inflight_age_s": round(now - ck["inflight_since"], 2) if ck["inflight_since"] else None,
            "lag_records": max(0, log_end - committed) if committed is not None else None,
            "lag_s": self.history.lag_seconds(now, committed),
            "job_alive": self.job_alive(),
            "cpu_machine": self.watch.machine(),
        }
        if s["lag_s"] is not None:
            s["lag_s"] = round(s["lag_s"], 3)
        for who, pid in self.pids().items():
            cpu, mem = self.watch.measure(pid, tree=(who == "job"))
            s[f"cpu_{who}"], s[f"mem_{who}_mb"] = cpu, mem
        return s


def _epoch(iso: str | None) -> float:
    from datetime import datetime

    if not iso:
        return 0.0
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0
