"""Orchestrate one load test: broker, fresh topic and data folder, job, emulator, sampler, report.

    result = LoadTest(settings, LoadTestOptions(profile="christmas")).run(stop_event)

1. use the running broker, or start the embedded one (and stop it afterwards);
2. create a fresh topic ``loadtest-<run-id>`` (plus private control/status topics) and a
   data folder ``<data_dir>/loadtests/<run-id>/`` with the job's own checkpoints and Delta
   tables, so a run never mixes with production data;
3. start the real job as a subprocess (``python -m pipeline job --query high_value`` with
   the plan's trigger interval) and wait until its query runs;
4. start the real emulator as a subprocess recording the ids of delivered over-threshold
   records, and steer it step by step through its control topic (ramps use its ``ramp``
   profile); after each step the live verdict decides whether to push further;
   with ``--kill-broker-at N`` (a cluster of 2+ nodes) the node leading a partition of the
   run's topic is killed (SIGKILL) as step N starts and restarted as it ends;
5. stop producing, let the job catch up (committed offsets = log end, with a timeout), stop
   the job; then judge every step, reconcile, and write ``result.json``, ``samples.json``
   and the self-contained ``report.html``; delete the run's topics (unless kept).

A stop request (SIGINT/SIGTERM in the CLI, the Stop button of the page) ends the current
step at once and goes on with the catch-up (shortened) and the report; a second request
skips the catch-up. Every process the run started is stopped in all cases.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import TormentaError
from pipeline.kafka.cluster import KafkaCluster, with_cluster
from pipeline.kafka.procs import stop_group
from pipeline.kafka.security import client_config, pinned, security_env
from pipeline.loadtest import LoadTestError, reconcile, verdict
from pipeline.loadtest import plan as plans
from pipeline.loadtest.options import LoadTestOptions
from pipeline.loadtest.result import LoadTestResult, ResultFormatError, TopicFacts
from pipeline.loadtest.sampling import Sampler, listener_pid
from pipeline.settings import PROJECT_ROOT, Settings

log = logging.getLogger(__name__)

EMULATOR_NAME = "loadtest"
__all__ = ["LoadTest", "LoadTestError", "LoadTestOptions", "RunEntry", "launch", "list_runs", "request_stop"]


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:4]


def runs_dir(settings: Settings) -> Path:
    return settings.data_dir / "loadtests"


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, default=str))
    os.replace(tmp, path)


def machine_facts() -> dict[str, Any]:
    import psutil

    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    facts: dict[str, Any] = {
        "host": platform.node(), "os": platform.platform(), "cpu_model": model,
        "logical_cores": psutil.cpu_count(), "physical_cores": psutil.cpu_count(logical=False),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
    }
    try:
        out = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=20)
        facts["java"] = (out.stderr or out.stdout).splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        facts["java"] = "unknown"
    for mod in ("pyspark", "confluent_kafka", "deltalake", "delta"):
        try:
            from importlib.metadata import version

            facts[mod] = version({"delta": "delta-spark", "confluent_kafka": "confluent-kafka"}.get(mod, mod))
        except Exception:  # noqa: BLE001 - a fact we can do without
            pass
    return facts


class _Child:
    def __init__(self, name: str, cmd: list[str], env: dict[str, str], log_path: Path, stdout: Path | None = None):
        self.name = name
        self.log_path = log_path
        err = open(log_path, "ab")
        out = open(stdout, "wb") if stdout else err
        try:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=PROJECT_ROOT,
                                         env=env, start_new_session=True)
        finally:
            err.close()
            if stdout:
                out.close()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 60.0) -> int | None:
        return stop_group(self.proc, timeout)

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@dataclass
class _Stack:
    """What a run started (None until started)."""

    job: _Child | None = None
    emulator: _Child | None = None
    sampler: Sampler | None = None
    ctl: Any = None


@dataclass
class _Outcome:
    """How the load phase ended."""

    samples: list[dict[str, Any]] = field(default_factory=list)
    emulator_summary: dict[str, Any] = field(default_factory=dict)
    caught_up: bool = False
    job_rc: int | None = None
    state: str = "done"
    error: str | None = None


class LoadTest:
    """One run; `run()` returns the `LoadTestResult` (also saved as result.json)."""

    def __init__(self, settings: Settings, options: LoadTestOptions | None = None, *,
                 abort_event: threading.Event | None = None):
        self.settings = settings
        self.options = options or LoadTestOptions()
        self.plan = self.options.build_plan()
        self.kill_step = self.options.check_kill_step(len(self.plan.steps), settings.broker_nodes)
        settings = self.settings = with_cluster(settings)
        self.cluster = KafkaCluster(settings)
        self.outage: dict[str, Any] = {}
        self.run_id = self.options.run_id or new_run_id()
        self.dir = runs_dir(settings) / self.run_id
        self.abort = abort_event or threading.Event()
        # A secured broker: the run (its topics, emulator, job, sampler) acts as the admin, whose
        # identity is pinned before the data folder moves away from the broker's client file.
        self.run_settings = pinned(settings, "admin").replace(
            topic=f"loadtest-{self.run_id}", control_topic=f"loadtest-{self.run_id}.control",
            status_topic=f"loadtest-{self.run_id}.status", data_dir=self.dir / "data",
            trigger_interval=self.plan.trigger_s, compact_every=0)
        self.windows: list[plans.StepWindow] = []
        self.phase = "starting"
        self.events: list[dict[str, Any]] = []
        self._t_start = time.time()
        self._steps_started_at: float | None = None
        self._current: plans.Step | None = None
        self._current_start = 0.0

    # ---- progress ---------------------------------------------------------------------------
    def _event(self, text: str) -> None:
        log.info("%s", text)
        self.events.append({"t": round(time.time(), 3), "text": text})

    def _fraction(self) -> float:
        if self.phase == "done":
            return 1.0
        if self._steps_started_at is None:
            return 0.03
        if self.phase.startswith("step"):
            done = sum(s.duration_s for s in self.plan.steps if self._current and s.index < self._current.index)
            within = min(self._current.duration_s, time.time() - self._current_start) if self._current else 0.0
            return 0.05 + 0.8 * min(1.0, (done + within) / max(1.0, self.plan.planned_seconds))
        return {"stopping emulator": 0.86, "catching up": 0.88, "stopping job": 0.93, "reconciling": 0.95,
                "writing report": 0.98}.get(self.phase, 0.9)

    def _progress(self, sample: dict[str, Any] | None = None, state: str = "running") -> None:
        data = {"run_id": self.run_id, "pid": os.getpid(), "state": state, "phase": self.phase,
                "fraction": round(self._fraction(), 3), "elapsed_s": round(time.time() - self._t_start, 1),
                "planned_s": self.plan.planned_seconds, "plan": self.plan.name,
                "step": self._current.label if self._current else None,
                "updated": time.time(), "events": self.events[-8:]}
        if sample:
            data["last"] = {k: sample.get(k) for k in ("target_rate", "achieved_rate", "lag_records", "lag_s",
                                                        "batches", "latency_p99_ms", "cpu_machine")}
        try:
            _write_json(self.dir / "progress.json", data)
        except OSError:
            pass

    # ---- main -------------------------------------------------------------------------------
    def run(self, stop_event: threading.Event | None = None) -> LoadTestResult:
        stop = stop_event or threading.Event()
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "loadtest.pid").write_text(str(os.getpid()))
        _write_json(self.dir / "plan.json", self.plan.as_dict())
        self._progress()
        self._event(self.plan.describe())
        broker = self.cluster
        started_broker = False
        try:
            facts = machine_facts()
            if not any(nd.status().answers for nd in broker.nodes):
                self._event(f"no broker answers: starting the embedded one ({broker.size} node(s))")
                broker.start()
                started_broker = True
            broker_pid = broker.nodes[0].read_pid() or listener_pid(self.settings.first_bootstrap[1])
            outcome = self._drive(stop, broker_pid)
            self._set_phase("reconciling")
            result = self._result(outcome, facts, broker_pid)
            self._set_phase("writing report")
            from pipeline.loadtest.report import write_report

            write_report(self.dir, result, outcome.samples)
        finally:
            self._cleanup(started_broker, broker)
            (self.dir / "loadtest.pid").unlink(missing_ok=True)
        self.phase = "done"
        self._progress(state=result.state)
        return result

    def _set_phase(self, phase: str) -> None:
        self.phase = phase
        self._progress()

    def _drive(self, stop: threading.Event, broker_pid: int | None) -> _Outcome:
        """Topic, job, sampler, emulator, steps, catch-up; always stops what it started."""
        stack, out = _Stack(), _Outcome()
        try:
            self._start_stack(stack, stop, broker_pid)
            self._load(stack, stop, out)
        except TormentaError as exc:
            out.state, out.error = "failed", str(exc)
            self._event(f"failed: {exc}")
        except Exception as exc:  # noqa: BLE001 - the run must still stop its processes and report
            out.state, out.error = "failed", f"{type(exc).__name__}: {exc}"
            log.exception("load test failed")
            self._event(f"failed: {out.error}")
        finally:
            out.job_rc = self._stop_stack(stack)
            out.samples = list(stack.sampler.samples) if stack.sampler else []
        if stop.is_set() and out.state == "done":
            out.state = "stopped"
        return out

    def _start_stack(self, stack: _Stack, stop: threading.Event, broker_pid: int | None) -> None:
        """Topics, the job (until its first batch), the sampler, the emulator (until its first status)."""
        from pipeline.emulator.control import EmulatorControl, ensure_control_topics
        from pipeline.kafka.topic import ensure_topic

        rs = self.run_settings
        ensure_topic(rs)
        ensure_control_topics(rs)
        self._event(f"topic {rs.topic} ({rs.partitions} partitions), data in {rs.data_dir}")
        env, py = self._env(), sys.executable
        stack.job = job = _Child("job", [py, "-m", "pipeline", "job", "--query", "high_value"], env,
                                 self.dir / "job.log")
        self._event(f"job started (pid {job.pid}), trigger {self.plan.trigger_s:g} s")
        self._wait_for_job(job, stop)
        stack.sampler = Sampler(
            kafka=client_config(rs, "admin"), topic=rs.topic, status_topic=rs.status_topic,
            emulator_name=EMULATOR_NAME, checkpoint=rs.checkpoint_dir / "high_value",
            pids=lambda: {"emulator": stack.emulator.pid if stack.emulator else None, "broker": broker_pid,
                          "job": job.pid, "loadtest": os.getpid()},
            target=self._target_at, job_alive=job.alive, on_sample=self._progress)
        stack.sampler.start()
        if stack.sampler.wait_for(lambda s: True, 30, stop) is None and not stop.is_set():
            raise LoadTestError(f"the sampler took no sample within 30 s: {stack.sampler.error or 'no reason'}")
        stack.emulator = _Child("emulator", [py, "-m", "pipeline", "emulate", "--name", EMULATOR_NAME,
                                             "--rate", f"{self.plan.steps[0].rate:g}",
                                             "--record-ids", str(self.dir / "ids.txt"), "--quiet"],
                                env, self.dir / "emulator.log", stdout=self.dir / "emulator.out.json")
        self._wait_for_emulator(stack.emulator, stack.sampler, stop)
        stack.ctl = EmulatorControl(rs, EMULATOR_NAME, role="admin")

    def _load(self, stack: _Stack, stop: threading.Event, out: _Outcome) -> None:
        """Prime, run the plan's steps, stop the emulator, let the job catch up."""
        if self.options.prime:
            self._prime(stack.ctl, stack.sampler, stack.job, stop)
        self._run_steps(stack.ctl, stack.sampler, stack.job, stack.emulator, stop)
        self._set_phase("stopping emulator")
        out.emulator_summary = self._stop_emulator(stack.ctl, stack.emulator)
        self._set_phase("catching up")
        if not self.abort.is_set():
            out.caught_up = self._catch_up(stack.sampler, stack.job, stop)
            last = stack.sampler.samples[-1]["t"] if stack.sampler.samples else 0.0
            stack.sampler.wait_for(lambda s: s["t"] > last, 10)  # one more sample after the last commit

    def _stop_stack(self, stack: _Stack) -> int | None:
        """Stop the sampler, the emulator and the job (in that order); the job's exit code."""
        if stack.sampler is not None:
            stack.sampler.stop()
        if stack.emulator is not None and stack.emulator.alive():
            stack.emulator.stop(30)
        if stack.ctl is not None:
            stack.ctl.close()
        self._set_phase("stopping job")
        return stack.job.stop(60) if stack.job is not None else None

    # ---- pieces -------------------------------------------------------------------------------
    def _env(self) -> dict[str, str]:
        rs = self.run_settings
        env = dict(os.environ)
        env.update({
            "TORMENTA_BOOTSTRAP_SERVERS": rs.bootstrap_servers, "TORMENTA_TOPIC": rs.topic,
            "TORMENTA_CONTROL_TOPIC": rs.control_topic, "TORMENTA_STATUS_TOPIC": rs.status_topic,
            "TORMENTA_DATA_DIR": str(rs.data_dir), "TORMENTA_TRIGGER_INTERVAL": f"{self.plan.trigger_s:g}s",
            "TORMENTA_COMPACT_EVERY": "0", "TORMENTA_THRESHOLD": str(rs.threshold),
            "TORMENTA_PARTITIONS": str(rs.partitions), "PYTHONUNBUFFERED": "1",
            **security_env(rs),
        })
        return env

    def _wait_for_job(self, job: _Child, stop: threading.Event, timeout: float = 180.0) -> None:
        """Until the query runs and (at most 90 s more) its batch 0 is committed.

        Batch 0 runs at once, even on an empty topic; waiting for its commit means the warm-up
        step does not pay for the JVM's first-batch start-up (class loading, code generation).
        """
        deadline = time.monotonic() + timeout
        first_commit = self.run_settings.checkpoint_dir / "high_value" / "commits" / "0"
        started_at = None
        while time.monotonic() < deadline and not stop.is_set():
            if not job.alive():
                raise LoadTestError(f"the job exited with code {job.proc.returncode} at start-up:\n{job.tail()}")
            if started_at is None:
                try:
                    if "query high_value started" in job.log_path.read_text(errors="replace"):
                        started_at = time.monotonic()
                        deadline = min(deadline + 90, started_at + 90)
                except OSError:
                    pass
            if first_commit.exists():
                self._event("job query high_value is running (first batch committed)")
                return
            stop.wait(0.5)  # polls the job's log and checkpoint, files another process writes
        if started_at is not None:
            self._event("job query high_value is running (no first batch yet)")
            return
        if not stop.is_set():
            raise LoadTestError(f"the job did not start its query within {timeout:.0f} s; see {job.log_path}")

    def _wait_for_emulator(self, emulator: _Child, sampler: Sampler, stop: threading.Event,
                           timeout: float = 60.0) -> None:
        """Until the sampler has read the emulator's first status (it is producing)."""
        sampler.wait_for(lambda s: sampler.status is not None or not emulator.alive(), timeout, stop)
        if not emulator.alive():
            raise LoadTestError(f"the emulator exited with code {emulator.proc.returncode}:\n{emulator.tail()}")
        if sampler.status is not None:
            self._event(f"emulator producing (pid {emulator.pid})")
        elif not stop.is_set():
            raise LoadTestError(f"no status from the emulator within {timeout:.0f} s; see {emulator.log_path}")

    def _prime(self, ctl, sampler: Sampler, job: _Child, stop: threading.Event) -> None:
        """Warm the job's JVM on real data before the plan: a couple of seconds at the warm-up rate,
        pause, and wait until a batch *with data* (the first dedupe, appends, code generation)
        has committed. Otherwise the warm-up step would measure class loading, not capacity."""
        self.phase = "priming"
        self._event(f"priming the job: {self.options.prime_seconds:g} s at {self.plan.steps[0].rate:,.0f} tx/s, "
                    "then paused until a batch with data has committed")
        stop.wait(self.options.prime_seconds)
        ctl.set_desired(state="paused")
        started = time.monotonic()
        s = sampler.wait_for(lambda s: _caught_up(s) or not s["job_alive"], self.options.prime_timeout_s, stop)
        if s is not None and not s["job_alive"]:
            raise LoadTestError(f"the job died while priming:\n{job.tail()}")
        if s is not None:
            self._event(f"job primed in {time.monotonic() - started:.0f} s ({s['log_end']:,} records)")
        elif not stop.is_set():
            self._event(f"job not primed within {self.options.prime_timeout_s:.0f} s; starting the plan anyway")
        ctl.set_desired(state="running")

    def _target_at(self, now: float) -> tuple[int | None, float]:
        step = self._current
        if step is None or self.phase != f"step {step.index + 1}/{len(self.plan.steps)}":
            return None, 0.0
        return step.index, step.target_at(now - self._current_start)

    def _apply(self, ctl, step: plans.Step) -> None:
        if step.kind == "ramp":
            ctl.set_desired(rate=step.rate, profile={"name": "ramp", "from": step.start_rate,
                                                     "seconds": step.duration_s})
        else:
            ctl.set_desired(rate=step.rate, profile={"name": "steady"})

    def _run_steps(self, ctl, sampler: Sampler, job: _Child, emulator: _Child, stop: threading.Event) -> None:
        """Each step in turn, until the plan ends, a steady step breaks, a process dies or a stop."""
        self._steps_started_at = time.time()
        for step in self.plan.steps:
            if stop.is_set():
                break
            if step.index > 0:
                self._apply(ctl, step)
            window = self._hold_step(step, job, emulator, stop)
            self.windows.append(window)
            dead = next((c for c in (job, emulator) if not c.alive()), None)
            if dead is not None:
                self._event(f"the {dead.name} died during {step.label}: exit code {dead.proc.returncode}")
                break
            live = verdict.step_stats(window, list(sampler.samples), self._batches(), self.plan.trigger_s)
            self._event(f"{step.label}: {live.verdict} (live)" + (f" — {'; '.join(live.reasons)}" if live.reasons else ""))
            if live.verdict == verdict.BREAKS and step.kind != "ramp":
                self._event(f"stopping the plan: {step.label} breaks")
                break
        self._current = None

    def _hold_step(self, step: plans.Step, job: _Child, emulator: _Child, stop: threading.Event) -> plans.StepWindow:
        """Let one step run its duration (or until a stop or a dead process); its window."""
        self._current, self._current_start = step, time.time()
        self.phase = f"step {step.index + 1}/{len(self.plan.steps)}"
        self._event(f"{self.phase}: {step.label} tx/s for {step.duration_s:g} s")
        end = self._current_start + step.duration_s
        victim = self._kill_leader(step) if step.index == self.kill_step else None
        try:
            while time.time() < end and not stop.is_set() and job.alive() and emulator.alive():
                stop.wait(min(0.5, max(0.0, end - time.time())))
        finally:
            if victim is not None:
                self._restart(victim)
        return plans.StepWindow.of(step, self._current_start, time.time(), complete=not stop.is_set())

    def _kill_leader(self, step: plans.Step) -> int:
        """SIGKILL the node leading a partition of the run's topic; note when it went down."""
        victim = self.cluster.leader_of(self.run_settings.topic) or self.cluster.size
        pid = self.cluster.node(victim).kill()
        self.outage = {"node": victim, "pid": pid, "step": step.label, "step_number": step.index + 1,
                       "killed_at": time.time()}
        self._event(f"killed Kafka node {victim} (pid {pid}), leader of a partition of {self.run_settings.topic}")
        return victim

    def _restart(self, victim: int) -> None:
        """Start the killed node again; the outage ends once the cluster lists it again."""
        started = time.time()
        try:
            pid = self.cluster.start_node(victim)
        except TormentaError as exc:
            self.outage.update(restart_error=str(exc))
            self._event(f"Kafka node {victim} did not come back: {exc}")
            return
        back = time.time()
        self.outage.update(restarted_at=started, back_at=back, down_s=round(back - self.outage["killed_at"], 1),
                           restart_s=round(back - started, 1), new_pid=pid)
        self._event(f"Kafka node {victim} back (pid {pid}) after {self.outage['down_s']:.1f} s down")

    def _batches(self) -> list[dict[str, Any]]:
        try:
            return reconcile.read_batches(self.run_settings.table_path("batch_metrics"))
        except Exception as exc:  # noqa: BLE001 - a table mid-commit; the next read will do
            log.debug("batch metrics not readable yet: %s", exc)
            return []

    def _stop_emulator(self, ctl, emulator: _Child, timeout: float = 60.0) -> dict[str, Any]:
        try:
            ctl.set_desired(state="stopped")
        except TormentaError as exc:
            self._event(f"could not stop the emulator through its control topic ({exc}); sending SIGTERM")
            emulator.stop(timeout)
        try:
            emulator.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            emulator.stop(30)
        out = self.dir / "emulator.out.json"
        try:
            summary = json.loads(out.read_text())
        except (OSError, ValueError):
            summary = {}
            self._event(f"no summary from the emulator (exit code {emulator.proc.returncode}); see {emulator.log_path}")
        if summary:
            self._event(f"emulator stopped: sent {summary.get('sent', 0):,}, delivered {summary.get('delivered', 0):,},"
                        f" failed {summary.get('failed', 0):,}")
        return summary

    def _catch_up(self, sampler: Sampler, job: _Child, stop: threading.Event) -> bool:
        """Until the job has committed the whole log (a stop shortens the wait, an abort ends it)."""
        timeout = self.options.catch_up_timeout_s
        if stop.is_set():
            timeout = min(timeout, 3 * self.plan.trigger_s + 30)
        s = sampler.wait_for(lambda s: _caught_up(s) or not s["job_alive"], timeout, self.abort)
        if s is not None and s["job_alive"]:
            self._event(f"job caught up: {s['log_end']:,} records committed")
            return True
        if s is not None:
            self._event("the job died while catching up")
            return False
        s = sampler.samples[-1] if sampler.samples else {}
        self._event(f"job did not catch up within {timeout:.0f} s: {s.get('lag_records')} records behind")
        return False

    def _cleanup(self, started_broker: bool, broker) -> None:
        if not self.options.keep_topic:
            self.delete_topics()
        shutil.rmtree(self.run_settings.data_dir / "spark-tmp", ignore_errors=True)
        if started_broker:
            self._event(broker.stop())

    def delete_topics(self) -> None:
        """Delete the run's data, control and status topics; problems become events, never errors."""
        from pipeline.kafka.topic import admin

        rs = self.run_settings
        try:
            client = admin(rs)  # keep a reference: a destroyed client fails its futures (_DESTROY)
            futures = client.delete_topics([rs.topic, rs.control_topic, rs.status_topic], operation_timeout=15)
            for name, f in futures.items():
                try:
                    f.result(20)
                except Exception as exc:  # noqa: BLE001 - reported, never a reason to fail the run
                    if "UNKNOWN_TOPIC" not in str(exc):
                        self._event(f"could not delete topic {name}: {exc}")
        except Exception as exc:  # noqa: BLE001
            self._event(f"could not delete the run's topics: {exc}")

    # ---- results ------------------------------------------------------------------------------
    def _result(self, out: _Outcome, facts: dict[str, Any], broker_pid: int | None) -> LoadTestResult:
        """Judge every step, reconcile, and gather the facts of the run."""
        rs = self.run_settings
        batches = self._batches()
        ids, event_times, batch_ids = reconcile.read_high_value(rs.table_path("high_value"))
        visible = reconcile.visible_times(batches, reconcile.merge_commit_times(rs.table_path("high_value")))
        fresh = reconcile.freshness(event_times, batch_ids, visible)
        steps = [verdict.step_stats(w, out.samples, batches, self.plan.trigger_s,
                                    freshness=_window_freshness(fresh, event_times, w)) for w in self.windows]
        last = out.samples[-1] if out.samples else {}
        return LoadTestResult(
            run_id=self.run_id, plan=self.plan, summary=verdict.summarise(steps, self.plan.peak_rate, self.plan.ceiling),
            reconciliation=self._reconcile(ids, event_times, batches, out, last),
            state=out.state, error=out.error,
            started=datetime.fromtimestamp(self._t_start, UTC).isoformat(timespec="seconds"),
            finished=datetime.now(UTC).isoformat(timespec="seconds"),
            t0=out.samples[0]["t"] if out.samples else self._t_start, windows=list(self.windows), steps=steps,
            caught_up=out.caught_up, freshness_all=verdict.percentiles(_finite(fresh)),
            batch_freshness=_batch_freshness(fresh, batch_ids, batches, visible), batches=batches,
            emulator={k: v for k, v in out.emulator_summary.items() if k != "sent_by_minute"},
            job_exit_code=out.job_rc, topic=self._topic_facts(last), settings=self._settings_facts(broker_pid),
            machine=facts | {"load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
            events=list(self.events), report=str(self.dir / "report.html"), broker_outage=dict(self.outage))

    def _reconcile(self, ids: list[str], event_times: np.ndarray, batches: list[dict[str, Any]], out: _Outcome,
                   last: dict[str, Any]) -> reconcile.Reconciliation:
        """Ids the emulator delivered vs ids in Delta, per minute, and the totals along the pipe."""
        emu = out.emulator_summary
        rec = reconcile.compare_ids(reconcile.read_ids(self.dir / "ids.txt"), ids)
        rec.windows = reconcile.per_window(emu.get("sent_by_minute") or [], event_times)
        rec.totals = {
            "emulator_sent": emu.get("sent"), "emulator_delivered": emu.get("delivered"),
            "emulator_failed": emu.get("failed"), "emulator_over_threshold_delivered": emu.get("over_threshold_delivered"),
            "broker_log_end": last.get("log_end"), "job_committed": last.get("job_offset"),
            "job_input_rows": int(sum(int(b.get("input_rows") or 0) for b in batches)),
            "high_value_rows": len(ids),
        }
        rec.complete = out.caught_up
        if not out.caught_up:
            rec.note = ("the job had not caught up when the run ended: ids still in the topic count as lost here "
                        f"({last.get('lag_records')} records were behind)")
        return rec

    def _topic_facts(self, last: dict[str, Any]) -> TopicFacts:
        disk, log_end = self._topic_disk_bytes(), last.get("log_end") or 0
        return TopicFacts(self.run_settings.topic, self.run_settings.partitions, log_end, disk,
                          round(disk / log_end, 1) if disk and log_end else None)

    def _settings_facts(self, broker_pid: int | None) -> dict[str, Any]:
        rs = self.run_settings
        return {
            "bootstrap_servers": rs.bootstrap_servers, "partitions": rs.partitions,
            "trigger_interval_s": self.plan.trigger_s, "threshold": str(rs.threshold),
            "max_offsets_per_trigger": rs.max_offsets_per_trigger, "job_cores": rs.job_cores,
            "shuffle_partitions": rs.effective_shuffle_partitions, "driver_memory": rs.driver_memory,
            "broker_heap": self.settings.broker_heap, "ingest_interval_s": rs.ingest_interval,
            "retention_s": rs.retention, "compact_every": 0, "data_dir": str(rs.data_dir), "broker_pid": broker_pid,
        }

    def _topic_disk_bytes(self) -> int | None:
        total = 0
        found = False
        for node in self.cluster.specs:   # every replica on every node
            for p in range(self.run_settings.partitions):
                d = node.dir / "logs" / f"{self.run_settings.topic}-{p}"
                if d.is_dir():
                    found = True
                    total += sum(f.stat().st_size for f in d.glob("*.log"))
        return total if found else None


def _caught_up(sample: dict[str, Any]) -> bool:
    """The job has committed every record in the log (and there is at least one)."""
    return sample["log_end"] > 0 and sample.get("job_offset") is not None and sample["job_offset"] >= sample["log_end"]


def _finite(values: np.ndarray) -> list[float]:
    return values[np.isfinite(values)].tolist() if values.size else []


def _window_freshness(fresh: np.ndarray, event_times: np.ndarray, w: plans.StepWindow) -> dict[str, float | None]:
    """Freshness percentiles of the rows whose event time falls in the step."""
    if not event_times.size:
        return verdict.percentiles([])
    return verdict.percentiles(_finite(fresh[(event_times >= w.start) & (event_times < w.end)]))


def _batch_freshness(fresh: np.ndarray, batch_ids: np.ndarray, batches: list[dict[str, Any]],
                     visible: dict[int, float]) -> list[dict[str, Any]]:
    """Freshness percentiles of each batch's rows, with the time the batch became visible."""
    out = []
    for b in batches if fresh.size else []:
        sel = _finite(fresh[batch_ids == int(b["batch_id"])])
        if sel:
            out.append({"batch_id": int(b["batch_id"]), "visible_at": visible.get(int(b["batch_id"])),
                        **verdict.percentiles(sel)})
    return out


# ---- helpers for the page and the CLI ----------------------------------------------------------------
@dataclass
class RunEntry:
    """One run folder as the page and ``--list`` see it."""

    run_id: str
    dir: Path
    running: bool
    progress: dict[str, Any] | None = None
    result: LoadTestResult | None = None
    problem: str | None = None       # why result.json could not be read
    report: Path | None = None

    @property
    def state(self) -> str:
        if self.running:
            return "running"
        if self.result is not None:
            return self.result.state
        return "unreadable" if self.problem else (self.progress or {}).get("state", "?")


def list_runs(settings: Settings) -> list[RunEntry]:
    """Every run folder, newest first."""
    root = runs_dir(settings)
    if not root.is_dir():
        return []
    return [_run_entry(d) for d in sorted((p for p in root.iterdir() if p.is_dir()), reverse=True)]


def _run_entry(d: Path) -> RunEntry:
    entry = RunEntry(d.name, d, running_pid(d) is not None)
    try:
        entry.progress = json.loads((d / "progress.json").read_text())
    except (OSError, ValueError):
        pass
    if (d / "result.json").exists():
        try:
            entry.result = LoadTestResult.load(d / "result.json")
        except ResultFormatError as exc:
            entry.problem = str(exc)
    entry.report = d / "report.html" if (d / "report.html").exists() else None
    return entry


def running_pid(run_dir: Path) -> int | None:
    """The pid of a load test still running in `run_dir`, or None."""
    import psutil

    try:
        pid = int((run_dir / "loadtest.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE or "loadtest" not in " ".join(proc.cmdline()):
            return None
    except psutil.Error:
        return None
    return pid


def launch_command(options: LoadTestOptions) -> list[str]:
    """The command line of a background run: every option, written by the options themselves."""
    return [sys.executable, "-m", "pipeline", "loadtest", *options.to_argv()]


def launch(settings: Settings, options: LoadTestOptions) -> tuple[str, int]:
    """Start `python -m pipeline loadtest ...` detached (for the page); returns (run_id, pid)."""
    options = replace(options, run_id=options.run_id or new_run_id())
    d = runs_dir(settings) / options.run_id
    d.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, TORMENTA_DATA_DIR=str(settings.data_dir),
               TORMENTA_BOOTSTRAP_SERVERS=settings.bootstrap_servers)
    with open(d / "loadtest.log", "ab") as fh:
        proc = subprocess.Popen(launch_command(options), stdout=fh, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=PROJECT_ROOT, env=env, start_new_session=True)
    (d / "loadtest.pid").write_text(str(proc.pid))
    return options.run_id, proc.pid


def request_stop(settings: Settings, run_id: str) -> bool:
    """Ask a running load test to stop cleanly (SIGTERM); True if one was running."""
    pid = running_pid(runs_dir(settings) / run_id)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    return True
