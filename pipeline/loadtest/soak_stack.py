"""The product under a soak: ``python -m pipeline run`` as a subprocess, on its own data folder and ports.

`SoakStack.start()` picks free loopback ports (the broker's client and controller ports,
the app's, a block of 22 for the metrics base), starts ``run`` with
``TORMENTA_DATA_DIR=<soak folder>/data`` and those ports in its environment (so it starts
its own broker, or 3 nodes), the emulator at the soak's rate and the soak's trigger, and
waits until ``parts.json`` shows every part running, the job has committed its first batch
and the app's health endpoint answers. `stop()` sends ``run`` SIGTERM (it stops its
children, then the broker) and makes sure nothing it listed is left.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sys
import time
import urllib.request
from pathlib import Path

import psutil

from pipeline.contract.tables import HIGH_VALUE_QUERY
from pipeline.loadtest import LoadTestError
from pipeline.loadtest.soak_parts import read_parts
from pipeline.metrics.ports import bindable
from pipeline.procs.child import Child
from pipeline.procs.net import listening_port_range
from pipeline.settings import Settings

START_TIMEOUT_S = 600.0
METRICS_BLOCK = 22   # the metrics base port and its offsets (+0 .. +21)


def free_block(size: int, rng: random.Random, low: int | None = None, high: int | None = None,
               taken: set[int] = frozenset()) -> int:
    """The first port of `size` consecutive free loopback ports (none in `taken`), by
    default outside the kernel's ephemeral range: the chaos run kills and restarts the
    broker nodes, whose ports must not meanwhile become some connection's source port."""
    span = listening_port_range()
    low, high = low if low is not None else span[0], high if high is not None else span[1]
    for _ in range(500):
        base = rng.randrange(low, high - size)
        ports = range(base, base + size)
        if not taken.intersection(ports) and all(bindable(p) for p in ports):
            return base
    raise LoadTestError(f"no {size} consecutive free ports on 127.0.0.1 between {low} and {high}")


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status == 200
    except OSError:
        return False


class SoakStack:
    """``run`` and what it needs: ports, environment, the settings its children see."""

    def __init__(self, folder: Path, *, rate: float, trigger_s: float, nodes: int, base_env: dict[str, str] | None = None):
        self.folder = folder
        rng = random.Random()
        taken: set[int] = set()
        picks = {}
        for name, size in (("broker", 2 * nodes), ("controller", 2 * nodes), ("app", 1), ("metrics", METRICS_BLOCK)):
            picks[name] = free_block(size, rng, taken=taken)
            taken.update(range(picks[name], picks[name] + size))
        self.ports = picks
        self.env = dict(base_env if base_env is not None else os.environ)
        self.env.update({
            "TORMENTA_DATA_DIR": str(folder / "data"), "TORMENTA_BOOTSTRAP_SERVERS": f"127.0.0.1:{picks['broker']}",
            "TORMENTA_CONTROLLER_PORT": str(picks["controller"]), "TORMENTA_BROKER_NODES": str(nodes),
            "TORMENTA_APP_PORT": str(picks["app"]), "TORMENTA_METRICS_PORT": str(picks["metrics"]),
            "TORMENTA_EMULATOR_RATE": f"{rate:g}", "TORMENTA_TRIGGER_INTERVAL": f"{trigger_s:g}s",
            "TORMENTA_APP_ADDRESS": "127.0.0.1", "PYTHONUNBUFFERED": "1",
        })
        self.settings = Settings.from_env(self.env)
        self.run: Child | None = None
        self.last_pids: dict[str, int] = {}

    @property
    def run_dir(self) -> Path:
        return self.settings.run_dir

    @property
    def app_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['app']}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['metrics']}/metrics"  # the job's (+0)

    def app_healthy(self) -> bool:
        return http_ok(f"{self.app_url}/_stcore/health")

    def job_committed_since(self, t: float) -> bool:
        """A batch of the job's high-value query committed after epoch second `t`."""
        commits = self.settings.checkpoint_dir / HIGH_VALUE_QUERY / "commits"
        try:
            return any(p.stat().st_mtime > t for p in commits.iterdir() if p.name.isdigit())
        except OSError:
            return False

    def start(self, stop, event) -> None:
        (self.folder / "data").mkdir(parents=True, exist_ok=True)
        self.run = Child("run", [sys.executable, "-m", "pipeline", "run"], self.folder / "run.log", env=self.env).start()
        event(f"python -m pipeline run started (pid {self.run.pid}); broker 127.0.0.1:{self.ports['broker']}, "
              f"app {self.app_url}, data in {self.folder / 'data'}")
        deadline = time.monotonic() + START_TIMEOUT_S
        want = None
        while time.monotonic() < deadline and not stop.is_set():
            if not self.run.alive():
                raise LoadTestError(f"run exited with code {self.run.returncode} at start-up:\n{self.run.tail(20)}")
            parts = read_parts(self.run_dir)
            if parts and want is None and "Tormenta is running" in self.run.log_path.read_text(errors="replace"):
                want = set(parts)
            if want and all(parts.get(n) and parts[n].running for n in want) and self.job_committed_since(0) \
                    and ("app" not in want or self.app_healthy()):
                event(f"every part runs ({', '.join(sorted(want))}); the job committed its first batch")
                self.last_pids = {n: p.pid for n, p in parts.items() if p.pid}
                return
            stop.wait(1.0)  # run's children start in other processes: poll their files
        if not stop.is_set():
            raise LoadTestError(f"the product was not up within {START_TIMEOUT_S:.0f} s; see {self.folder / 'run.log'} "
                                f"and {self.run_dir}")

    def alive(self) -> bool:
        return self.run is not None and self.run.alive()

    def stop(self, event) -> None:
        """SIGTERM to run (children, then the broker); then whatever it listed and left is killed."""
        if self.run is None:
            return
        parts = read_parts(self.run_dir)
        pids = {n: p.pid for n, p in parts.items() if p.pid} or self.last_pids
        code = self.run.stop(240.0)
        event(f"run stopped (exit code {code})")
        for name, pid in pids.items():
            left = group_alive(pid)
            if left:
                for p in left:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(p, signal.SIGKILL)
                event(f"{name}: {len(left)} process(es) of its group outlived run: killed")


def group_alive(pgid: int) -> list[int]:
    """Pids of the live (not zombie) processes in process group `pgid`."""
    out = []
    for p in psutil.process_iter(["status"]):
        try:
            if os.getpgid(p.pid) == pgid and p.info["status"] != psutil.STATUS_ZOMBIE:
                out.append(p.pid)
        except (OSError, psutil.Error):
            continue
    return out
