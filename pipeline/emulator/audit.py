"""The audit trail of the emulator's desired state: who changed it, when, and what.

Every record `EmulatorControl.update` writes to the control topic is signed by the caller
(`changed_by`: the signed-in user's e-mail in the dashboard; `local_user()`, the OS account,
for the CLI, the emulator's own start and a load test) and carries the last `AUDIT_KEEP`
changes, newest first, from record to record, so compaction cannot lose them. The Storm
control page shows them as rows (`audit_rows`).
"""

from __future__ import annotations

import getpass
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

AUDIT_KEEP = 25  # changes carried in the control record (the newest first)
AUDITED = ("state", "rate", "ingest_interval", "profile", "faults")


def local_user() -> str:
    """The signature of a change made here without a signed-in user: ``local:<OS account>`` (or ``local``)."""
    try:
        who = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        who = ""
    return f"local:{who}" if who else "local"


def signed(before: Mapping[str, Any], record: dict[str, Any], previous: Mapping[str, Any],
           changed_by: str) -> dict[str, Any]:
    """`record` (the new desired state) with who wrote it, when, and the trail carried on from `previous`."""
    entry = audit_entry(before, record, changed_by, record.get("updated_at"))
    earlier = previous.get("audit") if isinstance(previous.get("audit"), list) else []
    return {**record, "changed_by": entry["changed_by"], "changed_at": entry["changed_at"],
            "audit": [entry, *[e for e in earlier if isinstance(e, dict)]][:AUDIT_KEEP]}


def audit_entry(before: Mapping[str, Any], after: Mapping[str, Any], changed_by: str,
                changed_at: str | None = None) -> dict[str, Any]:
    """One audit record: who, when (UTC ISO), the new version and what changed (`{key: [old, new]}`)."""
    change = {k: [before.get(k), after.get(k)] for k in AUDITED if before.get(k) != after.get(k)}
    return {"version": after.get("version"), "changed_by": changed_by or "unknown",
            "changed_at": changed_at or datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "change": change}


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.0f}" if value >= 100 else f"{value:g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_short(v)}" for k, v in value.items())
    return str(value)


def describe_change(change: Mapping[str, Any]) -> str:
    """`{"rate": [2000, 25500]}` -> "rate 2,000 → 25,500"; faults and profiles name only what moved."""
    parts = []
    for key, pair in change.items():
        old, new = (pair + [None, None])[:2] if isinstance(pair, list) else (None, pair)
        if isinstance(old, dict) and isinstance(new, dict):
            moved = {k: v for k, v in new.items() if old.get(k) != v}
            parts.append(f"{key}: " + ", ".join(f"{k} {_short(old.get(k))} → {_short(v)}" for k, v in moved.items()))
        else:
            parts.append(f"{key} {_short(old)} → {_short(new)}")
    return "; ".join(parts) or "no effective change"


def audit_rows(trail: Iterable[Mapping[str, Any]]) -> list[dict[str, str]]:
    """The audit trail as table rows, newest first: when (UTC), who, what changed, version."""
    return [{"when (UTC)": str(e.get("changed_at", "")).replace("T", " ").rstrip("Z")[:19],
             "who": str(e.get("changed_by") or "unknown"),
             "what changed": describe_change(e.get("change") or {}),
             "version": str(e.get("version", ""))} for e in trail]

