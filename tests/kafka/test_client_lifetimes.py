"""Admin clients are destroyed on the thread that owns them, never on their own librdkafka thread.

An admin client's futures are completed on its librdkafka background thread, in Python. If
that thread drops the last reference to something that holds the same client (an exception
whose traceback still holds the frame with the client in it), the client is destroyed there
and librdkafka aborts the process ("calling rd_kafka_destroy() from librdkafka owned thread is
prohibited"; once in a CI run, in the emulator). The race is rare; these tests make it certain:
in a child process every completed future is held a moment longer on that thread, which then
runs the collector (the main thread never does), so whatever it could free, it frees there.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pipeline.settings import PROJECT_ROOT
from tests.support.ports import free_port

# Run first in the child: the librdkafka thread that completes a future keeps it 0.3 s while the
# caller goes on (and drops its own references), then collects garbage; the main thread never does.
HOSTILE_FUTURES = textwrap.dedent("""
    import concurrent.futures, gc, threading, time

    def _late(original):
        def completed(self, value):
            original(self, value)
            if threading.current_thread() is not threading.main_thread():
                time.sleep(0.3)
                gc.collect()
        return completed

    concurrent.futures.Future.set_result = _late(concurrent.futures.Future.set_result)
    concurrent.futures.Future.set_exception = _late(concurrent.futures.Future.set_exception)
    gc.disable()   # no collection on the main thread: the garbage waits for librdkafka's thread
""")


def _child(body: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    code = HOSTILE_FUTURES + textwrap.dedent(body) + "\nimport time; time.sleep(0.8)\nprint('survived', flush=True)\n"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TORMENTA_")}
    return subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, env={**clean, **env},
                          capture_output=True, text=True, timeout=timeout)


def _assert_survived(out: subprocess.CompletedProcess, *markers: str) -> None:
    assert out.returncode == 0 and "survived" in out.stdout, (out.returncode, out.stdout, out.stderr[-2000:])
    for m in markers:
        assert m in out.stdout, out.stdout


def test_the_harness_aborts_a_client_left_to_the_collector():
    """The hazard is real: a client dropped inside an admin future's exception aborts the child."""
    out = _child(f"""
        from confluent_kafka.admin import AdminClient

        def ask():
            client = AdminClient({{"bootstrap.servers": "127.0.0.1:{free_port()}", "log_level": 0}})
            try:
                client.describe_cluster(request_timeout=1).result(timeout=5)
            except Exception:
                return "refused"   # returns with the client still in the exception's traceback
        print(ask(), flush=True)
    """, {})
    assert out.returncode != 0 and "librdkafka owned thread" in out.stderr, (out.returncode, out.stderr[-2000:])


def test_cluster_start_check_against_a_silent_port_survives_late_futures():
    out = _child(f"""
        from pipeline.kafka.cluster import cluster_accepts
        from pipeline.settings import Settings
        print("answer:", cluster_accepts(Settings.from_env(), ["127.0.0.1:{free_port()}"], 1, 1, timeout=1.0), flush=True)
    """, {"TORMENTA_METRICS_PORT": "0"})
    _assert_survived(out, "answer: 127.0.0.1:")


@pytest.mark.integration
def test_admin_helpers_refused_by_a_real_broker_survive_late_futures(stack):
    """The broker refuses each request in a future (replication above its one node, a bad config)."""
    env = {"TORMENTA_BOOTSTRAP_SERVERS": stack.bootstrap_servers, "TORMENTA_TOPIC": stack.topic,
           "TORMENTA_DATA_DIR": str(stack.data_dir), "TORMENTA_CONTROLLER_PORT": str(stack.controller_port),
           "TORMENTA_METRICS_PORT": "0"}
    out = _child("""
        from pipeline.errors import TopicError
        from pipeline.kafka.cluster import cluster_accepts
        from pipeline.kafka.topic import ensure_topic
        from pipeline.settings import Settings

        s = Settings.from_env()
        print("answer:", cluster_accepts(s, [s.bootstrap_servers], 1, 2, timeout=5.0), flush=True)
        try:
            ensure_topic(s, s.topic + "-bad", config={"retention.ms": "not-a-number"})
        except TopicError as exc:
            print("refused:", exc, flush=True)
    """, env)
    _assert_survived(out, "answer: a topic of 2 copies is refused yet", "refused: creating topic")


KAFKA_CLIENT_FACTORIES = {"AdminClient", "WatchedAdmin", "admin"}


def _unmanaged_admin_clients(path: Path) -> list[str]:
    """Calls that make an admin client outside a `with` item (the factory's own `return` aside)."""
    tree = ast.parse(path.read_text(), str(path))
    managed = {id(item.context_expr) for node in ast.walk(tree) if isinstance(node, ast.With | ast.AsyncWith)
               for item in node.items}
    factory_bodies = {id(n) for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) and f.name == "admin"
                      for n in ast.walk(f)}
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
        if name not in KAFKA_CLIENT_FACTORIES or id(node) in managed:
            continue
        if id(node) not in factory_bodies:
            found.append(f"{path}:{node.lineno} {name}(...)")
    return found


def test_every_admin_client_of_the_product_is_opened_in_a_with_block():
    files = [p for d in ("pipeline", "bench") for p in (PROJECT_ROOT / d).rglob("*.py")]
    assert len(files) > 50
    offenders = [hit for p in files for hit in _unmanaged_admin_clients(p)]
    assert offenders == [], "open these in a `with` block (see pipeline.kafka.topic.WatchedAdmin):\n" + "\n".join(offenders)


def test_the_with_block_rule_catches_a_bare_client(tmp_path):
    bad = tmp_path / "bare.py"
    bad.write_text("def f(conf):\n    md = AdminClient(conf).list_topics()\n    with admin(s) as c:\n        pass\n"
                   "    c2 = admin(s)\n    return md\n\n\ndef admin(s):\n    return WatchedAdmin(s)\n")
    assert sorted(h.rsplit(" ", 1)[1] + f"@{h.rsplit(':', 1)[1].split()[0]}" for h in _unmanaged_admin_clients(bad)) \
        == ["AdminClient(...)@2", "admin(...)@5"]
