"""A page file run by itself (not through streamlit_app.py) says so in one line instead of rerunning for ever.

Two ways a user gets there: ``python -m streamlit run pages/overview.py`` from the project
folder (the project is importable: the page used to hand over to the entry script and rerun
itself without end) and ``streamlit run pages/overview.py`` (only ``pages/`` is on the path:
the page's first import used to fail). Both are tried on every page of the app, with a timeout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from pages.common import ENTRY_ONLY, PAGES
from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
PAGE_FILES = [path for _, path, _, _ in PAGES if (ROOT / path).is_file()]


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TORMENTA_") and k != "PYTHONPATH"}
    # nothing listens there: a page that got past the message would show broker boxes, not hang on Kafka
    return env | {"TORMENTA_DATA_DIR": str(tmp_path), "TORMENTA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
                  "TORMENTA_METRICS_PORT": "0"}


def test_every_page_of_the_app_is_tried():
    assert len(PAGE_FILES) >= 6 and "pages/overview.py" in PAGE_FILES
    assert "\n" not in ENTRY_ONLY and "streamlit run streamlit_app.py" in ENTRY_ONLY


@pytest.mark.parametrize("page", PAGE_FILES)
def test_a_page_run_by_itself_says_to_start_the_entry_script(page, monkeypatch, tmp_path):
    for key, value in _env(tmp_path).items():
        if key.startswith("TORMENTA_"):
            monkeypatch.setenv(key, value)
    at = AppTest.from_file(str(ROOT / page), default_timeout=30)
    at.run()  # used to time out: the page handed over to itself again and again
    assert not at.exception
    assert [e.value for e in at.error] == [ENTRY_ONLY]
    assert not at.title and not at.button and not at.dataframe  # nothing else of the page


CLEAN_PATH = textwrap.dedent("""
    import json, sys
    from streamlit.testing.v1 import AppTest

    shown = {}
    for page in sys.argv[1:]:
        at = AppTest.from_file(page, default_timeout=30)
        at.run()
        shown[page] = {"errors": [e.value for e in at.error], "exceptions": [e.message for e in at.exception]}
    print(json.dumps(shown))
""")


def test_pages_run_without_the_project_on_the_path_say_it_too(tmp_path):
    """Like `streamlit run pages/x.py`: a fresh interpreter outside the project, whose path has no project folder."""
    pages = [str(ROOT / p) for p in PAGE_FILES]
    out = subprocess.run([sys.executable, "-c", CLEAN_PATH, *pages], cwd=tmp_path, env=_env(tmp_path),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    shown = json.loads(out.stdout.strip().splitlines()[-1])
    assert shown == {p: {"errors": [ENTRY_ONLY], "exceptions": []} for p in pages}
