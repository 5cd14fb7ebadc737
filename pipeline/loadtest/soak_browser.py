"""A headless Chromium that opens every page of the app in turn, every 30 s, during a soak.

One tab loads each page from its URL in turn and is kept for the whole run, as a user keeps a
browser open (a new tab after a failed visit): the app's script bundle then comes from the
browser's cache and the tab's renderer stays, instead of a new renderer compiling the bundle
for every visit (`bench/bench_soak_browser.py`).

Each visit loads the page, waits until Streamlit's script run has finished (no status
widget) and counts the exception boxes (``stException``) and error boxes on it. A visit
fails when the page does not load or settle within `PAGE_TIMEOUT_MS` (a minute), or
shows an exception box. While ``parts.json`` says the app is not running (a chaos kill) the round
is skipped, not failed. Runs in its own thread (Playwright's sync API stays in the thread
that started it) with Debian's ``/usr/bin/chromium``; `BrowserRounds.available()` says
whether both are there.

The browser stands for a business user's browser, which runs on the user's machine, not on
the server: its processes run at a lower CPU priority (`BROWSER_NICENESS`, set again before
every visit), so they take the CPU the product leaves first. At the normal priority its page renderers took about one of the two
cores of the development box (half the machine) away from the product in a soak.
"""

from __future__ import annotations

import logging
import os
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipeline.settings import PROJECT_ROOT

log = logging.getLogger(__name__)
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
PAGE_TIMEOUT_MS = 60_000
BROWSER_NICENESS = 10   # nice value of the browser's thread, its driver and every Chromium process
# The app's pages as URL paths (the file names in pages/; "" is the Overview), in the navigation's order.
PAGE_PATHS = ("", "pipeline_health", "storm_control", "load_test", "live", "live_sales", "explorer", "sql")


def app_pages(root: Path = PROJECT_ROOT) -> list[str]:
    return [p for p in PAGE_PATHS if p == "" or (root / "pages" / f"{p}.py").is_file()]


@dataclass
class Visit:
    t: float
    page: str
    ok: bool
    seconds: float
    problem: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BrowserRounds:
    """Every `every` seconds, one visit per page of the app at `url` (until `stop()`)."""

    url: str
    app_up: Callable[[], bool]
    every: float = 30.0
    pages: list[str] = field(default_factory=app_pages)
    visits: list[Visit] = field(default_factory=list)
    skipped_rounds: int = 0
    error: str = ""
    launched: bool = False
    reuse_tab: bool = True   # one tab for the whole run (a new one after a failed visit)
    tabs_opened: int = 0

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def available() -> str | None:
        """None when Playwright and Chromium are there, else why not."""
        if not CHROMIUM.exists():
            return f"no {CHROMIUM} (make browser)"
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            return "playwright is not installed"
        return None

    def start(self) -> BrowserRounds:
        self._thread = threading.Thread(target=self._loop, name="soak-browser", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(PAGE_TIMEOUT_MS / 1000 * 2 + 30)

    def summary(self) -> dict[str, Any]:
        failed = [v for v in self.visits if not v.ok]
        return {"visits": len(self.visits), "failed": len(failed), "skipped_rounds": self.skipped_rounds,
                "pages": self.pages, "error": self.error, "tabs_opened": self.tabs_opened,
                "failures": [v.as_dict() for v in failed[:50]], "by_page": load_times(self.visits)}

    def _loop(self) -> None:
        try:
            # Linux keeps a nice value per thread and a process inherits the value of the thread
            # that started it: Playwright's driver gets this one. Chromium sets its own processes'
            # priorities (its browser and GPU processes -8 when it may), so `lower_priority` follows
            # them before every visit.
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BROWSER_NICENESS)
            from playwright.sync_api import sync_playwright

            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
                self.launched = True
                try:
                    self._rounds(browser)
                finally:
                    browser.close()
        except Exception as exc:  # noqa: BLE001 - the soak goes on without its browser, and says so
            self.error = f"{type(exc).__name__}: {exc}"
            log.warning("soak browser stopped: %s", self.error)

    def _rounds(self, browser) -> None:
        # As a user keeps a browser open: one context (its HTTP cache and compiled scripts) and one tab for
        # the whole run. Each visit still loads the page from its URL; the tab is replaced after a failed
        # visit (it may be stuck mid-load). With `reuse_tab` off, every round gets a new context and every
        # visit a new tab (the soaks recorded up to 6 December): Chromium then started a renderer and
        # compiled the app's script bundle for every visit (bench/bench_soak_browser.py measures both).
        context, page = None, None
        next_t = time.monotonic()
        try:
            while not self._stop.is_set():
                if self.app_up():
                    if context is None:
                        context = browser.new_context(viewport={"width": 1280, "height": 900})
                    for path in self.pages:
                        if self._stop.is_set():
                            break
                        if page is None:
                            page = context.new_page()
                            self.tabs_opened += 1
                        visit = self.visit(page, path)
                        self.visits.append(visit)
                        if not visit.ok or not self.reuse_tab:
                            page.close()
                            page = None
                    if not self.reuse_tab:
                        context.close()
                        context = None
                else:
                    self.skipped_rounds += 1
                next_t += self.every
                self._stop.wait(max(0.0, next_t - time.monotonic()))
        finally:
            if context is not None:
                context.close()

    def visit(self, page, path: str) -> Visit:
        """Load `path` in the tab `page` and wait until its script run has finished."""
        started, t = time.monotonic(), time.time()
        lower_priority(os.getpid(), BROWSER_NICENESS)   # Chromium starts helpers (a tab's renderer) lazily
        try:
            page.goto(f"{self.url}/{path}", wait_until="domcontentloaded", timeout=PAGE_TIMEOUT_MS)
            page.locator('[data-testid="stSidebarNav"]').first.wait_for(timeout=PAGE_TIMEOUT_MS)
            page.wait_for_function("() => !document.querySelector('[data-testid=stStatusWidget]')",
                                   timeout=PAGE_TIMEOUT_MS)
            boxes = page.locator('[data-testid="stException"]').count()
            problem = f"{boxes} exception box(es)" if boxes else ""
        except Exception as exc:  # noqa: BLE001 - a page that does not load is a failed visit
            problem = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        return Visit(round(t, 1), path or "overview", not problem, round(time.monotonic() - started, 2), problem)


def load_times(visits: list[Visit]) -> list[dict[str, Any]]:
    """Pure: per page, the median load time of its loaded visits in the first and in the last
    quarter of the run's visits (by time): a page that reads more as the tables grow gets slower,
    and costs the box more CPU, as the hour goes on."""
    ok = sorted((v for v in visits if v.ok), key=lambda v: v.t)
    if not ok:
        return []
    span = ok[-1].t - ok[0].t
    early, late = ok[0].t + span / 4, ok[-1].t - span / 4
    out = []
    for page in dict.fromkeys(v.page for v in ok):
        first = [v.seconds for v in ok if v.page == page and v.t <= early]
        last = [v.seconds for v in ok if v.page == page and v.t >= late]
        a = statistics.median(first) if first else None
        z = statistics.median(last) if last else None
        out.append({"page": page, "visits": sum(v.page == page for v in ok), "first_s": a, "last_s": z,
                    "ratio": round(z / a, 2) if a and z is not None else None})
    return out


def lower_priority(parent: int, niceness: int) -> int:
    """Move every Chromium process under `parent` (Playwright's driver starts it) to `niceness`,
    Chromium's own choices included; returns how many were changed."""
    import psutil

    changed = 0
    for p in psutil.Process(parent).children(recursive=True):
        try:
            if p.name().startswith("chrom") and p.nice() < niceness:
                p.nice(niceness)
                changed += 1
        except psutil.Error:
            continue
    return changed
