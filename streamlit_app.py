"""Tormenta dashboard: the entry point that checks who is there and wires the pages with `st.navigation`.

    streamlit run streamlit_app.py --server.address 127.0.0.1 --server.headless true

With a login configured (``[auth]`` and ``[tormenta.roles]`` in the secrets file, see
docs/SECURITY-LOGIN.md) every page needs a signed-in user: `gate()` shows the sign-in page
to anyone else, and a user without a role sees only the no-access page. Viewers get the
data pages; operators also get Storm control and Load test. Without a login the app is
for whoever can reach loopback, and it refuses to serve on any other address.

Pages live in `pages/`; `pages.common.build_pages()` returns the navigation sections (the
`PAGES` list is declared there, so a page run outside the entry can route through the same
navigation), and a page file that exists later (the load-test page of issue 6, `pages/load_test.py`) joins its section
without further wiring. All logic lives in `pipeline/`; pages only lay it out.
"""

from __future__ import annotations

import streamlit as st

from pages.common import PAGES, build_pages, gate, sidebar_user, start_run, timed_page  # noqa: F401 - PAGES: the page list, declared once

st.set_page_config(page_title="Tormenta", page_icon=":material/thunderstorm:", layout="wide")
user, login = gate()  # ends the run with the sign-in / no-access / misconfigured page when needed
page = st.navigation(build_pages(user=user))
sidebar_user(user, login)
try:
    start_run()  # empties the run's failure list; marks the page run as routed by this script
    with timed_page(page.title):  # tormenta_app_page_build_seconds{page}
        page.run()
except Exception as exc:  # noqa: BLE001 - last line of defence: no stack trace ever reaches the page
    from pages.common import show_problem

    show_problem(exc)
