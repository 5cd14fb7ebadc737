"""Unit tests of pipeline.auth: login configuration, roles, the action guard, the loopback rule; `run`'s checks of both."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.auth import login, loopback
from pipeline.auth.login import OPERATOR, VIEWER, AccessDenied, AuthConfig, User
from pipeline.errors import SettingsError
from pipeline.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
CLIENT_SECRET, COOKIE_SECRET = "client-secret-never-shown-123", "cookie-secret-never-shown-0123456789abcdef"


def full_secrets(**roles) -> dict:
    return {"auth": {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": COOKIE_SECRET,
                     "client_id": "tormenta", "client_secret": CLIENT_SECRET,
                     "server_metadata_url": "https://idp.example.com/.well-known/openid-configuration"},
            "tormenta": {"roles": roles or {"operators": ["Olga@Example.com"], "viewers": ["vera@example.com"],
                                             "claim": "groups", "operator_values": ["ops"],
                                             "viewer_values": ["tormenta-viewers"]}}}


def test_no_auth_section_means_no_login_and_a_local_operator():
    config = AuthConfig.from_secrets({})
    assert not config.enabled
    user = config.user_from_claims({})
    assert user.is_operator and user.email.startswith("local")


@pytest.mark.parametrize("missing", login.AUTH_REQUIRED)
def test_incomplete_auth_is_one_line_naming_what_is_missing_and_allowed(missing):
    secrets = full_secrets()
    del secrets["auth"][missing]
    with pytest.raises(SettingsError) as err:
        AuthConfig.from_secrets(secrets)
    text = str(err.value)
    assert "\n" not in text and f"missing {missing}" in text
    assert all(k in text for k in login.AUTH_REQUIRED)   # what is allowed
    assert CLIENT_SECRET not in text and COOKIE_SECRET not in text


def test_empty_values_and_bad_values_are_refused():
    secrets = full_secrets()
    secrets["auth"]["client_id"] = " "
    with pytest.raises(SettingsError, match="missing client_id"):
        AuthConfig.from_secrets(secrets)
    for key, value, words in (("redirect_uri", "http://localhost:8501/", "oauth2callback"),
                              ("cookie_secret", "short", "too short"),
                              ("server_metadata_url", "idp.example.com", "openid-configuration")):
        secrets = full_secrets()
        secrets["auth"][key] = value
        with pytest.raises(SettingsError, match=words):
            AuthConfig.from_secrets(secrets)
    secrets = full_secrets()
    secrets["auth"]["google"] = {"client_id": "x"}
    with pytest.raises(SettingsError, match="unknown key google"):
        AuthConfig.from_secrets(secrets)


def test_roles_must_be_complete():
    with pytest.raises(SettingsError, match=r"\[tormenta.roles\] is missing"):
        AuthConfig.from_secrets({"auth": full_secrets()["auth"]})
    with pytest.raises(SettingsError, match="no \\[auth\\] section"):
        AuthConfig.from_secrets({"tormenta": {"roles": {"operators": ["a@b.c"]}}})
    for roles, words in (({"operators": ["a@b.c"], "admins": ["x@y.z"]}, "unknown key admins"),
                         ({"claim": "groups"}, "needs operator_values"),
                         ({"operator_values": ["ops"]}, "need claim"),
                         ({"operators": ["not-an-address"]}, "e-mail addresses"),
                         ({}, "gives nobody a role")):
        with pytest.raises(SettingsError, match=words):
            AuthConfig.from_secrets(full_secrets(**roles) if roles else {**full_secrets(), "tormenta": {"roles": {}}})


@pytest.mark.parametrize("claims,role", [
    ({"email": "olga@example.com"}, OPERATOR),                               # e-mail list, any case
    ({"email": "VERA@example.com"}, VIEWER),
    ({"email": "x@example.com", "groups": ["staff", "ops"]}, OPERATOR),      # claim values
    ({"email": "x@example.com", "groups": "tormenta-viewers"}, VIEWER),      # a claim given as one string
    ({"email": "vera@example.com", "groups": ["ops"]}, OPERATOR),            # operator wins
    ({"email": "olga@example.com", "email_verified": False}, None),         # an unverified address proves nothing
    ({"email": "x@example.com", "groups": ["staff"]}, None),                 # signed in, no role
    ({"sub": "no-email"}, None),
])
def test_role_from_emails_or_a_claim(claims, role):
    user = AuthConfig.from_secrets(full_secrets()).user_from_claims({"is_logged_in": True, **claims})
    assert user.signed_in and user.role == role
    assert user.is_operator == (role == OPERATOR)


def test_not_signed_in_is_anonymous():
    config = AuthConfig.from_secrets(full_secrets())
    for claims in ({}, {"is_logged_in": False, "email": "olga@example.com"}):
        user = config.user_from_claims(claims)
        assert not user.signed_in and not user.is_operator


VIEWER_USER = User(email="vera@example.com", name="Vera", role=VIEWER)
OPERATOR_USER = User(email="olga@example.com", name="Olga", role=OPERATOR)
NO_ROLE = User(email="nora@example.com", name="Nora", role=None)


def test_guard_refuses_viewers_no_role_and_anonymous():
    assert login.require_operator(OPERATOR_USER, "Changing the storm") is OPERATOR_USER
    for user, words in ((VIEWER_USER, "is a viewer"), (NO_ROLE, "without a role"), (login.ANONYMOUS, "sign in"),
                        (None, "sign in")):
        with pytest.raises(AccessDenied, match=words):
            login.require_operator(user, "Changing the storm")


@pytest.mark.parametrize("address,ok", [("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("localhost", True),
                                        ("0.0.0.0", False), ("10.0.0.5", False), ("", False), ("example.com", False)])
def test_beyond_loopback_needs_the_login(address, ok):
    off, on = AuthConfig.from_secrets({}), AuthConfig.from_secrets(full_secrets())
    loopback.check_bind(address, on)  # with a login any address is allowed
    if ok:
        loopback.check_bind(address, off)
    else:
        with pytest.raises(SettingsError, match="without a login; allowed: a loopback address") as err:
            loopback.check_bind(address, off)
        assert "\n" not in str(err.value)


def test_secrets_files_merge_and_a_broken_file_is_named(tmp_path):
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    a.write_text('[auth]\nclient_id = "one"\n[other]\nx = 1\n')
    b.write_text('[auth]\nclient_id = "two"\n')
    merged = login.load_secrets([a, b, tmp_path / "missing.toml"])
    assert merged["auth"] == {"client_id": "two"} and merged["other"] == {"x": 1}  # later file wins per section
    b.write_text(f'[auth]\nclient_secret = "{CLIENT_SECRET}\n')  # unterminated string
    with pytest.raises(SettingsError, match="cannot be read as TOML") as err:
        login.load_secrets([b])
    assert str(b) in str(err.value) and CLIENT_SECRET not in str(err.value)


def test_secrets_show_only_set_or_unset(tmp_path):
    pw_file = tmp_path / "kafka.pw"
    pw_file.write_text("from-a-file")
    s = Settings.from_env({"TORMENTA_DATA_DIR": str(tmp_path), "TORMENTA_STORAGE_ACCESS_KEY": "AKIA-NEVER-SHOWN",
                           "TORMENTA_STORAGE_SECRET_KEY": "", "TORMENTA_KAFKA_PASSWORD_FILE": str(pw_file)})
    rows = {r["setting"]: r["value"] for r in login.secret_rows(s, AuthConfig.from_secrets({}))}
    assert rows["S3 access key"] == "set" and rows["S3 secret key"] == "unset"
    assert rows["Kafka password"] == f"set (file {pw_file})"
    assert "loopback only" in rows["Dashboard login"]
    assert "AKIA-NEVER-SHOWN" not in str(rows) and "from-a-file" not in str(rows)
    rows = {r["setting"]: r["value"] for r in login.secret_rows(s, AuthConfig.from_secrets(full_secrets()))}
    assert rows["Dashboard login"] == "on: OIDC sign-in (https://idp.example.com)"


def test_app_command_binds_the_address_and_checks_the_login(tmp_path):
    from pipeline.runall import app_command

    s = Settings.from_env({"TORMENTA_DATA_DIR": str(tmp_path), "TORMENTA_APP_ADDRESS": "0.0.0.0"})
    with pytest.raises(SettingsError, match="without a login"):
        app_command(s, secrets=[])
    good = tmp_path / "secrets.toml"
    good.write_text(f'''[auth]
redirect_uri = "http://tormenta.example.com:8501/oauth2callback"
cookie_secret = "{COOKIE_SECRET}"
client_id = "tormenta"
client_secret = "{CLIENT_SECRET}"
server_metadata_url = "https://idp.example.com/.well-known/openid-configuration"
[tormenta.roles]
operators = ["olga@example.com"]
''')
    cmd = app_command(s, secrets=[good])
    assert cmd[cmd.index("--server.address") + 1] == "0.0.0.0"
    assert CLIENT_SECRET not in " ".join(cmd) and COOKIE_SECRET not in " ".join(cmd)


def test_the_app_watches_no_files(tmp_path):
    """Streamlit's file watcher (hot reload) follows every write under the project, where the data
    folder lives: in a soak it took a quarter of the app's CPU (py-spy). Off for `run` and for a
    `streamlit run` by hand (the project's config)."""
    import tomllib

    from pipeline.runall import app_command
    from pipeline.settings import PROJECT_ROOT

    cmd = app_command(Settings.from_env({"TORMENTA_DATA_DIR": str(tmp_path)}), secrets=[])
    assert cmd[cmd.index("--server.fileWatcherType") + 1] == "none"
    config = tomllib.loads((PROJECT_ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["fileWatcherType"] == "none"


def test_run_refuses_an_incomplete_auth_in_one_line_before_anything_starts(tmp_path):
    """`python -m pipeline run` with ~/.streamlit/secrets.toml missing keys: exit 2, one line, nothing created."""
    home = tmp_path / "home"
    (home / ".streamlit").mkdir(parents=True)
    (home / ".streamlit" / "secrets.toml").write_text(
        f'[auth]\nredirect_uri = "http://localhost:8501/oauth2callback"\ncookie_secret = "{COOKIE_SECRET}"\n')
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TORMENTA_")}
    env["TORMENTA_METRICS_PORT"] = "0"  # no metrics endpoint: tests never bind the product's ports
    env.update(HOME=str(home), TORMENTA_DATA_DIR=str(data))
    res = subprocess.run([sys.executable, "-m", "pipeline", "run"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "missing client_id, client_secret, server_metadata_url" in lines[0], res.stderr
    assert COOKIE_SECRET not in res.stderr + res.stdout
    assert not data.exists()  # nothing started, not even the run folder
