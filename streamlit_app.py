"""Tormenta dashboard: the entry point that wires the pages with `st.navigation`.

    streamlit run streamlit_app.py --server.address 127.0.0.1 --server.headless true

Pages live in `pages/`; `pages.common.build_pages()` returns the navigation sections (the
`PAGES` list is declared there, so a page run outside the entry can route through the same
navigation), and a page file that exists later (the load-test page of issue 6, `pages/load_test.py`) joins its section
without further wiring. All logic lives in `pipeline/`; pages only lay it out.
"""

from __future__ import annotations

import streamlit as st

from pages.common import PAGES, build_pages, start_run  # noqa: F401 - PAGES: the page list, declared once

st.set_page_config(page_title="Tormenta", page_icon=":material/thunderstorm:", layout="wide")
page = st.navigation(build_pages())
try:
    start_run()  # empties the run's failure list; marks the page run as routed by this script
    page.run()
except Exception as exc:  # noqa: BLE001 - last line of defence: no stack trace ever reaches the page
    from pages.common import show_problem

    show_problem(exc)
