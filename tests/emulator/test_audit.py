"""The audit trail of the emulator's desired state (pipeline/emulator/audit.py): who, when, what changed."""

from __future__ import annotations

import json

from pipeline.emulator import audit
from pipeline.settings import Settings


def test_local_user_is_the_os_account(monkeypatch):
    monkeypatch.setattr(audit.getpass, "getuser", lambda: "ana")
    assert audit.local_user() == "local:ana"

    def no_account():
        raise KeyError("uid 1234")

    monkeypatch.setattr(audit.getpass, "getuser", no_account)
    assert audit.local_user() == "local"


def test_audit_entry_and_rows_say_who_when_and_what():
    before = {"state": "running", "rate": 2000.0, "faults": {"duplicates": 0.0, "malformed": 0.0}, "version": 3}
    after = {"state": "running", "rate": 25_500.0, "faults": {"duplicates": 0.0, "malformed": 0.02}, "version": 4}
    entry = audit.audit_entry(before, after, "olga@example.com", "2026-11-24T19:12:03.123Z")
    assert entry == {"version": 4, "changed_by": "olga@example.com", "changed_at": "2026-11-24T19:12:03.123Z",
                     "change": {"rate": [2000.0, 25_500.0], "faults": [before["faults"], after["faults"]]}}
    rows = audit.audit_rows([entry, audit.audit_entry(after, after, "local:ana", "2026-11-24T19:13:00Z")])
    assert rows[0] == {"when (UTC)": "2026-11-24 19:12:03", "who": "olga@example.com",
                       "what changed": "rate 2,000 → 25,500; faults: malformed 0 → 0.02", "version": "4"}
    assert rows[1]["what changed"] == "no effective change" and rows[1]["who"] == "local:ana"


def test_control_records_carry_who_when_and_the_audit_trail(monkeypatch, tmp_path):
    """EmulatorControl.update signs each record and carries the last changes; the emulator ignores the extras."""
    from pipeline.emulator.control import DesiredState, EmulatorControl

    settings = Settings.from_env({"TORMENTA_DATA_DIR": str(tmp_path)})
    ctl = EmulatorControl(settings)
    topic: list[dict] = []

    def latest():
        raw = topic[-1] if topic else {}
        return (DesiredState.from_wire(settings, raw) if raw else DesiredState.defaults(settings)), raw

    monkeypatch.setattr(ctl, "_latest", latest)
    monkeypatch.setattr(ctl, "_write", lambda record: topic.append(json.loads(json.dumps(record))))
    ctl.set_desired(changed_by="olga@example.com", rate=25_500)
    monkeypatch.setattr(audit.getpass, "getuser", lambda: "ana")
    ctl.set_desired(faults={"malformed": 0.01})  # no user given: the OS account
    for i in range(audit.AUDIT_KEEP + 5):
        ctl.set_desired(changed_by="olga@example.com", rate=1000 + i)
    first, second = topic[0], topic[1]
    assert first["changed_by"] == "olga@example.com" and first["changed_at"].endswith("Z")
    assert first["audit"][0]["change"] == {"rate": [float(settings.emulator_rate), 25_500.0]}
    assert second["changed_by"] == "local:ana" and second["audit"][1] == first["audit"][0]
    last = topic[-1]
    assert len(last["audit"]) == audit.AUDIT_KEEP and [e["version"] for e in last["audit"][:2]] == [32, 31]
    assert ctl.audit_trail(limit=3) == last["audit"][:3]
    # the emulator's reading of a signed record: the audit keys are ignored, the state is intact
    state = DesiredState.from_wire(settings, last)
    assert state.rate == 1000 + audit.AUDIT_KEEP + 4 and state.version == 32
