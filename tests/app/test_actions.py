"""The operator actions of the page layer (pages/actions.py): the role is checked on the action itself."""

from __future__ import annotations

import pytest

from pages import actions
from pipeline.auth.login import ANONYMOUS, OPERATOR, VIEWER, AccessDenied, User
from pipeline.errors import SettingsError
from pipeline.loadtest import runs
from pipeline.loadtest.options import LoadTestOptions
from pipeline.settings import Settings

VIEWER_USER = User(email="vera@example.com", name="Vera", role=VIEWER)
OPERATOR_USER = User(email="olga@example.com", name="Olga", role=OPERATOR)
NO_ROLE = User(email="nora@example.com", name="Nora", role=None)


class FakeControl:
    def __init__(self):
        self.calls = []

    def set_desired(self, **changes):
        self.calls.append(changes)
        return {"rate": changes.get("rate")}


def test_storm_changes_and_faults_check_the_role_on_the_action_and_are_signed():
    ctl = FakeControl()
    for user in (VIEWER_USER, NO_ROLE, ANONYMOUS, None):
        with pytest.raises(AccessDenied, match="Changing the storm"):
            actions.change_storm(user, ctl, rate=50_000)
        with pytest.raises(AccessDenied, match="Fault injection"):
            actions.change_storm(user, ctl, faults={"malformed": 0.5})
    assert ctl.calls == []  # nothing reached the control topic
    assert actions.change_storm(OPERATOR_USER, ctl, rate=50_000) == {"rate": 50_000}
    assert ctl.calls == [{"changed_by": "olga@example.com", "rate": 50_000}]


def test_load_test_start_and_stop_check_the_role_first(monkeypatch, tmp_path):
    def must_not_run(*a, **k):
        raise AssertionError("a viewer reached the load-test runs")

    monkeypatch.setattr(runs, "launch", must_not_run)
    monkeypatch.setattr(runs, "request_stop", must_not_run)
    settings = Settings.from_env({"TORMENTA_DATA_DIR": str(tmp_path)})
    with pytest.raises(AccessDenied, match="Starting a load test"):
        actions.start_load_test(VIEWER_USER, settings, options=LoadTestOptions())
    with pytest.raises(AccessDenied, match="Stopping a load test"):
        actions.stop_load_test(VIEWER_USER, settings, "run-1")
    stopped, launched = [], []
    monkeypatch.setattr(runs, "request_stop", lambda s, run_id: stopped.append(run_id) or True)
    monkeypatch.setattr(runs, "launch", lambda s, options: launched.append(options.profile) or ("run-2", 4242))
    assert actions.stop_load_test(OPERATOR_USER, settings, "run-1") is True
    assert actions.start_load_test(OPERATOR_USER, settings, LoadTestOptions(profile="smoke")) == ("run-2", 4242)
    assert stopped == ["run-1"] and launched == ["smoke"]


def test_a_bad_plan_is_refused_before_anything_starts(monkeypatch, tmp_path):
    monkeypatch.setattr(runs, "launch", lambda *a, **k: pytest.fail("a bad plan reached the launcher"))
    settings = Settings.from_env({"TORMENTA_DATA_DIR": str(tmp_path)})
    with pytest.raises(SettingsError, match="--scale=0 is out of range; allowed: 0.01..100") as err:
        actions.start_load_test(OPERATOR_USER, settings, LoadTestOptions(scale=0))
    assert "\n" not in str(err.value)
