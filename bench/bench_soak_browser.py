"""What the soak's browser costs the box per page visit: one tab kept for the run vs a tab per visit.

    .venv/bin/python bench/bench_soak_browser.py [--rounds 6] [--every 10] [--rows 20000]

Writes demo tables in a temp folder, starts the app on them (``streamlit run`` on a free
loopback port, no broker) and runs the soak's `BrowserRounds` over every page twice, one arm
after the other: as it ships (one tab for the whole run, the app's script bundle from the
browser's cache) and as the soaks ran up to 6 December (a new context every round, a new tab
every visit). Every half second it reads the CPU time of the whole Chromium tree under
Playwright's driver, renderers that have already exited included (their parents' children
times), and of the app's process. It prints the CPU seconds per visit of each arm after the first
round (Chromium's start and the first load left out), and the ratio of the two: the goal is that
the kept tab costs at most half of what a tab per visit costs. The app's CPU per visit is printed
beside it: it must not move much (the same pages are loaded the same way).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.loadtest.soak_browser import BrowserRounds, app_pages  # noqa: E402
from tests.support.app_fixtures import running_app, write_demo_tables  # noqa: E402

GOAL = 0.5   # the kept tab costs at most half the CPU per visit of a tab per visit
POLL_S = 0.5


def tree_cpu_s(root: psutil.Process) -> float:
    """CPU seconds of `root` and every process under it, children they have reaped included."""
    total = 0.0
    for p in [root, *root.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
        except psutil.Error:
            continue
    return total


def _driver() -> psutil.Process | None:
    """Playwright's driver (node), a child of this process; Chromium runs under it."""
    for p in psutil.Process(os.getpid()).children():
        try:
            if p.name().startswith("node"):
                return p
        except psutil.Error:
            continue
    return None


def one_arm(url: str, app: psutil.Process, reuse_tab: bool, args) -> tuple[float, float, int]:
    """(Chromium CPU s per visit, app CPU s per visit, visits measured) after the first round."""
    pages = app_pages()
    rounds = BrowserRounds(url=url, app_up=lambda: True, every=args.every, pages=pages, reuse_tab=reuse_tab)
    readings: list[tuple[int, float, float]] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            driver = _driver()
            if driver is not None:
                readings.append((len(rounds.visits), tree_cpu_s(driver), tree_cpu_s(app)))
            stop.wait(POLL_S)

    poller = threading.Thread(target=poll, daemon=True)
    rounds.start()
    poller.start()
    want = len(pages) * args.rounds
    deadline = time.monotonic() + args.rounds * (args.every + 60 * len(pages))
    while len(rounds.visits) < want and not rounds.error and time.monotonic() < deadline:
        time.sleep(POLL_S)
    stop.set()
    poller.join()
    rounds.stop()
    if rounds.error or len(rounds.visits) < want:
        raise SystemExit(f"the browser did not finish its rounds: {rounds.error or len(rounds.visits)} visits")
    failed = [v for v in rounds.visits if not v.ok]
    if failed:
        raise SystemExit(f"{len(failed)} visit(s) failed, e.g. {failed[0].as_dict()}")
    first = next(r for r in readings if r[0] >= len(pages))     # the first round done
    last = max(readings, key=lambda r: r[0])
    visits = last[0] - first[0]
    return (last[1] - first[1]) / visits, (last[2] - first[2]) / visits, visits


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=6, help="rounds per arm, the first one left out (default 6)")
    ap.add_argument("--every", type=float, default=10.0, help="seconds between rounds (default 10)")
    ap.add_argument("--rows", type=int, default=20_000, help="high-value rows of the demo tables (default 20,000)")
    args = ap.parse_args()
    if args.rounds < 2 or args.every <= 0 or args.rows < 1:
        ap.error("--rounds must be >= 2, --every > 0 and --rows >= 1")
    why = BrowserRounds.available()
    if why:
        raise SystemExit(f"no browser: {why}")
    with tempfile.TemporaryDirectory(prefix="bench-soak-browser-") as tmp:
        data = Path(tmp) / "data"
        write_demo_tables(data, high_value_rows=args.rows, days=2)
        with running_app(data) as url:
            app = next(p for p in psutil.Process(os.getpid()).children() if "streamlit" in " ".join(p.cmdline()))
            print(f"app {url} on {args.rows:,} demo rows; {len(app_pages())} pages a round, "
                  f"{args.rounds} rounds every {args.every:g} s per arm")
            kept = one_arm(url, app, True, args)
            print(f"  one tab kept:    Chromium {kept[0]:.2f} CPU s/visit, app {kept[1]:.2f} ({kept[2]} visits)")
            fresh = one_arm(url, app, False, args)
            print(f"  a tab per visit: Chromium {fresh[0]:.2f} CPU s/visit, app {fresh[1]:.2f} ({fresh[2]} visits)")
    ratio = kept[0] / fresh[0]
    print(f"Chromium CPU per visit, kept / per visit: {ratio:.2f} (goal <= {GOAL}): {'met' if ratio <= GOAL else 'NOT met'}")
    return 0 if ratio <= GOAL else 1


if __name__ == "__main__":
    raise SystemExit(main())
