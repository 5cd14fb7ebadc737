"""A real Spark standalone cluster on loopback: one master and one worker from pyspark's distribution.

Used by the cluster integration test and bench/bench_spark_cluster.py. Both daemons bind
to 127.0.0.1 (SPARK_LOCAL_IP also pins their web UIs there); `start` returns once the
master's /json shows the worker ALIVE; `stop` ends both process groups (the worker's
executors with them), also after a failure.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

from tests.support.ports import free_port


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).resolve().parent


class StandaloneCluster:
    def __init__(self, workdir: Path, *, cores: int = 1, memory: str = "1g"):
        self.workdir = workdir
        self.cores, self.memory = cores, memory
        self.port, self.ui_port, self.worker_ui_port = free_port(), free_port(), free_port()
        self.procs: list[subprocess.Popen] = []

    @property
    def url(self) -> str:
        return f"spark://127.0.0.1:{self.port}"

    def _spawn(self, name: str, args: list[str]) -> None:
        env = {**os.environ, "SPARK_HOME": str(spark_home()), "SPARK_LOCAL_IP": "127.0.0.1",
               "SPARK_DAEMON_MEMORY": "512m", "SPARK_WORKER_DIR": str(self.workdir / "work"),
               "SPARK_LOG_DIR": str(self.workdir / "logs")}
        env.pop("PYSPARK_GATEWAY_PORT", None)
        log = open(self.workdir / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        cmd = [str(spark_home() / "bin" / "spark-class"), *args]
        self.procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                           start_new_session=True))
        log.close()

    def start(self, timeout: float = 90) -> StandaloneCluster:
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            self._spawn("master", ["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                                   "--port", str(self.port), "--webui-port", str(self.ui_port)])
            self._spawn("worker", ["org.apache.spark.deploy.worker.Worker", self.url, "--host", "127.0.0.1",
                                   "--cores", str(self.cores), "--memory", self.memory,
                                   "--webui-port", str(self.worker_ui_port),
                                   "--work-dir", str(self.workdir / "work")])
            self._wait_for_worker(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def state(self) -> dict:
        """The master's own view (workers, running and completed applications)."""
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
                f"http://127.0.0.1:{self.ui_port}/json", timeout=2) as r:
            return json.load(r)

    def _wait_for_worker(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for p, name in zip(self.procs, ("master", "worker")):
                if p.poll() is not None:
                    tail = (self.workdir / f"{name}.log").read_text(errors="replace")[-1500:]
                    raise RuntimeError(f"spark {name} exited ({p.returncode}):\n{tail}")
            try:
                if any(w.get("state") == "ALIVE" for w in self.state().get("workers", [])):
                    return
            except OSError:
                pass  # the master's web UI is not up yet
            time.sleep(0.3)
        raise TimeoutError(f"no ALIVE worker on {self.url} after {timeout:.0f} s")

    def stop(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in reversed(self.procs):
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(10)
        self.procs.clear()

    def __enter__(self) -> StandaloneCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
