"""Tormenta dashboard: the entry point that wires the pages with `st.navigation`.

    streamlit run streamlit_app.py --server.address 127.0.0.1 --server.headless true

Pages live in `pages/`; `build_pages()` returns the navigation sections, and a page file
that exists later (the load-test page of issue 6, `pages/load_test.py`) joins its section
without further wiring. All logic lives in `pipeline/`; pages only lay it out.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

HERE = Path(__file__).resolve().parent

# (section, file, title, icon); the first entry is the landing page.
PAGES = [
    ("Monitor", "pages/overview.py", "Overview", ":material/monitor_heart:"),
    ("Monitor", "pages/pipeline_health.py", "Pipeline", ":material/speed:"),
    ("Storm", "pages/storm_control.py", "Storm control", ":material/thunderstorm:"),
    ("Storm", "pages/load_test.py", "Load test", ":material/science:"),  # issue 6; shown once the file exists
    ("Data", "pages/live_sales.py", "Live sales", ":material/monitoring:"),
    ("Data", "pages/explorer.py", "Explorer", ":material/table_view:"),
]


def build_pages(root: Path = HERE) -> dict[str, list]:
    """Navigation sections -> st.Page list; page files that do not exist yet are left out."""
    sections: dict[str, list] = {}
    for i, (section, path, title, icon) in enumerate(PAGES):
        if not (root / path).is_file():
            continue
        sections.setdefault(section, []).append(st.Page(path, title=title, icon=icon, default=(i == 0)))
    return sections


st.set_page_config(page_title="Tormenta", page_icon=":material/thunderstorm:", layout="wide")
page = st.navigation(build_pages())
try:
    page.run()
except Exception as exc:  # noqa: BLE001 - last line of defence: no stack trace ever reaches the page
    from pages.common import show_problem

    show_problem(exc)
