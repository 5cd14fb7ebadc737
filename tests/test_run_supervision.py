"""`python -m pipeline run` supervises its parts (issue 19, item 1), with real processes.

Each test starts `run --no-app` in its own session, data folder and free ports, reads the
supervisor's ``run/parts.json`` and the run's output, and ends with SIGINT: nothing it
started may be left (every pid recorded and its process group are gone).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from pipeline.procs.group import signal_reaches
from pipeline.settings import PROJECT_ROOT
from tests.support.ports import port_run
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration
RESTART_WITHIN = 1 + 5 + 30   # first backoff + the cleanup of the dead part's group + slack on a busy box


class Run:
    """One `python -m pipeline run --no-app` and what it wrote."""

    def __init__(self, tmp: Path, **env: str):
        base = port_run(26)   # broker, controller, then the metrics ports base+4 .. base+25
        self.data = tmp / "data"
        self.out = tmp / "run.out"
        full = {k: v for k, v in os.environ.items() if not k.startswith("TORMENTA_")}
        full.update({"TORMENTA_DATA_DIR": str(self.data), "TORMENTA_BOOTSTRAP_SERVERS": f"127.0.0.1:{base}",
                     "TORMENTA_CONTROLLER_PORT": str(base + 1), "TORMENTA_METRICS_PORT": str(base + 4),
                     "TORMENTA_TRIGGER_INTERVAL": "2s", "TORMENTA_EMULATOR_RATE": "200",
                     "TORMENTA_DRIVER_MEMORY": "1g", "TORMENTA_COMPACT_EVERY": "0", "TORMENTA_MONITORING": "false",
                     "PYTHONUNBUFFERED": "1"})
        full.update({f"TORMENTA_{k.upper()}": v for k, v in env.items()})
        self.env = full
        self.proc = subprocess.Popen([sys.executable, "-m", "pipeline", "run", "--no-app"], cwd=PROJECT_ROOT,
                                     env=full, stdout=open(self.out, "wb"), stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.metrics_url = f"http://127.0.0.1:{base + 4 + 4}/metrics"   # the run's port: base + 4 (RUN)
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

    def wait(self, condition, timeout: float, what: str):
        return wait_for(condition, timeout, what, process=self.proc, log=self.out, every=0.3)

    def all_running(self, names: set[str]) -> dict[str, dict] | None:
        parts = self.parts()
        return parts if set(parts) == names and all(p["state"] == "running" for p in parts.values()) else None

    def stop(self) -> None:
        """SIGINT, as Ctrl-C; then nothing that run started may be left."""
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


def _alive(pid: int | None) -> bool:
    if not pid or not signal_reaches(os.kill, pid):
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def _batches(data: Path) -> int:
    log = data / "delta" / "batch_metrics" / "_delta_log"
    return len(list(log.glob("*.json"))) if log.is_dir() else 0


@pytest.mark.slow
@pytest.mark.timeout(2700)
def test_each_killed_part_comes_back_and_the_job_goes_on(tmp_path):
    run = Run(tmp_path)
    names = {"broker", "job", "live", "emulator"}
    try:
        run.wait(lambda: run.all_running(names), 240, "every part running in parts.json")
        run.wait(lambda: _batches(run.data) >= 2, 900, "the job's first batches")   # 6 min seen on a busy box
        for name in ("job", "live", "emulator", "broker"):   # the broker last: the others may restart after it
            old = run.parts()[name]
            assert old["restarts"] == 0 and _alive(old["pid"]), old
            os.kill(old["pid"], signal.SIGKILL)
            back = run.wait(lambda n=name, o=old["pid"]: (p := run.parts().get(n)) and p["state"] == "running"
                            and p["restarts"] == 1 and p["pid"] != o and _alive(p["pid"]) and p,
                            RESTART_WITHIN, f"{name} restarted after kill -9")
            assert back["last_exit_code"] == -9, back
            assert f"{name} exited with code -9" in run.text()
            assert f"{name} restarted (pid {back['pid']})" in run.text()
        seen = _batches(run.data)
        run.wait(lambda: _batches(run.data) >= seen + 2, 900, "new batches of the job after all the kills")
        assert "crash loop" not in run.text()
    finally:
        run.stop()
    rec = _catch_up_and_reconcile(run)
    assert rec.expected > 0 and (rec.lost, rec.duplicated, rec.unexpected) == (0, 0, 0), rec.sentence()


def _catch_up_and_reconcile(run: Run):
    """After the run: the broker again, `job --once` to process what is left in the topic, then every
    high-value message of the topic against the high_value table, by id (the emulator was killed too,
    so the topic, not the emulator, is the reference)."""
    from pipeline.kafka.security import client_config
    from pipeline.loadtest.soak_reconcile import reconcile_soak, scan_topic
    from pipeline.settings import Settings

    settings = Settings.from_env(run.env)

    def cli(*args: str, timeout: float) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=PROJECT_ROOT, env=run.env,
                              capture_output=True, text=True, timeout=timeout)

    start = cli("broker", "start", timeout=240)
    try:
        assert start.returncode == 0, start.stdout + start.stderr
        once = cli("job", "--once", timeout=900)
        assert once.returncode == 0, once.stderr[-3000:]
        facts = scan_topic(client_config(settings, "admin"), settings.topic, settings.threshold, timeout_s=300)
        rec, _ = reconcile_soak(facts, settings.delta_dir)
    finally:
        cli("broker", "stop", timeout=120)
    return rec


@pytest.mark.timeout(900)
def test_a_part_that_always_fails_ends_in_one_crash_loop_line_and_the_rest_keeps_running(tmp_path):
    run = Run(tmp_path, live="false", sample_file=str(tmp_path / "no-such-samples.jsonl.gz"))
    try:
        emu = run.wait(lambda: (p := run.parts().get("emulator")) and p["state"] == "crash-loop" and p, 300,
                       "the emulator's crash loop")
        assert emu["restarts"] == 4 and emu["last_exit_code"] == 1 and emu["pid"] is None, emu
        out = run.text()
        loops = [ln for ln in out.splitlines() if "crash loop" in ln]
        assert loops == [ln for ln in loops if ln.startswith("emulator exited 5 times within 10 min")] and len(loops) == 1
        after = out.split(loops[0], 1)[1]
        assert "no-such-samples.jsonl.gz does not exist" in after   # the end of its log follows the line
        assert [ln.split(";")[1].strip() for ln in out.splitlines() if ln.startswith("emulator exited with code 1")] \
            == ["restarting in 1s (restart 1)", "restarting in 2s (restart 2)", "restarting in 4s (restart 3)",
                "restarting in 8s (restart 4)"]
        parts = run.parts()
        for name in ("broker", "job"):   # the rest keeps running, never restarted
            assert parts[name]["state"] == "running" and parts[name]["restarts"] == 0 and _alive(parts[name]["pid"])
        text = urllib.request.urlopen(run.metrics_url, timeout=10).read().decode()
        assert 'tormenta_part_crash_looped{part="emulator"} 1.0' in text and 'tormenta_part_up{part="job"} 1.0' in text
        assert 'tormenta_part_restarts_total{part="emulator"} 4.0' in text
        check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, check.stdout + check.stderr
        run.wait(lambda: _batches(run.data) >= 1, 400, "a batch of the job while the emulator is down")
    finally:
        run.stop()
