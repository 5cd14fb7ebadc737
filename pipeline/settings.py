"""The one settings object of Tormenta.

Every environment variable the product reads is declared once below (name, type, default,
description) on pydantic-settings, with the prefix ``TORMENTA_``. Values are validated: a bad
one raises `SettingsError` with one line per problem naming the variable, the value and what is
allowed. The README table lists each variable with its default (tests/test_docs.py compares it
with `SPECS`). Every default runs on a laptop with the embedded local broker.

Usage::

    settings = Settings.from_env()          # os.environ
    settings = Settings.from_env({...})     # tests: only this mapping is read
    settings = settings.replace(topic="t")  # a validated, frozen copy
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, NamedTuple

from pydantic import BeforeValidator, Field, SecretStr, ValidationError, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from pipeline.contract.fields import DEFAULT_THRESHOLD
from pipeline.contract.wire import AVRO, WIRE_FORMATS
from pipeline.errors import SettingsError

PREFIX = "TORMENTA_"
PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
PROJECT_ROOT = Path(__file__).resolve().parent.parent

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|sec|secs|seconds?|m|min|mins|minutes?|h|hours?|d|days?)?\s*$", re.I)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}  # by first letter; 'ms' apart
_DURATION_HELP = "a positive number with an optional unit ms, s, m, h or d (e.g. 60, 60s, 1m, 1 minute, 500ms)"


def _seconds(value: Any) -> float:
    """Seconds from a number, or from a text such as '60', '1m', '1 minute', '500ms' (ValueError if not)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = _DURATION_RE.match(str(value))
        if not match:
            raise ValueError(f"is not a duration; allowed: {_DURATION_HELP}")
        unit = (match.group(2) or "s").lower()
        seconds = float(match.group(1)) * (0.001 if unit == "ms" else _UNIT_SECONDS[unit[0]])
    if not seconds > 0:  # also refuses NaN
        raise ValueError("must be greater than zero")
    return seconds


def parse_duration(text: str, *, name: str = "duration") -> float:
    """Parse '60', '60s', '1m', '1 minute', '500ms', '1h', '1d' into seconds (> 0)."""
    try:
        return _seconds(text)
    except ValueError as exc:
        raise SettingsError(f"{name}={text!r} {exc}") from None


def format_duration(seconds: float) -> str:
    """Human text for a duration in seconds: 60 -> '1 minute', 86400 -> '1 day'."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            n = int(seconds // size)
            return f"{n} {unit}" + ("s" if n != 1 else "")
    if seconds < 1:
        return f"{seconds * 1000:g} ms"
    return "1 second" if seconds == 1 else f"{seconds:g} seconds"


def spark_interval(seconds: float) -> str:
    """A duration as Spark's interval text ('60 seconds', '500 milliseconds')."""
    if seconds < 1 or seconds != int(seconds):
        return f"{int(round(seconds * 1000))} milliseconds"
    return f"{int(seconds)} seconds"


# ---- kinds of value: each check takes text (environment, default) or a typed value (replace)
# and returns the typed value, or raises ValueError("<what is wrong>; allowed: <what is>").
def _within(value: Any, lo: Any, hi: Any, allowed: str) -> Any:
    if not lo <= value <= hi:
        raise ValueError(f"is out of range; allowed: {allowed}")
    return value


def _number(cast: type[int] | type[float], lo: int, hi: int) -> Callable[[Any], Any]:
    noun = "a whole number" if cast is int else "a number"

    def check(value: Any) -> Any:
        try:
            number = cast(str(value).strip())
        except ValueError:
            raise ValueError(f"is not {noun}; allowed: {lo}..{hi}") from None
        return _within(number, lo, hi, f"{lo}..{hi}")

    return check


def _duration(lo: float, hi: float) -> BeforeValidator:
    shown = f"{format_duration(lo)} .. {format_duration(hi)}"
    return BeforeValidator(lambda value: _within(_seconds(value), lo, hi, shown))


def _text(pattern: str, problem: str, *, lower: bool = False, upper: bool = False) -> BeforeValidator:
    """A text matching `pattern` in full (after trimming, lowered if `lower`, raised if `upper`)."""
    def check(value: Any) -> str:
        text = str(value).strip()
        text = text.lower() if lower else text.upper() if upper else text
        if not re.fullmatch(pattern, text):
            raise ValueError(problem)
        return text

    return BeforeValidator(check)


def _amount(value: Any) -> Decimal:
    allowed = "allowed: a finite amount >= 0 such as 1500"
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"is not a number; {allowed}") from None
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"is out of range; {allowed}")
    return amount


def _bootstrap(value: Any) -> str:
    text = str(value).strip()
    for part in text.split(","):
        host, sep, port = part.strip().rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("is not a host:port list; allowed: e.g. 127.0.0.1:9092 or h1:9092,h2:9092")
    return text


def _flag(value: Any) -> bool:
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        return text in ("1", "true", "yes", "on")
    raise ValueError("is not a boolean; allowed: true/false (or 1/0, yes/no)")


def _path(value: Any) -> Path:
    if not str(value).strip():
        raise ValueError("is empty; allowed: a file or folder path")
    return Path(str(value).strip()).expanduser().resolve()


def _cores(value: Any) -> int:
    """'auto' = every core of this machine; else a whole number 1..256."""
    return (os.cpu_count() or 2) if str(value).strip().lower() == "auto" else _number(int, 1, 256)(value)


_MASTER_HELP = "local, local[N], spark://host:port, yarn or k8s://https://host:port"
_MASTER_RE = re.compile(r"local(\[(\d+|\*)\])?|spark://[\w.-]+:\d+(,[\w.-]+:\d+)*|yarn|k8s://https?://[\w.-]+(:\d+)?/?")


def _master(value: Any) -> str:
    """Where Spark runs; any other scheme (mesos://, a bare host, ...) is refused."""
    text = str(value).strip()
    if not _MASTER_RE.fullmatch(text):
        raise ValueError(f"is not a Spark master; allowed: {_MASTER_HELP}")
    return text


def _storage(value: Any) -> str:
    """'local' (under the data folder) or s3a://bucket[/prefix], kept without a trailing slash."""
    text = str(value).strip().rstrip("/")
    if text != "local" and not re.fullmatch(r"s3a://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[\w.=+-]+)*", text):
        raise ValueError("is not a storage location; allowed: local, or s3a://bucket/prefix (S3 bucket naming)")
    return text


def _endpoint(value: Any) -> str:
    text = str(value).strip().rstrip("/")
    if text and not re.fullmatch(r"https?://[\w.-]+(:\d{1,5})?", text):
        raise ValueError("is not an endpoint URL; allowed: empty (AWS) or http(s)://host[:port]")
    return text


def _broker_nodes(value: Any) -> int:
    """1 (one combined node) or a cluster of 3..9 (2 nodes cannot keep a controller majority after a loss)."""
    text = str(value).strip()
    if not text.isdigit() or not (int(text) == 1 or 3 <= int(text) <= 9):
        raise ValueError("is not a node count; allowed: 1, or 3..9 (a KRaft quorum needs a majority of 3+ voters)")
    return int(text)


def _replication(value: Any) -> int:
    """'auto' (0: 2 on a cluster of 2+ brokers, else 1) or a replication factor 1..9."""
    text = str(value).strip().lower()
    if text == "auto" or (isinstance(value, int) and value == 0):  # 0 = auto once validated (replace)
        return 0
    if not text.isdigit() or not 1 <= int(text) <= 9:
        raise ValueError("is not a replication factor; allowed: auto or 1..9")
    return int(text)


def _metrics_port(value: Any) -> int:
    """0 (no metrics) or a base port with room for every part above it (base .. base+21)."""
    text = str(value).strip()
    if not text.isdigit() or not (int(text) == 0 or 1024 <= int(text) <= 65500):
        raise ValueError("is not a metrics base port; allowed: 0 (off) or 1024..65500")
    return int(text)


def _webhook(value: Any) -> str:
    text = str(value).strip()
    if text and not re.fullmatch(r"https?://[^\s]+", text):
        raise ValueError("is not a webhook URL; allowed: empty (no notifications) or http(s)://host[:port]/path")
    return text


def _optional_path(value: Any) -> Path | None:
    return _path(value) if str(value or "").strip() else None


def _setting(default: str, description: str) -> Any:
    """One declaration: the default as the README shows it (validated like any value)."""
    return Field(default, description=description)


def _whole(lo: int, hi: int) -> BeforeValidator:
    return BeforeValidator(_number(int, lo, hi))


Port = Annotated[int, _whole(1, 65535)]
Topic = Annotated[str, _text(r"[A-Za-z0-9._-]{1,249}",
                             "is not a valid Kafka topic name; allowed: 1-249 of letters, digits, '.', '_', '-'")]
Memory = Annotated[str, _text(r"\d+[mg]", "is not a JVM memory size; allowed: e.g. 512m, 1g, 2g", lower=True)]
Trigger = Annotated[float, _duration(0.1, 86400)]
Window = Annotated[float, _duration(1, 86400)]
FsPath = Annotated[Path, BeforeValidator(_path)]
_ENVIRON: ContextVar[Mapping[str, str] | None] = ContextVar("tormenta_environ", default=None)


class _MappingSource(PydanticBaseSettingsSource):
    """The settings in a given mapping of environment variables (`Settings.from_env(environ)`),
    read as the environment source reads os.environ here: TORMENTA_<NAME> in any case, an
    empty value counts as unset (every setting is a plain value: no JSON to decode)."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]):
        super().__init__(settings_cls)
        self.environ = {key.lower(): value for key, value in environ.items()}

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self.environ.get(f"{PREFIX}{field_name}".lower()), field_name, False

    def __call__(self) -> dict[str, Any]:
        values = {}
        for name, field in self.settings_cls.model_fields.items():
            value, key, _ = self.get_field_value(field, name)
            if value is not None and value != "":
                values[key] = value
        return values


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=PREFIX, env_ignore_empty=True, frozen=True, extra="forbid",
                                      validate_default=True)

    bootstrap_servers: Annotated[str, BeforeValidator(_bootstrap)] = _setting(
        "127.0.0.1:9092", "Kafka bootstrap servers (the embedded broker listens on the first one)")
    controller_port: Port = _setting("9093", "KRaft controller port of the embedded broker (loopback)")
    topic: Topic = _setting("transactions", "Transactions topic")
    partitions: Annotated[int, _whole(1, 1000)] = _setting("3", "Partitions of the transactions topic")
    retention: Annotated[float, _duration(60, 365 * 86400)] = _setting(
        "1d", "Record lifetime in the topic (retention.ms)")
    data_dir: FsPath = _setting("./data", "Where broker logs, Delta tables, checkpoints and run files live")
    jars_dir: FsPath = _setting(str(PROJECT_ROOT / ".cache/jars"), "Local cache of the Maven jars (`make jars` fills it)")
    jvm_archive: Annotated[bool, BeforeValidator(_flag)] = _setting(
        "true", "Start the job's local Spark JVM from the class archive `make install` builds (`python -m pipeline jvm-archive`): a faster cold start")
    trigger_interval: Trigger = _setting("1m", "Processing interval of the high-value job (micro-batch trigger)")
    summary_interval: Trigger = _setting("1h", "Trigger of the hourly sales summary query")
    threshold: Annotated[Decimal, BeforeValidator(_amount)] = _setting(
        str(DEFAULT_THRESHOLD), "High value means amount strictly greater than this")
    dedup_window: Window = _setting("10m", "Same transaction_id within this event-time distance = one transaction")
    agg_window: Window = _setting("1m", "Tumbling window of the sales aggregates table")
    max_offsets_per_trigger: Annotated[int, _whole(1000, 1_000_000_000)] = _setting(
        "6000000", "Upper bound of records read per micro-batch")
    fail_on_data_loss: Annotated[bool, BeforeValidator(_flag)] = _setting(
        "true", "Stop the job if records expired before they were processed")
    job_cores: Annotated[int, BeforeValidator(_cores)] = _setting(
        "auto", "Cores given to the Spark job (local[N]); auto = all cores of the machine")
    shuffle_partitions: Annotated[int, _whole(0, 10000)] = _setting("0", "Spark shuffle partitions; 0 = cores x 2.5")
    driver_memory: Memory = _setting("2g", "Spark driver heap")
    broker_heap: Memory = _setting("1g", "Embedded broker heap (-Xmx)")
    broker_nodes: Annotated[int, BeforeValidator(_broker_nodes)] = _setting(
        "1", "Embedded Kafka nodes: 1, or 3..9 for a local KRaft cluster (node i listens on the bootstrap and controller ports + 2(i-1))")
    replication: Annotated[int, BeforeValidator(_replication)] = _setting(
        "auto", "Replication factor of the topics: auto = 2 when the cluster has 2+ brokers, else 1; or 1..9")
    compact_every: Annotated[int, _whole(0, 100000)] = _setting(
        "30", "Compact and vacuum the Delta tables every N batches (0 = never)")
    app_port: Port = _setting("8501", "Port of the Streamlit app (bound to 127.0.0.1)")
    emulator_rate: Annotated[float, BeforeValidator(_number(float, 0, 2_000_000))] = _setting(
        "2000", "Initial storm rate of `make run`, transactions per second")
    ingest_interval: Annotated[float, _duration(0.001, 3600)] = _setting(
        "1s", "Ingest interval: the emulator's tick (records per tick = rate x tick)")
    sample_file: FsPath = _setting(str(PROJECT_ROOT / "samples/transactions.jsonl.gz"),
                                   "Sample transactions the emulator draws from")
    control_topic: Topic = _setting("tormenta.emulator.control", "Compacted topic holding the emulator's desired state")
    status_topic: Topic = _setting("tormenta.emulator.status", "Topic where the emulator publishes its status and metrics")
    wire_format: Annotated[str, _text("|".join(WIRE_FORMATS), f"is not allowed; allowed: {', '.join(WIRE_FORMATS)}",
                                      lower=True)] = _setting(
        AVRO, "Wire format the emulator writes: avro (Confluent framing; the default, it measured faster end to end) or json; the job reads both")
    spark_master: Annotated[str, BeforeValidator(_master)] = _setting(
        "local", "Spark master: local (= local[TORMENTA_JOB_CORES]), local[N], spark://host:port, yarn or k8s://https://host:port")
    executor_memory: Memory = _setting("1g", "Spark executor heap on a cluster (spark.executor.memory)")
    driver_host: Annotated[str, _text(r"[\w.-]+", "is not a host name or address; allowed: e.g. 127.0.0.1, 10.0.0.5, driver.internal")] = _setting(
        "127.0.0.1", "Address the Spark driver binds and advertises to executors (a multi-host cluster needs one they can reach)")
    storage_uri: Annotated[str, BeforeValidator(_storage)] = _setting(
        "local", "Where Delta tables and checkpoints live: local (TORMENTA_DATA_DIR/delta, /checkpoints) or s3a://bucket/prefix")
    storage_endpoint: Annotated[str, BeforeValidator(_endpoint)] = _setting(
        "", "S3 endpoint of S3-compatible storage, e.g. http://127.0.0.1:9000; empty = AWS S3 of TORMENTA_STORAGE_REGION")
    storage_region: Annotated[str, _text(r"[a-z0-9-]{2,32}", "is not a region name; allowed: e.g. us-east-1, eu-west-3")] = _setting(
        "us-east-1", "S3 region")
    storage_access_key: SecretStr = _setting("", "S3 access key id (or TORMENTA_STORAGE_ACCESS_KEY_FILE); never logged")
    storage_access_key_file: Annotated[Path | None, BeforeValidator(_optional_path)] = _setting(
        "", "File holding the S3 access key id (a mounted secret)")
    storage_secret_key: SecretStr = _setting("", "S3 secret access key (or TORMENTA_STORAGE_SECRET_KEY_FILE); never logged")
    storage_secret_key_file: Annotated[Path | None, BeforeValidator(_optional_path)] = _setting(
        "", "File holding the S3 secret access key (a mounted secret)")
    storage_path_style: Annotated[bool, BeforeValidator(_flag)] = _setting(
        "false", "Path-style S3 requests (bucket in the path: MinIO, Ceph, moto); false = virtual-hosted style (AWS)")
    # ---- Kafka client security (pipeline.kafka.security turns these into every client's config)
    kafka_security_protocol: Annotated[str, _text(r"PLAINTEXT|SSL|SASL_PLAINTEXT|SASL_SSL", f"is not allowed; allowed: {', '.join(PROTOCOLS)}", upper=True)] = _setting(
        "PLAINTEXT", "Kafka security protocol: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL (PLAINTEXT while a `broker start --secure` client file exists = that file)")
    kafka_sasl_mechanism: Annotated[str, _text(r"PLAIN|SCRAM-SHA-256|SCRAM-SHA-512", f"is not allowed; allowed: {', '.join(MECHANISMS)}", upper=True)] = _setting(
        "SCRAM-SHA-512", "SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
    kafka_username: Annotated[str, _text(r"[^\s]{0,256}", "is not a user name; allowed: up to 256 characters without spaces")] = _setting(
        "", "SASL user name")
    kafka_password: SecretStr = _setting("", "SASL password (or TORMENTA_KAFKA_PASSWORD_FILE); never logged")
    kafka_password_file: Annotated[Path | None, BeforeValidator(_optional_path)] = _setting(
        "", "File holding the SASL password (a mounted secret)")
    kafka_ca_file: Annotated[Path | None, BeforeValidator(_optional_path)] = _setting(
        "", "CA bundle (PEM) that signed the brokers' certificates; needed by SSL and SASL_SSL")
    kafka_cert_file: Annotated[Path | None, BeforeValidator(_optional_path)] = _setting(
        "", "Client certificate (PEM) for mutual TLS; optional, with TORMENTA_KAFKA_KEY_FILE")
    kafka_key_file: Annotated[Path | None, BeforeValidator(_optional_path)] = _setting(
        "", "Private key (PEM, unencrypted PKCS#8) of the client certificate; never logged")
    secure: Annotated[bool, BeforeValidator(_flag)] = _setting(
        "false", "`make run` with a secured embedded broker (SASL_SSL, SCRAM users, ACLs) instead of plaintext loopback")
    app_address: Annotated[str, _text(r"[\w.:-]+", "is not an address; allowed: e.g. 127.0.0.1, ::1, 0.0.0.0")] = _setting(
        "127.0.0.1", "Address the Streamlit app binds; anything but loopback needs the login configured")
    sql_max_rows: Annotated[int, _whole(1, 1_000_000)] = _setting(
        "10000", "Rows an analyst's SQL query returns at most (SQL page, `sql --engine delta-rs`); the result says when it was cut")
    sql_timeout: Annotated[float, _duration(0.1, 3600)] = _setting(
        "30s", "An analyst's SQL query running longer than this is stopped (its worker process is killed)")
    live: Annotated[bool, BeforeValidator(_flag)] = _setting(
        "true", "`make run` also starts the live lane (`python -m pipeline live`: Spark Real-time Mode, high-value sales within a second)")
    live_topic: Topic = _setting("transactions.high_value.live", "Topic the live lane writes each high-value sale to (JSON, key transaction_id)")
    live_retention: Annotated[float, _duration(60, 365 * 86400)] = _setting(
        "1h", "Record lifetime in the live topic (retention.ms)")

    metrics_port: Annotated[int, BeforeValidator(_metrics_port)] = _setting(
        "9400", "Base port of the Prometheus metrics endpoints on 127.0.0.1 (job +0, live +1, emulator +2, app +3, run +4, broker node i +10+i-1, Prometheus +20, Alertmanager +21); 0 = no metrics")
    monitoring: Annotated[bool, BeforeValidator(_flag)] = _setting(
        "true", "`make run` also starts Prometheus and Alertmanager (loopback, configuration under the data folder) with Tormenta's alert rules")
    alert_webhook: Annotated[str, BeforeValidator(_webhook)] = _setting(
        "", "URL Alertmanager posts firing and resolved alerts to (its webhook JSON; a Slack incoming-webhook URL gets Slack messages; PagerDuty and e-mail: docs/MONITORING.md); empty = none")

    @model_validator(mode="after")
    def _kafka_security_complete(self) -> Settings:
        """The Kafka security settings as a whole: what TLS and SASL need is there and readable."""
        problems = kafka_security_problems(self)
        if problems:
            raise SettingsError("\n".join(problems))
        return self

    def __init__(self, **values: Any) -> None:
        with _settings_errors():
            super().__init__(**values)

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Keyword values first, then the environment (the mapping given to `from_env`, else os.environ);
        no .env file and no secrets folder."""
        environ = _ENVIRON.get()
        if environ is not None:
            return init_settings, _MappingSource(settings_cls, environ)
        return init_settings, env_settings

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build from `environ` (os.environ if None) and `overrides`; every invalid value in one SettingsError."""
        token = _ENVIRON.set(environ)
        try:
            return cls(**overrides)
        finally:
            _ENVIRON.reset(token)

    def replace(self, **changes: Any) -> Settings:
        """A copy with `changes`, validated like the environment (the environment is not read again)."""
        with _settings_errors():
            return type(self).model_validate({**self.model_dump(), **changes})

    # ---- derived values -------------------------------------------------------------
    @property
    def retention_ms(self) -> int:
        return int(self.retention * 1000)

    @property
    def first_bootstrap(self) -> tuple[str, int]:
        host, _, port = self.bootstrap_servers.split(",")[0].strip().rpartition(":")
        return host, int(port)

    @property
    def effective_shuffle_partitions(self) -> int:
        # The seed's rule of thumb: 2.5 tasks per core keeps both cores busy without
        # writing hundreds of tiny files per micro-batch.
        return self.shuffle_partitions or max(1, int(round(self.job_cores * 2.5)))

    # The folders under data_dir: Delta tables, checkpoints, broker logs, run files.
    delta_dir = property(lambda self: self.data_dir / "delta")
    checkpoint_dir = property(lambda self: self.data_dir / "checkpoints")
    broker_dir = property(lambda self: self.data_dir / "broker")
    run_dir = property(lambda self: self.data_dir / "run")

    def table_path(self, name: str) -> Path:
        return self.delta_dir / name

    # ---- Spark master and storage locations (URIs as Spark and delta-rs take them) -------
    @property
    def spark_master_url(self) -> str:
        return f"local[{self.job_cores}]" if self.spark_master == "local" else self.spark_master

    @property
    def on_object_storage(self) -> bool:
        return self.storage_uri.startswith("s3a://")

    def table_uri(self, name: str) -> str:
        """Where table `name` lives: a local path, or s3a://bucket/prefix/delta/<name>."""
        return f"{self.storage_uri}/delta/{name}" if self.on_object_storage else str(self.table_path(name))

    def checkpoint_uri(self, name: str) -> str:
        """Checkpoint of streaming query `name`: a local path, or s3a://bucket/prefix/checkpoints/<name>."""
        return f"{self.storage_uri}/checkpoints/{name}" if self.on_object_storage else str(self.checkpoint_dir / name)

    def storage_keys(self) -> tuple[str, str]:
        """(access key id, secret key) from the values or their files; SettingsError when missing."""
        keys = []
        for what, value, file in (("ACCESS_KEY", self.storage_access_key, self.storage_access_key_file),
                                  ("SECRET_KEY", self.storage_secret_key, self.storage_secret_key_file)):
            text = value.get_secret_value().strip()
            if not text and file is not None:
                try:
                    text = file.read_text().strip()
                except OSError as exc:
                    raise SettingsError(f"{PREFIX}STORAGE_{what}_FILE={str(file)!r} cannot be read ({exc.strerror}); "
                                        "allowed: a readable file holding the key") from None
            if not text:
                raise SettingsError(f"{PREFIX}STORAGE_URI={self.storage_uri} needs credentials: set {PREFIX}STORAGE_{what} "
                                    f"or {PREFIX}STORAGE_{what}_FILE")
            keys.append(text)
        return keys[0], keys[1]


def _readable(name: str, path: Path | None, what: str) -> list[str]:
    if path is None:
        return []
    try:
        with open(path, "rb") as fh:
            fh.read(1)
    except OSError as exc:
        return [f"{PREFIX}{name}={str(path)!r} cannot be read ({exc.strerror or exc}); allowed: a readable {what}"]
    return []


def _certificates(name: str, path: Path | None, what: str) -> list[str]:
    """A readable file that must hold at least one PEM certificate: a CA's private key or any
    other text would otherwise pass here and fail deep inside every Kafka client."""
    if path is None or _readable(name, path, what):
        return []  # unset, or already reported as unreadable
    from cryptography import x509

    try:
        x509.load_pem_x509_certificates(path.read_bytes())
    except (ValueError, OSError):
        return [f"{PREFIX}{name}={str(path)!r} holds no PEM certificate; allowed: a {what} "
                "(-----BEGIN CERTIFICATE----- blocks)"]
    return []


def kafka_security_problems(s: Settings) -> list[str]:
    """What is missing or unreadable in the Kafka security settings, one line each (empty = fine)."""
    protocol = s.kafka_security_protocol
    tls, sasl = protocol in ("SSL", "SASL_SSL"), protocol.startswith("SASL_")
    problems = _readable("KAFKA_CA_FILE", s.kafka_ca_file, "PEM file of CA certificates")
    problems += _certificates("KAFKA_CA_FILE", s.kafka_ca_file, "PEM file of CA certificates")
    problems += _readable("KAFKA_CERT_FILE", s.kafka_cert_file, "PEM client certificate")
    problems += _readable("KAFKA_KEY_FILE", s.kafka_key_file, "PEM private key")
    if tls and s.kafka_ca_file is None:
        problems.append(f"{PREFIX}KAFKA_SECURITY_PROTOCOL={protocol} needs {PREFIX}KAFKA_CA_FILE; allowed: the PEM bundle "
                        "of the CA that signed the brokers' certificates")
    if (s.kafka_cert_file is None) != (s.kafka_key_file is None):
        problems.append(f"mutual TLS needs both {PREFIX}KAFKA_CERT_FILE and {PREFIX}KAFKA_KEY_FILE; allowed: both or neither")
    elif s.kafka_cert_file is not None and not tls:
        problems.append(f"{PREFIX}KAFKA_CERT_FILE is set but {PREFIX}KAFKA_SECURITY_PROTOCOL={protocol} has no TLS; "
                        "allowed: SSL or SASL_SSL with a client certificate")
    if sasl and not s.kafka_username:
        problems.append(f"{PREFIX}KAFKA_SECURITY_PROTOCOL={protocol} needs {PREFIX}KAFKA_USERNAME; allowed: the SASL user name")
    if sasl and not s.kafka_password.get_secret_value() and s.kafka_password_file is None:
        problems.append(f"{PREFIX}KAFKA_SECURITY_PROTOCOL={protocol} needs {PREFIX}KAFKA_PASSWORD or "
                        f"{PREFIX}KAFKA_PASSWORD_FILE; allowed: the SASL password, or a file holding it")
    problems += _readable("KAFKA_PASSWORD_FILE", s.kafka_password_file, "file holding the SASL password")
    return problems


def _problem(error: Mapping[str, Any]) -> str:
    """One line for one pydantic error: the variable, the value given and what is allowed."""
    name = str(error["loc"][0]) if error["loc"] else "?"
    if error["type"] == "extra_forbidden":
        return f"{name!r} is not a setting; allowed: {', '.join(Settings.model_fields)}"
    why = str(error["ctx"]["error"]) if error["type"] == "value_error" else error["msg"]
    return f"{PREFIX}{name.upper()}={error['input']!r} {why}"


@contextmanager
def _settings_errors() -> Iterator[None]:
    try:
        yield
    except ValidationError as exc:
        raise SettingsError("\n".join(_problem(e) for e in exc.errors())) from None


class Spec(NamedTuple):
    """One setting as the README documents it (paths under the project shown as ./...)."""
    attr: str
    env: str
    default: str
    help: str


SPECS: tuple[Spec, ...] = tuple(
    Spec(name, PREFIX + name.upper(), str(info.default).replace(str(PROJECT_ROOT), "."), info.description or "")
    for name, info in Settings.model_fields.items()
)
