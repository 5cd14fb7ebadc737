"""Broker loss on the real stack: a 3-node KRaft cluster (Maven jars), the real Spark job, the real emulator.

* one node that leads a partition of the transactions topic is killed with SIGKILL while the
  emulator produces 10,000 tx/s; it stays down 30 s, comes back, and the job catches up:
  high_value holds exactly the ids the emulator recorded as delivered over the threshold,
  the job process never stopped, no delivery failed, and health saw the node down;
* the whole cluster stopped and started again keeps every record;
* the single-node broker killed with SIGKILL and restarted: the job resumes, nothing lost; the
  lz4 library its JVM unpacks lives in the node's own temp folder, a kill -9 leaves it there,
  the restart empties the folder (nothing of it ever in /tmp).

Slow (several minutes on two cores): ``make test-unit`` skips it (marker ``slow``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.emulator.storm import StormEmulator
from pipeline.kafka.broker import EmbeddedBroker
from pipeline.kafka.cluster import KafkaCluster, nodes_in_service, with_cluster
from pipeline.kafka.topic import describe_topic, ensure_topic, log_end_offsets
from pipeline.loadtest.reconcile import read_high_value, read_ids
from pipeline.loadtest.sampling import checkpoint_offsets
from pipeline.procs.group import stop_group
from pipeline.read import health
from pipeline.settings import PROJECT_ROOT, Settings
from tests.support.emulator_fixtures import Background, read_all
from tests.support.ports import port_run
from tests.support.stack import make_settings, produce, tx
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]
DOWN_FOR = 30.0     # seconds the killed node stays down while the emulator keeps producing


def log_end(s: Settings) -> int:
    return sum(log_end_offsets(s, timeout=10).values())


def committed(s: Settings) -> int:
    return checkpoint_offsets(s.checkpoint_dir / "high_value", s.topic)["committed"] or 0


def start_job(s: Settings, log: Path) -> subprocess.Popen:
    env = dict(os.environ, TORMENTA_BOOTSTRAP_SERVERS=s.bootstrap_servers, TORMENTA_TOPIC=s.topic,
               TORMENTA_DATA_DIR=str(s.data_dir), TORMENTA_TRIGGER_INTERVAL="2s", TORMENTA_COMPACT_EVERY="0",
               TORMENTA_DRIVER_MEMORY="1g", PYTHONUNBUFFERED="1")
    with open(log, "ab") as fh:
        job = subprocess.Popen([sys.executable, "-m", "pipeline", "job", "--query", "high_value"], stdout=fh,
                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=PROJECT_ROOT, env=env,
                               start_new_session=True)
    first = s.checkpoint_dir / "high_value" / "commits" / "0"
    wait_for(first.exists, 240, "the job's first committed batch", process=job, log=log, every=0.5)
    assert job.poll() is None, log.read_text()[-3000:]
    return job


def assert_exact(s: Settings, ids_file: Path, job: subprocess.Popen, log: Path) -> int:
    """Wait until the job has committed the whole log, then compare ids: 0 lost, 0 duplicated."""
    end = log_end(s)
    wait_for(lambda: committed(s) >= end, 240, f"the job to catch up to offset {end}", process=job, log=log, every=0.5)
    assert job.poll() is None, "the job stopped:\n" + log.read_text()[-3000:]
    expected = read_ids(ids_file)
    actual, _, _ = read_high_value(s.table_path("high_value"))
    assert len(expected) == len(set(expected)) and expected
    assert len(actual) == len(set(actual)), f"{len(actual) - len(set(actual))} duplicated ids in high_value"
    assert set(actual) == set(expected), (f"lost {len(set(expected) - set(actual))}, "
                                          f"unexpected {len(set(actual) - set(expected))}")
    return len(expected)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A real 3-node KRaft cluster (512m heap each) on free loopback ports; yields (cluster, settings)."""
    base = port_run(6)
    s = make_settings(tmp_path_factory.mktemp("cluster"), bootstrap_servers=f"127.0.0.1:{base}",
                      controller_port=base + 1, broker_nodes=3, broker_heap="1g")
    c = KafkaCluster(s)
    c.start()
    try:
        yield c, with_cluster(s)
    finally:
        c.stop()


def watch_down(c: KafkaCluster, s: Settings, victim: int, seconds: float) -> list[str]:
    """Poll health for `seconds` while the node is down; the victim's state at each look."""
    seen, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        view = health.cluster_view(s)
        seen.append(view.nodes[victim - 1].state)
        time.sleep(1.0)
    return seen


def test_a_killed_partition_leader_loses_nothing(cluster, tmp_path):
    c, base = cluster
    s = base.replace(topic="tx-loss", data_dir=tmp_path / "data", emulator_rate=10_000)
    ensure_topic(s)
    assert describe_topic(s).replication_factor == 2
    job_log, ids = tmp_path / "job.log", tmp_path / "ids.txt"
    job = start_job(s, job_log)
    try:
        pid = job.pid
        with Background(StormEmulator(s, control=False, record_ids=ids, seed=7)) as bg:
            wait_for(lambda: log_end(s) >= 20_000, 60, "the emulator's first 20,000 records", every=0.5)
            victim = c.leader_of(s.topic)
            assert victim and c.node(victim).kill()
            assert nodes_in_service(s) == {1, 2, 3} - {victim}   # at once, though its registration lingers
            seen = watch_down(c, s, victim, DOWN_FOR)
            assert seen.count("down") == len(seen), seen
            led = health.cluster_view(s).nodes[victim - 1]
            assert led.leads == 0 and health.cluster_view(s).under_replicated
            c.start_node(victim)
            wait_for(lambda: not health.cluster_view(s).under_replicated, 90, "the replicas back in sync", every=0.5)
            assert nodes_in_service(s) == {1, 2, 3}
            before = log_end(s)
            wait_for(lambda: log_end(s) >= before + 20_000, 60, "20,000 records after the restart", every=0.5)
            bg.stop.set()
            summary = bg.join(90)
        assert summary["failed"] == 0 and summary["delivered"] == summary["sent"], summary
        n = assert_exact(s, ids, job, job_log)
        assert n > 1000 and job.pid == pid and job.poll() is None
    finally:
        stop_group(job, 60)


def test_whole_cluster_stop_and_start_keeps_every_record(cluster):
    c, s = cluster
    s = s.replace(topic="tx-restart")
    ensure_topic(s)
    values = [tx(f"id-{i}", 2000 + i) for i in range(500)]
    produce(s, values)
    assert "stopped" in c.stop()
    assert KafkaCluster(s).status(with_controller=False).up == 0
    c.start()
    st = c.status()
    assert st.up == 3 and st.controller in (1, 2, 3)
    got = sorted(m.value() for m in read_all(s, timeout=60))
    assert got == sorted(json.dumps(v).encode() for v in values)


def _mapped(pid: int | None, library: str) -> Path | None:
    """The file of `library` that process `pid` has mapped, or None."""
    try:
        maps = Path(f"/proc/{pid}/maps").read_text() if pid else ""
    except OSError:
        return None
    return next((Path(f[5]) for f in (ln.split(None, 5) for ln in maps.splitlines()) if len(f) == 6 and library in f[5]),
                None)


def test_single_broker_killed_and_restarted_lets_the_job_resume(tmp_path):
    s = make_settings(tmp_path / "data", bootstrap_servers=f"127.0.0.1:{port_run(2)}", broker_heap="768m",
                      emulator_rate=5_000, topic="tx-single")
    s = s.replace(controller_port=s.first_bootstrap[1] + 1)
    broker = EmbeddedBroker(s)
    broker.start()
    job = None
    try:
        ensure_topic(s)
        job_log, ids = tmp_path / "job.log", tmp_path / "ids.txt"
        job = start_job(s, job_log)
        pid = job.pid
        with Background(StormEmulator(s, control=False, record_ids=ids, seed=3)) as bg:
            wait_for(lambda: log_end(s) >= 10_000, 60, "the emulator's first 10,000 records", every=0.5)
            # the emulator sends lz4 batches, which the broker decompresses to validate them
            first = wait_for(lambda: _mapped(broker.read_pid(), "liblz4"), 60, "the broker to load lz4-java")
            assert first.parent == broker.tmp_dir, first    # not /tmp
            assert broker.kill()
            assert health.broker_health(s).state == health.DOWN
            assert first.exists()                           # what a kill -9 leaves behind
            broker.start()
            assert not first.exists()                       # ... the next start removes
            before = log_end(s)
            wait_for(lambda: log_end(s) >= before + 10_000, 60, "10,000 records after the restart", every=0.5)
            bg.stop.set()
            summary = bg.join(90)
        assert summary["failed"] == 0, summary
        assert_exact(s, ids, job, job_log) > 100 and job.pid == pid
    finally:
        if job is not None:
            stop_group(job, 60)
        broker.stop()
