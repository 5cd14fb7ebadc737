"""Is each part of Tormenta alive, and how far behind is the job? Pure judgements + cheap probes.

    broker_health(settings)                  port of the embedded broker; on a cluster, how many nodes answer
    cluster_view(settings) / judge_cluster   each node up/down with the partitions it leads, and the
                                             under-replicated and leaderless partitions (pure judgement)
    topic_health(settings, broker_up)        partitions / replication / retention of the topic
    job_process(settings)                    the job process `make run` started (pid file), if alive
    job_health(last_batch, ..., process)     judged from batch_metrics freshness vs the trigger interval;
                                             "starting" while a live job process has no batch yet
    emulator_health(status)                  from the emulator's latest status message
    next_steps(parts)                        the commands that bring the down parts up
    backlog / ingest_rate / retention_risk   lag of the job in records and seconds, time left
                                             before unprocessed records expire

Probes never block for long: Kafka is only asked when its port answers, with short timeouts,
and every failure becomes a `PartHealth` with a plain message, never an exception.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

import pandas as pd

from pipeline.kafka.cluster import PartitionFact
from pipeline.settings import Settings, format_duration

UP, IDLE, STARTING, DOWN, UNKNOWN = "up", "idle", "starting", "down", "unknown"
FIX = {
    "all": "make run",
    "broker": "python -m pipeline broker start",
    "topic": "python -m pipeline topic create",
    "job": "python -m pipeline job",
    "emulator": "python -m pipeline emulate",
}


@dataclass
class PartHealth:
    part: str            # broker | topic | job | emulator
    state: str           # up | idle | starting | down | unknown
    detail: str          # one plain sentence for a business user
    fix: str | None = None  # the command that brings it up

    @property
    def ok(self) -> bool:
        return self.state in (UP, IDLE)


@dataclass
class TopicFacts:
    partitions: int
    replication: int
    retention_s: float | None
    cleanup: str | None


def _now(now: datetime | None) -> datetime:
    return now if now is not None else datetime.now(UTC)


def _utc(ts) -> datetime | None:
    if ts is None or (isinstance(ts, float) and ts != ts):
        return None
    if isinstance(ts, pd.Timestamp):
        ts = ts.to_pydatetime()
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts


# ---- broker / topic ------------------------------------------------------------------
@dataclass
class NodeRow:
    node: int
    address: str
    state: str           # up | down
    pid: int | None
    leads: int           # partitions this node leads


@dataclass
class ClusterView:
    nodes: list[NodeRow]
    partitions: list[PartitionFact] | None    # None: no node answered the metadata request

    @property
    def up(self) -> int:
        return sum(1 for n in self.nodes if n.state == UP)

    @property
    def under_replicated(self) -> list[PartitionFact]:
        return [p for p in self.partitions or [] if len(p.isr) < len(p.replicas)]

    @property
    def leaderless(self) -> list[PartitionFact]:
        return [p for p in self.partitions or [] if p.leader < 0]

    def rows(self) -> list[dict]:
        return [{"node": n.node, "state": n.state.upper(), "address": n.address, "pid": n.pid,
                 "partitions led": n.leads} for n in self.nodes]

    def sentence(self) -> str:
        text = f"{self.up} of {len(self.nodes)} Kafka nodes answer"
        if self.partitions is None:
            return text + "; partitions unknown."
        urp, lost = len(self.under_replicated), len(self.leaderless)
        text += f"; {urp} under-replicated partition{'s' if urp != 1 else ''}"
        return text + (f", {lost} without a leader." if lost else ".")


def judge_cluster(nodes: list[tuple[int, str, bool, int | None]], partitions: list[PartitionFact] | None) -> ClusterView:
    """Pure: (node id, address, answers, pid) per node + the partition metadata -> the cluster's view."""
    leads = Counter(p.leader for p in partitions or [] if p.leader >= 0)
    rows = [NodeRow(nid, addr, UP if ok else DOWN, pid, leads.get(nid, 0)) for nid, addr, ok, pid in nodes]
    return ClusterView(rows, partitions)


def cluster_view(settings: Settings, timeout: float = 2.0) -> ClusterView:
    """Probe every embedded node (port, pid file) and ask a live one for the partition metadata."""
    from pipeline.kafka.broker import port_open
    from pipeline.kafka.cluster import KafkaCluster, describe_partitions

    cluster = KafkaCluster(settings)
    probes = [(nd.node.node_id, nd.node.address, port_open(nd.host, nd.port, timeout=0.3), nd.read_pid())
              for nd in cluster.nodes]
    live = ",".join(addr for _, addr, ok, _ in probes if ok)
    parts = None
    if live:
        try:
            parts = describe_partitions(live, timeout, settings, role="app")
        except Exception:  # noqa: BLE001 - a probe reports, it never raises into the page
            parts = None
    return judge_cluster(probes, parts)


def broker_part(view: ClusterView) -> PartHealth:
    """Pure: the broker card of a cluster. Up while any node serves (clients fail over), with the losses said."""
    if view.up == 0:
        return PartHealth("broker", DOWN, f"None of the {len(view.nodes)} Kafka nodes answers.", FIX["broker"])
    down = [str(n.node) for n in view.nodes if n.state == DOWN]
    detail = view.sentence() + (f" Node {', '.join(down)} down: restart with `{FIX['broker']}`." if down else "")
    return PartHealth("broker", UP, detail)


def broker_health(settings: Settings) -> PartHealth:
    from pipeline.kafka.broker import port_open

    if settings.broker_nodes > 1:
        return broker_part(cluster_view(settings))
    host, port = settings.first_bootstrap
    if port_open(host, port, timeout=0.3):
        return PartHealth("broker", UP, f"Kafka answers on {host}:{port}.")
    return PartHealth("broker", DOWN, f"Kafka does not answer on {host}:{port}.", FIX["broker"])


def topic_health(settings: Settings, broker_up: bool, timeout: float = 2.0) -> tuple[PartHealth, TopicFacts | None]:
    from pipeline.errors import TormentaError
    from pipeline.kafka.topic import describe_topic

    if not broker_up:
        return PartHealth("topic", UNKNOWN, f"Topic {settings.topic} cannot be checked while the broker is down.",
                          FIX["broker"]), None
    try:
        info = describe_topic(settings, timeout=timeout, role="app")
    except TormentaError as exc:
        return PartHealth("topic", DOWN, str(exc).split(";")[0].capitalize() + ".", FIX["topic"]), None
    except Exception as exc:  # noqa: BLE001 - a probe reports, it never raises into the page
        return PartHealth("topic", UNKNOWN, f"Topic {settings.topic} could not be described ({type(exc).__name__}).",
                          FIX["topic"]), None
    ret = info.config.get("retention.ms")
    facts = TopicFacts(info.partitions, info.replication_factor,
                       int(ret) / 1000 if ret and ret.lstrip("-").isdigit() and int(ret) > 0 else None,
                       info.config.get("cleanup.policy"))
    return PartHealth("topic", UP, f"Topic {info.name}: {info.partitions} partitions, replication "
                      f"{info.replication_factor}."), facts


# ---- job ------------------------------------------------------------------------------
@dataclass(frozen=True)
class JobProcess:
    """A live streaming-job process and when it was started."""

    pid: int
    started: datetime


def job_process(settings: Settings) -> JobProcess | None:
    """The job process that `make run` (`python -m pipeline run`) started, if it is still alive.

    `run` writes `<data_dir>/run/job.pid` as it starts the job and removes it when it stops
    it; the file's time is the start time. A pid that no longer exists, or that now belongs
    to another program (its command line does not mention the job), is no job. A job
    started by hand leaves no pid file and is judged from its batches alone.
    """
    from pipeline.procs.group import pid_file_process

    found = pid_file_process(settings.run_dir / "job.pid", "job")
    if found is None:
        return None
    pid, started = found
    return JobProcess(pid, datetime.fromtimestamp(started, UTC))


def _starting(process: JobProcess, now: datetime, restarted: bool) -> PartHealth:
    age = max(0.0, (now - process.started).total_seconds())
    since = f"started {format_duration(round(age))} ago" if age >= 1 else "started just now"
    what = "restarted and is catching up" if restarted else "is starting"
    return PartHealth("job", STARTING, f"The streaming job {what} (pid {process.pid}, {since}); the first "
                      "batch lands after one processing interval.")


def job_is_fresh(last_trigger: datetime, trigger_interval_s: float, last_duration_s: float,
                 now: datetime | None = None) -> bool:
    """A running job commits a batch every trigger interval (later when a batch overruns).

    Two intervals plus the last batch's duration plus 15 s of slack is the latest the next
    metrics row can arrive while the job is alive.
    """
    age = (_now(now) - _utc(last_trigger)).total_seconds()
    return age <= 2 * trigger_interval_s + max(0.0, last_duration_s or 0.0) + 15


def backlog(end_offsets_now: dict[int, int] | None, last_batch: dict | None) -> int | None:
    """Records in the topic that the job has not read yet (log-end minus last batch's end offsets)."""
    if end_offsets_now is None or not last_batch:
        return None
    try:
        done = {int(k): int(v) for k, v in json.loads(last_batch.get("end_offsets") or "{}").items()}
    except (ValueError, TypeError):
        return None
    return sum(max(0, end - done.get(p, 0)) for p, end in end_offsets_now.items())


def job_health(last_batch: dict | None, settings: Settings, *, table_exists: bool,
               new_records: int | None = None, now: datetime | None = None,
               process: JobProcess | None = None) -> PartHealth:
    """Alive if the newest batch_metrics row is fresh; when stale, new records in the topic mean stopped.

    A live job process (`job_process`) without a batch yet, or started after the newest
    batch, is STARTING: DOWN is only said when no job process is there."""
    interval = float(settings.trigger_interval)
    now = _now(now)
    if not table_exists or not last_batch:
        if process is not None:
            return _starting(process, now, restarted=False)
        return PartHealth("job", DOWN, "No streaming job is running and none has finished a batch yet.", FIX["job"])
    trig = _utc(last_batch["trigger_time"])
    age = (now - trig).total_seconds()
    interval = float(last_batch.get("trigger_interval_s") or interval)
    when = f"last batch {format_duration(round(max(age, 0)))} ago" if age >= 1 else "last batch just now"
    if job_is_fresh(trig, interval, float(last_batch.get("duration_s") or 0), now):
        return PartHealth("job", UP, f"Processing every {format_duration(interval)}; {when}.")
    if process is not None and process.started > trig:
        return _starting(process, now, restarted=True)
    if new_records == 0:
        return PartHealth("job", IDLE, f"No new records since the last batch ({when}); the job may be idle "
                          "or stopped. Start the emulator to see it process.", FIX["job"])
    return PartHealth("job", DOWN, f"No batch for {format_duration(round(age))} although the trigger is every "
                      f"{format_duration(interval)}: the job is stopped or stuck.", FIX["job"])


# ---- emulator -------------------------------------------------------------------------
def emulator_health(status: dict | None, broker_up: bool) -> PartHealth:
    if not broker_up:
        return PartHealth("emulator", UNKNOWN, "The emulator reports through Kafka; the broker is down.", FIX["broker"])
    if not status:
        return PartHealth("emulator", DOWN, "No emulator has reported in the last few seconds.", FIX["emulator"])
    state = status.get("state", "running")
    rate = float(status.get("achieved_rate") or 0)
    if state == "running":
        return PartHealth("emulator", UP, f"Running at {rate:,.0f} tx/s (target "
                          f"{float(status.get('target_rate') or 0):,.0f} tx/s).")
    return PartHealth("emulator", IDLE, f"Emulator is {state}; resume it on the Storm control page.")


def next_steps(parts: list[PartHealth]) -> list[str]:
    """Plain next steps, most basic first; everything down -> `make run`."""
    down = [p for p in parts if p.state in (DOWN, UNKNOWN) and p.fix]
    if not down:
        return []
    if all(p.state in (DOWN, UNKNOWN) for p in parts):
        return [f"Nothing is running. Start the whole product with `{FIX['all']}`."]
    steps, seen = [], set()
    for p in down:
        if p.fix not in seen:
            seen.add(p.fix)
            steps.append(f"{p.part.capitalize()}: {p.detail} Run `{p.fix}`.")
    return steps


# ---- lag and retention ------------------------------------------------------------------
def ingest_rate(metrics: pd.DataFrame, batches: int = 10) -> float | None:
    """Records per second the topic received, from the input rows of the recent batches."""
    if metrics is None or len(metrics) < 2:
        return None
    recent = metrics.tail(batches + 1)
    span = (recent["trigger_time"].iloc[-1] - recent["trigger_time"].iloc[0]).total_seconds()
    if span <= 0:
        return None
    return float(recent["input_rows"].iloc[1:].sum()) / span


@dataclass
class RetentionRisk:
    oldest_unprocessed_age_s: float
    time_left_s: float
    used_share: float    # 0..1 of the retention used up by the oldest unprocessed record
    level: str           # ok | warning | critical

    def sentence(self) -> str:
        if self.time_left_s <= 0:
            return "Unprocessed records may already have expired: data loss is possible."
        return (f"The oldest unprocessed record expires in about {format_duration(round(self.time_left_s))}"
                f" ({self.used_share:.0%} of the retention used).")


def retention_risk(last_trigger: datetime, backlog_at_batch: int | None, rate: float | None,
                   retention_s: float, now: datetime | None = None) -> RetentionRisk:
    """How close the oldest unread record is to expiry.

    The oldest record the job has not read was appended about `backlog / rate` seconds
    before the last batch started (the backlog it left behind), and has aged since then.
    """
    now = _now(now)
    behind_s = (backlog_at_batch or 0) / rate if rate and rate > 0 else 0.0
    age = max(0.0, (now - _utc(last_trigger)).total_seconds()) + behind_s
    left = retention_s - age
    used = min(1.0, age / retention_s) if retention_s > 0 else 1.0
    level = "ok" if used < 0.5 else "warning" if used < 0.8 else "critical"
    return RetentionRisk(age, left, used, level)


def quarantine_rate(metrics: pd.DataFrame) -> float | None:
    """Share of input records quarantined over the given batches."""
    if metrics is None or not len(metrics):
        return None
    total = float(metrics["input_rows"].sum())
    return float(metrics["quarantined_rows"].sum()) / total if total else 0.0
