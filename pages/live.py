"""Live: each high-value sale within a second, from the live lane's topic; beside it, Delta's settled counts."""

from __future__ import annotations

import site
import time
from pathlib import Path

import plotly.graph_objects as go
import streamlit as st

site.addsitedir(str(Path(__file__).resolve().parents[1]))  # run by itself, a page still finds the project
from pages.common import get_reader, get_settings, guard, page_header
from pipeline.live import tail as live
from pipeline.live.health import lane_health
from pipeline.live.settled import minutes_span, settled_per_minute
from pipeline.read.dashboard import fmt_count, fmt_money
from pipeline.read.units import compact

TICKER_ROWS = 15
COMPARE_MINUTES = 5

page_header("Live", "High-value sales as they happen, from the live lane (Spark Real-time Mode). The live lane "
            "is fast and provisional: a sale may show twice after a restart (duplicates are dropped here) and "
            "nothing is corrected. The Delta tables are the record; the table at the bottom compares the two.")


@st.cache_resource(show_spinner=False, on_release=lambda t: t.close())
def get_tail() -> live.LiveTail:
    """One tail of the live topic per app process, shared by every viewer."""
    return live.LiveTail(get_settings()).start()


@st.cache_data(ttl=3, show_spinner=False)
def lane_state():
    return lane_health(get_settings())


@st.cache_data(ttl=10, show_spinner=False)
def settled(minute_key: int):
    start, end = minutes_span(minute_key * 60_000 + 1, COMPARE_MINUTES)
    return settled_per_minute(get_reader(), start, end)


def _per_second_chart(df) -> go.Figure:
    fig = go.Figure(go.Bar(x=df["time"], y=df["count"], marker_color="#e8590c", name="high-value sales",
                           customdata=df["amount"], hovertemplate="%{x}<br>%{y} sales, %{customdata:,.2f}<extra></extra>"))
    fig.update_layout(height=260, margin=dict(l=10, r=10, t=10, b=10), yaxis_title="sales per second")
    return fig


@st.fragment(run_every=1)
def now_view():
    now_ms = int(time.time() * 1000)
    with guard():
        state = lane_state()
        snap = get_tail().snapshot()
        if state.state != "up":
            st.warning(f"**Live lane: {state.state.upper()}.** {state.detail}"
                       + (f" Start it with `{state.fix}` (or everything with `make run`)." if state.fix else ""),
                       icon=":material/bolt:")
        lat = live.latency_quantiles(snap.sales, now_ms)
        c = st.columns(4)
        n10, a10 = live.window_totals(snap.sales, now_ms, 10)
        n60, a60 = live.window_totals(snap.sales, now_ms, 60)
        c[0].metric("High-value sales, last 10 s", fmt_count(n10))
        c[1].metric("Amount, last 10 s", fmt_money(a10))
        c[2].metric("High-value sales, last 60 s", fmt_count(n60))
        c[3].metric("Amount, last 60 s", fmt_money(a60))
        c = st.columns(4)
        c[0].metric("Lane", state.state.upper())
        why = f"From the sale reaching Kafka to this page reading it from the live topic, last minute ({lat['n']} sales)"
        for col, q in zip(c[1:], ("p50", "p95", "p99")):
            col.metric(f"Latency {q}", _ms(lat[q]), help=why)
        st.caption(f"{len(snap.sales):,} sale(s) held from the last {live.LOOKBACK_S // 60} minutes; "
                   f"{snap.duplicates:,} duplicates dropped (the live lane delivers at least once)."
                   + (f" Tail: {snap.error}" if snap.error else ""))
        if not snap.sales:
            st.info("No high-value sale on the live topic in the last 5 minutes. Is the emulator running? "
                    "Start it on the Storm control page or with `python -m pipeline emulate`.",
                    icon=":material/hourglass_empty:")
            return
        st.markdown("**Newest high-value sales**")
        ticker = live.ticker(snap.sales, now_ms, TICKER_ROWS)
        ticker["amount"] = ticker["amount"].map(lambda a: f"{a:,.2f}")
        st.table(ticker.set_index("age"))
        st.markdown("**High-value sales per second, last 5 minutes**")
        st.plotly_chart(_per_second_chart(live.per_second(snap.sales, now_ms)), width="stretch", key="live_chart")


@st.fragment(run_every=10)
def compare_view():
    st.subheader("Provisional (live) vs settled (Delta), per minute")
    st.caption("Each complete minute by the time the sale reached Kafka. Settled counts come from the high_value "
               "table and lag by one processing interval of the job; until then the difference is expected.")
    now_ms = int(time.time() * 1000)
    with guard():
        live_counts = live.per_minute(get_tail().snapshot().sales, now_ms, COMPARE_MINUTES)
        table = live.provisional_vs_settled(live_counts, settled(now_ms // 60_000))
        table["minute"] = table["minute"].map(lambda m: m.strftime("%H:%M UTC"))
        st.table(table.set_index("minute"))


def _ms(v) -> str:
    return "–" if v is None else (f"{v:.0f} ms" if v < 1000 else f"{compact(v / 1000, 1)} s")


now_view()
compare_view()
