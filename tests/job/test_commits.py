"""Idempotent appends: commit markers, the once-per-run check, and the replay skip."""

import pytest

from pipeline.cli import main
from pipeline.job import commits, runner
from tests.support.fakes import SparkChain


def test_marker_round_trip_and_foreign_markers():
    m = commits.marker("tormenta-high_value-sales_agg", 41)
    assert commits.marked_batch(m, "tormenta-high_value-sales_agg") == 41
    # another app's marker, a prefix of this app's name, free text, nothing
    assert commits.marked_batch(m, "tormenta-high_value-sales") is None
    assert commits.marked_batch("tormenta-high_value-sales_agg:x1", "tormenta-high_value-sales_agg") is None
    assert commits.marked_batch("nightly fix by ops", "tormenta-high_value-sales_agg") is None
    assert commits.marked_batch(None, "tormenta-high_value-sales_agg") is None


def test_newest_marker_is_the_newest_commit_of_the_app_not_the_highest_number():
    app = "tormenta-high_value-high_value"
    commits_seen = [(9, "other:99"), (7, f"{app}:5"), (8, None), (3, f"{app}:2"), (10, f"{app}:6")]
    assert commits.newest_marked(commits_seen, app) == 6
    assert commits.newest_marked([(1, None), (2, "other:3")], app) is None


def test_a_marker_left_under_the_former_batch_metrics_name_still_counts():
    # Releases before the table names got one home marked batch_metrics commits "...-metrics".
    app = "tormenta-high_value-batch_metrics"
    assert commits.former_app_ids(app) == ("tormenta-high_value-metrics",)
    assert commits.former_app_ids("tormenta-high_value-high_value") == ()
    seen = [(4, "tormenta-high_value-metrics:11"), (5, "tormenta-high_value-high_value:12")]
    assert commits.newest_marked(seen, app, *commits.former_app_ids(app)) == 11
    assert commits.newest_marked(seen + [(6, f"{app}:12")], app, *commits.former_app_ids(app)) == 12
    assert commits.newest_marked(seen, app) is None


def test_the_table_is_read_once_per_run_and_a_replayed_batch_is_skipped(monkeypatch):
    looked = []
    monkeypatch.setattr(commits.OnceAppender, "_newest_in_table",
                        staticmethod(lambda spark, path, app_id: looked.append(app_id) or 7))
    saved = []
    run = commits.OnceAppender("tormenta-high_value")
    assert run.append(SparkChain(saved), "/t/hv", "high_value", 8) is True
    assert run.append(SparkChain(saved), "/t/hv", "high_value", 9) is True
    assert looked == ["tormenta-high_value-high_value"]  # one look at the table, at the run's first batch
    replay = commits.OnceAppender("tormenta-high_value")
    assert replay.append(SparkChain(saved), "/t/hv", "high_value", 7) is False  # the last batch the table holds
    assert len(looked) == 2 and len(saved) == 2
    (_, first), (_, later) = saved
    assert first == {"userMetadata": "tormenta-high_value-high_value:8",
                     "txnAppId": "tormenta-high_value-high_value", "txnVersion": 8}
    assert later == {"userMetadata": "tormenta-high_value-high_value:9"}  # no snapshot state reconstruction


def test_a_batch_the_checkpoint_never_planned_before_the_start_is_never_looked_up(monkeypatch):
    looked = []
    monkeypatch.setattr(commits.OnceAppender, "_newest_in_table",
                        staticmethod(lambda spark, path, app_id: looked.append(path) or 4))
    saved = []
    fresh = commits.OnceAppender("tormenta-high_value", replayable_upto=-1)  # a new checkpoint
    assert fresh.append(SparkChain(saved), "/t/hv", "high_value", 0) is True
    restarted = commits.OnceAppender("tormenta-high_value", replayable_upto=4)  # offsets/4 was there at start
    assert restarted.append(SparkChain(saved), "/t/agg", "sales_agg", 4) is False  # the replay: looked up, held
    assert restarted.append(SparkChain(saved), "/t/hv", "high_value", 5) is True  # planned by this run: no look
    assert looked == ["/t/agg"]
    assert [opts for _, opts in saved] == [{"userMetadata": "tormenta-high_value-high_value:0"},
                                           {"userMetadata": "tormenta-high_value-high_value:5"}]


def test_crash_flag_names_a_table_and_a_batch():
    from pipeline.job.cli import _crash_point

    assert _crash_point("sales_agg") == ("sales_agg", 1)
    assert _crash_point("high_value@3") == ("high_value", 3)
    assert _crash_point("batch_metrics@2") == ("batch_metrics", 2)
    for bad in ("nope", "high_value@0", "high_value@x", "metrics", "batch_metrics@", "@2"):
        with pytest.raises(SystemExit) as exc:
            main(["job", "--crash-after-commit", bad])
        assert exc.value.code == 2


@pytest.mark.integration
def test_markers_on_a_real_table(spark_session, tmp_path):
    """On real Delta: a new run skips the batch its table already holds, finds the marker
    behind many commits of others, and a table written only with txnVersion (before the
    markers) is still guarded by Delta."""
    path = str(tmp_path / "t")
    rows = spark_session.range(3)
    first_run = commits.OnceAppender("app")
    for batch in range(3):
        assert first_run.append(rows, path, "out", batch)
    for i in range(25):  # commits of others (upkeep, a backfill) after the last marker
        rows.write.format("delta").mode("append").option("userMetadata", f"backfill {i}").save(path)
    before = spark_session.read.format("delta").load(path).count()
    rerun = commits.OnceAppender("app")
    assert rerun.append(rows, path, "out", 2) is False
    assert rerun.append(rows, path, "out", 3) is True
    assert spark_session.read.format("delta").load(path).count() == before + 3

    ckpt = tmp_path / "ckpt"
    assert runner.last_planned_batch(spark_session, str(ckpt)) == -1
    (ckpt / "offsets").mkdir(parents=True)
    for name in ("0", "1", "11", ".11.tmp", "2"):
        (ckpt / "offsets" / name).write_text("v1")
    assert runner.last_planned_batch(spark_session, str(ckpt)) == 11

    legacy = str(tmp_path / "legacy")
    rows.write.format("delta").mode("append").option("txnAppId", "app-out").option("txnVersion", 5).save(legacy)
    commits.OnceAppender("app").append(rows, legacy, "out", 5)  # no marker: Delta's own guard skips it
    assert spark_session.read.format("delta").load(legacy).count() == 3
