"""The secured broker's pieces without a JVM: ACL table, files, modes, the storage's remembered mode."""

from __future__ import annotations

import json
import stat

import pytest

from pipeline.errors import SettingsError
from pipeline.kafka import secure
from pipeline.settings import Settings


def _settings(tmp_path, **env) -> Settings:
    base = {"TORMENTA_DATA_DIR": str(tmp_path / "data")}
    base.update({f"TORMENTA_{k.upper()}": v for k, v in env.items()})
    return Settings.from_env(base)


def _formatted(node_dir, mode: str | None) -> None:
    (node_dir / "logs").mkdir(parents=True)
    (node_dir / "logs" / "meta.properties").write_text("version=1\n")
    if mode:
        (node_dir / secure.MODE_FILE).write_text(mode + "\n")


def test_acl_table_is_least_privilege_per_role(tmp_path):
    s = _settings(tmp_path, topic="tx", status_topic="st", control_topic="ctl", live_topic="lv")
    rows = {(p.removeprefix("User:"), t, n, pat, op) for p, t, n, pat, op in secure.acl_rows(s)}
    assert rows == {
        ("tormenta-producer", "topic", "tx", "literal", "WRITE"), ("tormenta-producer", "topic", "tx", "literal", "DESCRIBE"),
        ("tormenta-producer", "topic", "st", "literal", "WRITE"), ("tormenta-producer", "topic", "st", "literal", "DESCRIBE"),
        ("tormenta-producer", "topic", "ctl", "literal", "READ"), ("tormenta-producer", "topic", "ctl", "literal", "DESCRIBE"),
        ("tormenta-producer", "topic", "ctl", "literal", "WRITE"),   # the emulator's own start request
        ("tormenta-producer", "group", "tormenta-emulator-control", "literal", "READ"),
        ("tormenta-job", "topic", "tx", "literal", "READ"), ("tormenta-job", "topic", "tx", "literal", "DESCRIBE"),
        ("tormenta-job", "group", "tormenta-job", "prefixed", "READ"),
        ("tormenta-app", "topic", "st", "literal", "READ"), ("tormenta-app", "topic", "st", "literal", "DESCRIBE"),
        ("tormenta-app", "topic", "ctl", "literal", "READ"), ("tormenta-app", "topic", "ctl", "literal", "WRITE"),
        ("tormenta-app", "topic", "ctl", "literal", "DESCRIBE"), ("tormenta-app", "topic", "tx", "literal", "DESCRIBE"),
        ("tormenta-app", "group", "tormenta-emulator-control", "literal", "READ"),
        ("tormenta-app", "group", "tormenta-offsets", "literal", "READ"),
        ("tormenta-app", "topic", "lv", "literal", "READ"), ("tormenta-app", "topic", "lv", "literal", "DESCRIBE"),
        # the live lane: reads transactions, writes the live topic (and reads it back: its latency metric)
        ("tormenta-live", "topic", "tx", "literal", "READ"), ("tormenta-live", "topic", "tx", "literal", "DESCRIBE"),
        ("tormenta-live", "group", "tormenta-live", "prefixed", "READ"),
        ("tormenta-live", "topic", "lv", "literal", "READ"),
        ("tormenta-live", "topic", "lv", "literal", "WRITE"), ("tormenta-live", "topic", "lv", "literal", "DESCRIBE"),
    }
    assert not any(r[0] == "tormenta-admin" for r in rows)   # a super user, no ACL rows
    assert len(secure.acl_bindings(s)) == len(rows)


def test_secure_start_writes_the_client_file_and_private_files(tmp_path):
    s = _settings(tmp_path)
    node = s.broker_dir
    secure.prepare(s, [node], True)
    f = secure.files(s)
    doc = json.loads(f.clients.read_text())
    assert doc["security_protocol"] == "SASL_SSL" and doc["sasl_mechanism"] == "SCRAM-SHA-512"
    assert doc["ca_file"] == str(f.tls.ca.resolve()) and doc["ca_file"].startswith("/")
    assert set(doc["users"]) == {"admin", "producer", "job", "app", "live"}
    for role, user in doc["users"].items():
        assert user["username"] == secure.USERS[role]
        pw = f.password_file(role)
        assert user["password_file"] == str(pw.resolve())
        assert stat.S_IMODE(pw.stat().st_mode) == 0o600 and len(pw.read_text().strip()) >= 40
        assert pw.read_text().strip() not in f.clients.read_text()
    assert stat.S_IMODE(f.dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(f.jaas.stat().st_mode) == 0o600
    assert 'username="tormenta-admin"' in f.jaas.read_text()


def test_passwords_are_drawn_again_only_for_fresh_storage(tmp_path):
    s = _settings(tmp_path)
    node = s.broker_dir
    secure.prepare(s, [node], True)
    first = secure.files(s).password("producer")
    secure.prepare(s, [node], True)             # still unformatted: a new format gets new users
    second = secure.files(s).password("producer")
    assert second != first
    _formatted(node, "secure")
    secure.prepare(s, [node], True)             # formatted: the users live in the storage, keep them
    assert secure.files(s).password("producer") == second


def test_plaintext_start_removes_a_stale_client_file(tmp_path):
    s = _settings(tmp_path)
    secure.prepare(s, [s.broker_dir], True)
    assert secure.files(s).clients.exists()
    secure.prepare(s, [s.broker_dir], False)
    assert not secure.files(s).clients.exists()


@pytest.mark.parametrize("formatted, secure_start, hint", [
    ("secure", False, "start it with --secure"),
    ("plaintext", True, "start it without --secure"),
    (None, True, "start it without --secure"),        # storage from before this feature: plaintext
])
def test_other_mode_on_existing_storage_is_refused_in_one_line(tmp_path, formatted, secure_start, hint):
    s = _settings(tmp_path)
    _formatted(s.broker_dir, formatted)
    with pytest.raises(SettingsError) as err:
        secure.prepare(s, [s.broker_dir], secure_start)
    msg = str(err.value)
    assert "\n" not in msg and hint in msg and "make clean" in msg and str(s.broker_dir) in msg


def test_storage_mode(tmp_path):
    assert secure.storage_mode(tmp_path / "new") is None
    _formatted(tmp_path / "a", "secure")
    assert secure.is_secure(tmp_path / "a")
    secure.mark_mode(tmp_path / "a", False)
    assert secure.storage_mode(tmp_path / "a") == "plaintext"


def test_server_properties_bind_loopback_and_lock_down(tmp_path):
    s = _settings(tmp_path)
    props = secure.server_properties(s, "127.0.0.1", 9092, 9093)
    assert props["listeners"] == "SASL_SSL://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"
    assert props["listener.security.protocol.map"] == "SASL_SSL:SASL_SSL,CONTROLLER:SSL"
    assert props["listener.name.controller.ssl.client.auth"] == "required"
    assert props["authorizer.class.name"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert props["super.users"] == "User:tormenta-admin;User:CN=tormenta-node"
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["ssl.keystore.type"] == props["ssl.truststore.type"] == "PEM"


def test_scram_argfile_is_private_and_hide_masks_passwords(tmp_path):
    s = _settings(tmp_path)
    secure.prepare(s, [s.broker_dir], True)
    f = secure.files(s)
    path = f.scram_argfile(tmp_path / "x.args", ["kafka.tools.StorageTool", "format"])
    text = path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert text.splitlines()[0] == '"kafka.tools.StorageTool"'
    assert text.count('"--add-scram"') == len(secure.USERS)
    pw = f.password("app")
    assert f'"SCRAM-SHA-512=[name=tormenta-app,iterations={secure.SCRAM_ITERATIONS},password={pw}]"' in text
    assert f.hide(f"bad {pw} here") == "bad [hidden] here"


def test_docs_show_the_acl_table_the_broker_creates():
    from pipeline.settings import PROJECT_ROOT

    assert secure.acl_markdown() in (PROJECT_ROOT / "docs" / "CLUSTER.md").read_text()
