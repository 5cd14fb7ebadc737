"""Pipeline: the alerts that fire, batch duration vs trigger, input rows, lag in records and seconds, retention
risk, quarantine rate. The alerts, and the last hour of batch duration and records behind, come from the
run's Prometheus when monitoring is up; otherwise the charts come from the batch_metrics table."""

from __future__ import annotations

import site
from pathlib import Path

import plotly.graph_objects as go
import streamlit as st

site.addsitedir(str(Path(__file__).resolve().parents[1]))  # run by itself, a page still finds the project
from pages.common import broker_up, emulator_status, get_reader, get_settings, guard, page_header
from pipeline.errors import TormentaError
from pipeline.monitoring.client import PrometheusClient, alerts_view
from pipeline.monitoring.runbook import runbook_section
from pipeline.monitoring.series import job_history
from pipeline.read import health
from pipeline.read.dashboard import batch_extras, fmt_count, time_window, wire_format_label
from pipeline.read.units import compact
from pipeline.settings import format_duration

page_header("Pipeline", "How the streaming job keeps up: one point per micro-batch of the high-value query. "
            "Times are UTC.")
range_label = st.selectbox("Time range", ["Last 15 minutes", "Last hour", "Last 6 hours", "Last 24 hours"],
                           index=1, key="pipe_range")


@st.cache_data(ttl=5, show_spinner=False)
def metrics(label: str):
    start, end = time_window(label)
    return get_reader().batch_metrics(start, end)


@st.cache_data(ttl=5, show_spinner=False)
def alerts():
    return alerts_view(get_settings())


@st.cache_data(ttl=15, show_spinner=False)
def prometheus_history():
    s = get_settings()
    return job_history(PrometheusClient.for_settings(s), s.trigger_interval)


def _alerts_panel(view) -> None:
    """Firing and pending alerts with since when and their runbook; or why there are none to show."""
    st.subheader("Alerts")
    if view.state == "off":
        st.info("**Monitoring off.** Prometheus and Alertmanager are not part of this run; set "
                "`TORMENTA_MONITORING=true` (and a `TORMENTA_METRICS_PORT`) and restart `make run`.",
                icon=":material/notifications_off:")
        return
    if view.state == "unreachable":
        st.info(f"**Monitoring unreachable.** {view.message}", icon=":material/cloud_off:")
        return
    if not view.alerts:
        st.success("No alerts fire. Prometheus evaluates the rules of `monitoring/alerts.yaml` every 5 s.",
                   icon=":material/check_circle:")
        return
    st.caption(f"**{view.sentence()}**. Pending: the condition holds but not yet for the rule's duration. "
               "Times are UTC.")
    st.dataframe(view.rows(), hide_index=True, width="stretch", key="alerts_table",
                 column_order=["state", "severity", "alert", "summary", "where", "since", "for", "runbook"])
    for alert in view.alerts:
        text = runbook_section(alert.name)
        if text:
            with st.expander(f"Runbook: {alert.name} ({alert.runbook})"):
                st.markdown(text)


@st.cache_data(ttl=5, show_spinner=False)
def live_backlog(end_offsets_json: str):
    if not broker_up():
        return None
    from pipeline.kafka.topic import log_end_offsets

    try:
        return health.backlog(log_end_offsets(get_settings(), timeout=2, role="app"), {"end_offsets": end_offsets_json})
    except Exception:  # noqa: BLE001 - falls back to the backlog recorded by the batch
        return None


def _headline(df, s) -> health.RetentionRisk:
    """The figures of the newest batch; returns the retention risk for the gauge."""
    last = df.iloc[-1].to_dict()
    rate = health.ingest_rate(df)
    behind_now = live_backlog(str(last["end_offsets"]))
    behind = behind_now if behind_now is not None else last.get("offsets_behind")
    behind_s = behind / rate if behind is not None and rate else None
    qrate = health.quarantine_rate(df)
    interval = float(last["trigger_interval_s"])
    m = st.columns(5)
    m[0].metric("Last batch duration", f"{compact(last['duration_s'], 1)} s",
                delta=f"{last['duration_s'] - interval:+.1f} s vs trigger", delta_color="inverse",
                help=f"Trigger interval: {format_duration(interval)}")
    m[1].metric("Input rows, last batch", fmt_count(last["input_rows"]))
    m[2].metric("Records behind", fmt_count(behind),
                help="Records behind the latest: log-end offsets minus what the job has read"
                     + (" (live)" if behind_now is not None else " (at the last batch)"))
    m[3].metric("Time behind", f"{compact(behind_s, 1)} s" if behind_s is not None else "–",
                help="Records behind / current ingest rate")
    m[4].metric("Quarantine rate", f"{qrate:.3%}" if qrate is not None else "–",
                help="Quarantined / input records in the range")
    x = st.columns(5)
    for col, (label, last_text, total) in zip(x, batch_extras(df), strict=False):
        col.metric(f"{label}, last batch", last_text, help=f"In the {range_label.lower()}: {total}. "
                   "– = not recorded (batches written before this count existed)")
    return health.retention_risk(last["trigger_time"], last.get("offsets_behind"), rate, s.retention)


def _gauge(risk, s) -> None:
    gauge = go.Figure(go.Indicator(
        mode="gauge+number", value=risk.used_share * 100, number={"suffix": " %"},
        title={"text": "Retention used"},  # the caption below says by what: the oldest unprocessed record
        gauge={"axis": {"range": [0, 100]},
               "bar": {"color": {"ok": "#2b8a3e", "warning": "#f08c00", "critical": "#c92a2a"}[risk.level]},
               "steps": [{"range": [0, 50], "color": "#ebfbee"}, {"range": [50, 80], "color": "#fff4e6"},
                         {"range": [80, 100], "color": "#fff5f5"}]}))
    gauge.update_layout(height=260, margin=dict(l=20, r=20, t=60, b=10))
    st.plotly_chart(gauge, width="stretch", key="gauge")
    st.caption(f"Share of the record lifetime used by the oldest unprocessed record. {risk.sentence()} "
               f"Record lifetime: {format_duration(s.retention)}.")


def _charts(df) -> None:
    fig = go.Figure()
    fig.add_trace(go.Bar(x=df["trigger_time"], y=df["duration_s"], name="batch duration (s)", marker_color="#3b5bdb"))
    fig.add_trace(go.Scatter(x=df["trigger_time"], y=df["trigger_interval_s"], name="trigger interval (s)",
                             mode="lines", line=dict(color="#c92a2a", dash="dash")))
    fig.update_layout(title="Batch duration vs trigger interval", yaxis_title="seconds", height=300,
                      margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h"))
    st.plotly_chart(fig, width="stretch", key="durations")


def _prometheus_charts(history) -> None:
    """Batch duration vs trigger over the last hour, from Prometheus."""
    frame = history.durations
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=frame["time"], y=frame["duration_s"], name="mean batch duration (s)", mode="lines",
                             line=dict(color="#3b5bdb")))
    if "trigger_s" in frame:
        fig.add_trace(go.Scatter(x=frame["time"], y=frame["trigger_s"], name="trigger interval (s)", mode="lines",
                                 line=dict(color="#c92a2a", dash="dash")))
    fig.update_layout(title="Batch duration vs trigger interval, last hour (Prometheus)", yaxis_title="seconds",
                      height=300, margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h"))
    st.plotly_chart(fig, width="stretch", key="durations")


def _row_charts(df, history=None) -> None:
    a, b = st.columns(2)
    with a:
        fig = go.Figure(go.Bar(x=df["trigger_time"], y=df["input_rows"], marker_color="#2b8a3e"))
        fig.update_layout(title="Input rows per batch", yaxis_title="records", height=280,
                          margin=dict(l=10, r=10, t=40, b=10))
        st.plotly_chart(fig, width="stretch", key="inputs")
    with b:
        if history is not None and not history.behind.empty:
            x, y, title = history.behind["time"], history.behind["behind"], "Records behind latest, last hour (Prometheus)"
        else:
            x, y, title = df["trigger_time"], df["offsets_behind"], "Records behind latest, at each batch"
        fig = go.Figure(go.Scatter(x=x, y=y, mode="lines", line_color="#e8590c"))
        fig.update_layout(title=title, yaxis_title="records", height=280,
                          margin=dict(l=10, r=10, t=40, b=10))
        st.plotly_chart(fig, width="stretch", key="behind")


@st.cache_data(ttl=5, show_spinner=False)
def kafka_nodes():
    view = health.cluster_view(get_settings())
    return view.rows(), view.sentence()


def _brokers() -> None:
    rows, sentence = kafka_nodes()
    with st.expander(f"Kafka: {sentence}", expanded=any(r["state"] != "UP" for r in rows)):
        st.dataframe(rows, hide_index=True, width="stretch", key="kafka_nodes")


def _history_or_none(view):
    """The last hour from Prometheus when it answers and has the job's series; None: use the table's charts."""
    if view is None or view.state != "up":
        return None
    try:
        history = prometheus_history()
    except TormentaError:  # Prometheus went away since the alerts were read: the table's charts
        return None
    return None if history.empty else history


@st.fragment(run_every="10s")
def body():
    s = get_settings()
    st.caption(f"Wire format of the messages: **{wire_format_label(emulator_status())}** "
               "(JSON or Avro, as the emulator reports it; unknown while no emulator reports).")
    view = None
    with guard():
        view = alerts()
        _alerts_panel(view)
    with guard():
        _brokers()
    with guard():
        history = _history_or_none(view)
        df = metrics(range_label)
        if df.empty:
            st.info(f"No batches in the {range_label.lower()}. Start the job with `python -m pipeline job` "
                    "(or everything with `make run`).", icon=":material/hourglass_empty:")
            return
        risk = _headline(df, s)
        g, t = st.columns([1, 2])
        with g:
            _gauge(risk, s)
        with t:
            if history is not None and not history.durations.empty:
                _prometheus_charts(history)
            else:
                _charts(df)
        _row_charts(df, history)


body()
