"""A short real soak through the whole path: ``python -m pipeline loadtest --profile soak --chaos``.

`run` (broker, job, emulator, app; no live lane and no Prometheus, to spare the 2-core box)
runs for 100 s at 1,000 tx/s with a 10 s trigger; the seeded schedule kills the emulator once
(kill -9: whatever it had not delivered is gone, which is why the reference is the topic);
the supervisor must bring it back and its records must reach the topic again; the topic
read back must match Delta: 0 lost, 0 duplicated, and the sales_agg count equal to the
distinct valid transactions. The report is written with its charts and the kill; nothing
is left running, and the run's broker logs and checkpoints are deleted (not its Delta tables). (The emulator, not the job: a second Spark start would double the wall
time on the shared box; the unit tests and docs/LOADTEST.md cover the job's kill.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from pipeline.loadtest.chaos import schedule

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
DURATION_S, EVERY = 100, (35.0, 45.0)


def seed_killing(part: str, targets: list[str]) -> int:
    """The first seed whose schedule for this run is exactly one kill, of `part`."""
    return next(s for s in range(1, 1000)
                if [p for _, p in schedule(s, DURATION_S, EVERY, targets)] == [part])


def test_short_soak_kills_the_emulator_once_and_loses_nothing(tmp_path):
    seed = seed_killing("emulator", ["app", "emulator", "job"])
    env = dict(os.environ, TORMENTA_DATA_DIR=str(tmp_path), TORMENTA_LIVE="false", TORMENTA_MONITORING="false")
    cmd = [sys.executable, "-m", "pipeline", "loadtest", "--profile", "soak", "--rate", "1000",
           "--duration", f"{DURATION_S}s", "--trigger", "10s", "--chaos", "--chaos-every", f"{EVERY[0]:.0f}-{EVERY[1]:.0f}s",
           "--seed", str(seed), "--sample-every", "5s", "--browser-every", "30s", "--catch-up-timeout", "300",
           "--json"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500)
    assert proc.returncode in (0, 1), proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads(proc.stdout[proc.stdout.rindex("\n{"):])
    folder = tmp_path / "soaks" / summary["run_id"]
    result = json.loads((folder / "result.json").read_text())
    assert result["state"] == "done", result.get("error")

    kills = result["kills"]
    assert [k["part"] for k in kills] == ["emulator"], kills
    k = kills[0]
    assert k["pid"] and k["new_pid"] and k["new_pid"] != k["pid"] and not k["problem"], k
    assert 0 < k["back_s"] <= k["healthy_s"] < 300, k
    assert result["parts_at_end"]["emulator"]["restarts"] == 1

    rec, sales = result["reconciliation"], result["sales_agg"]
    assert rec["expected"] > 100 and rec["lost"] == 0 and rec["duplicated"] == 0 and rec["unexpected"] == 0, rec
    assert sales["ok"] and sales["distinct_valid"] == sales["sales_agg_count"] > 50_000, sales
    assert result["caught_up"] is True

    samples = json.loads((folder / "samples.json").read_text())
    assert len(samples) >= 15 and any(s.get("rss_job.jvm_mb") for s in samples)
    assert {c["name"] for c in result["criteria"]} >= {"memory flat: job", "upkeep never stalls the stream",
                                                       "lag bounded: records behind", "work flat: batch duration"}
    html = (folder / "report.html").read_text()
    assert 'id="chart-rss"' in html and 'id="criteria"' in html and "kill emulator" in html
    assert f"{k['healthy_s']:,.1f} s" in html
    assert summary["report"] == str(folder / "report.html")
    assert result["browser"].get("visits", 0) > 0 or result["browser"].get("note"), result["browser"]

    data = folder / "data"   # the bulk is deleted once run has stopped; what a reader looks into stays
    assert result["removed_mib"]["broker"] > 1 and "checkpoints" in result["removed_mib"], result["removed_mib"]
    assert not (data / "broker").exists() and not (data / "checkpoints").exists()
    assert (data / "delta" / "high_value" / "_delta_log").is_dir() and (data / "run" / "job.log").is_file()

    groups = {p["pid"] for p in result["parts_at_end"].values() if p.get("pid")}
    assert {"job", "emulator", "app", "broker"} <= set(result["parts_at_end"]) and len(groups) >= 4
    assert left_in(groups) == [], "processes of run's parts left after the soak"


def left_in(groups: set[int]) -> list[str]:
    out = []
    for p in psutil.process_iter(["status", "cmdline"]):
        try:
            if (p.pid in groups or os.getpgid(p.pid) in groups) and p.info["status"] != psutil.STATUS_ZOMBIE:
                out.append(f"{p.pid} {' '.join(p.info['cmdline'] or [])[:120]}")
        except (OSError, psutil.Error):
            continue
    return out
