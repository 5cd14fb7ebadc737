"""Supervision of `python -m pipeline run`: restart a part that dies, with backoff; stop at a crash loop.

    sup = Supervisor(run_dir)
    sup.add(ChildPart(Child("job", cmd, run_dir / "job.log")))   # started at once
    while not stopping:
        sup.tick()                      # restarts what is due, writes parts.json when something changed
        time.sleep(0.5)
    sup.stop_children()                 # children first; the broker is the caller's, last

The rule (`RestartPolicy`, pure logic with the clock passed in): a part that exits is
started again after 1 s, then 2, 4, ... up to 60 s; a run that stayed up 10 minutes resets
the delay to 1 s. Five exits within 10 minutes are a crash loop: the part is left down and
one line says so, followed by the end of its log; the other parts keep running. Each
restart is one line: part, exit code, next delay.

A part that needs Kafka (the job, the live lane, the emulator: `Watched.needs`) and exits while
Kafka does not answer (the supervisor's `dependency_down` probe, given by `run`) did not crash by
itself: its exit still grows the delay (up to 60 s) but does not count toward a crash loop, so
a broker outage of any length never leaves those parts down once the broker is back.

State for the dashboard and the tests: ``<run_dir>/parts.json``, written atomically (a
temporary file renamed over it) at every change and every few seconds, one entry per
part (state running / restarting / crash-loop / stopped, pid, restarts, last exit code,
started-at, next restart at), plus the pid of `run` itself so a reader can tell a file
left by a run that was killed. `read_parts` reads it back (None when there is no live run).
The same figures are served as Prometheus metrics (`PartsCollector`).

Why our own loop and not ``supervisor`` (supervisord 4.3): its ``autorestart`` restarts a
program that exited after reaching RUNNING at once, with no growing delay (the delay grows
only between attempts that fail during ``startsecs``) and has no "N exits within a
window" rule; it is a daemon of its own with a generated configuration file and a
control socket, and it cannot watch the broker nodes, which are daemons with pid files
that `run` may find already running. What we need on top of `procs.child.Child` is the
policy below and a loop of a few lines.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from pipeline.procs.child import Child
from pipeline.procs.group import signal_reaches

FIRST_DELAY = 1.0          # seconds before the first restart
MAX_DELAY = 60.0           # the delay doubles up to this
HEALTHY_AFTER = 600.0      # a run this long resets the delay to FIRST_DELAY
LOOP_EXITS = 5             # this many exits ...
LOOP_WINDOW = 600.0        # ... within this many seconds are a crash loop
WRITE_EVERY = 2.0          # parts.json is rewritten at least this often (seconds)
PARTS_FILE = "parts.json"

RUNNING, RESTARTING, CRASH_LOOP, STOPPED = "running", "restarting", "crash-loop", "stopped"


class RestartPolicy:
    """When to start a part again after it exited; None = crash loop (do not)."""

    def __init__(self, first: float = FIRST_DELAY, cap: float = MAX_DELAY, healthy_after: float = HEALTHY_AFTER,
                 loop_exits: int = LOOP_EXITS, loop_window: float = LOOP_WINDOW):
        self.first, self.cap, self.healthy_after = first, cap, healthy_after
        self.loop_exits, self.loop_window = loop_exits, loop_window
        self.next_delay = first
        self.exits: deque[float] = deque()

    def on_exit(self, now: float, uptime: float, counted: bool = True) -> float | None:
        """Record an exit at `now` (monotonic seconds) after `uptime` seconds up; the delay before
        the restart, or None when this exit makes `loop_exits` within `loop_window`. An exit not
        `counted` (a dependency was down) grows the delay but is no step toward a crash loop."""
        if uptime >= self.healthy_after:
            self.next_delay = self.first
        if counted:
            self.exits.append(now)
        while self.exits and self.exits[0] <= now - self.loop_window:
            self.exits.popleft()
        if len(self.exits) >= self.loop_exits:
            return None
        delay = self.next_delay
        self.next_delay = min(self.cap, self.next_delay * 2)
        return delay


class Part(Protocol):
    """A process `Supervisor` watches: started, polled, cleaned up after an exit, stopped."""

    name: str
    log_path: Path

    @property
    def pid(self) -> int | None: ...
    def start(self) -> int: ...             # the new pid; raises when it cannot even start
    def poll(self) -> int | None: ...       # the exit code once it ended (None while it runs)
    def cleanup(self) -> None: ...          # after an exit: end what is left of it (its process group)
    def stop(self) -> None: ...
    def tail(self, lines: int) -> str: ...


class ChildPart:
    """A `Child` as a supervised part (job, live lane, emulator, app, monitoring)."""

    def __init__(self, child: Child):
        self.child = child
        self.name = child.name
        self.log_path = child.log_path

    @property
    def pid(self) -> int | None:
        return self.child.pid

    def start(self) -> int:
        return self.child.start().pid

    def poll(self) -> int | None:
        return self.child.poll()

    def cleanup(self) -> None:
        self.child.stop(0.0, linger=5.0)   # it is gone; what it started (a Spark JVM) goes too

    def stop(self) -> None:
        self.child.stop(30.0)

    def tail(self, lines: int) -> str:
        return self.child.tail(lines, indent="    ")


@dataclass
class Watched:
    part: Part
    policy: RestartPolicy
    kind: str = "child"               # "child" (stopped by `stop_children`) or "broker" (the caller's)
    needs: bool = False               # it exits when the dependency (Kafka) is down: see `dependency_down`
    state: str = RUNNING
    restarts: int = 0
    last_exit: int | None = None
    started: float = 0.0              # monotonic
    started_at: float = 0.0           # epoch seconds
    due: float | None = None          # monotonic time of the next restart
    message: str = ""

    def uptime(self, now: float) -> float:
        return now - self.started if self.state == RUNNING else 0.0


@dataclass
class Supervisor:
    """Start parts, restart those that exit by their `RestartPolicy`, keep ``parts.json`` current."""

    run_dir: Path
    out: Callable[[str], None] = print
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
    policy: Callable[[], RestartPolicy] = RestartPolicy
    dependency_down: Callable[[], str | None] = lambda: None   # why the parts' dependency is down, or None
    watched: list[Watched] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _written: float = float("-inf")

    @property
    def path(self) -> Path:
        return self.run_dir / PARTS_FILE

    def add(self, part: Part, *, kind: str = "child", started: bool = False, needs: bool = False) -> Watched:
        """Watch `part`; start it unless it is `started` already (a broker node `run` launched).
        `needs`: the part exits when `dependency_down` says why; such exits are no crash loop."""
        w = Watched(part, self.policy(), kind, needs)
        if not started:
            part.start()
        w.started, w.started_at = self.clock(), self.wall()
        with self.lock:
            self.watched.append(w)
        self.write()
        return w

    def tick(self) -> None:
        """Notice exits, restart what is due; rewrite parts.json on a change or every WRITE_EVERY s."""
        changed = False
        for w in list(self.watched):
            if w.state == RUNNING and (code := w.part.poll()) is not None:
                self._exited(w, code)
                changed = True
            elif w.state == RESTARTING and w.due is not None and self.clock() >= w.due:
                self._restart(w)
                changed = True
        if changed or self.clock() - self._written >= WRITE_EVERY:
            self.write()

    def _exited(self, w: Watched, code: int | None) -> None:
        now = self.clock()
        uptime = now - w.started
        w.part.cleanup()
        why = self.dependency_down() if w.needs else None
        delay = w.policy.on_exit(now, uptime, counted=why is None)
        with self.lock:
            w.last_exit = code
            if delay is None:
                w.state, w.due = CRASH_LOOP, None
                w.message = (f"{w.part.name} exited {len(w.policy.exits)} times within "
                             f"{w.policy.loop_window / 60:g} min (last exit code {code}): crash loop, "
                             f"not restarted again; see {w.part.log_path}")
            else:
                w.state, w.due = RESTARTING, now + delay
        if delay is None:
            self.out(f"\n{w.message}; its last lines:\n{w.part.tail(12)}")
        else:
            self.out(f"{w.part.name} exited with code {code} after {uptime:.0f}s; restarting in {delay:g}s "
                     f"(restart {w.restarts + 1})" + (f"; {why}: not counted toward a crash loop" if why else ""))

    def _restart(self, w: Watched) -> None:
        try:
            pid = w.part.start()
        except Exception as exc:  # noqa: BLE001 - a start that fails counts as one more exit
            self.out(f"{w.part.name} could not be started again: {exc}")
            with self.lock:
                w.restarts += 1
                w.state, w.started = RUNNING, self.clock()
            self._exited(w, None)
            return
        with self.lock:
            w.restarts += 1
            w.state, w.due = RUNNING, None
            w.started, w.started_at = self.clock(), self.wall()
        self.out(f"{w.part.name} restarted (pid {pid})")

    def stop_children(self, report: Callable[[str], None] | None = None) -> None:
        """Stop every child part, the last added first (the broker nodes are left to the caller)."""
        for w in reversed(self.watched):
            if w.kind != "child":
                continue
            with self.lock:
                w.state, w.due = STOPPED, None
            w.part.stop()
            (report or self.out)(f"  {w.part.name} stopped")
        self.write()

    def mark_stopped(self) -> None:
        with self.lock:
            for w in self.watched:
                w.state, w.due = STOPPED, None

    def snapshot(self) -> dict:
        """What parts.json holds: run's pid, when, and one entry per part."""
        now, wall = self.clock(), self.wall()
        with self.lock:
            parts = [{
                "name": w.part.name, "kind": w.kind, "state": w.state, "pid": w.part.pid if w.state == RUNNING else None,
                "restarts": w.restarts, "last_exit_code": w.last_exit,
                "started_at": w.started_at if w.state == RUNNING else None,
                "uptime_s": round(w.uptime(now), 1),
                "next_restart_at": wall + (w.due - now) if w.due is not None else None,
                "message": w.message, "log": str(w.part.log_path),
            } for w in self.watched]
        return {"run_pid": os.getpid(), "written_at": wall, "parts": parts}

    def write(self) -> None:
        """parts.json, atomically: a temporary file in the same folder renamed over it."""
        tmp = self.path.with_name(f".{PARTS_FILE}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.snapshot(), indent=1))
        os.replace(tmp, self.path)
        self._written = self.clock()

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def read_parts(run_dir: Path) -> dict | None:
    """parts.json of the run that is going on, or None (no file, unreadable, or its run is gone)."""
    try:
        data = json.loads((run_dir / PARTS_FILE).read_text())
        pid = int(data["run_pid"])
        parts = data["parts"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if pid <= 0 or not signal_reaches(os.kill, pid) or not isinstance(parts, list):
        return None
    return data


class PartsCollector:
    """The supervisor's figures as Prometheus metrics, read at each scrape."""

    def __init__(self, supervisor: Supervisor):
        self.supervisor = supervisor

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        up = GaugeMetricFamily("tormenta_part_up", "1 while the part's process runs, else 0", labels=["part"])
        restarts = CounterMetricFamily("tormenta_part_restarts", "Restarts of the part by run's supervisor",
                                       labels=["part"])
        code = GaugeMetricFamily("tormenta_part_last_exit_code",
                                 "Exit code of the part's last exit (negative: killed by that signal; 0: none yet)",
                                 labels=["part"])
        uptime = GaugeMetricFamily("tormenta_part_uptime_seconds", "Seconds the part's current run has been up",
                                   labels=["part"])
        looped = GaugeMetricFamily("tormenta_part_crash_looped", "1 when the part crash-looped and is left down",
                                   labels=["part"])
        for p in self.supervisor.snapshot()["parts"]:
            label = [p["name"]]
            up.add_metric(label, 1.0 if p["state"] == RUNNING else 0.0)
            restarts.add_metric(label, float(p["restarts"]))
            code.add_metric(label, float(p["last_exit_code"] or 0))
            uptime.add_metric(label, float(p["uptime_s"]))
            looped.add_metric(label, 1.0 if p["state"] == CRASH_LOOP else 0.0)
        yield from (up, restarts, code, uptime, looped)


def serve_metrics(supervisor: Supervisor, port: int):
    """Serve the parts' metrics on 127.0.0.1:`port` (a registry of its own); the server, or None
    with one warning line when the port is taken."""
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry(auto_describe=True)
    registry.register(PartsCollector(supervisor))
    try:
        server, _ = start_http_server(port, addr="127.0.0.1", registry=registry)
    except OSError as exc:
        supervisor.out(f"  warning: run's metrics not served: port {port} on 127.0.0.1 is taken ({exc.strerror})")
        return None
    return server


def stop_metrics(server) -> None:
    if server is not None:
        with contextlib.suppress(Exception):
            server.shutdown()
            server.server_close()
