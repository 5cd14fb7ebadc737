"""AppTest tests of the dashboard: every page renders without an exception, with data, without
data and without a broker; filters change the rows; the rate slider reaches the emulator's
control channel on a real broker."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.support.app_fixtures import write_demo_tables
from tests.support.apptest import APP, assert_clean, failures, texts, use_env

PAGES = ["pages/overview.py", "pages/pipeline_health.py", "pages/storm_control.py", "pages/live_sales.py",
         "pages/explorer.py", "pages/live.py"]
TITLES = {"pages/overview.py": "Tormenta — storm data at a glance", "pages/pipeline_health.py": "Pipeline",
          "pages/storm_control.py": "Storm control", "pages/live_sales.py": "Live sales",
          "pages/explorer.py": "Explorer", "pages/live.py": "Live"}
pytestmark = pytest.mark.usefixtures("release_cached_clients")


def open_page(page: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    if page != PAGES[0]:
        at.switch_page(page)
        at.run()
    return at


def hv_rows(at: AppTest):
    """The high-value rows table of the Explorer (AppTest does not expose dataframe keys)."""
    return next(d.value for d in at.dataframe if "transaction_id" in d.value.columns)


def test_assert_clean_fails_when_a_read_fails(monkeypatch, demo_dir, tmp_path):
    """A page whose reads all fail is shown with friendly boxes only; the check must still fail."""
    broken = tmp_path / "broken"
    (broken / "delta" / "sales_agg" / "_delta_log").mkdir(parents=True)  # a table without a single commit
    (broken / "delta" / "sales_agg" / "_delta_log" / "00000000000000000000.json").write_text("not json")
    use_env(monkeypatch, broken)
    at = open_page("pages/live_sales.py")
    assert not at.exception and not at.error          # nothing a user would call an error...
    assert at.warning or at.info                      # ...only friendly boxes
    with pytest.raises(AssertionError):
        assert_clean(at)                              # ...and yet the check fails
    assert {f["error"] for f in failures(at)} == {"DataUnavailable"}


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_with_data_and_no_broker(monkeypatch, demo_dir, page):
    use_env(monkeypatch, demo_dir)
    at = open_page(page)
    assert_clean(at)
    assert [t.value for t in at.title] == [TITLES[page]]  # the page asked for, not another one


def test_overview_shows_health_headline_and_next_steps(monkeypatch, demo_dir):
    use_env(monkeypatch, demo_dir)
    at = open_page(PAGES[0])
    assert_clean(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["High-value transactions (total)"] == "3.0 k"
    assert metrics["Sales in the last window"] != "–"
    help_text = next(m.help for m in at.metric if m.label == "Sales in the last window")
    assert "last complete window" in help_text
    assert "Wire format of the messages: **unknown**" in texts(at)   # no broker, no emulator status
    assert "python -m pipeline broker start" in texts(at)   # broker down -> the command that starts it
    settings_table = at.dataframe[0].value
    assert {"Ingest interval", "Record lifetime", "Processing interval", "High-value threshold"} <= set(
        settings_table["setting"])


@pytest.mark.parametrize("page", PAGES)
def test_missing_tables_show_a_friendly_message(monkeypatch, tmp_path, page):
    use_env(monkeypatch, tmp_path / "empty")
    at = open_page(page)
    assert_clean(at, allowed=("DataUnavailable",))  # missing tables only: nothing else failed
    text = texts(at)
    if page == "pages/storm_control.py":
        assert "python -m pipeline broker start" in text
    elif page == "pages/overview.py":
        # only the real Overview has the part cards, each DOWN/UNKNOWN, and the all-down next step
        assert "Is each part alive?" in [h.value for h in at.subheader]
        badges = [m.value for m in at.markdown if "-badge[" in m.value]
        assert badges == [":red-badge[DOWN]", ":gray-badge[UNKNOWN]", ":red-badge[DOWN]", ":gray-badge[UNKNOWN]",
                          ":red-badge[DOWN]"]  # broker, topic, job, emulator, live lane
        assert "Nothing is running. Start the whole product with `make run`." in text
    else:
        assert "python -m pipeline job" in text, text


def _job_started(data_dir: Path):
    """A live process with the job's command line, recorded in run/job.pid as `make run` does."""
    import subprocess
    import sys

    run = data_dir / "run"
    run.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()", "-m", "pipeline", "job"],
                            stdin=subprocess.PIPE)
    (run / "job.pid").write_text(str(proc.pid))
    return proc


def job_card(at: AppTest) -> tuple[str, str]:
    """(badge, detail) of the Job card on the Overview."""
    i = next(i for i, m in enumerate(at.markdown) if "Job" in m.value and m.value.startswith("####"))
    return at.markdown[i + 1].value, next(c.value for c in at.caption if "job" in c.value.lower())


def test_job_card_says_starting_until_the_first_batch_and_down_when_gone(monkeypatch, tmp_path):
    data = tmp_path / "starting"
    write_demo_tables(data, high_value_rows=100, days=1, agg_minutes=10, metrics_minutes=0)  # no batch yet
    proc = _job_started(data)
    try:
        use_env(monkeypatch, data)
        at = open_page(PAGES[0])
        assert_clean(at, allowed=("DataUnavailable",))
        badge, detail = job_card(at)
        assert badge == ":blue-badge[STARTING]" and str(proc.pid) in detail
        assert "python -m pipeline job" not in texts(at)   # no step that would start a second job
    finally:
        proc.stdin.close()
        proc.wait(10)
    use_env(monkeypatch, data)                             # the process is gone: DOWN, with the command
    at = open_page(PAGES[0])
    badge, detail = job_card(at)
    assert badge == ":red-badge[DOWN]" and "No streaming job is running" in detail
    assert "Start the whole product with `make run`" in texts(at)  # everything down: the one command


def test_explorer_filters_change_the_rows(monkeypatch, demo_dir):
    use_env(monkeypatch, demo_dir)
    at = open_page("pages/explorer.py")
    at.selectbox(key="hv_range").set_value("Last 7 days").run()
    assert_clean(at)
    all_rows = hv_rows(at)
    assert "3,000 matching" in texts(at)
    assert len(all_rows) == 50 and all_rows["event_time"].is_monotonic_decreasing

    at.number_input(key="hv_min").set_value(15000.0).run()
    rows = hv_rows(at)
    assert (rows["amount"] >= 15000).all() and "3,000 matching" not in texts(at)

    person = rows["person_id"].iloc[0]
    at.text_input(key="hv_person").input(person).run()
    rows = hv_rows(at)
    assert set(rows["person_id"]) == {person}

    at.number_input(key="hv_min").set_value(None).run()
    at.text_input(key="hv_person").input("nobody").run()
    assert_clean(at)
    assert "No high-value transactions match" in texts(at)


def test_explorer_sorting_and_bad_input(monkeypatch, demo_dir):
    use_env(monkeypatch, demo_dir)
    at = open_page("pages/explorer.py")
    at.selectbox(key="hv_range").set_value("Last 7 days").run()
    at.selectbox(key="hv_sort").set_value("amount").run()
    at.toggle(key="hv_desc").set_value(False).run()
    rows = hv_rows(at)
    assert rows["amount"].is_monotonic_increasing
    at.number_input(key="hv_min").set_value(5000.0).run()
    at.number_input(key="hv_max").set_value(1000.0).run()
    assert_clean(at, allowed=("SettingsError",))  # the bad input is refused, nothing else failed
    assert [f["error"] for f in failures(at)] == ["SettingsError"]
    assert "minimum amount is larger" in texts(at)


def test_live_sales_bucket_choice(monkeypatch, demo_dir):
    use_env(monkeypatch, demo_dir)
    at = open_page("pages/live_sales.py")
    assert_clean(at)
    assert any("is still filling" in c.value for c in at.caption)  # the newest window is marked partial
    at.selectbox(key="sales_range").set_value("Last 24 hours").run()
    at.button_group(key="sales_bucket").set_value("1 hour").run()
    assert_clean(at)
    assert {m.label for m in at.metric} >= {"Sales (transactions)", "High-value share"}


@pytest.mark.integration
def test_rate_slider_reaches_the_control_channel(monkeypatch, demo_dir, stack):
    from pipeline.emulator.control import EmulatorControl

    use_env(monkeypatch, demo_dir, bootstrap=stack.bootstrap_servers, topic=stack.topic,
            control_topic=stack.control_topic, status_topic=stack.status_topic)
    at = open_page("pages/storm_control.py")
    assert_clean(at)
    at.slider(key="storm_rate").set_value(25_500).run()
    assert_clean(at)
    ctl = EmulatorControl(stack)
    try:
        desired = ctl.desired()
        assert desired["rate"] == 25_500
        at.button(key="storm_preset_Christmas").click().run()
        assert ctl.desired()["rate"] == 50_000
        at.button(key="storm_pause").click().run()
        assert ctl.desired()["state"] == "paused"
        # a change made elsewhere (a second browser, the CLI) shows after a rerun
        ctl.set_desired(rate=12_000)
        fresh = open_page("pages/storm_control.py")
        assert fresh.slider(key="storm_rate").value == 12_000
    finally:
        ctl.close()


def test_pipeline_page_shows_wire_format_and_the_new_batch_counts(monkeypatch, demo_dir, tmp_path):
    use_env(monkeypatch, demo_dir)
    at = open_page("pages/pipeline_health.py")
    assert_clean(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Avro rows, last batch"] not in ("–", "") and metrics["Duplicates dropped, last batch"] != ""
    assert "Wire format of the messages: **unknown**" in texts(at)
    legacy = tmp_path / "legacy"   # batch_metrics written before avro_rows / duplicates_dropped existed
    write_demo_tables(legacy, high_value_rows=100, days=1, agg_minutes=10, metrics_minutes=10, legacy=True)
    use_env(monkeypatch, legacy)
    at = open_page("pages/pipeline_health.py")
    assert_clean(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Avro rows, last batch"] == "–" and metrics["Duplicates dropped, last batch"] == "–"
