"""``python -m pipeline loadtest --profile soak``: the whole product for a long time, and whether it stays well.

    result = Soak(settings, SoakOptions(rate=10_000, duration_s=3600, chaos=True)).run(stop_event)

1. ``python -m pipeline run`` starts as a subprocess on its own folder
   ``<data_dir>/soaks/<run-id>/data`` and free ports (`soak_stack`), the emulator at the
   steady rate, the job at the soak's trigger; the soak waits until every part runs;
2. every `sample_every` seconds the sampler records each part's processes, the disk and
   the offsets (`soak_sampling`); a headless Chromium opens every page every 30 s
   (`soak_browser`); with ``--chaos`` one part is killed -9 at a time on a seeded schedule
   and its recovery timed (`chaos`); with ``--outage`` the job is held down under the
   outage rate and then brought back by the supervisor (`soak_events`);
3. at the end the emulator pauses, the job catches up, the topic is read back and
   reconciled with Delta by id (`soak_reconcile`), the criteria are judged
   (`soak_verdict`), ``run`` is stopped, and ``samples.json``, ``result.json`` and
   ``report.html`` are written (`soak_report`);
4. once ``run`` has stopped, the run's broker logs and checkpoints (GiBs after an hour, read
   by nothing once the product is down) are deleted, unless ``--keep-data``; the Delta
   tables, the parts' logs and the report stay.

A stop request (Ctrl-C, SIGTERM) ends the soak early; it still reconciles and reports. A
second one interrupts that too; ``run`` is stopped in every case.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.errors import TormentaError
from pipeline.loadtest.runs import new_run_id, write_json
from pipeline.loadtest.soak_options import SoakOptions
from pipeline.loadtest.soak_sampling import folder_mb
from pipeline.loadtest.soak_stack import SoakStack
from pipeline.settings import Settings

log = logging.getLogger(__name__)
BULK = ("broker", "checkpoints", "spark-tmp", "tmp")  # under the run's data folder; only the running product reads them


def soaks_dir(settings: Settings) -> Path:
    return settings.data_dir / "soaks"


class Soak:
    def __init__(self, settings: Settings, options: SoakOptions, run_id: str | None = None):
        self.settings, self.options = settings, options
        self.run_id = run_id or new_run_id()
        self.dir = soaks_dir(settings) / self.run_id
        self.events: list[dict[str, Any]] = []
        self.stack: SoakStack | None = None
        self.result: dict[str, Any] = {"run_id": self.run_id, "options": _jsonable(options), "state": "running",
                                       "error": "", "dir": str(self.dir)}

    def event(self, text: str) -> None:
        self.events.append({"t": time.time(), "text": text})
        print(f"[{datetime.now(UTC):%H:%M:%S}] {text}", flush=True)

    def run(self, stop: threading.Event | None = None) -> dict[str, Any]:
        from pipeline.loadtest.soak_finish import finish

        stop = stop or threading.Event()
        self.dir.mkdir(parents=True, exist_ok=True)
        o = self.options
        self.stack = stack = SoakStack(self.dir, rate=o.rate, trigger_s=o.trigger_s, nodes=o.nodes)
        self.result["started"] = time.time()
        parts: dict[str, Any] = {}
        try:
            stack.start(stop, self.event)
            parts = self._drive(stack, stop)
        except TormentaError as exc:
            self.result.update(state="failed", error=str(exc))
            self.event(f"failed: {exc}")
        except Exception as exc:  # noqa: BLE001 - the soak must still stop the product and report
            self.result.update(state="failed", error=f"{type(exc).__name__}: {exc}")
            log.exception("soak failed")
            self.event(f"failed: {self.result['error']}")
        finally:
            try:
                report = finish(self, parts)
            finally:
                stack.stop(self.event)  # even when a second Ctrl-C cuts the reconciliation short
        self.result["report"] = str(report)
        if not o.keep_data and self.result["state"] == "done" and not stop.is_set():
            # (a failed or cut-short soak keeps everything, to look into)
            removed = self.result["removed_mib"] = remove_bulk(self.dir / "data")
            if removed:
                self.event(f"deleted the run's broker logs, checkpoints and scratch ({sum(removed.values()):,.0f} MiB; "
                           "--keep-data keeps them); the Delta tables, the parts' logs and the report are kept")
        write_json(self.dir / "result.json", self.result | {"events": self.events})
        return self.result

    def _drive(self, stack: SoakStack, stop: threading.Event) -> dict[str, Any]:
        """Sampler, browser, chaos and outage for the duration; then pause, catch up, and hand over."""
        from pipeline.loadtest.soak_run import Driver

        driver = Driver(self, stack)
        try:
            driver.start()
            driver.loop(stop)
            driver.wind_down(stop)
        finally:
            driver.stop()
        return driver.handover()


def remove_bulk(data: Path) -> dict[str, float]:
    """Delete the `BULK` folders of a stopped run's data folder; MiB removed per folder that existed."""
    removed = {}
    for name in BULK:
        path = data / name
        if path.is_dir():
            removed[name] = round(folder_mb(path), 1)
            shutil.rmtree(path, ignore_errors=True)
    return removed


def _jsonable(o: SoakOptions) -> dict[str, Any]:
    return json.loads(json.dumps(o.__dict__, default=str))


