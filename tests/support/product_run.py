"""`python -m pipeline run` as a real child process for tests, and ONE such run shared by the tests that can share it.

    run = Run(tmp_path, live="false")                        # a run of the test's own
    run.wait(lambda: run.all_running({"broker", "job"}), 240, "every part running")
    ...
    run.stop()                                               # SIGINT; asserts nothing is left

A whole run (broker, job, live lane, emulator, Prometheus, Alertmanager) takes minutes to come up
on a loaded 2-core box, so the tests that only watch it, freeze a part or kill parts share one:
the fixture ``product_run`` (a `SharedRun`: the run, its webhook receiver and its Prometheus).

* It starts at the first test that asks for it and is stopped (SIGINT, with `Run.stop`'s checks)
  right after the last one: the collection puts the tests that use it next to each other, where
  the first of them was, so it never runs in the background of other tests.
* A test that leaves the run in a state no other test could use (it stops it) is marked
  ``ends_product_run`` and runs after the others.
* Each test first waits until every part is running again (`SharedRun.ready`): a part killed or
  frozen by the test before it is back, or the test fails saying which part is not.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.monitoring.client import PrometheusClient
from pipeline.procs.group import signal_reaches
from pipeline.settings import PROJECT_ROOT
from tests.support.metrics import samples, scrape, value
from tests.support.monitoring import WebhookReceiver
from tests.support.ports import port_run
from tests.support.waiting import wait_for

FIXTURE = "product_run"
ENDS = "ends_product_run"
_LAST_USER = pytest.StashKey[bool]()
# the parts of the shared run: `run --no-app` with the live lane, the emulator and monitoring
SHARED_PARTS = {"broker", "job", "live", "emulator", "prometheus", "alertmanager"}


class Run:
    """One `python -m pipeline run` (--no-app unless `args` say otherwise) and what it wrote."""

    def __init__(self, tmp: Path, args: tuple[str, ...] = ("--no-app",), **env: str):
        base = port_run(26)   # broker, controller, then the metrics ports base+4 .. base+25
        self.data = tmp / "data"
        self.out = tmp / "run.out"
        self.metrics_base = base + 4
        full = {k: v for k, v in os.environ.items() if not k.startswith("TORMENTA_")}
        full.update({"TORMENTA_DATA_DIR": str(self.data), "TORMENTA_BOOTSTRAP_SERVERS": f"127.0.0.1:{base}",
                     "TORMENTA_CONTROLLER_PORT": str(base + 1), "TORMENTA_METRICS_PORT": str(self.metrics_base),
                     "TORMENTA_TRIGGER_INTERVAL": "2s", "TORMENTA_EMULATOR_RATE": "200",
                     "TORMENTA_DRIVER_MEMORY": "1g", "TORMENTA_COMPACT_EVERY": "0", "TORMENTA_MONITORING": "false",
                     "PYTHONUNBUFFERED": "1"})
        full.update({f"TORMENTA_{k.upper()}": v for k, v in env.items()})
        self.env = full
        self.proc = subprocess.Popen([sys.executable, "-m", "pipeline", "run", *args], cwd=PROJECT_ROOT,
                                     env=full, stdout=open(self.out, "wb"), stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.metrics_url = f"http://127.0.0.1:{self.metrics_base + 4}/metrics"   # the run's port: base + 4 (RUN)
        self.pids: set[int] = set()   # every pid of a part seen, for the no-process-left check

    def parts(self) -> dict[str, dict]:
        try:
            data = json.loads((self.data / "run" / "parts.json").read_text())
        except (OSError, ValueError):
            return {}
        parts = {p["name"]: p for p in data["parts"]}
        self.pids.update(p["pid"] for p in parts.values() if p["pid"])
        return parts

    def text(self) -> str:
        return self.out.read_text(errors="replace")

    def wait(self, condition, timeout: float, what: str, every: float = 0.3):
        return wait_for(condition, timeout, what, process=self.proc, log=self.out, every=every)

    def all_running(self, names: set[str]) -> dict[str, dict] | None:
        parts = self.parts()
        return parts if set(parts) == names and all(p["state"] == "running" for p in parts.values()) else None

    def stop(self) -> None:
        """SIGINT, as Ctrl-C; then nothing that run started may be left (again: a second call checks again)."""
        if self.proc.poll() is None:
            self.parts()
            os.kill(self.proc.pid, signal.SIGINT)
        try:
            code = self.proc.wait(240)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            raise
        assert code == 0, self.text()[-3000:]
        left = sorted(p for p in self.pids if signal_reaches(os.kill, p) or signal_reaches(os.killpg, p))
        assert left == [], f"processes (or their groups) left behind: {left}"
        assert not (self.data / "run" / "parts.json").exists()


def alive(pid: int | None) -> bool:
    """Whether `pid` is a live process (not a zombie)."""
    if not pid or not signal_reaches(os.kill, pid):
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def batches(data: Path) -> int:
    """The job's batches so far: commits of its batch_metrics table under the run's data folder."""
    log = data / "delta" / "batch_metrics" / "_delta_log"
    return len(list(log.glob("*.json"))) if log.is_dir() else 0


def emulator_delivered(run: Run) -> float:
    """Messages the run's emulator process has had acknowledged (its own counter: a restarted one starts
    at 0); 0 while its endpoint does not answer."""
    try:
        text = scrape(f"http://127.0.0.1:{run.metrics_base + 2}/metrics", timeout=2)   # the emulator: base + 2
        return value(samples(text), "tormenta_emulator_delivered_total")
    except (OSError, KeyError):
        return 0.0


class SharedRun:
    """The shared `run --no-app` (live lane, emulator, Prometheus and Alertmanager posting to `receiver`)."""

    def __init__(self, tmp: Path):
        self.receiver = WebhookReceiver()
        self.run = Run(tmp, MONITORING="true", ALERT_WEBHOOK=self.receiver.url)
        self.prometheus_port = self.run.metrics_base + 20
        self.prom = PrometheusClient(f"http://127.0.0.1:{self.prometheus_port}", timeout=2)

    def ready(self, timeout: float = 300) -> dict[str, dict]:
        """Wait until every part of the shared run is running (again); returns parts.json's parts."""
        return self.run.wait(lambda: self.run.all_running(SHARED_PARTS), timeout,
                             f"every part of the shared run running: {sorted(SHARED_PARTS)}")

    def close(self) -> None:
        try:
            self.run.stop()
        finally:
            self.receiver.close()


@pytest.fixture(scope="session")
def _shared_product_run(tmp_path_factory):
    shared = SharedRun(tmp_path_factory.mktemp("product-run"))
    try:
        yield shared
    finally:
        shared.close()   # already stopped after its last user; checks again that nothing is left


@pytest.fixture
def product_run(request, _shared_product_run) -> SharedRun:
    """The shared whole-product run; stopped (with `Run.stop`'s checks) after the last test that uses it."""
    yield _shared_product_run
    if request.node.stash.get(_LAST_USER, False):
        _shared_product_run.run.stop()


def pytest_configure(config):
    config.addinivalue_line("markers", f"{ENDS}: the test stops the shared `{FIXTURE}` (it runs after its other users)")


def _uses(item) -> bool:
    return FIXTURE in getattr(item, "fixturenames", ())


def pytest_collection_modifyitems(session, config, items):
    """The users of the shared run side by side, where the first of them was; those marked `ends_product_run` last."""
    users = [it for it in items if _uses(it)]
    if not users:
        return
    first = items.index(users[0])
    users.sort(key=lambda it: it.get_closest_marker(ENDS) is not None)   # stable: otherwise in collection order
    rest = [it for it in items if not _uses(it)]
    items[:] = rest[:first] + users + rest[first:]


def pytest_collection_finish(session):
    """Mark the last selected user of the shared run: its teardown stops the run."""
    users = [it for it in session.items if _uses(it)]
    if users:
        users[-1].stash[_LAST_USER] = True
