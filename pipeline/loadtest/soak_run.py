"""The running part of a soak: sampler, browser, chaos and outage for the duration, then the wind-down.

`Driver(soak, stack)`: `start()` the sampler and the browser and set up the chaos schedule
and the outage; `loop(stop)` ticks them once a second until the duration is over (or a
stop, or ``run`` itself died); `wind_down(stop)` lets the last kill recover, pauses the
emulator (a paused emulator stays up: the supervisor would restart one that exited) and
waits until the job has committed the whole topic; `stop()` ends the browser and the
sampler after one last sample; `handover()` gives what the finish needs.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from pipeline.kafka.security import client_config
from pipeline.loadtest import LoadTestError
from pipeline.loadtest.chaos import Chaos, kill_targets, schedule
from pipeline.loadtest.soak_browser import BrowserRounds
from pipeline.loadtest.soak_events import Health, Outage
from pipeline.loadtest.soak_parts import read_parts
from pipeline.loadtest.soak_sampling import SoakSampler
from pipeline.loadtest.soak_stack import SoakStack

EMULATOR_NAME = "default"   # the emulator `run` starts


class Driver:
    def __init__(self, soak, stack: SoakStack):
        self.soak, self.stack, self.o = soak, stack, soak.options
        self.rs = stack.settings
        self.kafka = client_config(self.rs, "admin")
        self.sampler: SoakSampler | None = None
        self.probe = SoakSampler(data_dir=self.rs.data_dir, topic=self.rs.topic, kafka=self.kafka)
        self.browser: BrowserRounds | None = None
        self.chaos: Chaos | None = None
        self.outage: Outage | None = None
        self.ctl: Any = None
        self.t0 = self.t_end = time.time()
        self.caught_up: bool | None = None
        self.browser_note = ""

    # ---- start -----------------------------------------------------------------------------
    def start(self) -> None:
        from pipeline.emulator.control import EmulatorControl

        event, o = self.soak.event, self.o
        self.t0 = time.time()
        self.sampler = SoakSampler(data_dir=self.rs.data_dir, topic=self.rs.topic, kafka=self.kafka,
                                   interval=o.sample_every_s, metrics_url=self.stack.metrics_url,
                                   on_sample=self._keep).start()
        self.ctl = EmulatorControl(self.rs, EMULATOR_NAME, role="admin")
        if o.browser_every_s:
            why = BrowserRounds.available()
            if why is None:
                self.browser = BrowserRounds(self.stack.app_url, self._app_up, every=o.browser_every_s).start()
                event(f"browser: every page every {o.browser_every_s:g} s")
            else:
                self.browser_note = f"no browser: {why}"
                event(self.browser_note)
        parts = sorted(read_parts(self.stack.run_dir))
        plan = schedule(o.seed, o.duration_s, o.chaos_every, kill_targets(parts, o.nodes)) if o.chaos else []
        if o.chaos:
            event(f"chaos: {len(plan)} kill(s) planned (seed {o.seed}): "
                  + ", ".join(f"{p} at {t:.0f} s" for t, p in plan))
        self.chaos = Chaos(self.stack.run_dir, plan, self.t0, self._health(), event)
        if o.outage_s:
            self.outage = Outage(self.stack.run_dir, self.t0 + o.outage_start_s, o.outage_s, o.outage_rate, o.rate,
                                 self._set_rate, event)

    def _keep(self, sample: dict[str, Any]) -> None:
        """Each sample also goes to ``samples.jsonl`` as it is taken (a soak that dies keeps its figures)."""
        with open(self.soak.dir / "samples.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(sample, default=str) + "\n")

    def _app_up(self) -> bool:
        app = read_parts(self.stack.run_dir).get("app")
        return app is not None and app.running and self.stack.app_healthy()

    def _set_rate(self, rate: float) -> None:
        self.ctl.set_desired(rate=rate, profile={"name": "steady"})

    def _broker_ids(self) -> set[int]:
        """The nodes in service: each answers on its own port (`pipeline.kafka.cluster.nodes_in_service`).
        The cluster's metadata alone still lists a node killed with -9 until its session times out: in
        the chaos hour of 5 December a node read as healthy 2 s after its kill so."""
        from pipeline.kafka.cluster import nodes_in_service

        return nodes_in_service(self.rs)

    def _health(self) -> Health:
        from pipeline.live.health import last_checkpoint, last_running

        def live_up() -> float | None:   # checkpointed or all its tasks running: the later of the two
            return max(filter(None, (last_checkpoint(self.rs), last_running(self.rs))), default=None)

        return Health(self.stack.run_dir, self.stack.job_committed_since, self.stack.app_healthy,
                      self._log_end, live_up, self._broker_ids)

    def _log_end(self) -> int | None:
        try:
            return self.probe.log_end()
        except Exception:  # noqa: BLE001 - the broker may be down
            return None

    # ---- the duration --------------------------------------------------------------------------
    def loop(self, stop: threading.Event) -> None:
        end = self.t0 + self.o.duration_s
        assert self.chaos is not None
        while time.time() < end and not stop.is_set():
            if not self.stack.alive():
                raise LoadTestError(f"run exited with code {self.stack.run.returncode if self.stack.run else None}")
            if self.outage is not None:
                self.outage.tick()
            if self.outage is None or not self.outage.active:
                self.chaos.tick()
            stop.wait(1.0)
        self.t_end = time.time()

    def wind_down(self, stop: threading.Event) -> None:
        """The last kill recovers, the outage ends, the emulator pauses, the job commits the whole topic."""
        event = self.soak.event
        assert self.chaos is not None
        if self.outage is not None:
            while self.outage.active and not stop.is_set():
                self.outage.tick()
                stop.wait(1.0)
        self.chaos.wait_recovered(self.chaos.recover_timeout_s, stop.is_set)
        self.ctl.set_desired(state="paused")
        event("emulator paused; waiting for the job to commit the whole topic")
        deadline = time.monotonic() + self.o.catch_up_timeout_s
        while time.monotonic() < deadline and not stop.is_set():
            s = self.probe.offsets(time.time())
            if s["log_end"] and s["job_offset"] is not None and s["job_offset"] >= s["log_end"]:
                self.caught_up = True
                event(f"job caught up: {s['log_end']:,} records committed")
                return
            stop.wait(2.0)
        self.caught_up = False
        event(f"the job did not catch up within {self.o.catch_up_timeout_s:.0f} s")

    def stop(self) -> None:
        if self.browser is not None:
            self.browser.stop()
        if self.sampler is not None:
            self.sampler.stop()
            try:
                self.sampler.samples.append(self.sampler.sample())  # one last sample, after the catch-up
            except Exception:  # noqa: BLE001
                pass
            self.sampler.stop()
        self.probe.stop()
        if self.ctl is not None:
            self.ctl.close()

    def handover(self) -> dict[str, Any]:
        return {"samples": list(self.sampler.samples) if self.sampler else [], "t0": self.t0, "t_end": self.t_end,
                "kills": [k.as_dict() for k in self.chaos.kills] if self.chaos else [],
                "chaos_plan": self.chaos.plan if self.chaos else [],
                "outage": self.outage.state if self.outage else None, "caught_up": self.caught_up,
                "browser": self.browser.summary() if self.browser else {"note": self.browser_note},
                "kafka": self.kafka, "parts": {n: p.__dict__ for n, p in read_parts(self.stack.run_dir).items()}}
