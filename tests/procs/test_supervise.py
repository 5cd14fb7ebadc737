"""The restart policy and the supervisor's loop, with a fake clock and fake parts (no processes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from pipeline.procs.supervise import (
    CRASH_LOOP,
    RESTARTING,
    RUNNING,
    STOPPED,
    PartsCollector,
    RestartPolicy,
    Supervisor,
    read_parts,
    serve_metrics,
    stop_metrics,
)
from tests.support.ports import free_port


class Clock:
    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def _exits(policy: RestartPolicy, times_and_uptimes) -> list[float | None]:
    return [policy.on_exit(t, up) for t, up in times_and_uptimes]


def test_the_delay_doubles_from_one_second_to_sixty():
    # one exit every 11 minutes (never a crash loop), each run shorter than 10 minutes: no reset
    p = RestartPolicy()
    delays = _exits(p, [(i * 660.0, 5.0) for i in range(9)])
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60, 60]


def test_ten_minutes_of_health_resets_the_delay():
    p = RestartPolicy()
    assert _exits(p, [(0, 1), (700, 1), (1400, 1)]) == [1, 2, 4]
    assert p.on_exit(2100, 599.9) == 8          # just short of 10 minutes: no reset
    assert p.on_exit(2800, 600.0) == 1          # 10 minutes up: back to 1 s
    assert p.on_exit(3500, 3.0) == 2


def test_five_exits_within_ten_minutes_are_a_crash_loop():
    p = RestartPolicy()
    assert _exits(p, [(0, 1), (10, 1), (20, 1), (30, 1)]) == [1, 2, 4, 8]
    assert p.on_exit(599, 1) is None            # the 5th exit within 600 s


def test_exits_spread_over_more_than_ten_minutes_are_no_crash_loop():
    p = RestartPolicy()
    # five exits, but the first is 600 s before the fifth: only four are within the window
    assert None not in _exits(p, [(0, 1), (200, 1), (300, 1), (400, 1), (600, 1)])
    assert p.on_exit(601, 1) is None            # 200, 300, 400, 600, 601: five within 600 s


class FakePart:
    """A part whose process 'exits' when the test says so; start can be made to fail."""

    def __init__(self, name: str, tmp: Path):
        self.name = name
        self.log_path = tmp / f"{name}.log"
        self.log_path.write_text("line 1\nboom: no such sample file\n")
        self.code: int | None = None
        self.starts = 0
        self.cleanups = 0
        self.stopped = False
        self.fail_start = False

    @property
    def pid(self):
        return 4000 + self.starts

    def start(self) -> int:
        if self.fail_start:
            raise OSError("cannot start")
        self.starts += 1
        self.code = None
        return self.pid

    def poll(self):
        return self.code

    def cleanup(self):
        self.cleanups += 1

    def stop(self):
        self.stopped = True

    def tail(self, lines: int) -> str:
        return self.log_path.read_text()


@pytest.fixture
def sup(tmp_path):
    clock = Clock()
    lines: list[str] = []
    s = Supervisor(tmp_path, out=lines.append, clock=clock, wall=lambda: 1.7e9 + clock.t)
    s.lines, s.fake_clock = lines, clock
    return s


def _entry(sup: Supervisor, name: str) -> dict:
    return next(p for p in json.loads(sup.path.read_text())["parts"] if p["name"] == name)


def test_a_part_that_exits_is_restarted_after_its_delay(sup, tmp_path):
    job = FakePart("job", tmp_path)
    sup.add(job)
    assert _entry(sup, "job")["state"] == RUNNING and job.starts == 1
    sup.fake_clock.t += 30
    job.code = -9
    sup.tick()
    e = _entry(sup, "job")
    assert e["state"] == RESTARTING and e["last_exit_code"] == -9 and e["pid"] is None
    assert e["next_restart_at"] == pytest.approx(1.7e9 + sup.fake_clock.t + 1)
    assert job.cleanups == 1
    assert sup.lines == ["job exited with code -9 after 30s; restarting in 1s (restart 1)"]
    sup.fake_clock.t += 0.5
    sup.tick()
    assert job.starts == 1                      # not yet due
    sup.fake_clock.t += 0.6
    sup.tick()
    e = _entry(sup, "job")
    assert job.starts == 2 and e["state"] == RUNNING and e["restarts"] == 1 and e["pid"] == 4002


def test_a_crash_loop_stops_that_part_only_with_one_line_and_its_log(sup, tmp_path):
    emu, app = FakePart("emulator", tmp_path), FakePart("app", tmp_path)
    sup.add(emu)
    sup.add(app)
    for _ in range(5):
        emu.code = 1
        sup.tick()
        sup.fake_clock.t += 61
        sup.tick()                              # restarts when due (delays 1, 2, 4, 8 < 61 s)
    assert emu.starts == 5
    e = _entry(sup, "emulator")
    assert e["state"] == CRASH_LOOP and e["restarts"] == 4 and "crash loop" in e["message"]
    loop_lines = [ln for ln in sup.lines if "crash loop" in ln]
    assert len(loop_lines) == 1 and "boom: no such sample file" in loop_lines[0]
    assert loop_lines[0].strip().startswith("emulator exited 5 times within 10 min (last exit code 1)")
    sup.fake_clock.t += 3600
    sup.tick()
    assert emu.starts == 5 and _entry(sup, "app")["state"] == RUNNING   # the rest keeps running


def test_exits_while_kafka_is_down_grow_the_delay_but_are_no_crash_loop(sup, tmp_path):
    """A broker outage longer than the backoff makes the job exit again and again: that is the
    broker's fault, not the job's, so the job is still started again when the broker is back."""
    down = ["no Kafka broker answers at 127.0.0.1:9092"]
    sup.dependency_down = lambda: down[0]
    job, app = FakePart("job", tmp_path), FakePart("app", tmp_path)
    sup.add(job, needs=True)
    sup.add(app)
    delays = []
    for _ in range(8):                            # eight exits within 10 minutes, Kafka down for each
        job.code = 1
        sup.tick()
        delays.append(_entry(sup, "job")["next_restart_at"] - (1.7e9 + sup.fake_clock.t))
        sup.fake_clock.t += 61
        sup.tick()
    assert job.starts == 9 and _entry(sup, "job")["state"] == RUNNING
    assert [round(d) for d in delays] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert all("not counted toward a crash loop" in ln for ln in sup.lines if ln.startswith("job exited"))
    for _ in range(5):                            # the broker is back: a part that then keeps failing loops
        app.code = 1
        sup.tick()
        sup.fake_clock.t += 61
        sup.tick()
    assert _entry(sup, "app")["state"] == CRASH_LOOP   # not `needs`: the probe is never asked for it
    down[0] = None
    for _ in range(5):
        job.code = 1
        sup.tick()
        sup.fake_clock.t += 61
        sup.tick()
    assert _entry(sup, "job")["state"] == CRASH_LOOP


def test_the_kafka_probe_names_the_servers_and_sees_a_listener():
    import socket

    from pipeline.runall import kafka_down

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            dead = closed.getsockname()[1]    # bound, never listening: refuses connections
            assert kafka_down(f"127.0.0.1:{dead},127.0.0.1:{port}")() is None
            assert kafka_down(f"127.0.0.1:{dead}")() == f"no Kafka broker answers at 127.0.0.1:{dead}"


def test_a_start_that_fails_counts_as_an_exit(sup, tmp_path):
    job = FakePart("job", tmp_path)
    sup.add(job)
    job.code, job.fail_start = 1, True
    sup.tick()
    sup.fake_clock.t += 1
    sup.tick()
    e = _entry(sup, "job")
    assert e["state"] == RESTARTING and e["restarts"] == 1 and e["last_exit_code"] is None
    assert any("could not be started again" in ln for ln in sup.lines)
    assert e["next_restart_at"] == pytest.approx(1.7e9 + sup.fake_clock.t + 2)


def test_stop_children_stops_children_last_first_and_leaves_the_broker(sup, tmp_path):
    broker, job, app = FakePart("broker", tmp_path), FakePart("job", tmp_path), FakePart("app", tmp_path)
    sup.add(broker, kind="broker", started=True)
    sup.add(job)
    sup.add(app)
    assert broker.starts == 0                   # already started by the caller
    said: list[str] = []
    sup.stop_children(report=said.append)
    assert said == ["  app stopped", "  job stopped"] and not broker.stopped
    assert {p["name"]: p["state"] for p in json.loads(sup.path.read_text())["parts"]} == {
        "broker": RUNNING, "job": STOPPED, "app": STOPPED}


def test_read_parts_needs_a_live_run(tmp_path, sup):
    sup.add(FakePart("job", tmp_path))
    assert read_parts(tmp_path)["parts"][0]["name"] == "job"
    data = json.loads(sup.path.read_text())
    data["run_pid"] = _dead_pid()
    sup.path.write_text(json.dumps(data))
    assert read_parts(tmp_path) is None         # the run that wrote it is gone
    sup.path.write_text("{not json")
    assert read_parts(tmp_path) is None
    sup.remove()
    assert read_parts(tmp_path) is None


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_metrics_have_the_five_names_and_pass_promtool(sup, tmp_path):
    job, emu = FakePart("job", tmp_path), FakePart("emulator", tmp_path)
    sup.add(job)
    sup.add(emu)
    job.code = -9
    sup.tick()
    port = free_port()
    server = serve_metrics(sup, port)
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        stop_metrics(server)
    assert 'tormenta_part_up{part="job"} 0.0' in text and 'tormenta_part_up{part="emulator"} 1.0' in text
    assert 'tormenta_part_last_exit_code{part="job"} -9.0' in text
    assert 'tormenta_part_restarts_total{part="job"} 0.0' in text
    assert 'tormenta_part_crash_looped{part="emulator"} 0.0' in text
    assert 'tormenta_part_uptime_seconds{part="emulator"}' in text
    check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr


def test_a_taken_metrics_port_is_one_warning(sup):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        assert serve_metrics(sup, s.getsockname()[1]) is None
    assert len(sup.lines) == 1 and "metrics not served" in sup.lines[0]


def test_the_collector_reads_the_state_at_each_scrape(sup, tmp_path):
    job = FakePart("job", tmp_path)
    sup.add(job)
    for _ in range(5):
        job.code = 2
        sup.tick()
        sup.fake_clock.t += 61
        sup.tick()
    fams = {m.name: m for m in PartsCollector(sup).collect()}
    assert fams["tormenta_part_crash_looped"].samples[0].value == 1.0
    assert fams["tormenta_part_restarts"].samples[0].value == 4.0
    assert fams["tormenta_part_up"].samples[0].value == 0.0
    assert fams["tormenta_part_last_exit_code"].samples[0].value == 2.0
    assert os.getpid() == json.loads(sup.path.read_text())["run_pid"]
