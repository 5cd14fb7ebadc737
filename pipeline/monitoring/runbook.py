"""The runbook sections of docs/RUNBOOK.md, one per alert, for the dashboard's Alerts panel.

    runbook_section("TormentaJobDown")     # the section's text (without its heading), or None
"""

from __future__ import annotations

from pathlib import Path

from pipeline.settings import PROJECT_ROOT

RUNBOOK = PROJECT_ROOT / "docs" / "RUNBOOK.md"


def sections(path: Path = RUNBOOK) -> dict[str, str]:
    """Level-2 heading -> the text under it, up to the next level-2 heading."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return {}
    for line in lines:
        if line.startswith("## "):
            current = found.setdefault(line[3:].strip(), [])
        elif current is not None:
            current.append(line)
    return {name: "\n".join(body).strip() for name, body in found.items()}


def runbook_section(alert: str, path: Path = RUNBOOK) -> str | None:
    return sections(path).get(alert)
