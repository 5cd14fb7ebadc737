"""Storm control: steer the running emulator (rate, tick, presets, profile, faults) and watch it live.

Every change is written to the emulator's compacted control topic via `EmulatorControl`;
the emulator follows it within a second. The widgets always start from the emulator's
desired state as stored in Kafka, so a refresh or a second browser shows the real state.

Operators only: the page stops for anyone else, and every change goes through
`pages.actions.change_storm`, which checks the role again and signs the change with the
user's e-mail; "Last changes" shows that audit trail (who, when, what).
"""

from __future__ import annotations

import site
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

site.addsitedir(str(Path(__file__).resolve().parents[1]))  # run by itself, a page still finds the project
from pages.actions import change_storm
from pages.common import (
    broker_down_box,
    broker_up,
    current_user,
    get_control,
    guard,
    operator_page,
    page_header,
    show_problem,
)
from pipeline.emulator.audit import audit_rows
from pipeline.emulator.presets import PRESETS, PROFILES
from pipeline.read.dashboard import (
    PROFILE_UNITS,
    RATE_MAX,
    RECORDS_PER_TICK_MAX,
    TICK_MAX_MS,
    TICK_MIN_MS,
    clamp_rate,
    emulator_figures,
    rate_from_ticks,
    records_per_tick,
    status_frame,
)

page_header("Storm control", "Set how hard the storm blows. Changes reach the running emulator within a second.")
operator_page()
SS = st.session_state


def _tick_ms(desired: dict) -> int:
    return int(min(max(round(float(desired["ingest_interval"]) * 1000), TICK_MIN_MS), TICK_MAX_MS))


def sync_widgets(desired: dict) -> None:
    """Load the emulator's desired state into the widgets when it changed elsewhere (or on first view)."""
    if SS.get("storm_version") == desired["version"]:
        return
    SS.storm_rate = clamp_rate(desired["rate"])
    SS.storm_tick = _tick_ms(desired)
    SS.storm_per_tick = min(records_per_tick(desired["rate"], SS.storm_tick), RECORDS_PER_TICK_MAX)
    profile = desired.get("profile") or {"name": "steady"}
    SS.storm_profile = profile.get("name", "steady")
    for key, (default, _lo, _hi, _help) in PROFILES.get(SS.storm_profile, {}).items():
        value = profile.get(key, default)
        SS[f"storm_p_{SS.storm_profile}_{key}"] = float(value) if value is not None else float(desired["rate"]) * 2
    faults = desired.get("faults") or {}
    for key in ("duplicates", "malformed", "late"):
        SS[f"storm_f_{key}"] = round(float(faults.get(key, 0.0)) * 100, 2)
    SS.storm_f_late_seconds = int(faults.get("late_seconds", 900))
    SS.storm_version = desired["version"]


def send(**changes) -> None:
    """Callback: write a change to the control topic (operators only, signed with the user's e-mail);
    the rerun then loads the new state into the widgets."""
    try:
        change_storm(current_user(), get_control(), **changes)
        SS.storm_sent = changes
        SS.pop("storm_error", None)
    except Exception as exc:  # noqa: BLE001 - shown at the top of the page after the rerun
        SS.storm_error = exc


def on_rate() -> None:
    send(rate=float(SS.storm_rate))


def on_ticks() -> None:
    try:
        rate = rate_from_ticks(int(SS.storm_per_tick), int(SS.storm_tick))
    except Exception as exc:  # noqa: BLE001
        SS.storm_error = exc
        return
    send(rate=rate, ingest_interval=int(SS.storm_tick) / 1000.0)


def on_tick_only() -> None:
    send(ingest_interval=int(SS.storm_tick) / 1000.0)


if not broker_up():
    broker_down_box()
    st.stop()

try:
    desired = get_control().call("desired")
except Exception as exc:  # noqa: BLE001
    show_problem(exc)
    st.stop()
sync_widgets(desired)
if "storm_error" in SS:
    show_problem(SS.storm_error)

# ---- state and presets -------------------------------------------------------------------
with st.container(border=True):
    c = st.columns([2, 1, 1, 1, 2, 2])
    state = desired["state"]
    c[0].markdown(f"**Emulator is asked to be:** :{ {'running': 'green', 'paused': 'orange'}.get(state, 'red') }"
                  f"-badge[{state.upper()}]")
    c[1].button("Start", icon=":material/play_arrow:", key="storm_start", disabled=state == "running",
                on_click=send, kwargs={"state": "running"}, width="stretch")
    c[2].button("Pause", icon=":material/pause:", key="storm_pause", disabled=state == "paused",
                on_click=send, kwargs={"state": "paused"}, width="stretch")
    c[3].button("Stop", icon=":material/stop:", key="storm_stop", disabled=state == "stopped",
                on_click=send, kwargs={"state": "stopped"}, width="stretch",
                help="Stops the emulator process; start it again with `python -m pipeline emulate`")
    for col, (name, rate) in zip(c[4:], PRESETS.items(), strict=True):
        col.button(f"{name} · {rate:,} tx/s", key=f"storm_preset_{name}", on_click=send, kwargs={"preset": name},
                   width="stretch", icon=":material/event:")

# ---- rate ------------------------------------------------------------------------------------
left, right = st.columns(2)
with left, st.container(border=True):
    st.markdown("**Rate**")
    mode = st.radio("Set the rate as", ["Transactions per second", "Records per tick"], horizontal=True,
                    key="storm_mode")
    if mode == "Transactions per second":
        st.slider("Rate (transactions per second)", 0, RATE_MAX, step=500, key="storm_rate", on_change=on_rate,
                  help=f"0 – {RATE_MAX:,} tx/s; the profile shapes it over time")
        st.slider("Tick interval (milliseconds)", TICK_MIN_MS, TICK_MAX_MS, step=10, key="storm_tick",
                  on_change=on_tick_only, help="How often a burst is sent (the ingest interval)")
    else:
        st.slider("Records per tick (records)", 0, RECORDS_PER_TICK_MAX, step=100, key="storm_per_tick",
                  on_change=on_ticks)
        st.slider("Tick interval (milliseconds)", TICK_MIN_MS, TICK_MAX_MS, step=10, key="storm_tick",
                  on_change=on_ticks, help="How often a burst is sent (the ingest interval)")
    per_tick = records_per_tick(desired["rate"], _tick_ms(desired))
    st.caption(f"Now: **{desired['rate']:,.0f} tx/s** = {per_tick:,} records every {_tick_ms(desired):,} ms "
               f"(desired-state version {desired['version']}).")

# ---- profile ---------------------------------------------------------------------------------
with right, st.container(border=True):
    st.markdown("**Load profile**")
    name = st.selectbox("Profile", list(PROFILES), key="storm_profile",
                        help="steady: constant · step: jump at a time · ramp: climb to the rate · "
                             "spike: periodic bursts · daily: the shape of a shopping day")
    with st.form("storm_profile_form", border=False):
        params = {}
        spec = PROFILES[name]
        cols = st.columns(max(1, len(spec)))
        for col, (key, (default, lo, hi, help_text)) in zip(cols, spec.items(), strict=False):
            wkey = f"storm_p_{name}_{key}"
            if wkey not in SS:
                SS[wkey] = float(default if default is not None else desired["rate"] * 2)
            params[key] = col.number_input(f"{key} ({PROFILE_UNITS.get(key, 'number')})", min_value=float(lo),
                                           max_value=float(hi), key=wkey, help=help_text)
        if not spec:
            st.caption("Steady has no parameters: the rate above, all the time.")
        if st.form_submit_button("Apply profile", icon=":material/check:"):
            send(profile={"name": name, **params})
            st.rerun()
    prof = desired["profile"]
    args = ", ".join(f"{k}={v:g}" for k, v in prof.items() if k != "name" and isinstance(v, int | float))
    st.caption(f"Desired profile: **{prof.get('name', 'steady')}**" + (f" ({args})" if args else ""))

# ---- faults ----------------------------------------------------------------------------------
with st.container(border=True):
    st.markdown("**Fault injection** — shares of the records sent")
    with st.form("storm_faults_form", border=False):
        f = st.columns(4)
        dup = f[0].slider("Duplicates (%)", 0.0, 50.0, step=0.1, key="storm_f_duplicates",
                          help="Same transaction sent twice; the job must keep one")
        bad = f[1].slider("Malformed (%)", 0.0, 50.0, step=0.1, key="storm_f_malformed",
                          help="Broken messages; they land in the quarantine table")
        late = f[2].slider("Late (%)", 0.0, 50.0, step=0.1, key="storm_f_late",
                           help="Records whose event time is in the past")
        late_s = f[3].number_input("Late by (seconds)", 0, 30 * 86400, step=60, key="storm_f_late_seconds")
        if st.form_submit_button("Apply faults", icon=":material/bug_report:"):
            send(faults={"duplicates": dup / 100, "malformed": bad / 100, "late": late / 100,
                         "late_seconds": int(late_s)})
            st.rerun()


# ---- live ------------------------------------------------------------------------------------
@st.fragment(run_every="2s")
def live():
    with guard():
        ctl = get_control()
        now_desired = ctl.call("desired")
        if now_desired["version"] != SS.get("storm_version"):
            st.rerun(scope="app")  # changed from another browser or the CLI: reload the widgets
        status = ctl.call("latest_status", max_age_s=5.0)
        history = status_frame(ctl.call("status_history", seconds=300))
        st.subheader("Live")
        if not status:
            st.info("No emulator is reporting right now. Start one with `python -m pipeline emulate` "
                    "(or everything with `make run`); it picks up the settings above.",
                    icon=":material/power_off:")
        else:
            for col, (label, value) in zip(st.columns(6), emulator_figures(status), strict=True):
                col.metric(label, value)
        if len(history):
            fig = make_subplots(rows=1, cols=2, subplot_titles=("Rate (tx/s)", "Delivery latency (ms)"))
            fig.add_trace(go.Scatter(x=history["time"], y=history["target_rate"], name="target",
                                     line=dict(dash="dash", color="#868e96")), row=1, col=1)
            fig.add_trace(go.Scatter(x=history["time"], y=history["achieved_rate"], name="achieved",
                                     line=dict(color="#3b5bdb")), row=1, col=1)
            fig.add_trace(go.Scatter(x=history["time"], y=history["latency_p50_ms"], name="p50",
                                     line=dict(color="#2b8a3e")), row=1, col=2)
            fig.add_trace(go.Scatter(x=history["time"], y=history["latency_p99_ms"], name="p99",
                                     line=dict(color="#e8590c")), row=1, col=2)
            fig.update_layout(height=320, margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h"))
            st.plotly_chart(fig, width="stretch", key="storm_live_chart")
        st.subheader("Last changes")
        trail = audit_rows(ctl.call("audit_trail", limit=10))
        if trail:
            st.table(pd.DataFrame(trail).set_index("when (UTC)"))  # a plain table: ten rows, text a test can read
            st.caption("Who changed the storm, when (UTC) and what; kept with the desired state in Kafka.")
        else:
            st.caption("No change recorded yet: the emulator runs on its defaults or on a state written before "
                       "changes were signed.")


live()
