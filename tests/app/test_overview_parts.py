"""The Overview shows run's supervised parts from parts.json, and nothing of them without a run."""

from __future__ import annotations

import json
import os
import time

import pytest
from streamlit.testing.v1 import AppTest

from tests.support.apptest import APP, assert_clean, failures, use_env

pytestmark = pytest.mark.usefixtures("release_cached_clients")
LOOP = "emulator exited 5 times within 10 min (last exit code 1): crash loop, not restarted again"


def _overview() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    return at


def _parts_table(at: AppTest):
    return next((d.value for d in at.dataframe if "Restarts" in d.value.columns), None)


def test_overview_shows_restarts_exit_codes_uptime_and_the_crash_loop(monkeypatch, demo_dir, tmp_path):
    data = tmp_path / "data"
    (data / "run").mkdir(parents=True)
    for child in demo_dir.iterdir():   # the demo tables, read only: linked, not copied
        (data / child.name).symlink_to(child)
    (data / "run" / "parts.json").write_text(json.dumps({"run_pid": os.getpid(), "written_at": time.time(), "parts": [
        {"name": "job", "state": "running", "pid": 4242, "restarts": 1, "last_exit_code": -9,
         "started_at": time.time() - 75},
        {"name": "emulator", "state": "crash-loop", "pid": None, "restarts": 4, "last_exit_code": 1, "message": LOOP},
    ]}))
    use_env(monkeypatch, data)
    at = _overview()
    assert not at.exception and not failures(at), failures(at)
    table = _parts_table(at)
    assert table is not None
    rows = table.to_dict("records")
    assert [(r["Part"], r["State"], r["Restarts"], r["Last exit code"]) for r in rows] == [
        ("job", "running", 1, "-9"), ("emulator", "crash-loop", 4, "1")]
    assert rows[0]["Up for"].startswith("1 min")
    assert [e.value for e in at.error] == [LOOP]


def test_without_a_run_the_overview_shows_no_parts_table(monkeypatch, demo_dir):
    use_env(monkeypatch, demo_dir)
    at = _overview()
    assert_clean(at)
    assert _parts_table(at) is None and not at.error
