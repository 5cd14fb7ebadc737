"""Overview: is each part alive, the settings that matter, headline figures, next steps."""

from __future__ import annotations

import site
from datetime import timedelta
from pathlib import Path

import pandas as pd
import streamlit as st

site.addsitedir(str(Path(__file__).resolve().parents[1]))  # run by itself, a page still finds the project
from pages.common import auth_config, broker_up, emulator_status, get_reader, get_settings, guard, page_header
from pipeline.auth.login import secret_rows
from pipeline.contract.tables import BATCH_METRICS, HIGH_VALUE
from pipeline.live.health import lane_health
from pipeline.monitoring.client import alerts_view
from pipeline.read import health
from pipeline.read.dashboard import fmt_count, fmt_money, headline_rate, settings_summary, wire_format_label
from pipeline.read.parts import run_parts
from pipeline.read.readers import utcnow

ICONS = {"up": ":material/check_circle:", "idle": ":material/pause_circle:", "starting": ":material/hourglass_top:",
         "down": ":material/cancel:", "unknown": ":material/help:"}
COLORS = {"up": "green", "idle": "orange", "starting": "blue", "down": "red", "unknown": "gray"}


@st.cache_data(ttl=5, show_spinner=False)
def parts_and_facts():
    s = get_settings()
    reader = get_reader()
    up = broker_up()
    broker = health.broker_health(s)
    topic, facts = health.topic_health(s, up)
    last = None
    try:
        last = reader.last_batch()
    except Exception:  # noqa: BLE001 - a missing metrics table is judged below
        last = None
    new_records = None
    if up and last:
        try:
            from pipeline.kafka.topic import log_end_offsets

            new_records = health.backlog(log_end_offsets(s, timeout=2, role="app"), last)
        except Exception:  # noqa: BLE001 - unknown backlog keeps the judgement conservative
            new_records = None
    job = health.job_health(last, s, table_exists=reader.exists(BATCH_METRICS), new_records=new_records,
                            process=health.job_process(s))
    status = emulator_status()
    emulator = health.emulator_health(status, up)
    return [broker, topic, job, emulator, lane_health(s)], facts, status, last


@st.cache_data(ttl=5, show_spinner=False)
def alert_view():
    return alerts_view(get_settings())


def alerts_count() -> None:
    """How many alerts fire in the run's Prometheus (the list is on the Pipeline page), or why none are counted."""
    view = alert_view()
    st.metric("Alerts", view.sentence(), border=True,
              help="From the Prometheus that `make run` starts: firing (and pending) alerts of monitoring/alerts.yaml. "
                   "The Pipeline page lists them with their runbook.")


@st.cache_data(ttl=5, show_spinner=False)
def kafka_nodes():
    view = health.cluster_view(get_settings())
    return view.rows(), view.sentence()


@st.cache_data(ttl=10, show_spinner=False)
def headline():
    reader = get_reader()
    window = reader.latest_complete_window()
    hv = reader.info(HIGH_VALUE)
    # no metrics table yet (the job has not finished a batch): the sales figures still show
    metrics = reader.batch_metrics(utcnow() - timedelta(minutes=15)) if reader.exists(BATCH_METRICS) else None
    return window, hv.rows, metrics


def supervised_parts() -> None:
    """The processes `python -m pipeline run` supervises: restarts, last exit code, uptime (nothing without a run)."""
    supervised = run_parts(get_settings().run_dir)
    if supervised is None:
        return
    st.markdown("**Processes of `python -m pipeline run`** (a part that exits is started again)")
    st.dataframe(supervised.rows, hide_index=True, width="stretch", key="run_parts")
    for line in supervised.crash_loops:
        st.error(line, icon=":material/error:")
    if supervised.restarting:
        st.warning(f"Waiting to restart: {', '.join(supervised.restarting)}.", icon=":material/restart_alt:")


page_header("Tormenta — storm data at a glance",
            "Is everything running, what is it set to, and what is happening right now. Times are UTC.")


@st.fragment(run_every="10s")
def live_overview():
    status = None
    with guard():
        parts, facts, status, _ = parts_and_facts()
        st.subheader("Is each part alive?")
        cols = st.columns(len(parts))
        for col, p in zip(cols, parts, strict=True):
            with col.container(border=True):
                st.markdown(f"#### {ICONS[p.state]} {p.part.capitalize()}")
                st.markdown(f":{COLORS[p.state]}-badge[{p.state.upper()}]")
                st.caption(p.detail)
        steps = health.next_steps(parts)
        starting = [p for p in parts if p.state == health.STARTING]
        if steps:
            st.warning("**Next steps**\n\n" + "\n".join(f"- {s}" for s in steps), icon=":material/build:")
        elif starting:
            st.info(" ".join(p.detail for p in starting), icon=":material/hourglass_top:")
        else:
            st.success("All parts are running.", icon=":material/check_circle:")
        st.caption(f"Wire format of the messages: **{wire_format_label(status)}** (as the emulator reports it).")
    with guard():
        alerts_count()
    with guard():
        supervised_parts()

    st.subheader("Right now")
    with guard():
        window, hv_rows, metrics = headline()
        rate, source = headline_rate(status, metrics)
        c1, c2, c3, c4 = st.columns(4)
        if window:
            span = f"{window['window_start']:%H:%M}–{window['window_end']:%H:%M} UTC"
            c1.metric("Sales in the last window", fmt_count(window["sales_count"]),
                      help=f"Transactions in the last complete window, {span}; the window still filling "
                           "is left out (see Live sales)")
            c2.metric("Sales amount, last window", fmt_money(window["sales_amount"]),
                      help=f"Sum of amounts in {span} (all currencies as sent)")
        else:
            c1.metric("Sales in the last window", "–")
            c2.metric("Sales amount, last window", "–")
        c3.metric("High-value transactions (total)", fmt_count(hv_rows),
                  help="Rows in the high-value table (from Delta file statistics)")
        c4.metric("Current storm rate", f"{fmt_count(rate)} tx/s" if rate is not None else "–",
                  help=f"Source: {source}" if source else "No emulator status and no recent batch")
        if window:
            st.caption(f"Last window = the newest complete one, {span}.")


live_overview()

st.subheader("Settings that matter")
with guard():
    login = auth_config()
    if not login.enabled:
        st.info("**No login configured: the app listens on loopback only.** Anyone on this machine is an operator. "
                "To open it to others, configure the login (docs/SECURITY-LOGIN.md).", icon=":material/lock_open:")
    _, facts, _, _ = parts_and_facts()
    table = pd.concat([settings_summary(get_settings(), facts), pd.DataFrame(secret_rows(get_settings(), login))],
                      ignore_index=True)  # secrets only as set/unset
    st.dataframe(table, hide_index=True, width="stretch")
    if facts and facts.retention_s is None:
        st.caption("The topic has no time-based retention.")

st.subheader("Kafka nodes")
with guard():
    rows, sentence = kafka_nodes()
    st.dataframe(rows, hide_index=True, width="stretch", key="kafka_nodes")
    st.caption(f"{sentence} Partitions led: how many partitions each node leads; a node that is down leads none.")
