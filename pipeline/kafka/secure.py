"""The secured embedded broker: its users, their passwords, the ACL table and the client file.

``python -m pipeline broker start --secure`` (or ``TORMENTA_SECURE=1``) runs the embedded
node(s) with

* a SASL_SSL client listener (SCRAM-SHA-512) on the bootstrap port, also used between
  brokers as ``tormenta-admin``;
* an SSL controller listener with ``ssl.client.auth=required``: nodes prove themselves
  with the node certificate (principal ``User:CN=tormenta-node``); KRaft controller
  listeners do not take SCRAM;
* KRaft's ``StandardAuthorizer``: super users ``tormenta-admin`` and the nodes, everything
  else only what `ACL_TABLE` grants.

Everything lives in ``<data_dir>/secure/`` (one folder for a cluster too): the CA and the
node keystore (`pipeline.kafka.certs`), one password file per user and the brokers' JAAS
file (all 0600), and ``clients.json``, which `pipeline.kafka.security` reads to give each
role its own user. Passwords are drawn again whenever the storage is formatted anew (the
SCRAM users are created by the storage format) and are never printed: they reach the
format tool through a 0600 argument file, not the command line.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import BrokerError, SettingsError
from pipeline.kafka.certs import NODE_CN, TlsFiles, write_private
from pipeline.settings import Settings

PROTOCOL = "SASL_SSL"
MECHANISM = "SCRAM-SHA-512"
USERS = {"admin": "tormenta-admin", "producer": "tormenta-producer", "job": "tormenta-job", "app": "tormenta-app",
         "live": "tormenta-live"}
NODE_PRINCIPAL = f"User:CN={NODE_CN}"
SUPER_USERS = (f"User:{USERS['admin']}", NODE_PRINCIPAL)
MODE_FILE = "security.mode"   # in a node's folder: "secure" or "plaintext", written when its storage is formatted
SCRAM_ITERATIONS = 8192


@dataclass(frozen=True)
class Grant:
    """One row of the ACL table: `role` may do `operations` on a topic or group."""

    role: str
    resource: str           # "topic" or "group"
    name: str               # topic: the Settings field naming it; group: the group id (or prefix)
    operations: tuple[str, ...]
    pattern: str = "literal"  # or "prefixed"

    def resource_name(self, settings: Settings) -> str:
        return getattr(settings, self.name) if self.resource == "topic" else self.name


# Least privilege per role (tormenta-admin is a super user and needs no row). Docs and tests read this table.
ACL_TABLE: tuple[Grant, ...] = (
    # the storm emulator: writes transactions and its status, follows the control topic; it also
    # writes the control topic once as it starts (its --rate etc., and lifting a "stopped" left over)
    Grant("producer", "topic", "topic", ("WRITE", "DESCRIBE")),
    Grant("producer", "topic", "status_topic", ("WRITE", "DESCRIBE")),
    Grant("producer", "topic", "control_topic", ("READ", "WRITE", "DESCRIBE")),
    Grant("producer", "group", "tormenta-emulator-control", ("READ",)),
    # the Spark job: reads transactions (its source's groupIdPrefix is tormenta-job)
    Grant("job", "topic", "topic", ("READ", "DESCRIBE")),
    Grant("job", "group", "tormenta-job", ("READ",), "prefixed"),
    # the dashboard: reads the emulator's status, steers it through the control topic,
    # reads the transactions topic's offsets (health), never its records
    Grant("app", "topic", "status_topic", ("READ", "DESCRIBE")),
    Grant("app", "topic", "control_topic", ("READ", "WRITE", "DESCRIBE")),
    Grant("app", "topic", "topic", ("DESCRIBE",)),
    Grant("app", "group", "tormenta-emulator-control", ("READ",)),
    Grant("app", "group", "tormenta-offsets", ("READ",)),
    # ... and tails the live lane's topic (assigned partitions, no group commits)
    Grant("app", "topic", "live_topic", ("READ", "DESCRIBE")),
    # the live lane (Spark Real-time Mode): reads transactions (groupIdPrefix tormenta-live),
    # writes each high-value sale to the live topic, and reads it back for its latency metric
    Grant("live", "topic", "topic", ("READ", "DESCRIBE")),
    Grant("live", "group", "tormenta-live", ("READ",), "prefixed"),
    Grant("live", "topic", "live_topic", ("READ", "WRITE", "DESCRIBE")),
)


def acl_rows(settings: Settings) -> list[tuple[str, str, str, str, str]]:
    """(principal, resource type, resource name, pattern, operation) for every ACL the table grants."""
    return [(f"User:{USERS[g.role]}", g.resource, g.resource_name(settings), g.pattern, op)
            for g in ACL_TABLE for op in g.operations]


def acl_bindings(settings: Settings) -> list:
    from confluent_kafka.admin import AclBinding, AclOperation, AclPermissionType, ResourcePatternType, ResourceType

    return [AclBinding(ResourceType[rtype.upper()], name, ResourcePatternType[pattern.upper()], principal, "*",
                       AclOperation[op], AclPermissionType.ALLOW)
            for principal, rtype, name, pattern, op in acl_rows(settings)]


# ---- files ---------------------------------------------------------------------------------
def secure_dir(settings: Settings) -> Path:
    return settings.data_dir / "secure"


@dataclass(frozen=True)
class SecureFiles:
    dir: Path

    @property
    def tls(self) -> TlsFiles:
        return TlsFiles(self.dir)

    clients = property(lambda self: self.dir / "clients.json")
    jaas = property(lambda self: self.dir / "broker-jaas.conf")

    def password_file(self, role: str) -> Path:
        return self.dir / f"{role}.password"

    def password(self, role: str) -> str:
        return self.password_file(role).read_text().strip()

    def passwords(self) -> list[str]:
        return [self.password(r) for r in USERS if self.password_file(r).exists()]

    def has_passwords(self) -> bool:
        return all(self.password_file(r).exists() for r in USERS)

    # --- writers
    def ensure(self, *, new_passwords: bool) -> None:
        """CA, node keystore, passwords (drawn again when `new_passwords` or missing), JAAS and client file."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o700)
        self.tls.ensure()
        if new_passwords or not self.has_passwords():
            for role in USERS:
                write_private(self.password_file(role), (secrets.token_urlsafe(32) + "\n").encode())
        self.write_jaas()
        self.write_clients()

    def write_jaas(self) -> None:
        """The brokers' own login on the SASL_SSL listener (inter-broker traffic as tormenta-admin)."""
        write_private(self.jaas, (
            f"{PROTOCOL.lower()}.KafkaServer {{\n"
            f"  org.apache.kafka.common.security.scram.ScramLoginModule required\n"
            f'  username="{USERS["admin"]}"\n  password="{self.password("admin")}";\n}};\n').encode())

    def write_clients(self) -> None:
        doc = {"security_protocol": PROTOCOL, "sasl_mechanism": MECHANISM, "ca_file": str(self.tls.ca.resolve()),
               "users": {role: {"username": user, "password_file": str(self.password_file(role).resolve())}
                         for role, user in USERS.items()}}
        tmp = self.clients.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
        os.replace(tmp, self.clients)

    def scram_argfile(self, path: Path, main_and_args: list[str]) -> Path:
        """`main_and_args` plus the format tool's ``--add-scram`` per user, one per line, in a 0600 file.

        ``java -cp ... @file`` reads the main class and its arguments from it, so no password
        shows in the process list. (The launcher expands @files only before the main class.)"""
        lines = list(main_and_args)
        for role, user in USERS.items():
            lines += ["--add-scram", f"{MECHANISM}=[name={user},iterations={SCRAM_ITERATIONS},"
                                     f"password={self.password(role)}]"]
        quoted = ['"' + a.replace("\\", "\\\\").replace('"', '\\"') + '"' for a in lines]
        write_private(path, ("\n".join(quoted) + "\n").encode())
        return path

    def hide(self, text: str) -> str:
        """`text` with every password replaced by [hidden] (for error messages that quote tool output)."""
        for pw in self.passwords():
            text = text.replace(pw, "[hidden]")
        return text


def files(settings: Settings) -> SecureFiles:
    return SecureFiles(secure_dir(settings))


def server_properties(settings: Settings, host: str, port: int, controller_port: int) -> dict[str, str]:
    """The node properties that make it secured (merged over the plaintext ones)."""
    f = files(settings)
    return {
        "listeners": f"{PROTOCOL}://{host}:{port},CONTROLLER://{host}:{controller_port}",
        "advertised.listeners": f"{PROTOCOL}://{host}:{port}",
        "listener.security.protocol.map": f"{PROTOCOL}:{PROTOCOL},CONTROLLER:SSL",
        "inter.broker.listener.name": PROTOCOL,
        "sasl.enabled.mechanisms": MECHANISM,
        "sasl.mechanism.inter.broker.protocol": MECHANISM,
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(f.tls.keystore.resolve()),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(f.tls.ca.resolve()),
        "ssl.endpoint.identification.algorithm": "https",
        "listener.name.controller.ssl.client.auth": "required",
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": ";".join(SUPER_USERS),
        "allow.everyone.if.no.acl.found": "false",
    }


def jvm_options(settings: Settings) -> list[str]:
    return [f"-Djava.security.auth.login.config={files(settings).jaas.resolve()}"]


# ---- the storage remembers its mode ---------------------------------------------------------
def storage_mode(node_dir: Path) -> str | None:
    """'secure' or 'plaintext' for formatted storage (older storage without a mark: plaintext), None if new."""
    if not (node_dir / "logs" / "meta.properties").exists():
        return None
    try:
        return (node_dir / MODE_FILE).read_text().strip() or "plaintext"
    except OSError:
        return "plaintext"


def mark_mode(node_dir: Path, secure: bool) -> None:
    (node_dir / MODE_FILE).write_text("secure\n" if secure else "plaintext\n")


def prepare(settings: Settings, node_dirs: list[Path], secure: bool) -> None:
    """Before any node starts: refuse a mode the storage was not formatted for; write or clear the secure files.

    SettingsError (one line, exit 2) when existing storage was formatted in the other mode."""
    modes = {d: storage_mode(d) for d in node_dirs}
    want = "secure" if secure else "plaintext"
    other = [d for d, m in modes.items() if m is not None and m != want]
    if other:
        had = modes[other[0]]
        how = "with --secure (or TORMENTA_SECURE=1)" if had == "secure" else "without --secure (and TORMENTA_SECURE unset)"
        raise SettingsError(f"the broker storage in {other[0]} was formatted {had}, but this start is {want}; "
                            f"start it {how}, or run `make clean` to start over")
    f = files(settings)
    if not secure:
        f.clients.unlink(missing_ok=True)
        return
    fresh = all(m is None for m in modes.values())
    f.ensure(new_passwords=fresh)


def is_secure(node_dir: Path) -> bool:
    return storage_mode(node_dir) == "secure"


# ---- once the broker answers -------------------------------------------------------------------
def grant_acls(settings: Settings, bootstrap: str | None = None, timeout: float = 60.0) -> int:
    """Create every ACL of `ACL_TABLE` for `settings`' topics as tormenta-admin (idempotent); how many.

    A node that has just started may not reach its controller yet: timeouts and retriable
    errors are tried again until `timeout`; anything else is a BrokerError naming the ACL."""
    from confluent_kafka.admin import AdminClient

    from pipeline.kafka.security import client_config

    with AdminClient(client_config(settings, "admin", {"socket.timeout.ms": 5000}, bootstrap=bootstrap)) as client:
        return _create_acls(client, acl_bindings(settings), timeout)


def _create_acls(client, todo: list, timeout: float) -> int:
    import time

    from confluent_kafka import KafkaException

    total, deadline = len(todo), time.monotonic() + timeout
    while todo:
        left = []
        for binding, fut in client.create_acls(todo, request_timeout=min(15.0, timeout)).items():
            try:
                fut.result()
            except KafkaException as exc:
                err = exc.args[0] if exc.args else None
                transient = err is not None and (err.retriable() or err.code() < 0)   # negative: local, e.g. timed out
                if not transient or time.monotonic() >= deadline:
                    raise BrokerError(f"creating the ACL {binding} failed: {err.str() if err else exc}") from None
                left.append(binding)
        todo = left
        if todo:
            time.sleep(1.0)
    return total


def count_acls(settings: Settings, bootstrap: str | None = None, timeout: float = 5.0) -> int:
    from confluent_kafka.admin import (
        AclBindingFilter,
        AclOperation,
        AclPermissionType,
        AdminClient,
        ResourcePatternType,
        ResourceType,
    )

    from pipeline.kafka.security import client_config

    flt = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None, AclOperation.ANY,
                           AclPermissionType.ANY)
    with AdminClient(client_config(settings, "admin", {"socket.timeout.ms": 5000}, bootstrap=bootstrap)) as client:
        return len(client.describe_acls(flt, request_timeout=timeout).result())


def summary(settings: Settings, bootstrap: str | None = None) -> str:
    """One line for `broker status`: secured, how, which users, how many ACLs (never a password)."""
    try:
        acls = str(count_acls(settings, bootstrap))
    except Exception as exc:  # noqa: BLE001 - status reports, it never raises
        acls = f"unknown ({type(exc).__name__})"
    return (f"secured: {PROTOCOL} with {MECHANISM} (CA {files(settings).tls.ca}); users "
            f"{', '.join(USERS.values())}; ACLs: {acls}; client file {files(settings).clients}")


def acl_markdown() -> str:
    """The ACL table as Markdown, for docs/CLUSTER.md (a test keeps the two equal)."""
    topic_names = {"topic": "transactions (`TORMENTA_TOPIC`)", "status_topic": "emulator status (`TORMENTA_STATUS_TOPIC`)",
                   "control_topic": "emulator control (`TORMENTA_CONTROL_TOPIC`)",
                   "live_topic": "live lane (`TORMENTA_LIVE_TOPIC`)"}
    rows = ["| user | resource | name | operations |", "|---|---|---|---|",
            f"| `{USERS['admin']}` | everything | (super user, with the nodes' `{NODE_PRINCIPAL}`) | all |"]
    for g in ACL_TABLE:
        name = topic_names[g.name] if g.resource == "topic" else f"`{g.name}`" + (" (prefix)" if g.pattern == "prefixed"
                                                                                else "")
        rows.append(f"| `{USERS[g.role]}` | {g.resource} | {name} | {', '.join(g.operations)} |")
    return "\n".join(rows)
