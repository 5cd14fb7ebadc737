"""Who may use the dashboard, and where it may listen; nothing here starts work.

- `login`: the secrets files, ``[auth]`` and ``[tormenta.roles]``, users and their roles, the
  guard every operator action calls first (`require_operator`), secrets shown as set/unset,
- `loopback`: the rule that an app without a login listens on loopback only.

Depends on nothing but `pipeline.errors`; the operator actions (check the role, then change
the storm or start a load test) are the page layer's (`pages/actions.py`), the audit trail
of storm changes is the emulator control's (`pipeline.emulator.audit`).

    python -m pipeline run          # refuses (exit 2) on an incomplete [auth] or a public address without login
"""
