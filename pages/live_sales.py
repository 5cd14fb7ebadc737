"""Live sales: sales count and amount per window, high-value share, top categories/countries/merchants."""

from __future__ import annotations

import site
from pathlib import Path

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

site.addsitedir(str(Path(__file__).resolve().parents[1]))  # run by itself, a page still finds the project
from pages.common import get_reader, guard, page_header
from pipeline.read.dashboard import BUCKETS, TIME_RANGES, fmt_count, fmt_money, time_window
from pipeline.read.windows import partial_note

PARTIAL_NAME = "still filling"  # trace name of the current window(s): the browser test looks for it

page_header("Live sales", "Sales from the aggregates table, summed over the job's partial rows. Times are UTC; "
            "amounts as sent by the merchants.")

c1, c2, c3, c4 = st.columns([2, 2, 1, 1])
range_label = c1.selectbox("Time range", list(TIME_RANGES), index=1, key="sales_range")
bucket_label = c2.segmented_control("Window size", list(BUCKETS), default="1 minute", key="sales_bucket") or "1 minute"
top_n = c3.number_input("Top N (entries)", min_value=3, max_value=25, value=8, step=1, key="sales_top")
refresh = c4.selectbox("Refresh every (s)", [5, 15, 30, 60], index=1, key="sales_refresh")


@st.cache_data(ttl=5, show_spinner=False)
def series(label: str, bucket_s: int, minute: str):
    start, end = time_window(label)
    return get_reader().sales_series(start, end, bucket_s)


@st.cache_data(ttl=15, show_spinner=False)
def tops(label: str, n: int, minute: str):
    start, end = time_window(label)
    r = get_reader()
    return r.top_dimension("category", start, end, n), r.top_dimension("country", start, end, n)


@st.cache_data(ttl=30, show_spinner=False)
def merchants(label: str, n: int, minute: str):
    start, end = time_window(label)
    return get_reader().top_merchants(start, end, n)


def _minute() -> str:
    # cache key that changes every 10 s, so a live page moves with the data
    from pipeline.read.readers import utcnow

    now = utcnow()
    return f"{now:%Y%m%d%H%M}{now.second // 10}"


def _sales_chart(df, bucket_s: int) -> go.Figure:
    """Three panels; complete windows solid, the window(s) still filling hatched, faded and dashed."""
    done, filling = df[df["complete"]], df[~df["complete"]]
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.06,
                        subplot_titles=("Transactions per window", "Amount per window", "High-value share"))
    width_ms = bucket_s * 1000 * 0.8  # explicit: a one-bar trace would otherwise be drawn hairline-thin
    fig.add_trace(go.Bar(x=done["window_start"], y=done["sales_count"], name="transactions", width=width_ms,
                         marker_color="#3b5bdb"), row=1, col=1)
    fig.add_trace(go.Bar(x=filling["window_start"], y=filling["sales_count"], name=PARTIAL_NAME, opacity=0.45,
                         width=width_ms, marker=dict(color="#3b5bdb", pattern=dict(shape="/", fillmode="overlay",
                                                                                  fgcolor="#ffffff"))),
                  row=1, col=1)
    # the dashed part starts at the last complete point, so the line reads as one series
    joint = df.iloc[max(0, len(done) - 1):] if len(filling) else filling
    for row, column, scale, color in ((2, "sales_amount", 1, "#2b8a3e"), (3, "high_value_share", 100, "#e8590c")):
        fig.add_trace(go.Scatter(x=done["window_start"], y=done[column] * scale, mode="lines", line_color=color,
                                 name=column), row=row, col=1)
        fig.add_trace(go.Scatter(x=joint["window_start"], y=joint[column] * scale, mode="lines+markers",
                                 name=PARTIAL_NAME, line=dict(color=color, dash="dash"),
                                 marker=dict(symbol="circle-open")), row=row, col=1)
    if len(filling):
        half = pd.Timedelta(seconds=bucket_s / 2)  # bars are centred on their window start
        fig.add_vrect(x0=filling["window_start"].min() - half, x1=filling["window_start"].max() + half,
                      fillcolor="#868e96", opacity=0.12, line_width=0, annotation_text=PARTIAL_NAME,
                      annotation_position="top left")
    fig.update_yaxes(title_text="tx", row=1, col=1)
    fig.update_yaxes(title_text="amount", row=2, col=1)
    fig.update_yaxes(title_text="%", row=3, col=1)
    fig.update_layout(height=620, showlegend=False, barmode="overlay", margin=dict(l=10, r=10, t=40, b=10))
    return fig


@st.fragment(run_every=f"{int(refresh)}s")
def live():
    key = _minute()
    with guard():
        s = series(range_label, BUCKETS[bucket_label], key)
        df = s.frame
        if df.empty:
            st.info(f"No sales in the {range_label.lower()}. Is the emulator running? Start it on the Storm "
                    "control page or with `python -m pipeline emulate`.", icon=":material/hourglass_empty:")
            return
        if s.coarsened:
            st.caption(f"Windows widened to {s.bucket_s // 60} minutes to keep the charts under 5,000 points.")
        total_n, total_amt = df["sales_count"].sum(), df["sales_amount"].sum()
        hv_n = df["high_value_count"].sum()
        m1, m2, m3, m4 = st.columns(4)
        m1.metric("Sales (transactions)", fmt_count(total_n))
        m2.metric("Sales amount", fmt_money(total_amt))
        m3.metric("High-value transactions", fmt_count(hv_n))
        m4.metric("High-value share", f"{hv_n / total_n:.2%}" if total_n else "–",
                  help="High-value transactions / all transactions in the range")
        note = partial_note(df)
        if note:
            st.caption(note)
        st.plotly_chart(_sales_chart(df, s.bucket_s), width="stretch", key="sales_chart")

    a, b, c = st.columns(3)
    with guard():
        cats, countries = tops(range_label, int(top_n), key)
        for col, frame, label in ((a, cats, "category"), (b, countries, "country")):
            with col:
                st.markdown(f"**Top {label} by amount**")
                if frame.empty:
                    st.caption("No data in the range.")
                else:
                    f = px.bar(frame.iloc[::-1], x="amount", y=label, orientation="h", hover_data=["count"])
                    f.update_layout(height=320, margin=dict(l=10, r=10, t=10, b=10))
                    st.plotly_chart(f, width="stretch", key=f"top_{label}")
    with c, guard():
        st.markdown("**Top merchants by high-value amount**")
        frame = merchants(range_label, int(top_n), key)
        if frame.empty:
            st.caption("No high-value transactions in the range.")
        else:
            f = px.bar(frame.iloc[::-1], x="amount", y="merchant", orientation="h", hover_data=["count"])
            f.update_layout(height=320, margin=dict(l=10, r=10, t=10, b=10))
            st.plotly_chart(f, width="stretch", key="top_merchant")


live()
