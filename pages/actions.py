"""The operator actions of the dashboard: check the role, then do it. No Streamlit here.

Every action a page offers an operator goes through one of these, so the role is checked
on the action itself, not only by hiding a widget (`pipeline.auth.login.require_operator`):

- `change_storm`: storm control and fault injection, written to the emulator's desired
  state and signed with the user (`pipeline.emulator.control`),
- `start_load_test` / `stop_load_test`: a background load test (`pipeline.loadtest.runs`).
"""

from __future__ import annotations

from typing import Any

from pipeline.auth.login import User, require_operator
from pipeline.loadtest import runs


def change_storm(user: User | None, control: Any, **changes: Any) -> dict[str, Any]:
    """Storm control and fault injection: write `changes` to the emulator's desired state, signed by `user`.

    `control` is an `EmulatorControl` (or anything with its `set_desired`)."""
    who = require_operator(user, "Fault injection" if "faults" in changes else "Changing the storm")
    return control.set_desired(changed_by=who.label, **changes)


def start_load_test(user: User | None, settings: Any, options: Any) -> tuple[str, int]:
    """Start a load test in the background (`runs.launch`), operators only; (run id, pid)."""
    require_operator(user, "Starting a load test")
    options.build_plan()  # validate before anything starts
    return runs.launch(settings, options)


def stop_load_test(user: User | None, settings: Any, run_id: str) -> bool:
    """Ask a running load test to stop (`runs.request_stop`), operators only; True if one was running."""
    require_operator(user, "Stopping a load test")
    return runs.request_stop(settings, run_id)
