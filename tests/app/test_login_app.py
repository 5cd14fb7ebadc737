"""AppTest tests of the login paths: the identity is injected (`AppTest.user`), the login config given as
secrets (`AppTest.secrets`); the real OIDC round trip is in test_login_browser.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.support.apptest import APP, assert_clean, texts, use_env

pytestmark = pytest.mark.usefixtures("release_cached_clients")
OPERATOR, VIEWER, NOBODY = "olga@example.com", "vera@example.com", "nora@example.com"
SECRETS = {
    "auth": {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "c" * 40,
             "client_id": "tormenta", "client_secret": "never-shown-client-secret",
             "server_metadata_url": "https://idp.example.com/.well-known/openid-configuration"},
    "tormenta": {"roles": {"operators": [OPERATOR], "claim": "groups", "viewer_values": ["tormenta-viewers"]}},
}


def app_as(user: dict | None, secrets: dict | None = SECRETS) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    if secrets is not None:
        at.secrets = secrets
    if user is not None:
        at.user = user
    return at


def signed_in(email: str, **claims) -> dict:
    return {"is_logged_in": True, "email": email, "name": email.split("@")[0], **claims}


def sidebar_text(at: AppTest) -> str:
    return "\n".join(str(c.value) for c in at.sidebar.caption)


def test_not_signed_in_gets_only_the_sign_in_page(monkeypatch, demo_dir):
    use_env(monkeypatch, demo_dir)
    at = app_as({"is_logged_in": False}).run()
    assert not at.exception
    assert [t.value for t in at.title] == ["Tormenta — please sign in"]
    assert at.button(key="sign_in").label == "Sign in"
    assert not at.metric and not at.dataframe and not at.slider  # no data, no controls
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page("pages/overview.py")  # no page of the app is in the navigation


def test_viewer_sees_data_pages_but_no_storm_control(monkeypatch, demo_dir):
    use_env(monkeypatch, demo_dir)
    at = app_as(signed_in(VIEWER, groups=["tormenta-viewers"])).run()
    assert_clean(at)
    assert [t.value for t in at.title] == ["Tormenta — storm data at a glance"]
    assert f"Signed in as **{VIEWER}** · viewer" in sidebar_text(at)
    assert at.sidebar.button(key="sign_out").label == "Sign out"
    at.switch_page("pages/explorer.py").run()
    assert_clean(at)
    assert [t.value for t in at.title] == ["Explorer"] and at.dataframe
    # the operator pages are not in a viewer's navigation (the browser test opens their address too)
    for page in ("pages/storm_control.py", "pages/load_test.py"):
        with pytest.raises(ValueError, match="Could not find a navigation page"):
            at.switch_page(page)


def test_operator_page_stops_for_a_viewer_even_when_run_directly(monkeypatch, demo_dir):
    """A crafted route straight to the page file (no navigation filter): the page itself stops."""
    use_env(monkeypatch, demo_dir)
    at = AppTest.from_file(str(Path(APP).parent / "pages" / "storm_control.py"), default_timeout=60)
    at.secrets = SECRETS
    at.user = signed_in(VIEWER, groups=["tormenta-viewers"])
    at.session_state["tormenta_routed"] = True  # as if routed by the entry script
    at.run()
    assert not at.exception
    assert "This page is for operators" in texts(at)
    assert not at.slider and not at.button


def test_operator_sees_storm_control_and_load_test(monkeypatch, demo_dir):
    use_env(monkeypatch, demo_dir)
    at = app_as(signed_in(OPERATOR)).run()
    assert_clean(at)
    assert f"Signed in as **{OPERATOR}** · operator" in sidebar_text(at)
    at.switch_page("pages/storm_control.py").run()
    assert_clean(at)
    assert at.title[0].value == "Storm control"
    assert "python -m pipeline broker start" in texts(at)  # no broker here: the page says how to start it
    at.switch_page("pages/load_test.py").run()
    assert not at.exception and at.title[0].value == "Load test"
    assert at.button(key="lt_start")


def test_signed_in_without_a_role_gets_no_access(monkeypatch, demo_dir):
    use_env(monkeypatch, demo_dir)
    at = app_as(signed_in(NOBODY, groups=["staff"])).run()
    assert not at.exception
    assert f"You are signed in as {NOBODY}, but you have no role" in texts(at)
    assert not at.metric and not at.dataframe
    assert at.button(key="sign_out_no_role")


def test_incomplete_auth_shows_one_clear_message_and_nothing_else(monkeypatch, demo_dir):
    use_env(monkeypatch, demo_dir)
    broken = {"auth": {k: v for k, v in SECRETS["auth"].items() if k != "client_secret"},
              "tormenta": SECRETS["tormenta"]}
    at = app_as(signed_in(OPERATOR), secrets=broken).run()
    assert not at.exception
    [error] = at.error
    assert "login is misconfigured" in error.value and "missing client_secret" in error.value
    assert "never-shown" not in error.value and "c" * 40 not in error.value
    assert not at.metric and not at.dataframe


def test_without_login_the_overview_says_loopback_only_and_secrets_are_set_or_unset(monkeypatch, demo_dir):
    use_env(monkeypatch, demo_dir, storage_secret_key="s3-secret-never-shown")
    at = app_as(None, secrets=None).run()
    assert_clean(at)
    assert "No login configured: the app listens on loopback only." in texts(at)
    assert "local operator" in sidebar_text(at)
    table = at.dataframe[0].value
    rows = dict(zip(table["setting"], table["value"], strict=True))
    assert rows["S3 secret key"] == "set" and rows["S3 access key"] == "unset" and rows["Kafka password"] == "unset"
    assert "s3-secret-never-shown" not in table.to_string()
