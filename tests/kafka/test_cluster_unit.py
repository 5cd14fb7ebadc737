"""The local cluster without a JVM: node ports and voters, replication rules, the health view, the pages."""

from __future__ import annotations

from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from pipeline.errors import SettingsError
from pipeline.kafka.broker import EmbeddedBroker, brokers_seen_from, node_heap
from pipeline.kafka.cluster import KafkaCluster, PartitionFact, cluster_bootstrap, node_specs, nodes_in_service
from pipeline.kafka.topic import replication_for
from pipeline.read import health
from pipeline.settings import Settings
from tests.support.ports import port_run

APP = str(Path(__file__).resolve().parents[2] / "streamlit_app.py")


def settings(tmp_path, **env) -> Settings:
    return Settings.from_env({"TORMENTA_DATA_DIR": str(tmp_path), **{f"TORMENTA_{k.upper()}": str(v)
                                                                       for k, v in env.items()}})


def test_three_nodes_derive_ports_folders_and_one_voter_list(tmp_path):
    specs = node_specs(settings(tmp_path, broker_nodes=3))
    assert [(s.node_id, s.port, s.controller_port) for s in specs] == [(1, 9092, 9093), (2, 9094, 9095),
                                                                        (3, 9096, 9097)]
    assert {s.voters for s in specs} == {"1@127.0.0.1:9093,2@127.0.0.1:9095,3@127.0.0.1:9097"}
    assert [s.dir.name for s in specs] == ["node-1", "node-2", "node-3"]
    assert len({s.dir for s in specs}) == 3 and {s.nodes for s in specs} == {3} and {s.replication for s in specs} == {2}
    assert cluster_bootstrap(settings(tmp_path, broker_nodes=3)) == "127.0.0.1:9092,127.0.0.1:9094,127.0.0.1:9096"
    one = node_specs(settings(tmp_path))
    assert len(one) == 1 and one[0].dir == tmp_path / "broker" and one[0].voters == "1@127.0.0.1:9093"


def test_node_config_has_its_own_id_ports_and_the_cluster_replication(tmp_path):
    s = settings(tmp_path, broker_nodes=3)
    node = EmbeddedBroker(s, node_specs(s)[1])
    node._write_config()
    props = dict(line.split("=", 1) for line in node.config_file.read_text().splitlines())
    assert props["node.id"] == "2" and props["listeners"] == "PLAINTEXT://127.0.0.1:9094,CONTROLLER://127.0.0.1:9095"
    assert props["log.dirs"] == str(tmp_path / "broker" / "node-2" / "logs")
    assert (props["offsets.topic.replication.factor"], props["transaction.state.log.replication.factor"],
            props["transaction.state.log.min.isr"], props["default.replication.factor"],
            props["min.insync.replicas"]) == ("3", "3", "2", "2", "1")
    single = EmbeddedBroker(settings(tmp_path / "one"))
    single._write_config()
    assert "offsets.topic.replication.factor=1\n" in single.config_file.read_text()


def test_a_node_reserves_its_whole_heap_at_start(tmp_path):
    s = settings(tmp_path, broker_nodes=3, broker_heap="1g")
    cmd = EmbeddedBroker(s, node_specs(s)[0]).command()
    assert "-Xmx512m" in cmd and "-Xms512m" in cmd and "-XX:+AlwaysPreTouch" in cmd
    assert cmd[-2:][0] == "kafka.Kafka"


def test_heap_per_node_is_half_the_setting():
    assert node_heap("1g", 1) == "1g" and node_heap("1g", 3) == "512m" and node_heap("256m", 3) == "256m"


@pytest.mark.parametrize("boot,ctl", [("127.0.0.1:9092", 9094), ("127.0.0.1:9092", 9096), ("127.0.0.1:65534", 9093)])
def test_colliding_node_ports_are_refused(tmp_path, boot, ctl):
    with pytest.raises(SettingsError, match="collide or pass 65535") as err:
        node_specs(settings(tmp_path, broker_nodes=3, bootstrap_servers=boot, controller_port=ctl))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("value", ["0", "2", "10", "x", "-3", "3.5"])
def test_node_count_is_1_or_3_to_9(value):
    with pytest.raises(SettingsError, match=r"TORMENTA_BROKER_NODES=.* allowed: 1, or 3\.\.9"):
        Settings.from_env({"TORMENTA_BROKER_NODES": value})


def test_replication_auto_and_refusals():
    auto = Settings.from_env({})
    assert replication_for(auto, 1) == (1, 1) and replication_for(auto, 3) == (2, 1)
    three = Settings.from_env({"TORMENTA_REPLICATION": "3"})
    assert replication_for(three, 3) == (3, 2)
    with pytest.raises(SettingsError, match="more than the 1 broker"):
        replication_for(three, 1)
    for bad in ("0", "10", "two"):
        with pytest.raises(SettingsError, match="allowed: auto or 1..9"):
            Settings.from_env({"TORMENTA_REPLICATION": bad})
    assert auto.replace(broker_nodes=3).replication == 0   # auto survives a validated copy


def _parts():
    return [PartitionFact("tx", 0, 1, [1, 2], [1, 2]), PartitionFact("tx", 1, 3, [2, 3], [3]),
            PartitionFact("tx", 2, 3, [3, 1], [3, 1]), PartitionFact("ctl", 0, -1, [2], [])]


def test_judge_cluster_counts_leaders_and_under_replicated():
    view = health.judge_cluster([(1, "a:1", True, 11), (2, "a:3", False, None), (3, "a:5", True, 13)], _parts())
    assert [(n.node, n.state, n.leads) for n in view.nodes] == [(1, "up", 1), (2, "down", 0), (3, "up", 2)]
    assert view.up == 2
    assert [(p.topic, p.partition) for p in view.under_replicated] == [("tx", 1), ("ctl", 0)]
    assert [(p.topic, p.partition) for p in view.leaderless] == [("ctl", 0)]
    assert view.sentence() == "2 of 3 Kafka nodes answer; 2 under-replicated partitions, 1 without a leader."
    assert view.rows()[1] == {"node": 2, "state": "DOWN", "address": "a:3", "pid": None, "partitions led": 0}


def test_broker_part_is_up_while_any_node_serves_and_names_the_lost_ones():
    part = health.broker_part(health.judge_cluster([(1, "a", True, 1), (2, "b", False, None)], _parts()[:1]))
    assert part.state == health.UP and "Node 2 down" in part.detail and "broker start" in part.detail
    healthy = health.broker_part(health.judge_cluster([(1, "a", True, 1), (2, "b", True, 2)], _parts()[:1]))
    assert healthy.detail == "2 of 2 Kafka nodes answer; 0 under-replicated partitions."
    none = health.broker_part(health.judge_cluster([(1, "a", False, None)], None))
    assert none.state == health.DOWN and none.fix == health.FIX["broker"]
    assert health.judge_cluster([(1, "a", True, 1)], None).sentence() == "1 of 1 Kafka nodes answer; partitions unknown."


def test_cluster_status_lines_without_nodes(tmp_path):
    base = _closed_run()
    cluster = KafkaCluster(settings(tmp_path, broker_nodes=3, bootstrap_servers=f"127.0.0.1:{base}",
                                    controller_port=base + 1))
    st_ = cluster.status(with_controller=False)
    lines = st_.lines()
    assert st_.up == 0 and len(lines) == 5 and all(" down " in ln for ln in lines[:3])
    assert lines[-1] == "partitions: unknown (no node answers)"


def _closed_run() -> int:
    """A base port whose three nodes' client and controller ports (base .. base+5) are all closed."""
    return port_run(6)


@pytest.mark.parametrize("page", ["pages/overview.py", "pages/pipeline_health.py"])
def test_pages_show_every_node_down_without_a_broker(monkeypatch, tmp_path, page):
    base = _closed_run()
    for k, v in {"DATA_DIR": tmp_path, "BOOTSTRAP_SERVERS": f"127.0.0.1:{base}", "CONTROLLER_PORT": base + 1,
                 "BROKER_NODES": 3}.items():
        monkeypatch.setenv(f"TORMENTA_{k}", str(v))
    st.cache_data.clear()
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    if page != "pages/overview.py":
        at.switch_page(page)
        at.run()
    assert not at.exception
    table = next(df.value for df in at.dataframe if "partitions led" in df.value.columns)
    assert list(table["state"]) == ["DOWN"] * 3 and list(table["node"]) == [1, 2, 3]
    shown = [c.value for c in at.caption] + [e.label for e in at.expander]
    assert any("0 of 3 Kafka nodes answer" in t for t in shown), shown
    st.cache_resource.clear()


def test_kill_broker_step_needs_a_cluster_and_a_step_of_the_plan():
    from pipeline.loadtest.options import LoadTestOptions

    assert LoadTestOptions().check_kill_step(5, 1) is None
    assert LoadTestOptions(kill_broker_at=2.0).check_kill_step(5, 3) == 1
    with pytest.raises(SettingsError, match="needs a cluster"):
        LoadTestOptions(kill_broker_at=2.0).check_kill_step(5, 1)
    for bad in (0.0, 6.0, 1.5):
        with pytest.raises(SettingsError, match=r"allowed: 1\.\.5"):
            LoadTestOptions(kill_broker_at=bad).check_kill_step(5, 3)


def test_report_shows_the_broker_outage():
    import dataclasses

    from pipeline.loadtest.report import build_report
    from tests.support.loadtest_fixtures import synthetic_result

    result, samples = synthetic_result()
    t0 = float(result.t0)
    assert "Broker outage" not in build_report(result, samples)
    result = dataclasses.replace(result, broker_outage={
        "node": 2, "pid": 4321, "step": "peak 30,000", "step_number": 3, "killed_at": t0 + 40.0,
        "restarted_at": t0 + 70.0, "back_at": t0 + 76.5, "down_s": 36.5, "restart_s": 6.5, "new_pid": 4400})
    html = build_report(result, samples)
    assert 'id="broker-outage"' in html and "node 2 (pid 4321)" in html and "3: peak 30,000" in html
    assert "<td>down interval</td><td>36.5 s</td>" in html and "<td>killed at</td><td>40.0 s</td>" in html
    from pipeline.loadtest.result import LoadTestResult

    assert LoadTestResult.from_dict(result.to_dict()).broker_outage["down_s"] == 36.5


# ---- stop: a node left without its quorum ---------------------------------------------------------
def _node_process(ignores_term: bool):
    """A stand-in for a node's JVM in its own session (as `launch` starts it): one that exits on
    SIGTERM, or one that cannot finish stopping (SIGTERM ignored, like a node stuck in its
    controlled shutdown)."""
    import subprocess

    script = "trap '' TERM; echo ready; while :; do sleep 0.2; done" if ignores_term else "echo ready; exec sleep 600"
    proc = subprocess.Popen(["bash", "-c", script], start_new_session=True, stdout=subprocess.PIPE)
    assert proc.stdout.readline() == b"ready\n"   # its trap is set before anyone signals it
    return proc


def _cluster_of(tmp_path, ignores: list[bool]):
    cluster = KafkaCluster(settings(tmp_path, broker_nodes=3))
    procs = []
    for nd, ignore in zip(cluster.nodes, ignores, strict=True):
        proc = _node_process(ignore)
        nd.pid_file.parent.mkdir(parents=True, exist_ok=True)
        nd.pid_file.write_text(str(proc.pid))
        procs.append(proc)
    return cluster, procs


def test_stop_kills_a_node_left_without_its_quorum_after_a_short_grace_and_says_so(tmp_path):
    import time

    cluster, procs = _cluster_of(tmp_path, [False, False, True])
    t0 = time.monotonic()
    out = cluster.stop(timeout=60, alone_grace=1.0).splitlines()
    assert time.monotonic() - t0 < 15    # not the whole timeout
    assert out[0].startswith("node 1 (pid") and out[0].endswith("stopped")
    assert out[1].startswith("node 2 (pid") and out[1].endswith("stopped")
    assert "killed 1 s after the rest of its quorum had exited" in out[2], out
    assert out[2].count("stopped") == 1, out   # one "stopped" per node line: scripts count them
    assert all(p.poll() is not None for p in procs)
    assert not any(nd.pid_file.exists() for nd in cluster.nodes)


def test_stop_waits_its_whole_timeout_while_a_quorum_still_runs(tmp_path):
    # two of three still stopping are a quorum: they may finish, so no early kill
    cluster, procs = _cluster_of(tmp_path, [True, True, False])
    out = cluster.stop(timeout=3, alone_grace=0.5).splitlines()
    assert out[2].endswith("stopped") and "quorum" not in out[2]
    assert all("did not stop in time and was killed" in line for line in out[:2]), out
    assert all(p.poll() is not None for p in procs)


def test_a_node_that_does_not_answer_is_seen_as_none_and_so_out_of_service(tmp_path):
    """Nothing listens on these ports: the shared metadata probe says None (not an empty
    cluster), start-up's readiness is False and no node is in service."""
    base = port_run(6)
    s = settings(tmp_path, bootstrap_servers=f"127.0.0.1:{base}", controller_port=base + 1, broker_nodes=3)
    assert brokers_seen_from(s, f"127.0.0.1:{base}", timeout=0.5) is None
    assert nodes_in_service(s, timeout=0.5) == set()
    assert EmbeddedBroker(s)._metadata_ok() is False
