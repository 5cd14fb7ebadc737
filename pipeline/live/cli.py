"""``python -m pipeline live``: run the live lane until Ctrl-C or SIGTERM (see `pipeline.live.lane`)."""

from __future__ import annotations

import signal
import threading

from pipeline.settings import Settings


def register(sub) -> None:
    p = sub.add_parser("live", help="run the live lane: high-value sales to the live topic within a second "
                                    "(Spark Real-time Mode)")
    p.set_defaults(func=live_cmd)


def live_cmd(settings: Settings, args) -> int:
    from pipeline.live.health import claim_pid_file, release_pid_file
    from pipeline.live.lane import run_lane

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    claim_pid_file(settings)  # the Overview and the Live page judge the lane by its process
    try:
        run_lane(settings, stop)
    finally:
        release_pid_file(settings)
    return 0
