"""The one place the soak reads the supervisor's ``<data_dir>/run/parts.json`` (`python -m pipeline run`).

`read_parts(run_dir)` -> {part name: `PartState`}, empty when the file is missing or being
replaced. Only this function knows the file's layout: a change of format is one edit here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

PARTS_FILE = "parts.json"
RUNNING = "running"


@dataclass(frozen=True)
class PartState:
    name: str
    state: str                  # running / restarting / crash-loop / stopped
    pid: int | None
    restarts: int
    last_exit_code: int | None
    started_at: float | None    # epoch seconds of the current run
    kind: str = "child"         # child or broker

    @property
    def running(self) -> bool:
        return self.state == RUNNING and self.pid is not None


def read_parts(run_dir: Path) -> dict[str, PartState]:
    """Each part's state as the supervisor last wrote it; {} when there is no readable file."""
    try:
        data = json.loads((run_dir / PARTS_FILE).read_text())
        entries = data["parts"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    out: dict[str, PartState] = {}
    for p in entries if isinstance(entries, list) else []:
        try:
            out[str(p["name"])] = PartState(
                name=str(p["name"]), state=str(p.get("state", "")), pid=_int(p.get("pid")),
                restarts=int(p.get("restarts") or 0), last_exit_code=_int(p.get("last_exit_code")),
                started_at=float(p["started_at"]) if p.get("started_at") is not None else None,
                kind=str(p.get("kind", "child")))
        except (KeyError, TypeError, ValueError):
            continue
    return out


def _int(v) -> int | None:
    return None if v is None else int(v)
