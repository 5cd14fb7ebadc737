"""The result of one load test, typed, and its saved form (``result.json``).

`LoadTestResult.to_dict()` writes the JSON the runs folder keeps; `LoadTestResult.from_dict()`
reads it back, including runs saved before the result was typed (format 1: the same keys,
no ``format`` key; a key a newer release added is simply absent and takes its default).
A file that is not a load-test result, or one written by a newer format, is refused with
a `ResultFormatError` that says which run and what is wrong.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipeline.loadtest import LoadTestError
from pipeline.loadtest.plan import Plan, StepWindow, plan_from_dict
from pipeline.loadtest.reconcile import Reconciliation
from pipeline.loadtest.verdict import RULES, StepStats, Summary

RESULT_FORMAT = 2      # 1 = the untyped dict saved before (same keys, no "format")
REQUIRED = ("run_id", "plan", "summary", "reconciliation")


class ResultFormatError(LoadTestError):
    """A saved result that this release cannot read."""


@dataclass
class TopicFacts:
    """The run's topic after the run: size on the broker's disk."""

    name: str = ""
    partitions: int | None = None
    log_end: int | None = None
    disk_bytes: int | None = None
    bytes_per_record_on_disk: float | None = None


@dataclass
class LoadTestResult:
    run_id: str
    plan: Plan
    summary: Summary
    reconciliation: Reconciliation
    state: str = "done"
    error: str | None = None
    started: str = ""
    finished: str = ""
    t0: float = 0.0
    windows: list[StepWindow] = field(default_factory=list)
    steps: list[StepStats] = field(default_factory=list)
    rules: list[tuple[str, str]] = field(default_factory=lambda: list(RULES))
    caught_up: bool = False
    freshness_all: dict[str, float | None] = field(default_factory=dict)
    batch_freshness: list[dict[str, Any]] = field(default_factory=list)
    batches: list[dict[str, Any]] = field(default_factory=list)
    emulator: dict[str, Any] = field(default_factory=dict)
    job_exit_code: int | None = None
    topic: TopicFacts = field(default_factory=TopicFacts)
    settings: dict[str, Any] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    report: str = ""
    broker_outage: dict[str, Any] = field(default_factory=dict)   # --kill-broker-at: node, step, down interval
    live: dict[str, Any] = field(default_factory=dict)   # the live lane: reconciliation and latency per step
    alerts: dict[str, Any] = field(default_factory=dict)  # alerts per step from the run's Prometheus (loadtest.alerts)

    def to_dict(self) -> dict[str, Any]:
        """The saved form: plain JSON types, the keys of format 1 plus ``format``."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out.update(plan=self.plan.as_dict(), summary=self.summary.as_dict(),
                   reconciliation=self.reconciliation.as_dict(), windows=[w.as_dict() for w in self.windows],
                   steps=[s.as_dict() for s in self.steps], rules=[list(r) for r in self.rules],
                   topic=asdict(self.topic), format=RESULT_FORMAT)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "result") -> LoadTestResult:
        """Read a saved result (format 1 or 2); ResultFormatError names what is wrong."""
        _check_format(data, source)
        try:
            return cls(**_plain_fields(data), plan=plan_from_dict(data["plan"]),
                       summary=_known(Summary, data["summary"]),
                       reconciliation=_known(Reconciliation, data["reconciliation"]),
                       windows=[_known(StepWindow, w) for w in data.get("windows") or []],
                       steps=[_known(StepStats, s) for s in data.get("steps") or []],
                       rules=[(str(k), str(v)) for k, v in data.get("rules") or RULES],
                       topic=_known(TopicFacts, data.get("topic") or {}))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ResultFormatError(f"{source} is not a readable load-test result ({type(exc).__name__}: {exc}); "
                                    "rerun the load test to get a new one") from None

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), default=str, indent=1))

    @classmethod
    def load(cls, path: Path) -> LoadTestResult:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ResultFormatError(f"cannot read {path}: {exc}") from None
        if not isinstance(data, dict):
            raise ResultFormatError(f"{path} is not a load-test result (a JSON object is expected)")
        return cls.from_dict(data, source=str(path))


_TYPED = {"plan", "summary", "reconciliation", "windows", "steps", "rules", "topic"}


def _plain_fields(data: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(LoadTestResult)} - _TYPED
    return {k: v for k, v in data.items() if k in names}


def _known(cls, data: dict[str, Any]):
    """`cls` from the keys of `data` it declares (derived keys such as ``ok`` or ``label`` are dropped)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


def _check_format(data: dict[str, Any], source: str) -> None:
    version = data.get("format", 1)
    if not isinstance(version, int) or version > RESULT_FORMAT:
        raise ResultFormatError(f"{source} has result format {version!r}; this release reads formats 1 to "
                                f"{RESULT_FORMAT}: update Tormenta to read it")
    missing = [k for k in REQUIRED if not data.get(k)]
    if missing:
        raise ResultFormatError(f"{source} lacks {', '.join(missing)}: it is not a load-test result")
