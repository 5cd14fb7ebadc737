"""The live lane beside the micro-batch lane, with the whole product running: latency, CPU, memory.

    .venv/bin/python bench/bench_live.py [--rates 10000,50000] [--warmup 30] [--seconds 60] [--trigger 10s] [--no-page]

Starts ``python -m pipeline run`` (broker, topics, micro-batch job, live lane, emulator, app,
and monitoring when it is on) in a temporary data folder on free loopback ports, opens the
Live page in headless Chromium (unless --no-page), waits for the live lane's first record,
then for each rate: steers the emulator there (its control topic), lets it settle for
--warmup seconds and measures for --seconds:

- event -> live topic latency: the moment this process's consumer of the live topic
  receives a record minus the input record's Kafka timestamp (`source_timestamp`),
  p50/p95/p99 over every record of the step;
- event -> visible on the page: the moment a sale's row first appears in the Live page's
  ticker in Chromium (a MutationObserver stamps each new row's transaction_id with the
  browser's clock, the same machine's clock) minus its input record's Kafka timestamp, over
  the sales the page showed (the ticker holds the 15 newest, refreshed every second, so it
  samples the newest sale of each refresh);
- Prometheus and Alertmanager (monitoring, on by default in `run`): their CPU in cores over
  the step and their RSS together at its end (issue 20's budget: <= 0.1 core, <= 300 MiB);
- the live lane's CPU (user+sys of its whole process group: Python driver and Spark JVM)
  in cores over the step, and its RSS at the end;
- freshness of both lanes by event time: live = receive time - event_time; Delta =
  the high_value commit that made the row visible - event_time (pipeline.loadtest.freshness).

It prints one table and a JSON line (with a run id) to quote. The figures hold for the box
as it was: say in any note whether other work was running on it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from pipeline.contract.tables import BATCH_METRICS, HIGH_VALUE, HIGH_VALUE_QUERY  # noqa: E402
from pipeline.live.tail import parse_record  # noqa: E402
from pipeline.settings import Settings  # noqa: E402
from tests.support.ports import free_port, port_run  # noqa: E402

CAUGHT_UP_MS = 2000


def quantiles(values) -> dict[str, float | None]:
    a = np.asarray(values, dtype=float)
    if not a.size:
        return {"n": 0, "p50": None, "p95": None, "p99": None}
    return {"n": int(a.size), **{f"p{q}": float(np.percentile(a, q)) for q in (50, 95, 99)}}


def group_usage(pgid: int) -> tuple[float, int]:
    """(user+sys CPU seconds, RSS bytes) of every process in a process group."""
    import psutil

    cpu, rss = 0.0, 0
    for p in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(p.pid) != pgid:
                continue
            t = p.cpu_times()
            cpu += t.user + t.system
            rss += p.memory_info().rss
        except (psutil.Error, ProcessLookupError, PermissionError):
            continue
    return cpu, rss


# Stamps each ticker row the first time it is in the page (transaction_id is the table's last cell).
WATCH_JS = """() => {
  window.__seen = window.__seen || {};
  const scan = () => {
    const now = Date.now();
    for (const tr of document.querySelectorAll('table tbody tr')) {
      const cells = tr.querySelectorAll('td');
      const tid = cells.length ? cells[cells.length - 1].innerText.trim() : '';
      if (tid && !(tid in window.__seen)) window.__seen[tid] = now;
    }
  };
  new MutationObserver(scan).observe(document.body, {subtree: true, childList: true, characterData: true});
  scan();
}"""


class PageWatch:
    """The Live page open in headless Chromium, stamping when each sale first shows."""

    def __init__(self, url: str):
        from tests.support.app_fixtures import launched_chromium

        self._chromium = launched_chromium()
        self.page = self._chromium.__enter__().new_page(viewport={"width": 1440, "height": 1100})
        self.page.goto(f"{url}/live", wait_until="domcontentloaded")
        self.page.get_by_text("Newest high-value sales").first.wait_for(timeout=300_000)
        self.page.evaluate(WATCH_JS)

    def seen(self) -> dict[str, int]:
        return self.page.evaluate("() => window.__seen")

    def close(self) -> None:
        self._chromium.__exit__(None, None, None)


def page_latency(seen: dict[str, int], rows: list, t0: float, t1: float) -> dict:
    """Seen-on-page minus source timestamp (ms) of the step's sales that the page showed during the step."""
    source = {tid: s for _, s, _, tid in rows}
    return quantiles([ms - source[tid] for tid, ms in seen.items()
                      if tid in source and t0 * 1000 <= ms <= t1 * 1000 + 2000])


def live_consumer(settings: Settings):
    from confluent_kafka import OFFSET_END, Consumer, TopicPartition

    from pipeline.kafka.security import client_config

    c = Consumer(client_config(settings, "app", {"group.id": "bench-live", "enable.auto.commit": False,
                                                 "fetch.wait.max.ms": 10}))
    c.assign([TopicPartition(settings.live_topic, p, OFFSET_END) for p in range(3)])
    return c


def event_seconds(text: str | None) -> float | None:
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def drain(consumer, until: float, sink: list) -> None:
    """Read the live topic until `until` (epoch s): (receive ms, source ms, event s) per record."""
    while time.time() < until:
        for msg in consumer.consume(2000, 0.1):
            if msg.error() is None:
                now = int(time.time() * 1000)
                s = parse_record(msg.key(), msg.value(), msg.timestamp()[1], now)
                if s is not None:
                    sink.append((now, s.source_ms, event_seconds(s.event_time), s.transaction_id))


def delta_freshness(settings: Settings, start: float, end: float) -> dict:
    """Freshness p50/p95/p99 (s) of the high_value rows whose event time falls in [start, end)."""
    from pipeline.loadtest.freshness import Freshness
    from pipeline.read.readers import read_columns

    hv = settings.table_path(HIGH_VALUE)
    bm = settings.table_path(BATCH_METRICS)
    if not (hv / "_delta_log").is_dir() or not (bm / "_delta_log").is_dir():
        return quantiles([])
    rows = read_columns(hv, ["event_time", "batch_id"]).to_pandas()
    batches = read_columns(bm, ["batch_id", "trigger_time", "duration_s", "query"]).to_pandas()
    batches = batches[batches["query"] == HIGH_VALUE_QUERY]
    batch_list = [{"batch_id": int(b.batch_id), "trigger_time": b.trigger_time.timestamp(),
                   "duration_s": float(b.duration_s)} for b in batches.itertuples()]
    et = rows["event_time"].map(lambda t: t.timestamp()).to_numpy(dtype=float)
    f = Freshness.measure(hv, et, rows["batch_id"].to_numpy(), batch_list)
    sel = f.seconds[(et >= start) & (et < end)]
    return quantiles(sel[np.isfinite(sel)] * 1000)


def wait_for_batch_after(settings: Settings, t: float, timeout: float) -> None:
    """Until the job has started a batch after `t` (epoch s), so the step's rows are in Delta; bounded."""
    from pipeline.read.readers import read_columns

    bm = settings.table_path(BATCH_METRICS)
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            times = read_columns(bm, ["trigger_time"]).column("trigger_time").to_pylist()
            if any(x.timestamp() > t for x in times):
                return
        except Exception:  # noqa: BLE001 - the table may not exist yet or be mid-commit
            pass
        time.sleep(2)


def _arguments(argv) -> tuple[argparse.Namespace, list[float]]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default="10000,50000", help="comma-separated tx/s steps (default 10000,50000)")
    ap.add_argument("--warmup", type=float, default=30, help="seconds at each rate before measuring (default 30)")
    ap.add_argument("--seconds", type=float, default=60, help="seconds measured per rate (default 60)")
    ap.add_argument("--trigger", default="10s", help="micro-batch trigger interval (default 10s, the Christmas plan)")
    ap.add_argument("--startup-timeout", type=float, default=600, help="seconds to wait for the first live record")
    ap.add_argument("--no-page", action="store_true", help="do not open the Live page in Chromium (no page latency)")
    ap.add_argument("--dump", type=Path, help="also write every measured live record (rate, receive ms, source ms, id) as CSV here, to see when the tail happens")
    args = ap.parse_args(argv)
    try:
        rates = [float(r) for r in args.rates.split(",")]
    except ValueError:
        ap.error("--rates must be numbers, e.g. 10000,50000")
    if not rates or any(r <= 0 for r in rates) or args.warmup < 0 or args.seconds <= 0:
        ap.error("--rates and --seconds must be positive, --warmup not negative")
    return args, rates


def _caught_up_consumer(settings: Settings, run: subprocess.Popen, log: Path, startup_timeout: float):
    """A consumer of the live topic once the lane writes records under CAUGHT_UP_MS old."""
    deadline = time.time() + 120
    while not (settings.run_dir / "live.pid").exists():
        if run.poll() is not None or time.time() > deadline:
            raise SystemExit(f"`run` did not start the live lane:\n{log.read_text()[-2000:]}")
        time.sleep(0.5)
    consumer = live_consumer(settings)
    first: list = []
    until = time.time() + startup_timeout
    while not first and time.time() < until and run.poll() is None:
        drain(consumer, time.time() + 1, first)
    if not first:
        raise SystemExit(f"no live record within {startup_timeout:g} s:\n{log.read_text()[-2000:]}")
    # The lane starts a minute before its process did and the emulator was producing
    # meanwhile: measure only once it has caught up (a record under CAUGHT_UP_MS old).
    while time.time() < until and not any(r - s < CAUGHT_UP_MS for r, s, _, _ in first[-50:]):
        first = []
        drain(consumer, time.time() + 1, first)
    return consumer


def monitoring_pids(settings: Settings) -> list[int]:
    """The pids (= process groups) of the run's Prometheus and Alertmanager, from parts.json."""
    from pipeline.procs.supervise import read_parts

    data = read_parts(settings.run_dir) or {"parts": []}
    return [int(p["pid"]) for p in data["parts"]
            if isinstance(p, dict) and p.get("name") in ("prometheus", "alertmanager") and p.get("pid")]


def usage(pgids: list[int]) -> tuple[float, int]:
    cpu_rss = [group_usage(g) for g in pgids]
    return sum(c for c, _ in cpu_rss), sum(r for _, r in cpu_rss)


def _step(settings: Settings, consumer, watch: PageWatch | None, rate: float, args) -> dict:
    """Measure one rate (after --warmup seconds there): the step's figures and its time window."""
    live_pgid = int((settings.run_dir / "live.pid").read_text())
    drain(consumer, time.time() + args.warmup, [])
    mon = monitoring_pids(settings)
    cpu0, _ = group_usage(live_pgid)
    mon_cpu0, _ = usage(mon)
    t0 = time.time()
    rows: list = []
    drain(consumer, t0 + args.seconds, rows)
    cpu1, rss = group_usage(live_pgid)
    mon_cpu1, mon_rss = usage(mon)
    t1 = time.time()
    ids = [t for *_, t in rows]
    if args.dump:
        with args.dump.open("a") as out:
            out.writelines(f"{rate:g},{r},{s},{t}\n" for r, s, _, t in rows)
    return {"rate": rate, "live_records": len(rows), "duplicates": len(ids) - len(set(ids)),
            "latency_ms": quantiles([r - s for r, s, _, _ in rows]),
            "page_latency_ms": page_latency(watch.seen(), rows, t0, t1) if watch else quantiles([]),
            "live_freshness_ms": quantiles([r - e * 1000 for r, _, e, _ in rows if e is not None]),
            "live_cpu_cores": (cpu1 - cpu0) / (t1 - t0), "live_rss_mib": rss / 2**20,
            "monitoring_processes": len(mon), "monitoring_cpu_cores": (mon_cpu1 - mon_cpu0) / (t1 - t0),
            "monitoring_rss_mib": mon_rss / 2**20, "window": (t0, t1)}


def main(argv=None) -> int:
    args, rates = _arguments(argv)
    run_id = f"live-{datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:4]}"
    with tempfile.TemporaryDirectory(prefix="tormenta-bench-live-") as tmp:
        env_vars = {"TORMENTA_DATA_DIR": str(Path(tmp) / "data"),
                    "TORMENTA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
                    "TORMENTA_CONTROLLER_PORT": str(free_port()), "TORMENTA_TRIGGER_INTERVAL": args.trigger,
                    "TORMENTA_EMULATOR_RATE": f"{rates[0]:g}", "TORMENTA_LIVE": "true",
                    "TORMENTA_APP_PORT": str(free_port()), "TORMENTA_METRICS_PORT": str(port_run(22))}
        settings = Settings.from_env(env_vars)
        log = Path(tmp) / "run.out"
        env = {k: v for k, v in os.environ.items() if not k.startswith("TORMENTA_")} | env_vars
        run = subprocess.Popen([sys.executable, "-m", "pipeline", "run"], cwd=ROOT, env=env,
                               stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
        started, watch, results = time.time(), None, []
        try:
            consumer = _caught_up_consumer(settings, run, log, args.startup_timeout)
            print(f"live lane caught up after {time.time() - started:.0f} s", file=sys.stderr)
            if not args.no_page:
                watch = PageWatch(f"http://127.0.0.1:{settings.app_port}")
            from pipeline.emulator.control import EmulatorControl

            with EmulatorControl(settings, role="admin") as ctl:
                for rate in rates:
                    ctl.set_desired(rate=rate, changed_by="bench_live")
                    results.append(_step(settings, consumer, watch, rate, args))
            wait_for_batch_after(settings, results[-1]["window"][1], 3 * float(settings.trigger_interval) + 90)
            for r in results:
                r["delta_freshness_ms"] = delta_freshness(settings, *r.pop("window"))
        finally:
            if watch is not None:
                watch.close()
            os.killpg(run.pid, signal.SIGINT)
            try:
                run.wait(180)
            except subprocess.TimeoutExpired:
                os.killpg(run.pid, signal.SIGKILL)
    _print(run_id, results)
    return 0


def _fmt(v, scale=1.0, unit="ms") -> str:
    return "–" if v is None else f"{v * scale:,.0f} {unit}"


def _print(run_id: str, results: list[dict]) -> None:
    print(f"run {run_id} (whole product: broker, micro-batch job, live lane, emulator, app)")
    print(f"{'rate tx/s':>10} {'live recs':>9} {'dup':>4} {'lat p50':>9} {'lat p95':>9} {'lat p99':>9} "
          f"{'page p50':>9} {'page p95':>9} {'live fresh p95':>14} {'delta fresh p95':>15} {'lane cores':>10} {'lane RSS':>9} "
          f"{'mon cores':>9} {'mon RSS':>8}")
    for r in results:
        lat, pg, lf, df = r["latency_ms"], r["page_latency_ms"], r["live_freshness_ms"], r["delta_freshness_ms"]
        print(f"{r['rate']:>10,.0f} {r['live_records']:>9,} {r['duplicates']:>4} {_fmt(lat['p50']):>9} "
              f"{_fmt(lat['p95']):>9} {_fmt(lat['p99']):>9} {_fmt(pg['p50']):>9} {_fmt(pg['p95']):>9} "
              f"{_fmt(lf['p95']):>14} {_fmt(df['p95']):>15} "
              f"{r['live_cpu_cores']:>10.2f} {r['live_rss_mib']:>6.0f} MiB "
              f"{r['monitoring_cpu_cores']:>9.3f} {r['monitoring_rss_mib']:>4.0f} MiB")
    print(json.dumps({"run_id": run_id, "results": results}))


if __name__ == "__main__":
    sys.exit(main())
