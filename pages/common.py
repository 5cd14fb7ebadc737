"""Page layer shared by every dashboard page: cached resources and friendly error boxes.

This is the only place (with the pages) that knows Streamlit: `st.cache_resource` for
the settings, the Delta reader and the emulator control client; `guard()` turns any
error into a plain message with the command that fixes it, so no stack trace reaches
a page.
"""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager

import streamlit as st

from pipeline.errors import DataUnavailable, SettingsError, TormentaError
from pipeline.read.health import FIX, broker_health
from pipeline.read.readers import DeltaReader
from pipeline.settings import Settings

log = logging.getLogger("tormenta.app")


@st.cache_resource(show_spinner=False)
def get_settings() -> Settings:
    return Settings.from_env()


@st.cache_resource(show_spinner=False)
def get_reader() -> DeltaReader:
    return DeltaReader(get_settings())


class LockedControl:
    """One EmulatorControl shared by all sessions; its Kafka clients are not thread-safe."""

    def __init__(self, settings: Settings):
        from pipeline.emulator.control import EmulatorControl

        self._ctl = EmulatorControl(settings)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._ctl.close()

    def call(self, method: str, *args, **kwargs):
        with self._lock:
            return getattr(self._ctl, method)(*args, **kwargs)


@st.cache_resource(show_spinner=False, on_release=lambda ctl: ctl.close())
def get_control() -> LockedControl:
    return LockedControl(get_settings())


@st.cache_data(ttl=3, show_spinner=False)
def broker_up() -> bool:
    return broker_health(get_settings()).state == "up"


def show_problem(exc: BaseException) -> None:
    """A friendly box for any error: what is wrong and what to do."""
    if isinstance(exc, DataUnavailable):
        st.info(f"**No data yet.** {exc}", icon=":material/hourglass_empty:")
    elif isinstance(exc, SettingsError):
        st.warning(f"**Please check the input.** {exc}", icon=":material/edit:")
    elif isinstance(exc, TormentaError):
        st.warning(f"**A part of the pipeline is not available.** {exc}", icon=":material/power_off:")
    else:
        log.exception("unexpected error on a dashboard page")
        st.warning(
            f"**Something went wrong while loading this part ({type(exc).__name__}).** "
            f"Check that the stack runs (`{FIX['all']}`), then reload the page. Details are in the app's log.",
            icon=":material/error:",
        )


@contextmanager
def guard():
    """Run a block of a page; any error becomes a friendly box and the rest of the page still renders."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - Streamlit's rerun/stop signals are BaseException, not caught
        show_problem(exc)


def broker_down_box() -> None:
    s = get_settings()
    st.warning(
        f"**Kafka does not answer on {s.bootstrap_servers}.** Start the broker with "
        f"`{FIX['broker']}` (or the whole stack with `{FIX['all']}`), then this page fills in by itself.",
        icon=":material/power_off:",
    )


def _hand_over_to_the_entry_script() -> None:
    """Leave Streamlit's old pages/-folder mode if a fresh server started in it.

    Until the entry script's st.navigation has run once, Streamlit serves a `pages/` folder
    next to the entry by running a page file directly (no navigation, no page config). That
    happens when the first visitor after a restart opens a page URL; flip the flag that
    st.navigation itself flips, and rerun so the entry script routes to the same page.
    """
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


def page_header(title: str, caption: str) -> None:
    _hand_over_to_the_entry_script()
    st.title(title)
    st.caption(caption)
