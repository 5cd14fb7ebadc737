"""The load test's typed contracts (no broker, no JVM): options <-> the CLI flags of the background
launch, the saved result (this format and the one before), the report's escaping, and the
batch-metrics read against the contract's columns on a real Delta table."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest
from deltalake import write_deltalake

from pipeline.cli import build_parser, main
from pipeline.contract.tables import columns
from pipeline.loadtest import reconcile, runs
from pipeline.loadtest.cli import loadtest_cmd
from pipeline.loadtest.options import LoadTestOptions
from pipeline.loadtest.report import build_report, rebuild, write_report
from pipeline.loadtest.result import LoadTestResult, ResultFormatError
from pipeline.settings import Settings
from tests.support.app_fixtures import contract_table
from tests.support.loadtest_fixtures import synthetic_result

SAVED_FORMAT_1 = Path(__file__).parent / "saved" / "result_format1.json"

# A value other than the default for every option (a field missing here fails the first test).
NON_DEFAULT = dict(profile="normal-day", scale=0.3, trigger_s=2.5, ceiling=1_234_567.0, normal=4_000.0,
                   peak=12_500.0, beyond=False, keep_topic=True, catch_up_timeout_s=42.5, run_id="20261124-0000-ab12",
                   prime=False, prime_seconds=3.25, prime_timeout_s=77.0, kill_broker_at=2.0)


def launched_command(monkeypatch, tmp_path, options: LoadTestOptions) -> list[str]:
    """The command `runs.launch` starts (Popen replaced: nothing runs)."""
    started: list[list[str]] = []

    class NoProcess:
        pid = 4242

        def __init__(self, cmd, **_):
            started.append(cmd)

    monkeypatch.setattr("pipeline.procs.child.subprocess.Popen", NoProcess)
    runs.launch(Settings().replace(data_dir=tmp_path), options)
    return started[0]


def through_the_cli(cmd: list[str]) -> LoadTestOptions:
    assert cmd[:4] == [sys.executable, "-m", "pipeline", "loadtest"]
    args = build_parser().parse_args(cmd[3:])
    assert args.func is loadtest_cmd
    return LoadTestOptions.from_args(args)


def test_every_option_has_a_non_default_probe():
    names = {f.name: f.default for f in dataclasses.fields(LoadTestOptions)}
    assert set(NON_DEFAULT) == set(names)
    assert all(NON_DEFAULT[k] != default for k, default in names.items())


def test_all_options_survive_the_launch_and_the_cli_parser(monkeypatch, tmp_path):
    options = LoadTestOptions(**NON_DEFAULT)
    assert through_the_cli(launched_command(monkeypatch, tmp_path, options)) == options


@pytest.mark.parametrize("name", list(NON_DEFAULT))
def test_each_option_alone_survives_the_launch(monkeypatch, tmp_path, name):
    options = LoadTestOptions(**({"run_id": "20261124-0000-cd34"} | {name: NON_DEFAULT[name]}))
    assert through_the_cli(launched_command(monkeypatch, tmp_path, options)) == options


def test_launch_gives_a_run_id_and_defaults_round_trip(monkeypatch, tmp_path):
    back = through_the_cli(launched_command(monkeypatch, tmp_path, LoadTestOptions()))
    assert back.run_id and (tmp_path / "loadtests" / back.run_id / "loadtest.pid").read_text() == "4242"
    assert dataclasses.replace(back, run_id=None) == LoadTestOptions()


def test_bad_trigger_is_one_line_and_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["loadtest", "--trigger", "soon"])
    assert exc.value.code == 2 and "--trigger" in capsys.readouterr().err


# ---- the saved result ----------------------------------------------------------------------------
def test_result_round_trips_through_its_json():
    result, _ = synthetic_result()
    saved = json.loads(json.dumps(result.to_dict()))
    assert saved["format"] == 2 and saved["reconciliation"]["ok"] is True
    assert LoadTestResult.from_dict(saved) == result


def test_a_result_saved_before_typed_results_still_loads_and_rebuilds(tmp_path):
    old = json.loads(SAVED_FORMAT_1.read_text())
    assert "format" not in old and "topic" not in old  # written by the release before this one
    result = LoadTestResult.from_dict(old)
    assert result.run_id == "20261124-191200-old1" and result.plan.name == "christmas"
    assert [s.label for s in result.steps] == [s["label"] for s in old["steps"]]
    assert result.summary.max_sustainable_rate == old["summary"]["max_sustainable_rate"]
    assert result.reconciliation.ok and result.topic.bytes_per_record_on_disk is None
    run = tmp_path / old["run_id"]
    run.mkdir()
    (run / "result.json").write_text(json.dumps(old))
    (run / "samples.json").write_text("[]")
    text = rebuild(run).read_text()
    assert old["summary"]["answer"].split(";")[0] in text and "saved by the release before typed results" in text


def test_unreadable_results_are_refused_with_a_clear_message(tmp_path):
    with pytest.raises(ResultFormatError, match="lacks plan, summary, reconciliation"):
        LoadTestResult.from_dict({"run_id": "x"}, source="x/result.json")
    newer = json.loads(SAVED_FORMAT_1.read_text()) | {"format": 99}
    with pytest.raises(ResultFormatError, match="format 99.*update Tormenta"):
        LoadTestResult.from_dict(newer)
    broken = json.loads(SAVED_FORMAT_1.read_text())
    broken["plan"] = {"name": "christmas"}
    with pytest.raises(ResultFormatError, match="not a readable load-test result"):
        LoadTestResult.from_dict(broken)
    # the runs list shows the problem instead of failing
    run = tmp_path / "loadtests" / "20261124-0000-bad1"
    run.mkdir(parents=True)
    (run / "result.json").write_text('{"run_id": "20261124-0000-bad1"}')
    entry = runs.list_runs(Settings().replace(data_dir=tmp_path))[0]
    assert entry.result is None and "lacks plan" in entry.problem and entry.state == "unreadable"


# ---- the report -------------------------------------------------------------------------------------
def test_report_escapes_every_value_of_the_run(tmp_path):
    attack = "<script>alert('x')</script>"
    result, samples = synthetic_result()
    result.state, result.error = "failed", attack
    result.events.append({"t": result.t0 + 1, "text": attack})
    result.settings["note"] = attack
    result.steps[0].reasons = [attack]
    result.steps[1].label = attack          # also a chart axis label: Plotly escapes its JSON
    result.reconciliation.lost_examples = [attack]
    result.run_id = attack
    text = build_report(result, samples)
    assert attack not in text and "alert('x')</script>" not in text
    assert text.count("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;") >= 6
    assert text.count("Plotly.newPlot") >= 12  # the charts' own HTML is kept as it is
    path = write_report(tmp_path, result, samples)
    assert "<script src=" not in path.read_text()  # self-contained: plotly.js inlined


# ---- batch metrics against the contract -----------------------------------------------------------------
def _batch_metrics(path: Path, legacy: bool) -> None:
    rows = {"query": ["high_value", "hourly", "high_value"], "batch_id": [1, 0, 0],
            "trigger_time": [1_795_600_010_000_000, 1_795_600_000_000_000, 1_795_600_000_000_000],
            "duration_s": [1.5, 9.0, 2.5], "input_rows": [100, 7, 0], "max_event_time": [1_795_600_009_000_000,
                                                                                        None, None]}
    if not legacy:
        rows |= {"duplicates_dropped": [3, 0, 0], "avro_rows": [100, 0, 0]}
    write_deltalake(str(path), contract_table("batch_metrics", rows, legacy=legacy))


@pytest.mark.parametrize("legacy", [False, True])
def test_read_batches_has_every_contract_column(tmp_path, legacy):
    _batch_metrics(tmp_path / "bm", legacy)
    got = reconcile.read_batches(tmp_path / "bm")
    assert [tuple(r) for r in got] == [columns("batch_metrics")] * 2
    assert [(r["batch_id"], r["trigger_time"], r["input_rows"]) for r in got] == [
        (0, 1_795_600_000.0, 0), (1, 1_795_600_010.0, 100)]
    assert got[1]["max_event_time"] == 1_795_600_009.0 and got[0]["max_event_time"] is None
    assert got[1]["duplicates_dropped"] == (None if legacy else 3)
    assert got[1]["avro_rows"] == (None if legacy else 100)
