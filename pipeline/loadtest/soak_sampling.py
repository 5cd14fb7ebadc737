"""What a soak measures every interval (30 s by default), as one flat dict per sample.

* per part of ``run`` (pids from ``parts.json``): RSS and PSS (MiB), CPU (% of one core),
  open file descriptors and threads of its whole process group -- the part's process, what
  it started (the Spark JVM of the job and of the live lane) and anything else in its group;
  ``rss_<part>.jvm_mb`` separately when a JVM is in it; its pid, state and restarts; and
  ``mem_total_mb``, the PSS summed over every part (the product's memory: a page shared by
  forked processes counted once);
* disk (MiB) of the broker logs, the Delta tables and the checkpoints, the size of the
  job's streaming state folder, and each Delta table's active file count (``files_<t>``);
* the topic's log end, the job's committed offset and batches (its checkpoint, as the load
  test reads them), records behind latest and the age of the oldest unprocessed record;
* the job's state rows when it exports them (``tormenta_job_state_rows`` on its metrics port);
* the machine's CPU over the interval, in % of one core like the parts: ``host_cpu`` (busy:
  everything but idle and I/O wait), ``host_steal`` (time the hypervisor gave to other
  guests) and ``host_other`` (busy minus the parts' sum: the soak's own browser and sampler,
  and anything else on the machine), with ``host_irq`` (interrupts and soft interrupts: the
  loopback network's work among them) and ``host_iowait`` (idle waiting for the disk) apart;
  and who was busy outside the parts: ``other_<name>``, processes summed by name (the soak
  itself as ``soak``, Chromium's processes as ``browser``, kernel threads by kind). A batch that takes longer while the job's share stays
  the same and ``host_other`` or ``host_steal`` rises was slowed from outside the product;
* per part with a JVM (the brokers, the job's driver, the live lane), what the JVM says of
  itself in its performance data (`pipeline.procs.hsperf`): ``gc_<part>`` and ``jit_<part>``,
  the % of the interval in GC pauses and in the JIT compiler; ``heap_old_<part>_mb`` and
  ``heap_<part>_mb`` (the heap is committed at start, so the RSS cannot show it filling),
  ``metaspace_<part>_mb``, ``classes_<part>`` (loaded minus unloaded) and ``fullgc_<part>``.
  A batch that takes longer while ``gc_job`` or ``heap_old_job_mb`` climbs is the heap.

Keys: ``rss_<part>_mb``, ``pss_<part>_mb``, ``mem_total_mb``, ``cpu_<part>``, ``fds_<part>``,
``threads_<part>``, ``pid_<part>``, ``state_<part>``, ``restarts_<part>``, ``disk_<what>_mb``, ``disk_total_mb``, ``state_mb``,
``state_rows``, ``files_<table>``, ``log_end``, ``job_offset``, ``batches``, ``lag_records``,
``lag_s``, ``host_cpu``, ``host_steal``, ``host_other``, ``host_irq``, ``host_iowait``, ``other_<name>``, ``gc_<part>``, ``jit_<part>``, ``heap_old_<part>_mb``,
``heap_<part>_mb``, ``metaspace_<part>_mb``, ``classes_<part>``, ``fullgc_<part>``, ``t`` (epoch s), ``elapsed``.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from pipeline.contract.tables import HIGH_VALUE_QUERY, TABLE_NAMES
from pipeline.loadtest.sampling import LogEndHistory, checkpoint_offsets
from pipeline.loadtest.soak_parts import read_parts
from pipeline.procs import hsperf

log = logging.getLogger(__name__)
MIB = 1024 * 1024


def folder_mb(path: Path) -> float:
    """Bytes under `path` (files only, not following links), in MiB; 0 when missing."""
    total, stack = 0, [str(path)]
    while stack:
        try:
            with os.scandir(stack.pop()) as it:
                for e in it:
                    try:
                        if e.is_dir(follow_symlinks=False):
                            stack.append(e.path)
                        elif e.is_file(follow_symlinks=False):
                            total += e.stat(follow_symlinks=False).st_size
                    except OSError:
                        continue
        except OSError:
            continue
    return round(total / MIB, 2)


def last_commit(checkpoint: Path) -> int | None:
    """The number of the query's last committed batch (Spark deletes old commit files: not a count)."""
    try:
        return max((int(p.name) for p in (checkpoint / "commits").iterdir() if p.name.isdigit()), default=None)
    except OSError:
        return None


def active_files(table: Path) -> int | None:
    """Data files in the Delta table's current version (delta-rs), None when it is not a table yet."""
    if not (table / "_delta_log").is_dir():
        return None
    try:
        from deltalake import DeltaTable

        return len(DeltaTable(str(table)).file_uris())
    except Exception:  # noqa: BLE001 - a table being written may be unreadable for a moment
        return None


class GroupWatch:
    """RSS, PSS, CPU, fds and threads of a process, its descendants and its process group."""

    def __init__(self) -> None:
        self._procs: dict[int, psutil.Process] = {}
        self.seen: set[int] = set()   # the pids `measure` counted since the caller last cleared it
        # One listing of every process (pid -> (process, parent pid, process group)) serves
        # a whole sample: each part's descendants and group, and the processes outside them.
        self._table: dict[int, tuple[psutil.Process, int, int]] = {}
        self._listed_at = -1e9

    def _cached(self, p: psutil.Process) -> psutil.Process:
        known = self._procs.get(p.pid)
        if known is not None and known.create_time() == p.create_time():
            return known
        p.cpu_percent(None)  # prime: the first reading is 0
        self._procs[p.pid] = p
        return p

    def listing(self, max_age: float = 1.0) -> dict[int, tuple[psutil.Process, int, int]]:
        """Every process with its parent and group, listed once per `max_age` seconds."""
        if time.monotonic() - self._listed_at > max_age:
            table = {}
            for p in psutil.process_iter(["ppid"]):
                try:
                    table[p.pid] = (p, p.info["ppid"] or 0, os.getpgid(p.pid))
                except (OSError, psutil.Error):   # gone since it was listed
                    continue
            self._table, self._listed_at = table, time.monotonic()
            self._procs = {pid: p for pid, p in self._procs.items() if pid in table}   # forget the dead
        return self._table

    def measure_others(self, parts: set[int], me: int) -> dict[str, float]:
        """CPU (% of one core) of every process outside the parts' groups, summed by name
        (`other_name`), the `me` process as ``soak``; only names at 1 % or more."""
        by_name: dict[str, float] = {}
        for pid, (p, _, _) in self.listing().items():
            if pid in parts:
                continue
            try:
                p = self._cached(p)
                cpu = p.cpu_percent(None)
                if cpu > 0:
                    label = "soak" if pid == me else other_name(p.name())
                    by_name[label] = by_name.get(label, 0.0) + cpu
            except psutil.Error:
                continue
        return {f"other_{k}": round(v, 1) for k, v in by_name.items() if v >= 1.0}

    def members(self, pid: int) -> list[psutil.Process]:
        """The process `pid`, its descendants and every process of its group, from one listing."""
        table = self.listing()
        if pid not in table:
            table = self.listing(max_age=0.0)   # started since the listing
        if pid not in table:
            return []
        children: dict[int, list[int]] = {}
        for child, (_, ppid, _) in table.items():
            children.setdefault(ppid, []).append(child)
        found, todo = {pid}, [pid]
        while todo:
            for child in children.get(todo.pop(), ()):
                if child not in found:
                    found.add(child)
                    todo.append(child)
        pgid = table[pid][2]
        found.update(other for other, (_, _, group) in table.items() if group == pgid)
        out = []
        for member in sorted(found):
            try:
                out.append(self._cached(table[member][0]))
            except psutil.Error:   # exited since it was listed (a Spark worker, a browser process)
                continue
        return out

    def measure(self, pid: int) -> dict[str, float]:
        out = {"rss": 0.0, "pss": 0.0, "cpu": 0.0, "fds": 0.0, "threads": 0.0, "jvm": 0.0, "jvm_pid": 0}
        members = self.members(pid)
        self.seen.update(p.pid for p in members)
        for p in members:
            try:
                with p.oneshot():
                    rss = p.memory_info().rss / MIB
                    out["rss"] += rss
                    out["pss"] += proportional_mib(p, rss)
                    out["cpu"] += p.cpu_percent(None)
                    out["fds"] += p.num_fds()
                    out["threads"] += p.num_threads()
                    if "java" in p.name():
                        out["jvm"] += rss
                        if rss > out.get("jvm_rss", 0.0):   # the part's main JVM: its largest
                            out["jvm_pid"], out["jvm_rss"] = p.pid, rss
            except psutil.Error:
                continue
        return out


def proportional_mib(p: psutil.Process, rss_mib: float) -> float:
    """The process's proportional set size (PSS, MiB): its private pages plus its share of the
    pages it shares. Summed over a process group it counts a page once, where RSS counts it in
    every process that maps it (PySpark's forked workers share most of their parent's pages).
    Falls back to the RSS when the kernel does not let us read it."""
    try:
        return p.memory_full_info().pss / MIB
    except (psutil.AccessDenied, AttributeError):
        return rss_mib


def scrape_gauge(url: str, name: str, timeout: float = 2.0) -> float | None:
    """Sum of the samples of metric `name` on a Prometheus text endpoint; None when unreachable or absent."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            text = r.read().decode("utf-8", "replace")
    except OSError:
        return None
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
              if line.startswith(name) and (line[len(name):len(name) + 1] in ("{", " "))]
    return sum(values) if values else None


class HostCpu:
    """The machine's CPU between two readings (`psutil.cpu_times`), in % of one core."""

    def __init__(self) -> None:
        self.last = psutil.cpu_times()

    def read(self) -> dict[str, float]:
        before, self.last = self.last, psutil.cpu_times()
        return host_cpu(before, self.last, psutil.cpu_count() or 1)


def other_name(name: str) -> str:
    """Pure: a process name as a sample key's part: kernel threads by kind ("kworker/u4:2" ->
    "kworker"), Chromium's processes as one, anything but letters, digits and dashes dropped."""
    base = name.split("/", 1)[0].lower()
    if base.startswith(("chrom", "headless_shell")):
        return "browser"
    return re.sub(r"[^a-z0-9-]", "", base.replace("_", "-").replace(".", "-")) or "unnamed"


def host_cpu(before: Any, after: Any, cores: int) -> dict[str, float]:
    """Pure: busy and steal between two `cpu_times` readings, in % of one core (`cores` x 100 at most).

    Busy is everything but idle and I/O wait (steal included, as it is time this guest did not run)."""
    fields = [f for f in after._fields if f not in ("guest", "guest_nice")]   # counted in user/nice already
    delta = {f: max(0.0, getattr(after, f) - getattr(before, f)) for f in fields}
    total = sum(delta.values())
    if total <= 0:
        return {"host_cpu": 0.0, "host_steal": 0.0, "host_irq": 0.0, "host_iowait": 0.0}
    scale = 100.0 * cores / total
    idle = delta.get("idle", 0.0) + delta.get("iowait", 0.0)
    return {"host_cpu": round((total - idle) * scale, 1), "host_steal": round(delta.get("steal", 0.0) * scale, 1),
            "host_irq": round((delta.get("irq", 0.0) + delta.get("softirq", 0.0)) * scale, 1),
            "host_iowait": round(delta.get("iowait", 0.0) * scale, 1)}


class JvmWatch:
    """Per part, what its JVM says about itself (`pipeline.procs.hsperf`): the share of the last
    interval spent in GC pauses and in the JIT compiler, the heap's old generation, metaspace and
    loaded classes. Nothing for a part without a JVM or whose JVM keeps no performance data."""

    def __init__(self, tmp: Path = Path("/tmp")) -> None:
        self.tmp = tmp
        self.last: dict[str, tuple[int, dict[str, float]]] = {}

    def measure(self, name: str, pid: int) -> dict[str, Any]:
        counters = hsperf.read(pid, self.tmp) if pid else None
        if counters is None:
            self.last.pop(name, None)
            return {}
        now = hsperf.stats(counters)
        out: dict[str, Any] = {f"heap_old_{name}_mb": round(now["old_used_mb"], 1),
                               f"heap_{name}_mb": round(now["heap_used_mb"], 1),
                               f"metaspace_{name}_mb": round(now["metaspace_mb"], 1),
                               f"classes_{name}": now["classes"], f"fullgc_{name}": now["full_gc_count"]}
        before = self.last.get(name)
        if before is not None and before[0] == pid:
            for key, field in (("gc", "gc_pause_s"), ("jit", "jit_s")):
                v = hsperf.share(before[1], now, field)
                if v is not None:
                    out[f"{key}_{name}"] = round(v, 2)
        self.last[name] = (pid, now)
        return out


class SoakSampler:
    """A thread taking one sample every `interval` seconds until `stop()`; `samples` grows in place."""

    def __init__(self, *, data_dir: Path, topic: str, kafka: dict[str, Any], interval: float = 30.0,
                 metrics_url: str | None = None, on_sample: Callable[[dict[str, Any]], None] | None = None):
        self.data_dir, self.topic, self.kafka = data_dir, topic, kafka
        self.interval, self.metrics_url, self.on_sample = interval, metrics_url, on_sample
        self.samples: list[dict[str, Any]] = []
        self.history = LogEndHistory()
        self.watch = GroupWatch()
        self.jvms = JvmWatch()
        self.host = HostCpu()
        self.t0 = time.time()
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._consumer: Any = None

    def start(self) -> SoakSampler:
        self._thread = threading.Thread(target=self._loop, name="soak-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def last(self) -> dict[str, Any]:
        with self.lock:
            return dict(self.samples[-1]) if self.samples else {}

    def _loop(self) -> None:
        next_t = time.monotonic()
        while not self._stop.is_set():
            try:
                s = self.sample()
                with self.lock:
                    self.samples.append(s)
                if self.on_sample is not None:
                    self.on_sample(s)
            except Exception as exc:  # noqa: BLE001 - one bad sample must not end the soak
                log.warning("soak sample failed: %s", exc)
            next_t += self.interval
            self._stop.wait(max(0.0, next_t - time.monotonic()))

    def sample(self) -> dict[str, Any]:
        now = time.time()
        s: dict[str, Any] = {"t": round(now, 3), "elapsed": round(now - self.t0, 1)}
        self.watch.seen.clear()
        s.update(self.processes())
        s.update(self.watch.measure_others(self.watch.seen, os.getpid()))
        s.update(self.host.read())
        s["host_other"] = round(max(0.0, s["host_cpu"] - sum(v for k, v in s.items() if k.startswith("cpu_"))), 1)
        s.update(self.disk())
        s.update(self.offsets(now))
        if self.metrics_url:
            s["state_rows"] = scrape_gauge(self.metrics_url, "tormenta_job_state_rows")
        return s

    def processes(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        total = 0.0
        for name, part in read_parts(self.data_dir / "run").items():
            out[f"state_{name}"], out[f"restarts_{name}"] = part.state, part.restarts
            out[f"pid_{name}"] = part.pid if part.running else None
            if not part.running or part.pid is None:
                continue
            m = self.watch.measure(part.pid)
            out[f"rss_{name}_mb"], out[f"cpu_{name}"] = round(m["rss"], 1), round(m["cpu"], 1)
            out[f"pss_{name}_mb"] = round(m["pss"], 1)
            total += m["pss"]
            out[f"fds_{name}"], out[f"threads_{name}"] = m["fds"], m["threads"]
            if m["jvm"] and m["rss"] - m["jvm"] > 1:  # a JVM beside other processes (the job's driver)
                out[f"rss_{name}.jvm_mb"] = round(m["jvm"], 1)
            out.update(self.jvms.measure(name, int(m["jvm_pid"])))
        out["mem_total_mb"] = round(total, 1)
        return out

    def disk(self) -> dict[str, Any]:
        d = self.data_dir
        out: dict[str, Any] = {"disk_broker_mb": folder_mb(d / "broker"), "disk_delta_mb": folder_mb(d / "delta"),
                               "disk_checkpoints_mb": folder_mb(d / "checkpoints"),
                               "state_mb": folder_mb(d / "checkpoints" / HIGH_VALUE_QUERY / "state")}
        out["disk_total_mb"] = round(out["disk_broker_mb"] + out["disk_delta_mb"] + out["disk_checkpoints_mb"], 2)
        for table in TABLE_NAMES:
            n = active_files(d / "delta" / table)
            if n is not None:
                out[f"files_{table}"] = n
        return out

    def log_end(self) -> int | None:
        from confluent_kafka import Consumer, TopicPartition

        if self._consumer is None:
            self._consumer = Consumer({**self.kafka, "group.id": "tormenta-soak-sampler", "enable.auto.commit": False})
        md = self._consumer.list_topics(self.topic, timeout=10)
        if self.topic not in md.topics or md.topics[self.topic].error is not None:
            return None
        total = 0
        for p in md.topics[self.topic].partitions:
            _, high = self._consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=5, cached=False)
            total += max(0, high)
        return total

    def offsets(self, now: float) -> dict[str, Any]:
        try:
            end = self.log_end()
        except Exception as exc:  # noqa: BLE001 - the broker may be down (chaos): the sample says so
            log.info("no log end: %s", exc)
            end = None
        ck = checkpoint_offsets(self.data_dir / "checkpoints" / HIGH_VALUE_QUERY, self.topic)
        committed = ck["committed"] if ck["committed"] is not None else (0 if ck["batches"] == 0 else None)
        if end is not None:
            self.history.add(now, end)
        lag_s = self.history.lag_seconds(now, committed) if end is not None else None
        return {"log_end": end, "job_offset": committed, "batches": ck["batches"],
                "last_batch": last_commit(self.data_dir / "checkpoints" / HIGH_VALUE_QUERY),
                "lag_records": max(0, end - committed) if end is not None and committed is not None else None,
                "lag_s": round(lag_s, 2) if lag_s is not None else None}
