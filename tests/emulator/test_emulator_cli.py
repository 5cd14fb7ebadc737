"""Bad input to `emulate` and `storm set`: refused in one line, exit 2, before any broker is tried."""

import os
import subprocess
import sys

import pytest

from pipeline.emulator.cli import check_changes
from pipeline.emulator.sources import FileReplaySource
from pipeline.errors import EmulatorError, SettingsError
from pipeline.settings import PROJECT_ROOT, Settings


def _pipeline(tmp_path, *args: str) -> subprocess.CompletedProcess:
    # Nothing listens on port 9: a command that tried the broker would end in "cannot reach Kafka", exit 1.
    env = {**os.environ, "TORMENTA_DATA_DIR": str(tmp_path / "data"), "TORMENTA_BOOTSTRAP_SERVERS": "127.0.0.1:9"}
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=PROJECT_ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("args,line", [
    (("--rate", "1e12"), "error: --rate=1000000000000.0 is out of range; allowed: 0..2e+06"),
    (("--rate", "-5"), "error: --rate=-5.0 is out of range; allowed: 0..2e+06"),
    (("--per-tick", "1e20"), "error: --per-tick=1e+20 is out of range; allowed: 0..7.2e+09"),
    (("--preset", "Easter"), "error: unknown preset 'Easter'; allowed: 'Normal day', 'Christmas'"),
    (("--duplicates", "2"), "error: faults.duplicates=2.0 is out of range; allowed: 0..1"),
])
def test_storm_set_refuses_an_out_of_range_value_before_trying_the_broker(tmp_path, args, line):
    out = _pipeline(tmp_path, "storm", "set", *args)
    assert (out.returncode, out.stderr.strip(), out.stdout) == (2, line, "")


def test_the_early_check_lets_every_valid_change_through():
    s = Settings.from_env({})
    for changes in ({"rate": 2_000_000}, {"rate": 0}, {"per_tick": 5_000_000}, {"preset": "Christmas"},
                    {"ingest_interval": 0.5, "profile": {"name": "spike", "factor": "3"}},
                    {"faults": {"duplicates": 0.1, "late_seconds": 60}}):
        check_changes(s, changes)  # raises nothing
    # A per-tick count is checked on its own range only: its rate depends on the running emulator's tick.
    with pytest.raises(SettingsError, match=r"--per-tick=-1 is out of range"):
        check_changes(s, {"per_tick": -1})


def test_emulate_names_a_missing_replay_file(tmp_path):
    out = _pipeline(tmp_path, "emulate", "--replay", "missing.jsonl", "--no-control")
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip() == ("error: --replay: the replay file missing.jsonl is missing; allowed: a JSON-lines "
                                  "capture file (.jsonl or .jsonl.gz)")
    assert "TORMENTA_SAMPLE_FILE" not in out.stderr


def test_a_replay_source_on_a_missing_file_speaks_of_the_replay_file(tmp_path):
    with pytest.raises(EmulatorError) as err:
        FileReplaySource(tmp_path / "gone.jsonl")
    assert str(err.value) == (f"replay file {tmp_path / 'gone.jsonl'} does not exist; give --replay a JSON-lines "
                              "capture (.jsonl or .jsonl.gz)")
