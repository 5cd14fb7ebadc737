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

The run's processes are `stack.RunStack`, what it shows of itself while it runs is
`progress.Progress`, its result is put together by `assemble`, and its folder, the
registry of runs and the background start/stop for the page are `runs`.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from typing import Any

from pipeline.errors import TormentaError
from pipeline.kafka.cluster import KafkaCluster, with_cluster
from pipeline.kafka.security import pinned
from pipeline.loadtest import LoadTestError, verdict
from pipeline.loadtest import plan as plans
from pipeline.loadtest.alerts import StepAlerts
from pipeline.loadtest.assemble import Outcome, build_result, machine_facts, read_batches
from pipeline.loadtest.options import LoadTestOptions
from pipeline.loadtest.progress import Progress
from pipeline.loadtest.result import LoadTestResult
from pipeline.loadtest.runs import PID_FILE, new_run_id, runs_dir, write_json
from pipeline.loadtest.sampling import Sampler, listener_pid
from pipeline.loadtest.stack import RunStack
from pipeline.settings import Settings

NEVER_ENDS_PLAN = ("warmup", "ramp")  # step kinds whose break is reported but does not end the plan

log = logging.getLogger(__name__)

__all__ = ["LoadTest", "LoadTestError", "LoadTestOptions"]


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
            status_topic=f"loadtest-{self.run_id}.status", live_topic=f"loadtest-{self.run_id}.live",
            data_dir=self.dir / "data",
            trigger_interval=self.plan.trigger_s, compact_every=0)
        self.windows: list[plans.StepWindow] = []
        self.progress = Progress(self.run_id, self.plan, self.dir)

    def _event(self, text: str) -> None:
        self.progress.event(text)

    # ---- main -------------------------------------------------------------------------------
    def run(self, stop_event: threading.Event | None = None) -> LoadTestResult:
        stop = stop_event or threading.Event()
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / PID_FILE).write_text(str(os.getpid()))
        write_json(self.dir / "plan.json", self.plan.as_dict())
        self.progress.write()
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
            outcome = self._drive_watched(stop, broker_pid)
            self.progress.set_phase("reconciling")
            result = build_result(self, outcome, facts, broker_pid)
            self.progress.set_phase("writing report")
            from pipeline.loadtest.report import write_report

            write_report(self.dir, result, outcome.samples)
        finally:
            self._cleanup(started_broker, broker)
            (self.dir / PID_FILE).unlink(missing_ok=True)
        self.progress.phase = "done"
        self.progress.write(state=result.state)
        return result

    def _drive_watched(self, stop: threading.Event, broker_pid: int | None) -> Outcome:
        """`_drive` under the run's own Prometheus (when monitoring is on): the alerts of each step."""
        monitor = StepAlerts.start(self.run_settings, self.dir / "monitoring", self.cluster.size, self._event)
        try:
            out = self._drive(stop, broker_pid)
            out.alerts = monitor.collect(self.windows)
        finally:
            monitor.stop()
        return out

    def _drive(self, stop: threading.Event, broker_pid: int | None) -> Outcome:
        """Topic, job, sampler, emulator, steps, catch-up; always stops what it started."""
        stack, out = RunStack(self.run_settings, self.plan, self.progress), Outcome()
        try:
            stack.start(stop, broker_pid)
            self._load(stack, stop, out)
        except TormentaError as exc:
            out.state, out.error = "failed", str(exc)
            self._event(f"failed: {exc}")
        except Exception as exc:  # noqa: BLE001 - the run must still stop its processes and report
            out.state, out.error = "failed", f"{type(exc).__name__}: {exc}"
            log.exception("load test failed")
            self._event(f"failed: {out.error}")
        finally:
            out.job_rc = stack.stop()
            out.samples = stack.samples()
        if stop.is_set() and out.state == "done":
            out.state = "stopped"
        return out

    def _load(self, stack: RunStack, stop: threading.Event, out: Outcome) -> None:
        """Prime, run the plan's steps, stop the emulator, let the job catch up."""
        assert stack.sampler is not None
        if self.options.prime:
            self._prime(stack, stop)
        self._run_steps(stack, stop)
        self.progress.set_phase("stopping emulator")
        out.emulator_summary = stack.stop_emulator()
        self.progress.set_phase("catching up")
        if not self.abort.is_set():
            out.caught_up = self._catch_up(stack.sampler, stop)
            last = stack.sampler.samples[-1]["t"] if stack.sampler.samples else 0.0
            stack.sampler.wait_for(lambda s: s["t"] > last, 10)  # one more sample after the last commit

    # ---- the load ---------------------------------------------------------------------------
    def _prime(self, stack: RunStack, stop: threading.Event) -> None:
        """Warm the job's JVM on real data before the plan: a couple of seconds at the warm-up rate,
        pause, and wait until a batch *with data* (the first dedupe, appends, code generation)
        has committed. Otherwise the warm-up step would measure class loading, not capacity."""
        ctl, sampler, job = stack.ctl, stack.sampler, stack.job
        assert sampler is not None and job is not None
        self.progress.phase = "priming"
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

    def _apply(self, ctl, step: plans.Step) -> None:
        if step.kind == "ramp":
            ctl.set_desired(rate=step.rate, profile={"name": "ramp", "from": step.start_rate,
                                                     "seconds": step.duration_s})
        else:
            ctl.set_desired(rate=step.rate, profile={"name": "steady"})

    def _run_steps(self, stack: RunStack, stop: threading.Event) -> None:
        """Each step in turn, until the plan ends, a steady step breaks, a process dies or a stop.

        A ramp is a transition, and the warm-up runs at the normal rate while the other parts
        (the live lane's Spark) still settle on a small machine: their
        breaking is reported, and the plan goes on to the steps it exists for."""
        assert stack.sampler is not None
        self.progress.steps_started_at = time.time()
        for step in self.plan.steps:
            if stop.is_set():
                break
            if step.index > 0:
                self._apply(stack.ctl, step)
            window = self._hold_step(step, stack, stop)
            self.windows.append(window)
            dead = stack.dead()
            if dead is not None:
                self._event(f"the {dead.name} died during {step.label}: exit code {dead.returncode}")
                break
            live = verdict.step_stats(window, list(stack.sampler.samples), read_batches(self.run_settings),
                                      self.plan.trigger_s)
            self._event(f"{step.label}: {live.verdict} (live)" + (f" — {'; '.join(live.reasons)}" if live.reasons else ""))
            if live.verdict == verdict.BREAKS and step.kind not in NEVER_ENDS_PLAN:
                self._event(f"stopping the plan: {step.label} breaks")
                break
        self.progress.step = None

    def _hold_step(self, step: plans.Step, stack: RunStack, stop: threading.Event) -> plans.StepWindow:
        """Let one step run its duration (or until a stop or a dead process); its window."""
        self.progress.enter_step(step)
        started = self.progress.step_started
        self._event(f"{self.progress.phase}: {step.label} tx/s for {step.duration_s:g} s")
        end = started + step.duration_s
        victim = self._kill_leader(step) if step.index == self.kill_step else None
        try:
            while time.time() < end and not stop.is_set() and stack.dead() is None:
                stop.wait(min(0.5, max(0.0, end - time.time())))
        finally:
            if victim is not None:
                self._restart(victim)
        return plans.StepWindow.of(step, started, time.time(), complete=not stop.is_set())

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

    def _catch_up(self, sampler: Sampler, stop: threading.Event) -> bool:
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
        for scratch in ("spark-tmp", "tmp"):  # Spark's scratch, the temp folders of the job and the live lane
            shutil.rmtree(self.run_settings.data_dir / scratch, ignore_errors=True)
        if started_broker:
            self._event(broker.stop())

    def delete_topics(self) -> None:
        """Delete the run's data, control, status and live topics; problems become events, never errors."""
        from pipeline.kafka.topic import admin

        rs = self.run_settings
        try:
            with admin(rs) as client:  # open until every future has its answer (a destroyed client fails them)
                futures = client.delete_topics([rs.topic, rs.control_topic, rs.status_topic, rs.live_topic],
                                               operation_timeout=15)
                for name, f in futures.items():
                    try:
                        f.result(20)
                    except Exception as exc:  # noqa: BLE001 - reported, never a reason to fail the run
                        if "UNKNOWN_TOPIC" not in str(exc):
                            self._event(f"could not delete topic {name}: {exc}")
        except Exception as exc:  # noqa: BLE001
            self._event(f"could not delete the run's topics: {exc}")


def _caught_up(sample: dict[str, Any]) -> bool:
    """The job has committed every record in the log (and there is at least one)."""
    return sample["log_end"] > 0 and sample.get("job_offset") is not None and sample["job_offset"] >= sample["log_end"]
