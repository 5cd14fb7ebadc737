"""A process that reads the Delta tables through the readers exits cleanly, every time.

With the pinned deltalake/pyarrow, scanning a table through a pyarrow dataset and then
leaving the interpreter aborted about one run in two (`terminate called without an active
exception`, exit 134; delta-rs #2184, arrow #34314). The readers read through DataFusion
only and materialise every result; this test runs a reading process 20 times.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.app_fixtures import write_demo_tables

ROOT = Path(__file__).resolve().parents[2]
SETUP = """
from datetime import UTC, datetime, timedelta
from pipeline.read.readers import DeltaReader, HighValueQuery
from pipeline.settings import Settings

r = DeltaReader(Settings.from_env())
now = datetime.now(UTC)
"""
# One kind of read per process, then a normal interpreter exit (a mix of reads in one process
# hid the abort on the old code; a single read right before the exit showed it 7-10 times in 10).
READS = [
    'print(r.last_batch()["batch_id"])',
    "print(len(r.quarantine(now - timedelta(hours=2), now)[1]))",
    "print(len(r.batch_metrics(now - timedelta(hours=2))))",
    'print(r.latest_complete_window()["sales_count"])',
    "print(len(r.sales_series(now - timedelta(hours=1), now).frame))",
    "print(r.high_value_page(HighValueQuery(now - timedelta(days=1), now)).total)",
    'print(r.info("high_value").rows)',
]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("exit")
    write_demo_tables(d, high_value_rows=500, days=1, agg_minutes=120, metrics_minutes=120)
    return d


def test_reading_processes_exit_with_code_0_twenty_times(data_dir):
    env = {"TORMENTA_DATA_DIR": str(data_dir), "PATH": "/usr/bin:/bin"}
    runs = []
    for i in range(20):
        read = READS[i % len(READS)]
        done = subprocess.run([sys.executable, "-c", SETUP + read], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=120)
        runs.append((done.returncode, read, done.stderr.strip().splitlines()[-1:]))
        assert done.stdout.strip(), (read, done.stderr[-500:])  # the read itself worked
    assert [code for code, _, _ in runs] == [0] * 20, [r for r in runs if r[0]]
