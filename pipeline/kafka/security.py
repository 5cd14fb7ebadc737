"""Kafka client security: the one place that turns settings into a client's security config.

Every Kafka client of Tormenta (the emulator's producer, the admin client, the control and
status clients, the health checks, the load test, the Spark job's Kafka source) builds its
configuration here, for one of four roles:

    admin     topic and cluster administration, smoke test, load test (super user)
    producer  the storm emulator (writes transactions and its status, follows the control topic)
    job       the Spark job (reads transactions)
    app       the dashboard (reads status, writes the control topic, reads offsets)

Where the identity comes from, first match wins:

1. ``TORMENTA_KAFKA_SECURITY_PROTOCOL`` other than PLAINTEXT: the ``TORMENTA_KAFKA_*`` settings,
   the same identity for every role (a company's Kafka gives each process its own environment);
2. a client file ``<data_dir>/secure/clients.json`` written by ``broker start --secure``: each
   role its own least-privilege user of the embedded secured broker;
3. plaintext.

`client_config` gives librdkafka's dictionary, `java_options` the Java client's properties (the
Spark source takes them with a ``kafka.`` prefix). Passwords are read from their files when a
client is built and live only in those dictionaries; `describe` is the loggable summary.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from pipeline.errors import SettingsError, TormentaError
from pipeline.settings import PREFIX, Settings

ROLES = ("admin", "producer", "job", "app", "live")
CLIENT_FILE = "clients.json"
log = logging.getLogger(__name__)


class KafkaAccessError(TormentaError):
    """The broker refused this client: authentication, certificate trust or authorisation."""


@dataclass(frozen=True)
class KafkaAuth:
    """How one client authenticates: the protocol and, as the protocol needs, SASL and TLS material."""
    protocol: str = "PLAINTEXT"
    mechanism: str = ""
    username: str = ""
    password: SecretStr = SecretStr("")
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    source: str = "plaintext"

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    def describe(self) -> str:
        """One loggable line: protocol, mechanism, user, CA; never the password."""
        parts = [self.protocol]
        if self.sasl:
            parts.append(f"{self.mechanism} as {self.username}")
        if self.tls:
            parts.append(f"CA {self.ca_file}" + (", client certificate" if self.cert_file else ""))
        return " ".join(parts) + f" ({self.source})"


def client_file(settings: Settings) -> Path:
    return settings.data_dir / "secure" / CLIENT_FILE


def _read_secret(path: Path, what: str) -> SecretStr:
    try:
        return SecretStr(path.read_text().strip())
    except OSError as exc:
        raise SettingsError(f"{what}={str(path)!r} cannot be read ({exc.strerror or exc}); "
                            "allowed: a readable file holding the password") from None


def _from_settings(settings: Settings) -> KafkaAuth:
    password = settings.kafka_password
    if not password.get_secret_value() and settings.kafka_password_file is not None:
        password = _read_secret(settings.kafka_password_file, f"{PREFIX}KAFKA_PASSWORD_FILE")
    return KafkaAuth(settings.kafka_security_protocol, settings.kafka_sasl_mechanism, settings.kafka_username, password,
                     settings.kafka_ca_file, settings.kafka_cert_file, settings.kafka_key_file, source="settings")


def _from_client_file(path: Path, role: str) -> KafkaAuth:
    try:
        doc = json.loads(path.read_text())
        user = doc["users"][role]
        return KafkaAuth(doc["security_protocol"], doc.get("sasl_mechanism", "SCRAM-SHA-512"), user["username"],
                         _read_secret(Path(user["password_file"]), f"{path} users.{role}.password_file"),
                         Path(doc["ca_file"]), source=f"{path.name}, user for {role}")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SettingsError(f"the secured broker's client file {path} is unreadable or incomplete ({exc!r}); "
                            "allowed: the file `broker start --secure` writes (restart it to rewrite)") from None


def kafka_auth(settings: Settings, role: str) -> KafkaAuth:
    """The identity of `role` (one of ROLES) under `settings`."""
    if role not in ROLES:
        raise ValueError(f"unknown Kafka client role {role!r}; allowed: {', '.join(ROLES)}")
    if settings.kafka_security_protocol != "PLAINTEXT":
        return _from_settings(settings)
    path = client_file(settings)
    if path.exists():
        return _from_client_file(path, role)
    return KafkaAuth()


def security_config(auth: KafkaAuth) -> dict[str, Any]:
    """librdkafka's security properties for `auth` (empty for plaintext)."""
    if auth.protocol == "PLAINTEXT":
        return {}
    conf: dict[str, Any] = {"security.protocol": auth.protocol.lower()}
    if auth.sasl:
        conf.update({"sasl.mechanism": auth.mechanism, "sasl.username": auth.username,
                     "sasl.password": auth.password.get_secret_value()})
    if auth.tls:
        conf["ssl.ca.location"] = str(auth.ca_file)
        if auth.cert_file is not None:
            conf.update({"ssl.certificate.location": str(auth.cert_file), "ssl.key.location": str(auth.key_file)})
    return conf


# librdkafka's own log lines (one per retry) go to this logger, silent unless -v: what a user
# must know (a refusal, a failed delivery) reaches them through the error callbacks instead.
CLIENT_LOG = logging.getLogger("tormenta.kafka.client")


def client_config(settings: Settings, role: str, extra: dict[str, Any] | None = None, *,
                  bootstrap: str | None = None) -> dict[str, Any]:
    """The whole librdkafka configuration of a `role` client: servers, security, then `extra`."""
    conf: dict[str, Any] = {"bootstrap.servers": bootstrap or settings.bootstrap_servers, "logger": CLIENT_LOG}
    conf.update(security_config(kafka_auth(settings, role)))
    conf.update(extra or {})
    return conf


def _jaas_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


_LOGIN_MODULES = {"PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
                  "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
                  "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule"}


def java_options(settings: Settings, role: str, keystore_dir: Path | None = None) -> dict[str, str]:
    """The Java client's security properties of `role` (without the ``kafka.`` prefix Spark wants).

    Java reads the CA bundle as a PEM truststore. For mutual TLS it wants the key and the
    certificate chain in one PEM file: it is written (mode 0600) into `keystore_dir`.
    """
    auth = kafka_auth(settings, role)
    if auth.protocol == "PLAINTEXT":
        return {}
    opts = {"security.protocol": auth.protocol}
    if auth.sasl:
        opts.update({"sasl.mechanism": auth.mechanism, "sasl.jaas.config": (
            f"{_LOGIN_MODULES[auth.mechanism]} required username={_jaas_quote(auth.username)} "
            f"password={_jaas_quote(auth.password.get_secret_value())};")})
    if auth.tls:
        opts.update({"ssl.truststore.type": "PEM", "ssl.truststore.location": str(auth.ca_file)})
        if auth.cert_file is not None:
            folder = keystore_dir or settings.run_dir
            folder.mkdir(parents=True, exist_ok=True)
            keystore = folder / f"kafka-{role}-keystore.pem"
            keystore.touch(mode=0o600)
            keystore.chmod(0o600)
            keystore.write_text(auth.key_file.read_text().rstrip() + "\n" + auth.cert_file.read_text())
            opts.update({"ssl.keystore.type": "PEM", "ssl.keystore.location": str(keystore)})
    return opts


def java_client_properties(settings: Settings, role: str, keystore_dir: Path | None = None) -> dict[str, str]:
    """A Java client's whole connection: bootstrap servers plus `java_options`."""
    return {"bootstrap.servers": settings.bootstrap_servers, **java_options(settings, role, keystore_dir)}


def spark_source_options(settings: Settings, role: str = "job") -> dict[str, str]:
    """The Spark Kafka source's ``kafka.*`` options: servers and the role's security."""
    return {f"kafka.{key}": value for key, value in java_client_properties(settings, role).items()}


# ---- the broker said no: one line naming the cause ------------------------------------
_AUTH_FAILED = re.compile(r"authentication|SASL", re.I)
_CERT_FAILED = re.compile(r"certificate verify failed|unable to get local issuer|self[- ]signed|"
                          r"certificate (?:has expired|is not trusted)|handshake failed", re.I)


def explain(err: Any, auth: KafkaAuth, topic: str | None = None, group: str | None = None) -> str | None:
    """One line naming why the broker refused a client (None when `err` is no security refusal).

    `err` is a confluent_kafka KafkaError (or anything with ``name()`` and ``str()``).
    """
    from confluent_kafka import KafkaError

    code, text = err.code(), err.str()
    if code == KafkaError._AUTHENTICATION or (code == KafkaError._TRANSPORT and _AUTH_FAILED.search(text)
                                              and "SSL" not in text):
        return (f"Kafka authentication failed for user {auth.username!r} ({auth.mechanism}): "
                "wrong user name or password, or the user does not exist on the broker")
    if code == KafkaError._SSL or _CERT_FAILED.search(text):
        where = f"the CA bundle {auth.ca_file}" if auth.ca_file else "this client's CA bundle"
        return f"the broker's TLS certificate is not trusted by {where} (or the broker does not speak TLS): {text}"
    if code == KafkaError.TOPIC_AUTHORIZATION_FAILED:
        who = f"user {auth.username!r}" if auth.username else "this client"
        return f"{who} is not authorised for topic {topic or '(unknown)'}: ask for an ACL on it"
    if code == KafkaError.GROUP_AUTHORIZATION_FAILED:
        return f"user {auth.username!r} is not authorised for consumer group {group or '(unknown)'}: ask for a group ACL"
    if code == KafkaError.CLUSTER_AUTHORIZATION_FAILED:
        return f"user {auth.username!r} is not authorised for this cluster operation: ask for a cluster ACL"
    return None


class RefusalWatch:
    """An ``error_cb`` that remembers the first security refusal, so a waiting caller can stop.

    librdkafka retries authentication and TLS failures forever; `check()` turns the first one
    into a `KafkaAccessError` with one line instead of a hang or a retry loop.
    """

    def __init__(self, auth: KafkaAuth, topic: str | None = None, group: str | None = None):
        self.auth, self.topic, self.group = auth, topic, group
        self.reason: str | None = None       # the first refusal but a group's
        self.group_reason: str | None = None  # a group refusal: reported once the topic is known to be fine

    def __call__(self, err: Any) -> None:
        from confluent_kafka import KafkaError

        reason = explain(err, self.auth, self.topic, self.group)
        if reason and err.code() == KafkaError.GROUP_AUTHORIZATION_FAILED:
            self.group_reason = self.group_reason or reason
        elif reason and self.reason is None:
            self.reason = reason

    def check(self) -> None:
        if self.reason is not None:
            raise KafkaAccessError(self.reason)


def watched_config(settings: Settings, role: str, extra: dict[str, Any] | None = None, *, topic: str | None = None,
                   bootstrap: str | None = None) -> tuple[dict[str, Any], RefusalWatch]:
    """`client_config` with a `RefusalWatch` as its error callback."""
    watch = RefusalWatch(kafka_auth(settings, role), topic, (extra or {}).get("group.id"))
    return client_config(settings, role, {**(extra or {}), "error_cb": watch}, bootstrap=bootstrap), watch


def check_read_access(settings: Settings, role: str, topic: str, timeout: float = 15.0,
                      group: str = "tormenta-job-access-check") -> None:
    """Fetch from partition 0 of `topic` as `role` until the broker answers; `KafkaAccessError` when it
    refuses (authentication, certificate, topic or group ACL). Reads nothing and commits nothing."""
    import time

    from confluent_kafka import OFFSET_END, Consumer, KafkaError, TopicPartition

    # fetch.wait.max.ms: the fetch at the end of the partition answers at once instead of
    # after librdkafka's 500 ms long poll (half a second of every job start).
    conf, watch = watched_config(settings, role, {"group.id": group, "enable.auto.commit": False,
                                                  "enable.partition.eof": True, "fetch.wait.max.ms": 10}, topic=topic)
    consumer = Consumer(conf)
    try:
        consumer.assign([TopicPartition(topic, 0, OFFSET_END)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            watch.check()
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            err = msg.error()
            if err is None or err.code() == KafkaError._PARTITION_EOF:
                if watch.group_reason:  # the topic may be read, its group may not
                    raise KafkaAccessError(watch.group_reason)
                return
            if err.code() == KafkaError.GROUP_AUTHORIZATION_FAILED:
                watch(err)  # the topic's verdict first: it names the bigger gap
                continue
            reason = explain(err, watch.auth, topic, watch.group)
            if reason:
                raise KafkaAccessError(reason)
        watch.check()
        if watch.group_reason:
            raise KafkaAccessError(watch.group_reason)
        raise KafkaAccessError(f"Kafka did not answer a fetch from {topic} as {role} within {timeout:.0f}s "
                               f"({watch.auth.describe()})")
    finally:
        consumer.close()


def pinned(settings: Settings, role: str) -> Settings:
    """`settings` with `role`'s identity spelled out in the ``kafka_*`` settings.

    A secured broker's client file is found under the data folder; a load test moves the data
    folder and starts children of its own, so it pins the identity first. Nothing to pin for
    plaintext or explicit settings. The password stays in its file.
    """
    auth = kafka_auth(settings, role)
    if not auth.source.startswith(CLIENT_FILE):
        return settings
    doc = json.loads(client_file(settings).read_text())
    return settings.replace(kafka_security_protocol=auth.protocol, kafka_sasl_mechanism=auth.mechanism,
                            kafka_username=auth.username, kafka_password_file=doc["users"][role]["password_file"],
                            kafka_ca_file=auth.ca_file)


def security_env(settings: Settings) -> dict[str, str]:
    """The ``TORMENTA_KAFKA_*`` variables that give a child process the same Kafka identity.

    An inline password is passed as is (the child's environment is private to it); a
    password file as its path.
    """
    env = {f"{PREFIX}KAFKA_SECURITY_PROTOCOL": settings.kafka_security_protocol,
           f"{PREFIX}KAFKA_SASL_MECHANISM": settings.kafka_sasl_mechanism,
           f"{PREFIX}KAFKA_USERNAME": settings.kafka_username,
           f"{PREFIX}KAFKA_PASSWORD": settings.kafka_password.get_secret_value()}
    for name in ("password_file", "ca_file", "cert_file", "key_file"):
        value = getattr(settings, f"kafka_{name}")
        env[f"{PREFIX}KAFKA_{name.upper()}"] = "" if value is None else str(value)
    return env
