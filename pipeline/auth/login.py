"""Who may use the dashboard: the login configuration, the roles, the guard of operator actions.

The dashboard's login is Streamlit's own OIDC login (`st.login`), configured in the
``[auth]`` section of a Streamlit secrets file (``.streamlit/secrets.toml`` by default).
This module holds the pure logic around it, so a unit test can call all of it without
Streamlit or a browser:

* `load_secrets(secrets_files(root))` reads the secrets files the way Streamlit merges them.
* `AuthConfig.from_secrets(secrets)` reads ``[auth]`` (all five keys Streamlit needs, or no
  ``[auth]`` at all) and the roles in ``[tormenta.roles]``; anything incomplete is one
  `SettingsError` line saying what is missing and what is allowed.
* `AuthConfig.user_from_claims(claims)` turns the identity Streamlit got from the provider
  (``st.user``) into a `User` with a role: ``operator``, ``viewer`` or none (no access).
  Roles come from lists of e-mail addresses and/or from a claim such as ``groups``.
* `require_operator(user, action)` is the guard every operator action calls first; the
  actions themselves (storm changes, fault injection, load-test start/stop) are in the
  page layer (`pages/actions.py`), so the check sits on the action, not only on a widget.
* `secret_rows` shows the login and every secret as set/unset, never a value.

The loopback rule (no login: loopback only) is `pipeline.auth.loopback`.
"""

from __future__ import annotations

import getpass
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import SettingsError, TormentaError

OPERATOR, VIEWER = "operator", "viewer"
AUTH_REQUIRED = ("redirect_uri", "cookie_secret", "client_id", "client_secret", "server_metadata_url")
AUTH_OPTIONAL = ("client_kwargs", "expose_tokens")
ROLE_KEYS = ("operators", "viewers", "claim", "operator_values", "viewer_values")


class AccessDenied(TormentaError):
    """The signed-in user's role does not allow this action."""


# ---- configuration ----------------------------------------------------------------------
def secrets_files(project_root: Path, home: Path | None = None) -> list[Path]:
    """Where Streamlit looks for secrets by default (later files win), as the app is started from `project_root`."""
    return [(home or Path.home()) / ".streamlit" / "secrets.toml", project_root / ".streamlit" / "secrets.toml"]


def load_secrets(paths: Iterable[Path]) -> dict[str, Any]:
    """The secrets files that exist, merged like Streamlit merges them (top-level keys, later files win)."""
    merged: dict[str, Any] = {}
    for path in paths:
        path = Path(path)
        if not path.is_file():
            continue
        try:
            merged.update(tomllib.loads(path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            # the parser's message names a line and column, never a value
            raise SettingsError(f"secrets file {path} cannot be read as TOML ({exc}); fix it or remove it") from None
    return merged


def _emails(value: Any, where: str) -> frozenset[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and "@" in v for v in value):
        raise SettingsError(f"{where} must be a list of e-mail addresses, like [\"ana@example.com\"]")
    return frozenset(v.strip().lower() for v in value)


def _values(value: Any, where: str) -> frozenset[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise SettingsError(f"{where} must be a list of claim values, like [\"tormenta-operators\"]")
    return frozenset(value)


@dataclass(frozen=True)
class Roles:
    """Who is an operator and who a viewer: e-mail lists and/or the values of one identity claim."""

    operators: frozenset[str] = frozenset()
    viewers: frozenset[str] = frozenset()
    claim: str | None = None
    operator_values: frozenset[str] = frozenset()
    viewer_values: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, section: Any) -> Roles:
        where = "[tormenta.roles]"
        if not isinstance(section, Mapping):
            raise SettingsError(f"{where} must be a table; allowed keys: {', '.join(ROLE_KEYS)}")
        unknown = sorted(set(section) - set(ROLE_KEYS))
        if unknown:
            raise SettingsError(f"{where} has unknown key {', '.join(unknown)}; allowed: {', '.join(ROLE_KEYS)}")
        claim = section.get("claim")
        if claim is not None and (not isinstance(claim, str) or not claim.strip()):
            raise SettingsError(f"{where} claim must be the name of an identity claim, like \"groups\"")
        roles = cls(
            operators=_emails(section.get("operators", []), f"{where} operators"),
            viewers=_emails(section.get("viewers", []), f"{where} viewers"),
            claim=claim.strip() if claim else None,
            operator_values=_values(section.get("operator_values", []), f"{where} operator_values"),
            viewer_values=_values(section.get("viewer_values", []), f"{where} viewer_values"),
        )
        if (roles.operator_values or roles.viewer_values) and not roles.claim:
            raise SettingsError(f"{where} operator_values/viewer_values need claim = \"<claim name>\", like \"groups\"")
        if roles.claim and not (roles.operator_values or roles.viewer_values):
            raise SettingsError(f"{where} claim = \"{roles.claim}\" needs operator_values and/or viewer_values")
        if not (roles.operators or roles.viewers or roles.claim):
            raise SettingsError(f"{where} gives nobody a role; set operators/viewers (e-mail lists) "
                                "and/or claim with operator_values/viewer_values")
        return roles

    def role_of(self, email: str | None, claims: Mapping[str, Any]) -> str | None:
        """operator, viewer or None; an operator match wins over a viewer match."""
        found: set[str] = set()
        # an address the provider says it has not verified is not proof of who signed in
        if email and claims.get("email_verified") is not False:
            email = email.strip().lower()
            found |= {OPERATOR} if email in self.operators else set()
            found |= {VIEWER} if email in self.viewers else set()
        if self.claim:
            raw = claims.get(self.claim)
            values = {raw} if isinstance(raw, str) else {str(v) for v in raw} if isinstance(raw, list) else set()
            found |= {OPERATOR} if values & self.operator_values else set()
            found |= {VIEWER} if values & self.viewer_values else set()
        return OPERATOR if OPERATOR in found else VIEWER if VIEWER in found else None


@dataclass(frozen=True)
class User:
    """Who is using the app. `role` None = signed in but no access; `signed_in` False = not signed in."""

    email: str
    name: str
    role: str | None
    signed_in: bool = True

    @property
    def is_operator(self) -> bool:
        return self.signed_in and self.role == OPERATOR

    @property
    def label(self) -> str:
        return self.email or self.name or "unknown user"


def local_operator() -> User:
    """The user of an app without login: whoever can reach loopback, named after the OS account."""
    try:
        who = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        who = ""
    return User(email=f"local:{who}" if who else "local", name=who or "local", role=OPERATOR)


ANONYMOUS = User(email="", name="", role=None, signed_in=False)


@dataclass(frozen=True)
class AuthConfig:
    """The login as configured: off (no ``[auth]``), or on with its roles."""

    enabled: bool
    roles: Roles | None = None
    provider_url: str = ""  # the server_metadata_url, to say which provider is used (not a secret)

    @classmethod
    def from_secrets(cls, secrets: Mapping[str, Any]) -> AuthConfig:
        """Read ``[auth]`` and ``[tormenta.roles]``; SettingsError (one line) when incomplete."""
        auth = secrets.get("auth")
        tormenta = secrets.get("tormenta") or {}
        roles_section = tormenta.get("roles") if isinstance(tormenta, Mapping) else None
        if auth is None:
            if roles_section is not None:
                raise SettingsError("[tormenta.roles] is set but there is no [auth] section; "
                                    f"add [auth] with {', '.join(AUTH_REQUIRED)} (or remove the roles)")
            return cls(enabled=False)
        allowed = f"[auth] needs {', '.join(AUTH_REQUIRED)}; optional: {', '.join(AUTH_OPTIONAL)}"
        if not isinstance(auth, Mapping):
            raise SettingsError(f"[auth] must be a table; {allowed}")
        missing = [k for k in AUTH_REQUIRED if not isinstance(auth.get(k), str) or not auth.get(k).strip()]
        if missing:
            raise SettingsError(f"[auth] is incomplete: missing {', '.join(missing)}; {allowed}")
        unknown = sorted(set(auth) - set(AUTH_REQUIRED) - set(AUTH_OPTIONAL))
        if unknown:
            raise SettingsError(f"[auth] has unknown key {', '.join(unknown)} (named providers like [auth.google] "
                                f"are not supported); {allowed}")
        if not auth["redirect_uri"].rstrip("/").endswith("/oauth2callback"):
            raise SettingsError("[auth] redirect_uri must be the app's address ending in /oauth2callback, "
                                "like http://localhost:8501/oauth2callback")
        if not auth["server_metadata_url"].startswith(("https://", "http://")):
            raise SettingsError("[auth] server_metadata_url must be the provider's "
                                "https://.../.well-known/openid-configuration URL")
        if len(auth["cookie_secret"]) < 32:
            raise SettingsError("[auth] cookie_secret is too short; allowed: a random string of 32+ characters "
                                "(python -c 'import secrets; print(secrets.token_urlsafe(32))')")
        if roles_section is None:
            raise SettingsError("[auth] is set but [tormenta.roles] is missing, so nobody would have a role; "
                                f"add [tormenta.roles] with {', '.join(ROLE_KEYS)}")
        return cls(enabled=True, roles=Roles.parse(roles_section), provider_url=auth["server_metadata_url"])

    def user_from_claims(self, claims: Mapping[str, Any]) -> User:
        """The user for Streamlit's identity (``st.user``); the local operator when the login is off."""
        if not self.enabled:
            return local_operator()
        if not claims.get("is_logged_in"):
            return ANONYMOUS
        email = str(claims.get("email") or "")
        name = str(claims.get("name") or claims.get("preferred_username") or claims.get("sub") or "")
        assert self.roles is not None
        return User(email=email, name=name, role=self.roles.role_of(email, claims))


# ---- the guard of every operator action -------------------------------------------------------
def require_operator(user: User | None, action: str) -> User:
    """The guard of every operator action: returns the user, or raises AccessDenied."""
    if user is None or not user.signed_in:
        raise AccessDenied(f"{action} needs a signed-in operator; sign in first")
    if user.role != OPERATOR:
        raise AccessDenied(f"{action} is for operators; {user.label} is "
                           f"{'a ' + user.role if user.role else 'without a role'} — ask an operator")
    return user


# ---- secrets in the settings table ------------------------------------------------------------
def secret_rows(settings: Any, config: AuthConfig) -> list[dict[str, str]]:
    """Rows for the Overview's settings table: secrets only as set/unset (a secret's file may show its path)."""

    def state(value: Any, file: Path | None) -> str:
        if value.get_secret_value():
            return "set"
        return f"set (file {file})" if file is not None else "unset"

    login = (f"on: OIDC sign-in ({config.provider_url.split('/.well-known')[0]})" if config.enabled
             else "off: no login configured, the app listens on loopback only")
    return [
        {"setting": "Dashboard login", "value": login,
         "meaning": "Who may open the dashboard; operators steer the storm, viewers only read"},
        {"setting": "Kafka password", "value": state(settings.kafka_password, settings.kafka_password_file),
         "meaning": "SASL password of the Kafka clients (never shown)"},
        {"setting": "S3 access key", "value": state(settings.storage_access_key, settings.storage_access_key_file),
         "meaning": "Access key id of the object storage (never shown)"},
        {"setting": "S3 secret key", "value": state(settings.storage_secret_key, settings.storage_secret_key_file),
         "meaning": "Secret key of the object storage (never shown)"},
    ]
