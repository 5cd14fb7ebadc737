"""The generated monitoring configuration: promtool and amtool accept it, it scrapes every part and
every broker node on loopback, and the command lines bind loopback only (no gossip port)."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from pipeline.monitoring import stack
from pipeline.monitoring.client import MonitoringUnreachable, PrometheusClient, alerts_view
from pipeline.monitoring.config import JOB_NAMES, alertmanager_config, write_configs, write_file
from pipeline.settings import Settings
from tests.support.apptest import closed_port
from tests.support.ports import port_run

needs_tools = pytest.mark.skipif(shutil.which("promtool") is None or shutil.which("amtool") is None,
                                 reason="promtool/amtool are not installed (make monitoring)")


def settings(tmp_path, **more) -> Settings:
    return Settings.from_env({}, data_dir=str(tmp_path), **more)


@needs_tools
def test_promtool_checks_the_generated_config_of_a_three_node_run(tmp_path):
    paths = write_configs(settings(tmp_path, broker_nodes=3, metrics_port=9500))
    done = subprocess.run(["promtool", "check", "config", str(paths.prometheus)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    config = json.loads(paths.prometheus.read_text())
    targets = {j["job_name"]: [t for sc in j["static_configs"] for t in sc["targets"]] for j in config["scrape_configs"]}
    assert targets == {
        "tormenta-job": ["127.0.0.1:9500"], "tormenta-live": ["127.0.0.1:9501"], "tormenta-emulator": ["127.0.0.1:9502"],
        "tormenta-app": ["127.0.0.1:9503"], "tormenta-run": ["127.0.0.1:9504"],
        "tormenta-broker": ["127.0.0.1:9510", "127.0.0.1:9511", "127.0.0.1:9512"],
        "prometheus": ["127.0.0.1:9520"], "alertmanager": ["127.0.0.1:9521"]}
    assert set(JOB_NAMES.values()) == set(targets)
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["127.0.0.1:9521"]
    assert config["global"]["scrape_interval"] == "5s" and config["global"]["evaluation_interval"] == "5s"
    assert config["rule_files"][0].endswith("monitoring/alerts.yaml")


@needs_tools
@pytest.mark.parametrize("webhook, kind", [("", None), ("http://127.0.0.1:5001/hook", "webhook_configs"),
                                           ("https://hooks.slack.com/services/T0/B0/X", "slack_configs")])
def test_amtool_checks_the_alertmanager_config(tmp_path, webhook, kind):
    config = alertmanager_config(webhook)
    path = write_file(tmp_path / "alertmanager.yml", config)
    done = subprocess.run(["amtool", "check-config", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    route = config["route"]["receiver"]
    receiver = next(r for r in config["receivers"] if r["name"] == route)
    if kind is None:
        assert receiver == {"name": "null"}
    else:
        assert receiver[kind][0]["send_resolved"] is True
        assert webhook in json.dumps(receiver)


def test_no_monitoring_children_when_turned_off(tmp_path):
    assert stack.parts(settings(tmp_path, monitoring="false")) == []
    assert stack.parts(settings(tmp_path, metrics_port="0")) == []
    assert not (tmp_path / "monitoring").exists()


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus is not installed (make monitoring)")
def test_the_children_listen_on_loopback_only(tmp_path):
    base = port_run(22)
    found = dict(stack.parts(settings(tmp_path, metrics_port=str(base))))
    assert set(found) == {"prometheus", "alertmanager"}
    assert f"--web.listen-address=127.0.0.1:{base + 20}" in found["prometheus"]
    assert f"--web.listen-address=127.0.0.1:{base + 21}" in found["alertmanager"]
    assert "--cluster.listen-address=" in found["alertmanager"]   # no gossip port on 0.0.0.0:9094
    assert any(a.startswith(f"--storage.tsdb.path={tmp_path.resolve()}") for a in found["prometheus"])
    assert any(a.startswith(f"--storage.path={tmp_path.resolve()}") for a in found["alertmanager"])
    assert (tmp_path / "monitoring" / "prometheus.yml").is_file()


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus is not installed (make monitoring)")
def test_only_the_parts_a_run_starts_are_scraped(tmp_path):
    stack.parts(settings(tmp_path, metrics_port=str(port_run(22)), broker_nodes=3), started=["job", "app"])
    config = json.loads((tmp_path / "monitoring" / "prometheus.yml").read_text())
    jobs = {j["job_name"]: len(j["static_configs"]) for j in config["scrape_configs"]}
    assert jobs == {"tormenta-job": 1, "tormenta-app": 1, "tormenta-run": 1, "tormenta-broker": 3,
                    "prometheus": 1, "alertmanager": 1}


def test_client_says_where_prometheus_does_not_answer():
    port = closed_port()
    with pytest.raises(MonitoringUnreachable, match=f"127.0.0.1:{port}"):
        PrometheusClient(f"http://127.0.0.1:{port}", timeout=1).alerts()


def test_alerts_view_off_and_unreachable(tmp_path):
    off = alerts_view(settings(tmp_path, monitoring="false"))
    assert (off.state, off.sentence(), off.alerts) == ("off", "monitoring off", [])
    down = alerts_view(settings(tmp_path), PrometheusClient(f"http://127.0.0.1:{closed_port()}", timeout=1))
    assert (down.state, down.sentence()) == ("unreachable", "monitoring unreachable")
    assert "does not answer" in down.message
