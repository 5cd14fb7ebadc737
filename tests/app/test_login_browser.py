"""Real-browser test of the dashboard login: a real OIDC provider process, the real app, headless Chromium.

The test starts `oidc-provider-mock` on a free loopback port with three users (an operator
by e-mail list, a viewer by its ``groups`` claim, and one without a role), writes a secrets
file whose ``[auth]`` points at it, and starts `streamlit run` with that file on the session
broker (fresh control topics). Chromium then signs in through the provider's authorize form:
an unauthenticated visit lands on the sign-in page, the viewer sees the data pages and no
storm controls, the operator changes the storm rate and finds its e-mail in the audit
trail (on the page and in the control topic), sign-out returns to the sign-in page.
Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import re
import secrets
import uuid
from pathlib import Path

import pytest

from tests.support.app_fixtures import (
    CHROMIUM,
    launched_chromium,
    oidc_provider,
    running_streamlit,
    settle,
    write_demo_tables,
)
from tests.support.ports import free_port

OPERATOR, VIEWER, NOBODY = "olga@example.com", "vera@example.com", "nora@example.com"
USERS = [{"sub": OPERATOR, "email": OPERATOR, "name": "Olga Operator"},
         {"sub": VIEWER, "email": VIEWER, "name": "Vera Viewer", "groups": ["staff", "tormenta-viewers"]},
         {"sub": NOBODY, "email": NOBODY, "name": "Nora Nobody", "groups": ["staff"]}]
DATA_PAGES = ("Overview", "Pipeline", "Live sales", "Explorer")
OPERATOR_PAGES = ("Storm control", "Load test")
WAIT = 30_000  # ms, for anything that needs a script run or a redirect

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium: `make browser`")]


def secrets_toml(app_port: int, issuer: str) -> str:
    return f"""[auth]
redirect_uri = "http://127.0.0.1:{app_port}/oauth2callback"
cookie_secret = "{secrets.token_urlsafe(32)}"
client_id = "tormenta-browser-test"
client_secret = "{secrets.token_urlsafe(24)}"
server_metadata_url = "{issuer}/.well-known/openid-configuration"

[tormenta.roles]
operators = ["{OPERATOR}"]
claim = "groups"
viewer_values = ["tormenta-viewers"]
"""


@pytest.fixture(scope="module")
def login_app(tmp_path_factory, broker):
    """(app URL, provider issuer, the app's Settings) with the login configured and fresh control topics."""
    data = tmp_path_factory.mktemp("login-data")
    write_demo_tables(data, high_value_rows=1_000, days=1)
    suffix = uuid.uuid4().hex[:8]
    settings = broker.replace(data_dir=data, topic=f"tx-{suffix}", control_topic=f"ctl-{suffix}",
                              status_topic=f"status-{suffix}")
    app_port = free_port()
    with oidc_provider(free_port(), USERS, data) as issuer:
        secrets_file = data / "secrets.toml"
        secrets_file.write_text(secrets_toml(app_port, issuer))
        secrets_file.chmod(0o600)
        env = {"bootstrap_servers": settings.bootstrap_servers, "topic": settings.topic,
               "control_topic": settings.control_topic, "status_topic": settings.status_topic}
        with running_streamlit(data, app_port, secrets_file=secrets_file, env=env) as url:
            yield url, issuer, settings


@pytest.fixture(scope="module")
def chromium():
    with launched_chromium() as b:
        yield b


@pytest.fixture
def page(chromium):
    """A page in a fresh browser context: no cookies, so nobody is signed in."""
    context = chromium.new_context(viewport={"width": 1440, "height": 1000})
    try:
        yield context.new_page()
    finally:
        context.close()


def nav_titles(page) -> str:
    nav = page.locator('[data-testid="stSidebarNav"]')
    return nav.inner_text() if nav.count() else ""


def sign_in(page, url: str, issuer: str, who: str) -> None:
    """From the app's sign-in page through the provider's authorize form back to the app, signed in as `who`."""
    page.goto(url, wait_until="domcontentloaded")
    page.get_by_role("button", name="Sign in").click(timeout=WAIT)
    page.wait_for_url(re.compile(re.escape(issuer) + r"/oauth2/authorize"), timeout=WAIT)
    page.get_by_role("button", name=who, exact=True).click()
    page.wait_for_url(re.compile(re.escape(url) + r"/?$"), timeout=WAIT)


def assert_no_traceback(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0
    assert "Traceback" not in page.inner_text("body")


def test_unauthenticated_visit_goes_to_sign_in(login_app, page, artifacts):
    url, issuer, _ = login_app
    page.goto(f"{url}/storm_control", wait_until="domcontentloaded")  # a deep link, not signed in
    page.get_by_text("please sign in").wait_for(timeout=WAIT)
    settle(page, timeout_ms=WAIT)
    page.screenshot(path=str(artifacts / "login-sign-in.png"), full_page=True)
    assert nav_titles(page) == ""  # no navigation to any page
    body = page.inner_text("body")
    assert "Emulator is asked to be" not in body and "Is each part alive" not in body
    assert page.get_by_role("slider").count() == 0
    assert_no_traceback(page)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(re.escape(issuer) + r"/oauth2/authorize"), timeout=WAIT)
    assert "redirect_uri=http%3A%2F%2F127.0.0.1" in page.url
    page.get_by_role("heading", name="Authorize Client").wait_for(timeout=WAIT)


def test_viewer_sees_the_data_pages_and_no_storm_controls(login_app, page, artifacts):
    url, issuer, _ = login_app
    sign_in(page, url, issuer, VIEWER)
    page.get_by_text(f"Signed in as {VIEWER} · viewer").wait_for(timeout=WAIT)
    page.get_by_text("storm data at a glance").wait_for(timeout=WAIT)
    settle(page, timeout_ms=WAIT)
    nav = nav_titles(page)
    assert all(t in nav for t in DATA_PAGES), nav
    assert not any(t in nav for t in OPERATOR_PAGES), nav
    page.get_by_role("link", name="Explorer").click()
    page.get_by_text("matching transactions").first.wait_for(timeout=WAIT)
    assert_no_traceback(page)
    # the storm control's address does not reach the controls either
    page.goto(f"{url}/storm_control", wait_until="domcontentloaded")
    page.get_by_text("storm data at a glance").wait_for(timeout=WAIT)  # the landing page instead
    settle(page, timeout_ms=WAIT)
    page.screenshot(path=str(artifacts / "login-viewer.png"), full_page=True)
    body = page.inner_text("body")
    assert "Emulator is asked to be" not in body and "Apply faults" not in body and "Start load test" not in body
    assert page.get_by_role("slider").count() == 0
    assert page.get_by_text(f"Signed in as {VIEWER} · viewer").count() == 1  # still signed in


def test_user_without_a_role_gets_no_access(login_app, page):
    url, issuer, _ = login_app
    sign_in(page, url, issuer, NOBODY)
    page.get_by_text(f"You are signed in as {NOBODY}, but you have no role").wait_for(timeout=WAIT)
    settle(page, timeout_ms=WAIT)
    assert nav_titles(page) == ""
    assert "Is each part alive" not in page.inner_text("body")


def test_operator_changes_the_rate_sees_the_audit_trail_and_signs_out(login_app, page, artifacts):
    from pipeline.emulator.control import EmulatorControl

    url, issuer, settings = login_app
    sign_in(page, url, issuer, OPERATOR)
    page.get_by_text(f"Signed in as {OPERATOR} · operator").wait_for(timeout=WAIT)
    nav = nav_titles(page)
    assert all(t in nav for t in DATA_PAGES + OPERATOR_PAGES), nav
    page.get_by_role("link", name="Storm control").click()
    page.get_by_text("Emulator is asked to be").wait_for(timeout=WAIT)
    settle(page, timeout_ms=WAIT)
    rate = page.locator('[data-testid="stSlider"]').filter(has_text="Rate (transactions per second)") \
        .get_by_role("slider")
    before = float(rate.input_value())  # the slider is an <input type="range">
    rate.focus()
    rate.press("ArrowRight")  # one step: +500 tx/s
    expected = before + 500
    audit = page.locator('[data-testid="stTable"]')
    audit.filter(has_text=OPERATOR).wait_for(timeout=WAIT)
    row = audit.get_by_role("row").filter(has_text=OPERATOR).first
    assert f"rate {before:,.0f} → {expected:,.0f}" in row.inner_text()
    page.screenshot(path=str(artifacts / "login-operator-audit.png"), full_page=True)
    assert_no_traceback(page)
    with EmulatorControl(settings) as ctl:  # the record in the control topic is signed by the operator
        assert ctl.desired()["rate"] == expected
        last = ctl.audit_trail(limit=1)[0]
        assert last["changed_by"] == OPERATOR and last["change"]["rate"] == [before, expected]
        assert last["changed_at"].endswith("Z")

    page.get_by_role("button", name="Sign out").click()
    # the provider's end-session form (RP-initiated logout), then back to the app
    page.wait_for_url(re.compile(re.escape(issuer) + r"/oauth2/end_session"), timeout=WAIT)
    page.get_by_role("button", name="End session").click()
    page.get_by_text("please sign in").wait_for(timeout=WAIT)
    page.goto(f"{url}/explorer", wait_until="domcontentloaded")  # the cookie is gone: still signed out
    page.get_by_text("please sign in").wait_for(timeout=WAIT)
    settle(page, timeout_ms=WAIT)
    assert nav_titles(page) == ""
    assert "matching transactions" not in page.inner_text("body")
