"""`python -m pipeline run` supervises its parts (issue 19, item 1), with real processes.

The kill test uses the run the session shares (``product_run``, tests/support/product_run.py:
`run --no-app` with the live lane, the emulator, Prometheus and Alertmanager); it runs after the
other tests of that run and ends it. The crash-loop test starts `run --no-app` in its own session,
data folder and free ports (its emulator is made to fail). Each reads the supervisor's
``run/parts.json`` and the run's output, and ends with SIGINT: nothing it started may be left
(every pid recorded and its process group are gone).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
import uuid
from datetime import UTC, datetime

import psutil
import pytest

from pipeline.settings import PROJECT_ROOT
from tests.support.product_run import Run, SharedRun, alive, batches, emulator_delivered

pytestmark = pytest.mark.integration
RESTART_WITHIN = 1 + 5 + 30   # first backoff + the cleanup of the dead part's group + slack on a busy box


@pytest.mark.slow
def test_the_parts_run_with_glibc_arenas_capped(product_run: SharedRun):
    """`run` starts its parts with MALLOC_ARENA_MAX (procs.child.product_env), and the job's Spark
    driver JVM inherits it (in the soak hour the app's memory sat 47 MiB lower with it)."""
    parts = product_run.ready(240)

    def tree(pid: int, jvm: bool) -> list[psutil.Process] | None:
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
        try:
            return procs if not jvm or any(p.name() == "java" for p in procs) else None
        except psutil.NoSuchProcess:   # a helper gone between listing and naming: list again
            return None

    def arenas(procs: list[psutil.Process]) -> dict[tuple[int, str], str | None]:
        """MALLOC_ARENA_MAX of each process of the tree that still runs: a short-lived helper (the
        Spark launcher's shell, say) may have exited, or sit as a zombie, between listing and reading."""
        seen = {}
        for p in procs:
            try:
                seen[(p.pid, p.name())] = p.environ().get("MALLOC_ARENA_MAX")
            except (psutil.ZombieProcess, psutil.NoSuchProcess):
                continue
        return seen

    for name in ("job", "live", "emulator"):
        pid = parts[name]["pid"]
        procs = product_run.run.wait(lambda p=pid, j=name != "emulator": tree(p, j), 240, f"the {name}'s processes")
        seen = arenas(procs)
        assert (pid, psutil.Process(pid).name()) in seen, (name, pid, seen)   # the part itself was read
        if name != "emulator":
            assert any(n == "java" for _, n in seen), (name, seen)   # and so was its JVM
        assert all(v == "2" for v in seen.values()), (name, seen)


@pytest.mark.slow
@pytest.mark.timeout(2700)
@pytest.mark.ends_product_run   # it kills every part, then stops the shared run to reconcile
def test_each_killed_part_comes_back_and_the_job_goes_on(product_run: SharedRun):
    run = product_run.run
    try:
        product_run.ready(240)   # exactly broker, job, live, emulator, prometheus, alertmanager, all running
        run.wait(lambda: batches(run.data) >= 2, 900, "the job's first batches")   # 6 min seen on a busy box
        for name in ("job", "live", "emulator", "broker"):   # the broker last: the others may restart after it
            old = run.parts()[name]
            assert old["restarts"] == 0 and alive(old["pid"]), old
            os.kill(old["pid"], signal.SIGKILL)
            back = run.wait(lambda n=name, o=old["pid"]: (p := run.parts().get(n)) and p["state"] == "running"
                            and p["restarts"] == 1 and p["pid"] != o and alive(p["pid"]) and p,
                            RESTART_WITHIN, f"{name} restarted after kill -9")
            assert back["last_exit_code"] == -9, back
            assert f"{name} exited with code -9" in run.text()
            assert f"{name} restarted (pid {back['pid']})" in run.text()
            if name == "emulator":   # past its start-up check of Kafka before the broker goes: a new emulator
                # that cannot reach Kafka for 20 s exits (by design, "not counted toward a crash loop")
                run.wait(lambda: emulator_delivered(run) > 0, 120, "the restarted emulator delivering")
        seen = batches(run.data)
        run.wait(lambda: batches(run.data) >= seen + 2, 900, "new batches of the job after all the kills")
        assert "crash loop" not in run.text()
    finally:
        run.stop()
    rec = _catch_up_and_reconcile(run)
    assert rec.expected > 0 and (rec.lost, rec.duplicated, rec.unexpected) == (0, 0, 0), rec.sentence()


def _catch_up_and_reconcile(run: Run):
    """After the run: the broker again, `job --once` to process what is left in the topic, then every
    high-value message of the topic against the high_value table, by id (the emulator was killed too,
    so the topic, not the emulator, is the reference)."""
    from pipeline.contract.tables import HIGH_VALUE_QUERY
    from pipeline.kafka.security import client_config
    from pipeline.loadtest.soak_finish import processed_offsets
    from pipeline.loadtest.soak_reconcile import reconcile_soak, scan_topic
    from pipeline.settings import Settings
    from tests.support.stack import produce, tx

    settings = Settings.from_env(run.env)

    def cli(*args: str, timeout: float) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=PROJECT_ROOT, env=run.env,
                              capture_output=True, text=True, timeout=timeout)

    start = cli("broker", "start", timeout=240)
    try:
        assert start.returncode == 0, start.stdout + start.stderr
        kafka = client_config(settings, "admin")
        # first as a soak does when the job has not caught up (10 new high-value sales it has not seen):
        # what it committed must be in Delta, the rest is "not yet processed"; `job --once` processes that rest
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        late = [tx(f"late-{uuid.uuid4().hex}", amount, now) for amount in [1500.01] * 10 + [12.5] * 5]
        produce(settings, [*late, "{not json"])
        processed = processed_offsets({"caught_up": False}, settings.checkpoint_dir / HIGH_VALUE_QUERY, settings.topic)
        before, _ = reconcile_soak(scan_topic(kafka, settings.topic, settings.threshold, timeout_s=300,
                                              processed=processed), settings.delta_dir)
        assert processed and before.complete is False and before.not_yet_processed >= 10, before.sentence()
        assert (before.lost, before.duplicated, before.unexpected) == (0, 0, 0), before.sentence()
        once = cli("job", "--once", timeout=900)
        assert once.returncode == 0, once.stderr[-3000:]
        facts = scan_topic(kafka, settings.topic, settings.threshold, timeout_s=300)
        rec, _ = reconcile_soak(facts, settings.delta_dir)
    finally:
        cli("broker", "stop", timeout=120)
    assert rec.expected == before.expected and rec.complete, (rec.sentence(), before.sentence())
    assert rec.actual_unique == before.actual_unique + before.not_yet_processed, (rec.sentence(), before.sentence())
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
            assert parts[name]["state"] == "running" and parts[name]["restarts"] == 0 and alive(parts[name]["pid"])
        text = urllib.request.urlopen(run.metrics_url, timeout=10).read().decode()
        assert 'tormenta_part_crash_looped{part="emulator"} 1.0' in text and 'tormenta_part_up{part="job"} 1.0' in text
        assert 'tormenta_part_restarts_total{part="emulator"} 4.0' in text
        check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, check.stdout + check.stderr
        run.wait(lambda: batches(run.data) >= 1, 400, "a batch of the job while the emulator is down")
    finally:
        run.stop()
