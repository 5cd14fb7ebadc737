"""Explorer: browse the high-value table (filters, paging, sorting, CSV, "as of") and the quarantine."""

from __future__ import annotations

import site
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path

import streamlit as st

site.addsitedir(str(Path(__file__).resolve().parents[1]))  # run by itself, a page still finds the project
from pages.common import get_reader, guard, page_header, show_problem
from pipeline.contract.fields import AMOUNT, EVENT_TIME
from pipeline.contract.tables import HIGH_VALUE
from pipeline.read.dashboard import TIME_RANGES, time_window
from pipeline.read.readers import CSV_MAX_ROWS, MAX_RANGE, PAGE_SIZES, SORTABLE, HighValueQuery, utcnow

page_header("Explorer", "High-value transactions and quarantined messages, straight from Delta. Times are UTC.")

RANGES = [*TIME_RANGES, "Custom dates"]


@st.cache_data(ttl=10, show_spinner=False)
def page_of(q: HighValueQuery, as_of):
    return get_reader().high_value_page(q, as_of)


@st.cache_data(ttl=60, show_spinner=False)
def history():
    return get_reader().history(HIGH_VALUE, 50)


@st.cache_data(ttl=300, show_spinner=False)
def categories(label: str):
    start, end = time_window("Last 24 hours")
    return get_reader().categories(start, end)


def _range(key: str) -> tuple[datetime, datetime]:
    label = st.selectbox("Time range", RANGES, index=1, key=f"{key}_range")
    if label != "Custom dates":
        start, end = time_window(label)
        return start.replace(second=0, microsecond=0), end.replace(second=0, microsecond=0)
    today = utcnow().date()
    picked = st.date_input("From – to (UTC dates, inclusive)", value=(today - timedelta(days=1), today),
                           max_value=today + timedelta(days=1), key=f"{key}_dates")
    if not isinstance(picked, tuple | list) or len(picked) != 2:
        st.caption("Pick both dates.")
        picked = (picked[0], picked[0]) if isinstance(picked, tuple | list) and picked else (today, today)
    return (datetime.combine(picked[0], time.min, UTC), datetime.combine(picked[1], time.min, UTC) + timedelta(days=1))


hv_tab, q_tab = st.tabs(["High-value transactions", "Quarantine"])

with hv_tab:
    with st.container(border=True):
        c = st.columns([2, 1, 1, 2, 2])
        with c[0]:
            start, end = _range("hv")
        min_amt = c[1].number_input("Min amount", min_value=0.0, max_value=1e12, value=None, step=100.0,
                                    format="%.2f", placeholder="any", key="hv_min", help="Amount, currency as sent")
        max_amt = c[2].number_input("Max amount", min_value=0.0, max_value=1e12, value=None, step=100.0,
                                    format="%.2f", placeholder="any", key="hv_max", help="Amount, currency as sent")
        person = c[3].text_input("Person id (exact)", max_chars=128, key="hv_person", placeholder="e.g. P12345")
        merchant = c[4].text_input("Merchant id (exact)", max_chars=128, key="hv_merchant", placeholder="e.g. M42")
        d = st.columns([3, 2, 1.3, 1, 1, 2])
        cats = d[0].multiselect("Merchant categories", categories("cats"), key="hv_cats", placeholder="all")
        sort_by = d[1].selectbox("Sort by", SORTABLE, key="hv_sort",
                                 format_func=lambda c: c.replace("_", " "))
        descending = d[2].toggle("Descending", value=True, key="hv_desc")
        page_size = d[3].selectbox("Rows per page", PAGE_SIZES, index=1, key="hv_size")
        page_no = d[4].number_input("Page", min_value=1, max_value=1_000_000, value=1, step=1, key="hv_page")
        as_of_mode = d[5].radio("As of", ["Latest", "Version", "Time"], horizontal=True, key="hv_asof_mode",
                                help="Read the table as it was at a Delta version or a point in time")
        as_of = None
        if as_of_mode == "Version":
            with guard():
                h = history()
                versions = h["version"].tolist()
                as_of = st.selectbox("Delta version", versions, key="hv_version",
                                     format_func=lambda v: f"v{v} — {h.loc[h.version == v, 'time'].iloc[0]:%Y-%m-%d %H:%M:%S} UTC")
        elif as_of_mode == "Time":
            picked = st.datetime_input("As of (UTC)", value=utcnow().replace(microsecond=0, tzinfo=None),
                                       key="hv_asof_time")
            as_of = picked.replace(tzinfo=UTC) if picked else None

    try:
        q = HighValueQuery(start=start, end=end,
                           min_amount=Decimal(str(min_amt)) if min_amt is not None else None,
                           max_amount=Decimal(str(max_amt)) if max_amt is not None else None,
                           person_id=person or "", merchant_id=merchant or "", categories=tuple(cats),
                           sort_by=sort_by, descending=descending, page=int(page_no),
                           page_size=int(page_size)).validated()
    except Exception as exc:  # noqa: BLE001 - shown as "check the input"
        show_problem(exc)
        q = None

    if q is not None:
        with guard():
            result = page_of(q, as_of)
            where = f"Delta version {result.version}" + ("" if as_of is None else " (as of)")
            st.markdown(f"**{result.total:,} matching transactions** · page {result.page} of {result.pages:,} · "
                        f"{where}")
            if result.total == 0:
                st.info("No high-value transactions match these filters. Widen the time range or clear a filter.",
                        icon=":material/filter_alt_off:")
            else:
                st.dataframe(result.rows, hide_index=True, width="stretch", key="hv_rows", column_config={
                    EVENT_TIME: st.column_config.DatetimeColumn("event time (UTC)", format="YYYY-MM-DD HH:mm:ss"),
                    "processing_time": st.column_config.DatetimeColumn("processed (UTC)", format="HH:mm:ss"),
                    AMOUNT: st.column_config.NumberColumn("amount", format="%.2f"),
                })
                reader = get_reader()
                st.download_button(
                    f"Download filtered rows as CSV (up to {CSV_MAX_ROWS:,})",
                    data=lambda: reader.high_value_csv(q, as_of), file_name=f"tormenta_{HIGH_VALUE}.csv",
                    mime="text/csv", icon=":material/download:", key="hv_csv", on_click="ignore")
                if result.total > CSV_MAX_ROWS:
                    st.caption(f"The filters match {result.total:,} rows; the CSV holds the first {CSV_MAX_ROWS:,} "
                               "in the chosen order. Narrow the filters to export the rest.")
    st.caption(f"At most {MAX_RANGE.days} days per query; the table is partitioned by event date, so short "
               "ranges are fast.")


@st.cache_data(ttl=10, show_spinner=False)
def quarantine(start, end, reason: str, limit: int):
    return get_reader().quarantine(start, end, reason, limit)


with q_tab:
    c = st.columns([2, 2, 1])
    with c[0]:
        qs, qe = _range("q")
    reason = c[1].text_input("Reason (exact, optional)", max_chars=200, key="q_reason")
    limit = c[2].number_input("Rows (max 5,000)", min_value=10, max_value=5000, value=200, step=10, key="q_limit")
    with guard():
        counts, rows = quarantine(qs, qe, (reason or "").strip(), int(limit))
        if counts.empty:
            st.success("No quarantined messages in this range.", icon=":material/verified:")
        else:
            a, b = st.columns([1, 2])
            a.markdown("**Messages per reason**")
            a.dataframe(counts, hide_index=True, width="stretch")
            b.markdown(f"**Newest {len(rows):,} quarantined messages** (raw value cut at 300 characters)")
            b.dataframe(rows, hide_index=True, width="stretch", key="q_rows")
