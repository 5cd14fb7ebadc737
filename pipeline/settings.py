"""The one settings object of Tormenta.

Every environment variable the product reads is read here, once per entry point, and
validated: a bad value raises `SettingsError` naming the variable, the value and what is
allowed. All variables share the prefix ``TORMENTA_``; the README lists each with its
default. Every default runs on a laptop with the embedded local broker.

Usage::

    settings = Settings.from_env()          # os.environ
    settings = Settings.from_env({...})     # tests
    settings = settings.replace(topic="t")  # derived copy (frozen dataclass)
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from pipeline.errors import SettingsError

PREFIX = "TORMENTA_"
PROJECT_ROOT = Path(__file__).resolve().parent.parent

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|sec|secs|seconds?|m|min|mins|minutes?|h|hours?|d|days?)?\s*$", re.I)
_UNIT_SECONDS = {
    "ms": 0.001,
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
}
_MEMORY_RE = re.compile(r"^\d+[mMgG]$")


def parse_duration(text: str, *, name: str = "duration") -> float:
    """Parse '60', '60s', '1m', '1 minute', '500ms', '1h', '1d' into seconds (> 0)."""
    m = _DURATION_RE.match(str(text))
    if not m:
        raise SettingsError(
            f"{name}={text!r} is not a duration; allowed: a positive number with an optional "
            "unit ms, s, m, h or d (e.g. 60, 60s, 1m, 1 minute, 500ms)"
        )
    seconds = float(m.group(1)) * _UNIT_SECONDS[(m.group(2) or "s").lower()]
    if seconds <= 0:
        raise SettingsError(f"{name}={text!r} must be greater than zero")
    return seconds


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


# (name, env suffix, parser, default text, help) -- the README table is generated from this.
def _int_range(lo: int, hi: int) -> Callable[[str, str], int]:
    def parse(name: str, text: str) -> int:
        try:
            value = int(str(text).strip())
        except ValueError:
            raise SettingsError(f"{name}={text!r} is not a whole number; allowed: {lo}..{hi}") from None
        if not lo <= value <= hi:
            raise SettingsError(f"{name}={value} is out of range; allowed: {lo}..{hi}")
        return value

    return parse


def _duration(lo: float, hi: float) -> Callable[[str, str], float]:
    def parse(name: str, text: str) -> float:
        value = parse_duration(text, name=name)
        if not lo <= value <= hi:
            raise SettingsError(
                f"{name}={text!r} is out of range; allowed: {format_duration(lo)} .. {format_duration(hi)}"
            )
        return value

    return parse


def _decimal(name: str, text: str) -> Decimal:
    try:
        value = Decimal(str(text).strip())
    except InvalidOperation:
        raise SettingsError(f"{name}={text!r} is not a number; allowed: a positive amount such as 1500") from None
    if not value.is_finite() or value < 0:
        raise SettingsError(f"{name}={text!r} must be a finite amount >= 0, e.g. 1500")
    return value


def _text(name: str, text: str) -> str:
    value = str(text).strip()
    if not value:
        raise SettingsError(f"{name} must not be empty")
    return value


def _topic_name(name: str, text: str) -> str:
    value = str(text).strip()
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,249}", value):
        raise SettingsError(
            f"{name}={text!r} is not a valid Kafka topic name; allowed: 1-249 of letters, digits, '.', '_', '-'"
        )
    return value


def _bootstrap(name: str, text: str) -> str:
    value = str(text).strip()
    for part in value.split(","):
        host, sep, port = part.strip().rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise SettingsError(
                f"{name}={text!r} is not a host:port list; allowed: e.g. 127.0.0.1:9092 or h1:9092,h2:9092"
            )
    return value


def _bool(name: str, text: str) -> bool:
    value = str(text).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name}={text!r} is not a boolean; allowed: true/false (or 1/0, yes/no)")


def _memory(name: str, text: str) -> str:
    value = str(text).strip()
    if not _MEMORY_RE.match(value):
        raise SettingsError(f"{name}={text!r} is not a JVM memory size; allowed: e.g. 512m, 1g, 2g")
    return value.lower()


def _path(name: str, text: str) -> Path:
    value = str(text).strip()
    if not value:
        raise SettingsError(f"{name} must not be empty")
    return Path(value).expanduser().resolve()


def _cores(name: str, text: str) -> int:
    """'auto' = every core of this machine; else a whole number 1..256."""
    if str(text).strip().lower() == "auto":
        return os.cpu_count() or 2
    return _int_range(1, 256)(name, text)


def _float_range(lo: float, hi: float) -> Callable[[str, str], float]:
    def parse(name: str, text: str) -> float:
        try:
            value = float(str(text).strip())
        except ValueError:
            raise SettingsError(f"{name}={text!r} is not a number; allowed: {lo:g}..{hi:g}") from None
        if not lo <= value <= hi:
            raise SettingsError(f"{name}={value:g} is out of range; allowed: {lo:g}..{hi:g}")
        return value

    return parse


def _choice(*allowed: str) -> Callable[[str, str], str]:
    def parse(name: str, text: str) -> str:
        value = str(text).strip().lower()
        if value not in allowed:
            raise SettingsError(f"{name}={text!r} is not allowed; allowed: {', '.join(allowed)}")
        return value

    return parse


@dataclass(frozen=True)
class Spec:
    attr: str
    parse: Callable[[str, str], Any]
    default: str
    help: str

    @property
    def env(self) -> str:
        return PREFIX + self.attr.upper()


SPECS: tuple[Spec, ...] = (
    Spec("bootstrap_servers", _bootstrap, "127.0.0.1:9092", "Kafka bootstrap servers (the embedded broker listens on the first one)"),
    Spec("controller_port", _int_range(1, 65535), "9093", "KRaft controller port of the embedded broker (loopback)"),
    Spec("topic", _topic_name, "transactions", "Transactions topic"),
    Spec("partitions", _int_range(1, 1000), "3", "Partitions of the transactions topic"),
    Spec("retention", _duration(60, 365 * 86400), "1d", "Record lifetime in the topic (retention.ms)"),
    Spec("data_dir", _path, "./data", "Where broker logs, Delta tables, checkpoints and run files live"),
    Spec("jars_dir", _path, str(PROJECT_ROOT / ".cache" / "jars"), "Local cache of the Maven jars (`make jars` fills it)"),
    Spec("trigger_interval", _duration(0.1, 86400), "1m", "Processing interval of the high-value job (micro-batch trigger)"),
    Spec("summary_interval", _duration(0.1, 86400), "1h", "Trigger of the hourly sales summary query"),
    Spec("threshold", _decimal, "1500", "High value means amount strictly greater than this"),
    Spec("dedup_window", _duration(1, 86400), "10m", "Same transaction_id within this event-time distance = one transaction"),
    Spec("agg_window", _duration(1, 86400), "1m", "Tumbling window of the sales aggregates table"),
    Spec("max_offsets_per_trigger", _int_range(1000, 1_000_000_000), "6000000", "Upper bound of records read per micro-batch"),
    Spec("fail_on_data_loss", _bool, "true", "Stop the job if records expired before they were processed"),
    Spec("job_cores", _cores, "auto", "Cores given to the Spark job (local[N]); auto = all cores of the machine"),
    Spec("shuffle_partitions", _int_range(0, 10000), "0", "Spark shuffle partitions; 0 = cores x 2.5"),
    Spec("driver_memory", _memory, "2g", "Spark driver heap"),
    Spec("broker_heap", _memory, "1g", "Embedded broker heap (-Xmx)"),
    Spec("compact_every", _int_range(0, 100000), "30", "Compact and vacuum the Delta tables every N batches (0 = never)"),
    Spec("app_port", _int_range(1, 65535), "8501", "Port of the Streamlit app (bound to 127.0.0.1)"),
    Spec("emulator_rate", _float_range(0, 2_000_000), "2000", "Initial storm rate of `make run`, transactions per second"),
    Spec("ingest_interval", _duration(0.001, 3600), "1s", "Ingest interval: the emulator's tick (records per tick = rate x tick)"),
    Spec("sample_file", _path, str(PROJECT_ROOT / "samples" / "transactions.jsonl.gz"), "Sample transactions the emulator draws from"),
    Spec("control_topic", _topic_name, "tormenta.emulator.control", "Compacted topic holding the emulator's desired state"),
    Spec("status_topic", _topic_name, "tormenta.emulator.status", "Topic where the emulator publishes its status and metrics"),
    Spec("wire_format", _choice("json", "avro"), "json", "Wire format the emulator writes: json or avro (Confluent framing); the job reads both"),
)


@dataclass(frozen=True)
class Settings:
    bootstrap_servers: str = "127.0.0.1:9092"
    controller_port: int = 9093
    topic: str = "transactions"
    partitions: int = 3
    retention: float = 86400.0
    data_dir: Path = field(default_factory=lambda: Path("./data").resolve())
    jars_dir: Path = PROJECT_ROOT / ".cache" / "jars"
    trigger_interval: float = 60.0
    summary_interval: float = 3600.0
    threshold: Decimal = Decimal("1500")
    dedup_window: float = 600.0
    agg_window: float = 60.0
    max_offsets_per_trigger: int = 6_000_000
    fail_on_data_loss: bool = True
    job_cores: int = field(default_factory=lambda: os.cpu_count() or 2)
    shuffle_partitions: int = 0
    driver_memory: str = "2g"
    broker_heap: str = "1g"
    compact_every: int = 30
    app_port: int = 8501
    emulator_rate: float = 2000.0
    ingest_interval: float = 1.0
    sample_file: Path = PROJECT_ROOT / "samples" / "transactions.jsonl.gz"
    control_topic: str = "tormenta.emulator.control"
    status_topic: str = "tormenta.emulator.status"
    wire_format: str = "json"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build from the environment; collect every invalid value into one SettingsError."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        problems: list[str] = []
        for spec in SPECS:
            raw = env.get(spec.env)
            text = spec.default if raw is None or raw == "" else raw
            try:
                values[spec.attr] = spec.parse(spec.env, text)
            except SettingsError as exc:
                problems.append(str(exc))
        if problems:
            raise SettingsError("; ".join(problems))
        values.update(overrides)
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

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

    @property
    def delta_dir(self) -> Path:
        return self.data_dir / "delta"

    @property
    def checkpoint_dir(self) -> Path:
        return self.data_dir / "checkpoints"

    @property
    def broker_dir(self) -> Path:
        return self.data_dir / "broker"

    @property
    def run_dir(self) -> Path:
        return self.data_dir / "run"

    def table_path(self, name: str) -> Path:
        return self.delta_dir / name
