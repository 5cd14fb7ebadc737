"""Page layer shared by every dashboard page: cached resources and friendly error boxes.

This is the only place (with the pages) that knows Streamlit: `st.cache_resource` for
the settings, the Delta reader and the emulator control client; `guard()` turns any
error into a plain message with the command that fixes it, so no stack trace reaches
a page. Every box `guard()` shows for a failed read is also recorded in
`st.session_state[FAILURES]` (the entry script empties it at the start of each run), so a
test sees that a read failed without reading the box's words.

The login lives here too (the rules are in `pipeline.auth`): `gate()` reads the login
configuration from Streamlit's secrets, shows the sign-in page to a visitor who is not
signed in and the no-access page to a user without a role, and `build_pages()` leaves
the operator pages (Storm control, Load test) out of a viewer's navigation. The
operator actions still check the role themselves (`pages.actions`).
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import streamlit as st

from pipeline.auth.login import ANONYMOUS, OPERATOR, AuthConfig, User, load_secrets
from pipeline.auth.loopback import check_bind
from pipeline.errors import DataUnavailable, SettingsError, TormentaError
from pipeline.procs import trim
from pipeline.read.health import FIX, broker_health
from pipeline.read.readers import DeltaReader
from pipeline.settings import Settings

log = logging.getLogger("tormenta.app")
ROOT = Path(__file__).resolve().parents[1]  # where streamlit_app.py is

# (section, file, title, icon); the first entry is the landing page.
PAGES = [
    ("Monitor", "pages/overview.py", "Overview", ":material/monitor_heart:"),
    ("Monitor", "pages/pipeline_health.py", "Pipeline", ":material/speed:"),
    ("Storm", "pages/storm_control.py", "Storm control", ":material/thunderstorm:"),
    ("Storm", "pages/load_test.py", "Load test", ":material/science:"),  # issue 6; shown once the file exists
    ("Data", "pages/live.py", "Live", ":material/bolt:"),  # issue 21: the live lane's topic
    ("Data", "pages/live_sales.py", "Live sales", ":material/monitoring:"),
    ("Data", "pages/explorer.py", "Explorer", ":material/table_view:"),
    ("Data", "pages/sql.py", "SQL", ":material/database:"),
]


OPERATOR_PAGES = {"pages/storm_control.py", "pages/load_test.py"}  # steering the storm: operators only


def build_pages(root: Path = ROOT, user: User | None = None) -> dict[str, list]:
    """Navigation sections -> st.Page list; page files that do not exist yet are left out, and so are
    the operator pages for anyone but an operator (`user` None = the signed-in user of this session)."""
    user = user if user is not None else user_or_anonymous()
    sections: dict[str, list] = {}
    for i, (section, path, title, icon) in enumerate(PAGES):
        if not (root / path).is_file() or (path in OPERATOR_PAGES and not user.is_operator):
            continue
        sections.setdefault(section, []).append(st.Page(root / path, title=title, icon=icon, default=(i == 0)))
    return sections
FAILURES = "tormenta_failures"   # session-state key: the reads that failed in this run
ROUTED = "tormenta_routed"       # session-state key: set by the entry script just before it runs a page
HANDED_OVER = "tormenta_handed_over"  # session-state key: a page run without the entry script asked for it
ENTRY_ONLY = ("This page is part of the Tormenta dashboard and does not run by itself: "
              "start the app with `streamlit run streamlit_app.py` (or `python -m pipeline run`) and open it there.")


@st.cache_resource(show_spinner=False)
def get_settings() -> Settings:
    return Settings.from_env()


@st.cache_resource(show_spinner=False)
def get_reader() -> DeltaReader:
    return DeltaReader(get_settings())


# ---- login -------------------------------------------------------------------------------
def auth_config() -> AuthConfig:
    """The login as configured in Streamlit's secrets; SettingsError when [auth] or the roles are incomplete."""
    if st.secrets.load_if_toml_exists():
        return AuthConfig.from_secrets(st.secrets.to_dict())
    # A secrets file that exists but did not load is broken, not "no login": say why (load_secrets raises).
    load_secrets(Path(p) for p in (st.get_option("secrets.files") or []))
    return AuthConfig.from_secrets({})


def current_user() -> User:
    """The user of this session: the local operator without login, else from the signed identity cookie."""
    return auth_config().user_from_claims(st.user.to_dict())


def user_or_anonymous() -> User:
    try:
        return current_user()
    except TormentaError:
        return ANONYMOUS


def _lone_page(render, title: str) -> None:
    """Show only `render` on every page address (no navigation to the data pages) and end the run.

    The page addresses stay known, so a visitor who opens /storm_control before signing in
    gets the sign-in page there (and returns to the landing page after signing in)."""
    paths = [Path(path).stem for _, path, _, _ in PAGES[1:]]
    st.navigation([st.Page(render, title=title, url_path="signin", default=True)]
                  + [st.Page(render, title=title, url_path=p) for p in paths], position="hidden").run()
    st.stop()


def _sign_in_page() -> None:
    st.title("Tormenta — please sign in")
    st.markdown("This dashboard shows live storm data and steers the storm emulator; it needs a signed-in user.")
    if st.button("Sign in", type="primary", icon=":material/login:", key="sign_in"):
        st.login()


def gate() -> tuple[User, AuthConfig]:
    """Who may see the pages: ends the run with a sign-in, no-access or misconfiguration page when needed."""
    try:
        config = auth_config()
        check_bind(str(st.get_option("server.address") or ""), config)
    except SettingsError as exc:
        problem = str(exc)

        def misconfigured() -> None:
            st.title("Tormenta")
            st.error(f"**The dashboard is not served: its login is misconfigured.** {problem}",
                     icon=":material/lock:")

        _lone_page(misconfigured, "Login misconfigured")
    user = config.user_from_claims(st.user.to_dict())
    if not user.signed_in:
        _lone_page(_sign_in_page, "Sign in")
    if user.role is None:
        def no_access() -> None:
            st.title("Tormenta")
            st.warning(f"**You are signed in as {user.label}, but you have no role in Tormenta.** Ask an "
                       "operator to add your address to the viewers or operators in the login settings.",
                       icon=":material/block:")
            if st.button("Sign out", key="sign_out_no_role", icon=":material/logout:"):
                st.logout()

        _lone_page(no_access, "No access")
    return user, config


def sidebar_user(user: User, config: AuthConfig) -> None:
    """Who is signed in, with which role, and the sign-out button (or: no login, loopback only)."""
    with st.sidebar:
        if config.enabled:
            st.caption(f"Signed in as **{user.label}** · {user.role}")
            if st.button("Sign out", key="sign_out", icon=":material/logout:"):
                st.logout()
        else:
            st.caption("No login configured: you are the local operator; the app listens on loopback only.")


def operator_page() -> User:
    """First line of an operator page: a viewer who reaches it anyway (a crafted URL) sees nothing more."""
    user = user_or_anonymous()
    if not user.is_operator:
        st.warning("**This page is for operators.** Your role does not allow steering the storm or load tests.",
                   icon=":material/block:")
        st.stop()
    return user


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

    def set_desired(self, **changes):
        """For `pages.actions.change_storm`, which checks the role and signs the change."""
        return self.call("set_desired", **changes)


@st.cache_resource(show_spinner=False, on_release=lambda ctl: ctl.close())
def get_control() -> LockedControl:
    return LockedControl(get_settings())


@st.cache_data(ttl=3, show_spinner=False)
def broker_up() -> bool:
    return broker_health(get_settings()).state == "up"


@st.cache_data(ttl=3, show_spinner=False)
def emulator_status() -> dict | None:
    """The emulator's newest status message (at most 5 s old), or None (no broker, no emulator)."""
    if not broker_up():
        return None
    try:
        return get_control().call("latest_status", max_age_s=5.0)
    except Exception:  # noqa: BLE001 - no status reads as "emulator down" / wire format unknown
        return None


def record_failure(exc: BaseException) -> None:
    """Note a failed read in the session, where tests (and the log) can see it."""
    st.session_state.setdefault(FAILURES, []).append({"error": type(exc).__name__, "message": str(exc)[:300]})


def start_run() -> None:
    """Called by the entry script before each page run: a fresh failure list, and the routing mark.
    The app's process gives freed C memory back every minute from its first page run on
    (`pipeline.procs.trim`; a later call finds the thread running)."""
    trim.start()
    st.session_state[FAILURES] = []
    st.session_state[ROUTED] = True
    st.session_state.pop(HANDED_OVER, None)


def show_problem(exc: BaseException) -> None:
    """A friendly box for any error: what is wrong and what to do."""
    record_failure(exc)
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
def timed_page(page: str):
    """Time one page run into tormenta_app_page_build_seconds{page} (the endpoint starts once per
    process, at TORMENTA_METRICS_PORT + 3; nothing when metrics are off). A page that stops or
    reruns itself is timed too."""
    from pipeline.metrics.app import for_process

    try:
        metrics = for_process(get_settings())
    except Exception as exc:  # noqa: BLE001 - metrics are never a reason to lose the page
        log.warning("app metrics are off: %s", exc)
        metrics = None
    started = time.perf_counter()
    try:
        yield
    finally:
        if metrics is not None:
            metrics.observe_page(page, time.perf_counter() - started)


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
    """Route through the entry script when a page file was run without it.

    A `pages/` folder next to the entry makes a fresh server start in Streamlit's first
    multipage mode, which runs a page file directly when the first visitor after a restart
    opens a page URL (no navigation, no page config) until some run calls `st.navigation`.
    The entry script marks every run it routes (`start_run`); a page run without that
    mark calls the public `st.navigation` with the app's pages, which ends that mode for the
    server and keeps the requested page, and reruns, so the entry script runs that page.

    When the page file itself is the script being run (``streamlit run pages/overview.py``,
    or a test's AppTest on the file) that rerun runs the page again, not the entry script, and
    would hand over for ever: a page that is still not routed after its handover says in one
    line to start the app from `streamlit_app.py`, and ends the run.
    """
    if st.session_state.pop(ROUTED, False):
        st.session_state.pop(HANDED_OVER, None)
        return
    if st.session_state.get(HANDED_OVER):
        st.error(ENTRY_ONLY, icon=":material/arrow_forward:")
        st.stop()
    st.session_state[HANDED_OVER] = True
    # every page, so the requested one is kept; nothing renders before the rerun, and the entry script decides
    st.navigation(build_pages(user=User(email="", name="", role=OPERATOR)))
    st.rerun()


def page_header(title: str, caption: str) -> None:
    _hand_over_to_the_entry_script()
    st.title(title)
    st.caption(caption)
