"""The processes of one load test: the real job, the sampler, the real emulator and its control client.

`RunStack.start` brings them up in order, each only once the one before is ready: the
run's topics, the job (until its query runs and batch 0 committed), the sampler (until its
first sample), the emulator (until its first status). `RunStack.stop` ends them in reverse
(sampler, emulator, control client, job) and returns the job's exit code. Every child runs
with the run's own topics and data folder in its environment, its log in the run's folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from typing import Any

from pipeline.contract.tables import HIGH_VALUE_QUERY
from pipeline.errors import TormentaError
from pipeline.kafka.security import client_config, security_env
from pipeline.loadtest import LoadTestError
from pipeline.loadtest.plan import Plan
from pipeline.loadtest.progress import Progress
from pipeline.loadtest.sampling import Sampler
from pipeline.procs.child import Child
from pipeline.settings import Settings

EMULATOR_NAME = "loadtest"
JOB_START_TIMEOUT_S = 180.0
EMULATOR_START_TIMEOUT_S = 60.0


class RunStack:
    """What a run started (None until started)."""

    def __init__(self, run_settings: Settings, plan: Plan, progress: Progress):
        self.rs, self.plan, self.progress = run_settings, plan, progress
        self.dir = progress.dir
        self.job: Child | None = None
        self.live: Child | None = None  # the live lane (TORMENTA_LIVE), measured and reconciled after the run
        self.emulator: Child | None = None
        self.sampler: Sampler | None = None
        self.ctl: Any = None

    def env(self) -> dict[str, str]:
        """The children's environment: the run's topics, data folder, trigger and identity."""
        rs = self.rs
        return dict(os.environ, **{
            "TORMENTA_BOOTSTRAP_SERVERS": rs.bootstrap_servers, "TORMENTA_TOPIC": rs.topic,
            "TORMENTA_CONTROL_TOPIC": rs.control_topic, "TORMENTA_STATUS_TOPIC": rs.status_topic,
            "TORMENTA_LIVE_TOPIC": rs.live_topic,
            "TORMENTA_DATA_DIR": str(rs.data_dir), "TORMENTA_TRIGGER_INTERVAL": f"{self.plan.trigger_s:g}s",
            "TORMENTA_COMPACT_EVERY": "0", "TORMENTA_THRESHOLD": str(rs.threshold),
            "TORMENTA_PARTITIONS": str(rs.partitions), "TORMENTA_METRICS_PORT": str(rs.metrics_port),
            "PYTHONUNBUFFERED": "1",
            **security_env(rs),
        })

    def start(self, stop: threading.Event, broker_pid: int | None) -> None:
        """Topics, the job (until its first batch), the sampler, the emulator (until its first status)."""
        from pipeline.emulator.control import EmulatorControl, ensure_control_topics
        from pipeline.kafka.topic import ensure_topic

        rs, event = self.rs, self.progress.event
        ensure_topic(rs)
        ensure_control_topics(rs)
        event(f"topic {rs.topic} ({rs.partitions} partitions), data in {rs.data_dir}")
        env, py = self.env(), sys.executable
        self.job = job = Child("job", [py, "-m", "pipeline", "job", "--query", HIGH_VALUE_QUERY], self.dir / "job.log",
                               env=env).start()
        event(f"job started (pid {job.pid}), trigger {self.plan.trigger_s:g} s")
        self._wait_for_job(stop)
        if rs.live:
            # Started before the emulator, so its first checkpoint's lookback covers every record
            # of the run; it is not waited for (its Spark start overlaps the warm-up).
            from pipeline.kafka.topic import ensure_live_topic

            ensure_live_topic(rs)
            self.live = Child("live", [py, "-m", "pipeline", "live"], self.dir / "live.log", env=env).start()
            event(f"live lane started (pid {self.live.pid}), writing {rs.live_topic}")
        self.sampler = sampler = Sampler(
            kafka=client_config(rs, "admin"), topic=rs.topic, status_topic=rs.status_topic,
            emulator_name=EMULATOR_NAME, checkpoint=rs.checkpoint_dir / HIGH_VALUE_QUERY,
            pids=lambda: {"emulator": self.emulator.pid if self.emulator else None, "broker": broker_pid,
                          "job": job.pid, "loadtest": os.getpid()},
            target=self.progress.target_at, job_alive=job.alive, on_sample=self.progress.write)
        sampler.start()
        if sampler.wait_for(lambda s: True, 30, stop) is None and not stop.is_set():
            raise LoadTestError(f"the sampler took no sample within 30 s: {sampler.error or 'no reason'}")
        self.emulator = Child("emulator", [py, "-m", "pipeline", "emulate", "--name", EMULATOR_NAME,
                                           "--rate", f"{self.plan.steps[0].rate:g}",
                                           "--record-ids", str(self.dir / "ids.txt"), "--quiet"],
                              self.dir / "emulator.log", env=env, stdout=self.dir / "emulator.out.json").start()
        self._wait_for_emulator(stop)
        self.ctl = EmulatorControl(rs, EMULATOR_NAME, role="admin")

    def _wait_for_job(self, stop: threading.Event, timeout: float = JOB_START_TIMEOUT_S) -> None:
        """Until the query runs and (at most 90 s more) its batch 0 is committed.

        Batch 0 runs at once, even on an empty topic; waiting for its commit means the warm-up
        step does not pay for the JVM's first-batch start-up (class loading, code generation).
        """
        job = self.job
        assert job is not None
        deadline = time.monotonic() + timeout
        first_commit = self.rs.checkpoint_dir / HIGH_VALUE_QUERY / "commits" / "0"
        started_at = None
        while time.monotonic() < deadline and not stop.is_set():
            if not job.alive():
                raise LoadTestError(f"the job exited with code {job.returncode} at start-up:\n{job.tail()}")
            if started_at is None:
                try:
                    if f"query {HIGH_VALUE_QUERY} started" in job.log_path.read_text(errors="replace"):
                        started_at = time.monotonic()
                        deadline = min(deadline + 90, started_at + 90)
                except OSError:
                    pass
            if first_commit.exists():
                self.progress.event(f"job query {HIGH_VALUE_QUERY} is running (first batch committed)")
                return
            stop.wait(0.5)  # polls the job's log and checkpoint, files another process writes
        if started_at is not None:
            self.progress.event(f"job query {HIGH_VALUE_QUERY} is running (no first batch yet)")
            return
        if not stop.is_set():
            raise LoadTestError(f"the job did not start its query within {timeout:.0f} s; see {job.log_path}")

    def _wait_for_emulator(self, stop: threading.Event, timeout: float = EMULATOR_START_TIMEOUT_S) -> None:
        """Until the sampler has read the emulator's first status (it is producing)."""
        emulator, sampler = self.emulator, self.sampler
        assert emulator is not None and sampler is not None
        sampler.wait_for(lambda s: sampler.status is not None or not emulator.alive(), timeout, stop)
        if not emulator.alive():
            raise LoadTestError(f"the emulator exited with code {emulator.returncode}:\n{emulator.tail()}")
        if sampler.status is not None:
            self.progress.event(f"emulator producing (pid {emulator.pid})")
        elif not stop.is_set():
            raise LoadTestError(f"no status from the emulator within {timeout:.0f} s; see {emulator.log_path}")

    def dead(self) -> Child | None:
        """The job or the emulator if it has ended, else None."""
        return next((c for c in (self.job, self.emulator) if c is not None and not c.alive()), None)

    def stop_emulator(self, timeout: float = 60.0) -> dict[str, Any]:
        """Stop producing through the control topic (SIGTERM if that fails); the emulator's summary."""
        emulator = self.emulator
        assert emulator is not None
        try:
            self.ctl.set_desired(state="stopped")
        except TormentaError as exc:
            self.progress.event(f"could not stop the emulator through its control topic ({exc}); sending SIGTERM")
            emulator.stop(timeout)
        try:
            emulator.wait(timeout)
        except subprocess.TimeoutExpired:
            emulator.stop(30)
        try:
            summary = json.loads((self.dir / "emulator.out.json").read_text())
        except (OSError, ValueError):
            summary = {}
            self.progress.event(f"no summary from the emulator (exit code {emulator.returncode}); "
                                f"see {emulator.log_path}")
        if summary:
            self.progress.event(f"emulator stopped: sent {summary.get('sent', 0):,}, "
                                f"delivered {summary.get('delivered', 0):,}, failed {summary.get('failed', 0):,}")
        return summary

    def samples(self) -> list[dict[str, Any]]:
        return list(self.sampler.samples) if self.sampler else []

    def stop(self) -> int | None:
        """Stop the sampler, the emulator, the live lane and the job (in that order); the job's exit code."""
        if self.sampler is not None:
            self.sampler.stop()
        if self.emulator is not None and self.emulator.alive():
            self.emulator.stop(30)
        if self.ctl is not None:
            self.ctl.close()
        if self.live is not None:
            self.live.stop(60)
        self.progress.set_phase("stopping job")
        return self.job.stop(60) if self.job is not None else None
