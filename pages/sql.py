"""SQL: ask the Delta tables a question — ready business questions or your own read-only query.

Runs through delta-rs (`pipeline.sql.engine`, no JVM): one SELECT/WITH over high_value,
quarantine, sales_agg, sales_hourly and batch_metrics (also as tormenta.<name>), stopped at
TORMENTA_SQL_TIMEOUT, at most TORMENTA_SQL_MAX_ROWS rows. The query travels in the page
address (?q=...), so a link reopens it.
"""

from __future__ import annotations

import site
from datetime import UTC
from pathlib import Path
from urllib.parse import quote

import plotly.express as px
import streamlit as st

site.addsitedir(str(Path(__file__).resolve().parents[1]))  # run by itself, a page still finds the project
from pages.common import get_reader, get_settings, guard, page_header, record_failure, show_problem
from pipeline.contract.tables import TABLE_NAMES
from pipeline.errors import DataUnavailable, SettingsError, TormentaError
from pipeline.read.readers import PAGE_SIZES, utcnow
from pipeline.sql import output
from pipeline.sql.chart import chart_frame, choose_chart
from pipeline.sql.check import QueryRefused
from pipeline.sql.engine import AsOf, QueryTimeout, QueryTooBig, SqlEngine
from pipeline.sql.questions import BY_KEY, QUESTIONS

OWN = "(your own query)"
EDITOR = "sql_text"       # session keys
CHOICE = "sql_question"
RAN = "sql_ran"           # the (sql, as_of) of the last Run, so paging does not lose the result

page_header("SQL", "Ask the Delta tables a question: pick a ready one or write one SELECT. Read-only; "
            "tables: " + ", ".join(TABLE_NAMES) + " (also as tormenta.<name>). Times are UTC.")


@st.cache_resource(show_spinner=False, on_release=lambda engine: engine.close())
def get_sql_engine() -> SqlEngine:
    return SqlEngine(get_settings())


@st.cache_data(ttl=10, show_spinner=False, max_entries=20)
def run_query(sql: str, as_of: AsOf):
    return get_sql_engine().run(sql, as_of)


@st.cache_data(ttl=60, show_spinner=False)
def history(table: str):
    return get_reader().history(table, 50)


engine = get_sql_engine()
engine.warm()  # the first Run does not wait for a worker to start
settings = get_settings()

# ---- the query: from the address, a ready question, or typed --------------------------------
if EDITOR not in st.session_state:
    from_link = st.query_params.get("q")
    st.session_state[EDITOR] = from_link if from_link else QUESTIONS[0].sql
    st.session_state[CHOICE] = OWN if from_link else QUESTIONS[0].title
    st.session_state[RAN] = (st.session_state[EDITOR], AsOf())  # the page opens with an answer


def _pick_question() -> None:
    """A ready question fills the editor and runs at once."""
    key = next((q.key for q in QUESTIONS if q.title == st.session_state[CHOICE]), None)
    if key:
        st.session_state[EDITOR] = BY_KEY[key].sql
        _run()


st.selectbox("Ready questions", [OWN, *(q.title for q in QUESTIONS)], key=CHOICE, on_change=_pick_question,
             help="Each fills the editor with a query written for our tables and runs it; change it as you like.")
st.text_area("SQL (one SELECT or WITH ... SELECT)", key=EDITOR, height=230, max_chars=20_000)


def _as_of() -> AsOf:
    """The "as of" picked in the widgets (read from the session, so the Run callback sees it too)."""
    mode = st.session_state.get("sql_asof_mode", "Latest")
    if mode == "Version" and st.session_state.get("sql_asof_version") is not None:
        return AsOf(table=st.session_state.get("sql_asof_table"), version=int(st.session_state["sql_asof_version"]))
    if mode == "Time" and st.session_state.get("sql_asof_time"):
        return AsOf(time=st.session_state["sql_asof_time"].replace(tzinfo=UTC))
    return AsOf()


def _run() -> None:
    """The Run button's callback: remember what to run, and put the query in the page address."""
    st.session_state[RAN] = (st.session_state[EDITOR], _as_of())
    st.session_state["sql_page"] = 1
    st.query_params["q"] = st.session_state[EDITOR]  # copy the address to share the query


c = st.columns([1, 2, 3])
as_of_mode = c[1].radio("As of", ["Latest", "Version", "Time"], horizontal=True, key="sql_asof_mode",
                        help="Read the tables as they were: one table at a Delta version, or every table at a time")
if as_of_mode == "Version":
    with c[2]:
        v = st.columns(2)
        table = v[0].selectbox("Table", TABLE_NAMES, key="sql_asof_table")
        with guard():
            h = history(table)
            v[1].selectbox("Delta version", h["version"].tolist(), key="sql_asof_version",
                           format_func=lambda x: f"v{x} — {h.loc[h.version == x, 'time'].iloc[0]:%Y-%m-%d %H:%M:%S}")
elif as_of_mode == "Time":
    c[2].datetime_input("As of (UTC)", value=utcnow().replace(microsecond=0, tzinfo=None), key="sql_asof_time")
c[0].button("Run", type="primary", icon=":material/play_arrow:", key="sql_run", on_click=_run)

st.caption(f"At most {settings.sql_max_rows:,} rows (TORMENTA_SQL_MAX_ROWS); a query running longer than "
           f"{settings.sql_timeout:g} s is stopped (TORMENTA_SQL_TIMEOUT).")

# ---- the answer ------------------------------------------------------------------------------
ran = st.session_state.get(RAN)
if ran:
    ran_sql, ran_as_of = ran
    result = None
    try:
        with st.spinner("Running the query…"):
            result = run_query(ran_sql, ran_as_of)
    except QueryRefused as exc:
        record_failure(exc)
        st.error(f"**Refused:** {exc}", icon=":material/block:")
    except QueryTimeout as exc:
        record_failure(exc)
        st.error(f"**Stopped:** {exc}", icon=":material/timer_off:")
    except QueryTooBig as exc:
        record_failure(exc)
        st.error(f"**Too big:** {exc}", icon=":material/memory:")
    except SettingsError as exc:  # QueryError: DataFusion's message (syntax, unknown column, types)
        record_failure(exc)
        st.error(f"**The query failed:** {exc}", icon=":material/error:")
    except (DataUnavailable, TormentaError, Exception) as exc:  # noqa: BLE001 - a friendly box, never a trace
        show_problem(exc)

    if result is not None:
        df = result.frame()
        read = " · ".join(f"{name} v{v}" for name, v in result.versions.items()) or "no table"
        when = "" if ran_as_of == AsOf() else f" ({ran_as_of.label()})"
        st.markdown(f"**{len(df):,} row{'s' if len(df) != 1 else ''}** · Delta version read: {read}{when} · "
                    f"{result.elapsed_s:.2f} s")
        if result.truncated:
            st.warning(f"The result was cut at {result.max_rows:,} rows (TORMENTA_SQL_MAX_ROWS): the query returns "
                       "more. Add a LIMIT, a GROUP BY or a narrower WHERE to see all of it.", icon=":material/content_cut:")
        link = f"{str(st.context.url or '').split('?')[0]}?q={quote(ran_sql, safe='')}"
        st.caption(f":material/link: [Link to this query]({link}) — the page address carries it too: copy it to share.")
        if df.empty:
            st.info("The query returned no rows.", icon=":material/search_off:")
        else:
            spec = choose_chart(df)
            if spec.kind == "line":
                fig = px.line(chart_frame(df, spec), x=spec.x, y=list(spec.y), color=spec.color, markers=len(df) < 60)
            elif spec.kind == "bar":
                fig = px.bar(chart_frame(df, spec), x=spec.x, y=spec.y[0])
            else:
                fig = None
                st.caption(f"No chart: {spec.reason}.")
            if fig is not None:
                fig.update_layout(height=340, margin={"l": 10, "r": 10, "t": 30, "b": 10}, legend_title_text="",
                                  xaxis_title=spec.x, yaxis_title=spec.y[0] if len(spec.y) == 1 else "")
                st.plotly_chart(fig, width="stretch", key="sql_chart")

            p = st.columns([1, 1, 4])
            size = p[0].selectbox("Rows per page", PAGE_SIZES, index=1, key="sql_page_size")
            pages = max(1, -(-len(df) // int(size)))
            if not 1 <= int(st.session_state.get("sql_page") or 0) <= pages:  # new, or a smaller result than the last
                st.session_state["sql_page"] = 1
            page_no = int(p[1].number_input(f"Page (of {pages:,})", min_value=1, max_value=pages, step=1,
                                            key="sql_page"))
            start = (min(page_no, pages) - 1) * int(size)
            st.dataframe(df.iloc[start:start + int(size)], hide_index=True, width="stretch", key="sql_rows")
            st.download_button(f"Download the {len(df):,} rows as CSV", data=output.to_csv(result.table),
                               file_name="tormenta_query.csv", mime="text/csv", icon=":material/download:",
                               key="sql_csv", on_click="ignore")
