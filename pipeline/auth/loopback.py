"""Where the app may listen: loopback only, unless the login is configured.

    python -m pipeline run          # refuses (exit 2) a public address without login
"""

from __future__ import annotations

import ipaddress

from pipeline.auth.login import AuthConfig
from pipeline.errors import SettingsError


def is_loopback(address: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost; an empty address means every interface."""
    text = (address or "").strip().strip("[]")
    if text == "localhost":
        return True
    try:
        return ipaddress.ip_address(text).is_loopback
    except ValueError:
        return False


def check_bind(address: str, config: AuthConfig) -> None:
    """Refuse a non-loopback address unless the login is configured."""
    if not config.enabled and not is_loopback(address):
        raise SettingsError(f"the app would listen on {address or 'every interface'} without a login; "
                            "allowed: a loopback address (127.0.0.1, ::1), or configure [auth] and "
                            "[tormenta.roles] in .streamlit/secrets.toml (docs/SECURITY-LOGIN.md)")
