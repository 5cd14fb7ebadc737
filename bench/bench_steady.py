"""Benchmark: does the job stay flat at constant input? (issue 19, "Steady state")

    nice -n 5 .venv/bin/python bench/bench_steady.py [--minutes 18] [--rate 5000] [--trigger 10s]
        [--window 2m] [--compact-every 12] [--driver-memory 2g] [--nmt] [--out FILE.json]

Starts a private broker (free loopback ports, a temporary data folder), the job
(``python -m pipeline job``, only the high-value query) and the emulator at a constant
rate, for `--minutes`. The defaults scale the issue's 30-minute run at 10,000 tx/s with a
one-minute trigger and a 10-minute dedupe window down in time: a 10 s trigger and a
2-minute window, so an 18-minute run covers several windows.

Every `--sample` seconds it records: the RSS of the job's Spark JVM (and its heap in use,
from ``jstat``; with ``--nmt`` also what the JVM itself accounts for natively, so RSS minus
that is what native libraries such as RocksDB hold), the size of the streaming state
folder, of the whole checkpoint, of the Delta tables (and their data-file count) and of
the broker's logs. Each batch's duration comes from the job's log line, each upkeep step
from its own log line.

At the end it prints every sample, then the figures that say whether the job is flat:
the slope of the batch duration (s per 10 minutes) and of the JVM RSS (MiB per hour)
after the warm-up (the first `--warmup` minutes), the mean batch duration of the first
and last quarter after the warm-up, the state folder's size at each dedupe window, and the
longest upkeep step (how long it held the stream). Everything it starts is stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.contract.tables import HIGH_VALUE_QUERY  # noqa: E402
from pipeline.kafka.broker import EmbeddedBroker  # noqa: E402
from pipeline.kafka.topic import ensure_topic  # noqa: E402
from pipeline.settings import Settings  # noqa: E402
from tests.support.ports import free_port  # noqa: E402

BATCH_LINE = re.compile(r"^(\S+ \S+) .*? batch (\d+): (\d+) in, .*?, ([\d.]+)s, \S+ behind \((.*)\)")
UPKEEP_LINE = re.compile(r"^(\S+ \S+) .*? upkeep (.*?) ([\d.]+)s")
STAGE = re.compile(r"read\+decode\+dedupe\+summarise ([\d.]+)s")


def dir_size(path: Path) -> tuple[int, int]:
    """(bytes, files) under `path` (0, 0 when missing)."""
    total = files = 0
    for root, _dirs, names in os.walk(path):
        for n in names:
            try:
                total += os.lstat(os.path.join(root, n)).st_size
                files += 1
            except OSError:
                pass
    return total, files


def data_files(delta: Path) -> int:
    """Parquet data files of every Delta table (what a reader opens; the log not counted)."""
    return sum(1 for p in delta.rglob("*.parquet") if "_delta_log" not in p.parts)


def jvm_of(proc: psutil.Process) -> psutil.Process | None:
    try:
        return next((c for c in proc.children(recursive=True) if c.name() == "java"), None)
    except psutil.Error:
        return None


def heap_used_mib(pid: int) -> float | None:
    """Heap in use (survivor + eden + old), from `jstat -gc` (KiB columns)."""
    try:
        out = subprocess.run(["jstat", "-gc", str(pid)], capture_output=True, text=True, timeout=20).stdout.split("\n")
        cols = dict(zip(out[0].split(), out[1].split(), strict=False))
        return sum(float(cols[k]) for k in ("S0U", "S1U", "EU", "OU")) / 1024
    except (OSError, subprocess.SubprocessError, KeyError, IndexError, ValueError):
        return None


def nmt_committed_mib(pid: int) -> dict[str, float]:
    """What the JVM accounts for itself (Native Memory Tracking, 'committed'): the total under
    "total" and each category (Java Heap, Class, Thread, Code, GC, Other, ...) under its name."""
    try:
        out = subprocess.run(["jcmd", str(pid), "VM.native_memory", "summary"], capture_output=True, text=True,
                             timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    found = {"total": m.group(1)} if (m := re.search(r"Total: reserved=\d+KB, committed=(\d+)KB", out)) else {}
    found |= dict(re.findall(r"^-\s+(\S[^(]*?)\s+\(reserved=\d+KB, committed=(\d+)KB", out, re.M))
    return {k: int(v) / 1024 for k, v in found.items()}


def live_heap(pid: int, out: Path) -> dict:
    """A class histogram of the live heap (a full GC): its total, and what the status store
    behind the Spark UI and Delta's snapshots hold. The whole histogram goes to `out`."""
    try:
        text = subprocess.run(["jcmd", str(pid), "GC.class_histogram"], capture_output=True, text=True,
                              timeout=120).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    out.write_text(text)
    total = re.search(r"^Total\s+(\d+)\s+(\d+)", text, re.M)
    watched = {}
    for m in re.finditer(r"^\s*\d+:\s+(\d+)\s+(\d+)\s+(\S+)", text, re.M):
        name = m.group(3)
        if re.search(r"status\.(TaskDataWrapper|StageDataWrapper|JobDataWrapper)|ui\.(SQLExecutionUIData|SparkPlanGraph"
                     r"(Node|Wrapper)?)$|delta\.Snapshot$|state\.RocksDB$", name):
            watched[name.rsplit(".", 1)[-1]] = {"instances": int(m.group(1)), "mb": int(m.group(2)) / 1e6}
    return {"live_heap_mb": int(total.group(2)) / 1e6 if total else None, "classes": watched}


def sample(t0: float, job: psutil.Process, data: Path, nmt: bool) -> dict:
    jvm = jvm_of(job)
    rss = heap = None
    native: dict[str, float] = {}
    if jvm is not None:
        try:
            rss = jvm.memory_info().rss / 2**20
        except psutil.Error:
            pass
        heap = heap_used_mib(jvm.pid)
        native = nmt_committed_mib(jvm.pid) if nmt else {}
    state, state_files = dir_size(data / "checkpoints" / HIGH_VALUE_QUERY / "state")
    return {"t_min": (time.monotonic() - t0) / 60, "jvm_rss_mib": rss, "heap_used_mib": heap, "jvm_nmt_mib": native.get("total"),
            "nmt_mib": native, "rss_outside_nmt_mib": rss - native["total"] if rss and "total" in native else None,
            "state_mb": state / 1e6, "state_files": state_files,
            "checkpoint_mb": dir_size(data / "checkpoints")[0] / 1e6,
            "delta_mb": dir_size(data / "delta")[0] / 1e6, "delta_data_files": data_files(data / "delta"),
            "broker_mb": dir_size(data / "broker")[0] / 1e6, "spark_tmp_mb": dir_size(data / "spark-tmp")[0] / 1e6}


def parse_log(text: str) -> tuple[list[dict], list[dict]]:
    """Batches and upkeep steps from the job's log."""
    batches, upkeeps = [], []
    for line in text.splitlines():
        if m := BATCH_LINE.search(line):
            s = STAGE.search(m.group(5))
            batches.append({"at": m.group(1), "id": int(m.group(2)), "rows": int(m.group(3)),
                            "seconds": float(m.group(4)), "read_s": float(s.group(1)) if s else None})
        elif m := UPKEEP_LINE.search(line):
            upkeeps.append({"at": m.group(1), "what": m.group(2), "seconds": float(m.group(3))})
    return batches, upkeeps


def slope(xs: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of ys over xs (None with fewer than 3 points)."""
    pts = [(x, y) for x, y in zip(xs, ys, strict=True) if y is not None]
    if len(pts) < 3:
        return None
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    den = sum((x - mx) ** 2 for x, _ in pts)
    return sum((x - mx) * (y - my) for x, y in pts) / den if den else None


def batch_minutes(batches: list[dict]) -> list[float]:
    """Minutes since the first batch, from the log's timestamps."""
    from datetime import datetime

    def ts(b: dict) -> float:
        return datetime.strptime(b["at"], "%Y-%m-%d %H:%M:%S,%f").timestamp()

    return [(ts(b) - ts(batches[0])) / 60 for b in batches] if batches else []


def summary(samples: list[dict], batches: list[dict], upkeeps: list[dict], warmup: float) -> dict:
    late = [s for s in samples if s["t_min"] >= warmup]
    mins = batch_minutes(batches)
    # batches start about one minute (JVM, tables) after the samples' clock
    steady = [(m, b) for m, b in zip(mins, batches, strict=True) if m >= warmup - 1 and b["id"] > 1]
    q = max(1, len(steady) // 4)
    first, last = [b["seconds"] for _, b in steady[:q]], [b["seconds"] for _, b in steady[-q:]]
    rss = slope([s["t_min"] / 60 for s in late], [s["jvm_rss_mib"] for s in late])
    dur = slope([m / 10 for m, _ in steady], [b["seconds"] for _, b in steady])
    return {
        "batches": len(batches), "rows_per_batch_mean": sum(b["rows"] for b in batches) / max(1, len(batches)),
        "batch_s_first_quarter": sum(first) / max(1, len(first)), "batch_s_last_quarter": sum(last) / max(1, len(last)),
        "batch_s_slope_per_10min": dur, "jvm_rss_slope_mib_per_h": rss,
        "jvm_rss_first_mib": late[0]["jvm_rss_mib"] if late else None,
        "jvm_rss_last_mib": late[-1]["jvm_rss_mib"] if late else None,
        "state_mb_last": samples[-1]["state_mb"] if samples else None,
        "state_mb_max": max((s["state_mb"] for s in samples), default=None),
        "upkeep_longest_s": max((u["seconds"] for u in upkeeps), default=0.0), "upkeep_steps": len(upkeeps),
        **nmt_growth(late),
    }


def nmt_growth(late: list[dict]) -> dict:
    """From the first sample after warm-up to the last: the growth of RSS outside what the JVM
    accounts for, and of each NMT category that grew by 5 MiB or more (with --nmt)."""
    if len(late) < 2 or not late[0].get("nmt_mib") or not late[-1].get("nmt_mib"):
        return {}
    first, last = late[0], late[-1]
    grown = {f"nmt_growth_mib {k}": last["nmt_mib"][k] - v for k, v in first["nmt_mib"].items()
             if k in last["nmt_mib"] and last["nmt_mib"][k] - v >= 5}
    if first["rss_outside_nmt_mib"] is not None and last["rss_outside_nmt_mib"] is not None:
        grown["rss_outside_nmt_growth_mib"] = last["rss_outside_nmt_mib"] - first["rss_outside_nmt_mib"]
    return grown


def settings_env(args, tmp: Path) -> dict[str, str]:
    env = {
        "TORMENTA_DATA_DIR": str(tmp), "TORMENTA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        "TORMENTA_CONTROLLER_PORT": str(free_port()), "TORMENTA_METRICS_PORT": "0",
        "TORMENTA_TRIGGER_INTERVAL": args.trigger, "TORMENTA_DEDUP_WINDOW": args.window,
        "TORMENTA_COMPACT_EVERY": str(args.compact_every), "TORMENTA_DRIVER_MEMORY": args.driver_memory,
    }
    for kv in args.env:
        k, _, v = kv.partition("=")
        env[k] = v
    return env


def start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "pipeline", *cmd], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen | None, timeout: float = 120) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the job's own group: its JVM with it
        proc.wait(10)


def wait_started(job: subprocess.Popen, log: Path, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while f"query {HIGH_VALUE_QUERY} started" not in log.read_text(errors="replace"):
        if job.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the job did not start its query (exit {job.poll()}); see {log}")
        time.sleep(1)


def run(args, tmp: Path) -> tuple[list[dict], str]:
    env_vars = settings_env(args, tmp)
    env = {**os.environ, **env_vars, "PYTHONUNBUFFERED": "1"}
    if args.nmt:
        env["JAVA_TOOL_OPTIONS"] = "-XX:NativeMemoryTracking=summary"
    if args.conf:
        env["PYSPARK_SUBMIT_ARGS"] = " ".join(f"--conf {c}" for c in args.conf) + " pyspark-shell"
    broker = EmbeddedBroker(Settings.from_env(env_vars))
    broker.start()
    job = emu = None
    samples: list[dict] = []
    try:
        ensure_topic(Settings.from_env(env_vars))
        job = start(["job", "--query", HIGH_VALUE_QUERY], env, tmp / "job.log")
        wait_started(job, tmp / "job.log")  # a cold JVM takes minutes on a busy box: no backlog meanwhile
        emu = start(["emulate", "--rate", str(args.rate), "--no-control", "--quiet"], env, tmp / "emulator.log")
        t0, proc = time.monotonic(), psutil.Process(job.pid)
        while (elapsed := time.monotonic() - t0) < args.minutes * 60:
            time.sleep(min(args.sample, args.minutes * 60 - elapsed))
            if job.poll() is not None or emu.poll() is not None:
                raise SystemExit(f"a child ended early (job {job.poll()}, emulator {emu.poll()}); logs in {tmp}")
            samples.append(sample(t0, proc, tmp, args.nmt))
            s = samples[-1]
            print(f"{s['t_min']:5.1f} min  jvm rss {s['jvm_rss_mib'] or 0:6.0f} MiB  heap {s['heap_used_mib'] or 0:6.0f}"
                  f"  nmt {s['jvm_nmt_mib'] or 0:6.0f} (outside {s['rss_outside_nmt_mib'] or 0:5.0f})  state {s['state_mb']:6.1f} MB ({s['state_files']} files)"
                  f"  checkpoint {s['checkpoint_mb']:6.1f} MB  delta {s['delta_mb']:5.1f} MB"
                  f" ({s['delta_data_files']} files)  broker {s['broker_mb']:6.1f} MB  spark-tmp {s['spark_tmp_mb']:5.1f} MB",
                  flush=True)
        jvm = jvm_of(proc)
        heap = live_heap(jvm.pid, tmp / "histogram.txt") if jvm is not None else {}
        print(f"live heap at the end: {heap.get('live_heap_mb') or 0:.0f} MB; {heap.get('classes')}", flush=True)
    finally:
        stop(emu, 30)
        stop(job)
        broker.stop()
    return samples, (tmp / "job.log").read_text(errors="replace")


def report(res: dict) -> None:
    for b in res["batch_list"]:
        print(f"batch {b['id']:4d} at {b['at'][11:19]}: {b['rows']:8,} rows {b['seconds']:6.1f} s"
              f" (read+decode+dedupe+summarise {b['read_s'] or 0:.1f} s)")
    for u in res["upkeep_list"]:
        print(f"upkeep at {u['at'][11:19]}: {u['what']} {u['seconds']:.1f} s")
    for k, v in res["summary"].items():
        print(f"{k:30s} {v:.2f}" if isinstance(v, float) else f"{k:30s} {v}")


def _interrupt(*_) -> None:
    raise KeyboardInterrupt  # SIGTERM too (and SIGINT, ignored in a shell's background job): stop what was started


def main() -> int:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _interrupt)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=18)
    ap.add_argument("--rate", type=int, default=5000, help="transactions per second")
    ap.add_argument("--trigger", default="10s")
    ap.add_argument("--window", default="2m", help="dedupe window (TORMENTA_DEDUP_WINDOW)")
    ap.add_argument("--compact-every", type=int, default=12)
    ap.add_argument("--driver-memory", default="2g")
    ap.add_argument("--warmup", type=float, default=3, help="minutes left out of the slopes")
    ap.add_argument("--sample", type=float, default=30, help="seconds between samples")
    ap.add_argument("--nmt", action="store_true", help="JVM native memory tracking (a little overhead)")
    ap.add_argument("--conf", action="append", default=[], metavar="K=V", help="extra Spark conf (repeatable)")
    ap.add_argument("--env", action="append", default=[], metavar="K=V", help="extra TORMENTA_ setting (repeatable)")
    ap.add_argument("--out", type=Path, help="write samples, batches and summary as JSON here")
    ap.add_argument("--keep", action="store_true", help="keep the data folder (printed)")
    args = ap.parse_args()
    if args.minutes <= 0 or args.rate <= 0 or args.sample <= 0 or args.compact_every < 0:
        ap.error("--minutes, --rate and --sample must be positive, --compact-every zero or more")
    tmp = Path(tempfile.mkdtemp(prefix="tormenta-bench-steady-"))
    try:
        samples, log = run(args, tmp)
        batches, upkeeps = parse_log(log)
        res = {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
               "samples": samples, "batch_list": batches, "upkeep_list": upkeeps,
               "summary": summary(samples, batches, upkeeps, args.warmup)}
        report(res)
        if args.out:
            args.out.write_text(json.dumps(res, indent=1))
    finally:
        if args.keep:
            print(f"data folder kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
