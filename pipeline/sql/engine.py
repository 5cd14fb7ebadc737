"""Run an analyst's query over the Delta tables through delta-rs: checked, bounded, stoppable.

    engine = SqlEngine(settings)                 # one per process (the app keeps one)
    result = engine.run("SELECT country, count(*) FROM high_value GROUP BY 1")
    result.table, result.truncated, result.versions   # pyarrow table, cut at the row cap?, Delta version per table

What bounds a query:

- **read-only**: `pipeline.sql.check.check_query` lets one SELECT/WITH over our five tables
  through (`QueryRefused` otherwise, before anything runs);
- **time**: the query runs in a worker process (`pipeline.sql.worker`); when no answer came
  within ``TORMENTA_SQL_TIMEOUT`` the engine kills that process (SIGKILL) and raises
  `QueryTimeout`. The next query gets a fresh worker. The workers are kept warm between
  queries (opening a Delta table and importing delta-rs cost more than a small query);
- **memory**: DataFusion's memory pool in the worker (``memory_limit``, 1 GiB by default:
  sorts, aggregations and joins fail with `QueryTooBig` past it) and the row cap
  (``TORMENTA_SQL_MAX_ROWS``): the result is read batch by batch and cut there
  (``truncated``). A worker retires after `WORKER_QUERIES` answers and a fresh one takes
  its place, so what the allocators keep between queries never adds up for the app's life.

Errors are one line each: `QueryRefused` and `QueryError` (DataFusion's message: a syntax
error, an unknown column) are `SettingsError`s, exit code 2 on the command line;
`QueryTimeout` and `QueryTooBig` are `TormentaError`s; a table that does not exist yet is
`DataUnavailable`. `pipeline/` never imports Streamlit: the page keeps the engine in
``st.cache_resource``.
"""

from __future__ import annotations

import json
import os
import select
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pyarrow as pa

from pipeline.errors import DataUnavailable, SettingsError, TormentaError
from pipeline.settings import PROJECT_ROOT, Settings, format_duration
from pipeline.sql.check import CheckedQuery, check_query

MEMORY_LIMIT = "1G"   # DataFusion memory pool of one query (sorts, aggregations, joins)
WORKERS = 2           # queries that run at the same time; more wait for a free worker
# A worker answers this many queries, then a fresh one takes its place (as web servers retire a
# worker after N requests): what the allocators of Arrow and delta-rs keep after each query adds
# up in a worker that lives as long as the app (+16 MiB/h in the soak's hour, one query every
# 30 s), and a new worker starts in about a second, before the next query needs it.
WORKER_QUERIES = 50


class QueryError(SettingsError):
    """DataFusion refused or failed the query (its message, one line)."""


class QueryTimeout(TormentaError):
    """The query ran longer than TORMENTA_SQL_TIMEOUT and was stopped."""


class QueryTooBig(TormentaError):
    """The query needed more memory than the pool allows."""


@dataclass(frozen=True)
class AsOf:
    """Read the tables as they were: every table at `time`, or `table` at `version` (the others latest)."""

    time: datetime | None = None
    table: str | None = None
    version: int | None = None

    def spec(self, name: str) -> dict:
        if self.version is not None and name == self.table:
            return {"version": int(self.version), "time": None}
        if self.time is not None:
            at = self.time if self.time.tzinfo else self.time.replace(tzinfo=UTC)
            return {"version": None, "time": at.astimezone(UTC).isoformat()}
        return {"version": None, "time": None}

    def label(self) -> str:
        if self.version is not None:
            return f"{self.table} as of version {self.version}"
        if self.time is not None:
            return f"as of {self.time:%Y-%m-%d %H:%M:%S} UTC"
        return "latest"


@dataclass
class SqlResult:
    table: pa.Table
    truncated: bool                      # the query returned more than max_rows; table holds the first max_rows
    versions: dict[str, int]             # Delta version read, per table the query named
    elapsed_s: float                     # wall time seen by the caller (queueing and transfer included)
    query: CheckedQuery
    max_rows: int = 0
    as_of: AsOf = field(default_factory=AsOf)

    def frame(self):
        """The result as a pandas frame (decimals as floats, for tables and charts)."""
        df = self.table.to_pandas()
        for name, typ in zip(self.table.column_names, self.table.schema.types, strict=True):
            if pa.types.is_decimal(typ):
                df[name] = df[name].astype("float64")
        return df


class _Worker:
    def __init__(self):
        self.answered = 0
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT),
                                                                         os.environ.get("PYTHONPATH")]))}
        self.proc = subprocess.Popen([sys.executable, "-m", "pipeline.sql.worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=str(PROJECT_ROOT),
                                     env=env, close_fds=True)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            try:
                pipe.close()
            except OSError:
                pass

    def ask(self, request: dict, deadline: float) -> tuple[dict, bytes]:
        body = json.dumps(request).encode()
        self.proc.stdin.write(struct.pack(">I", len(body)) + body)
        self.proc.stdin.flush()
        head = json.loads(self._read(struct.unpack(">I", self._read(4, deadline))[0], deadline))
        payload = self._read(struct.unpack(">Q", self._read(8, deadline))[0], deadline) if head.get("ok") else b""
        return head, payload

    def _read(self, n: int, deadline: float) -> bytes:
        fd = self.proc.stdout.fileno()
        chunks, got = [], 0
        while got < n:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError
            chunk = os.read(fd, min(n - got, 1 << 20))
            if not chunk:
                raise EOFError
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)


class SqlEngine:
    """Checked, bounded SQL over the Delta tables through delta-rs worker processes (thread-safe)."""

    def __init__(self, settings: Settings, *, workers: int = WORKERS, memory_limit: str = MEMORY_LIMIT,
                 worker_queries: int = WORKER_QUERIES):
        from pipeline.read.readers import storage_options

        self.settings = settings
        self.memory_limit = memory_limit
        self.worker_queries = worker_queries
        self._options = storage_options(settings)
        self._idle: list[_Worker] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(workers)
        self._closed = False

    # -- workers ---------------------------------------------------------------------------
    def warm(self) -> None:
        """Start a worker now, so the first query does not wait for one (idempotent)."""
        with self._lock:
            if not self._idle and not self._closed:
                self._idle.append(_Worker())

    def _take(self, timeout: float) -> _Worker:
        if not self._slots.acquire(timeout=timeout):
            raise QueryTimeout(f"every SQL worker stayed busy for {format_duration(timeout)}; try again in a moment")
        with self._lock:
            while self._idle:
                worker = self._idle.pop()
                if worker.alive:
                    return worker
                worker.kill()
        try:
            return _Worker()
        except BaseException:
            self._slots.release()
            raise

    def _give(self, worker: _Worker | None) -> None:
        retired = None
        try:
            with self._lock:
                if worker is not None and worker.alive and not self._closed:
                    if worker.answered < self.worker_queries:
                        self._idle.append(worker)
                    else:   # retired: a fresh one starts now, while nobody waits for it
                        retired = worker
                        self._idle.append(_Worker())
                elif worker is not None:
                    retired = worker
        finally:
            if retired is not None:
                retired.kill()
            self._slots.release()

    def close(self) -> None:
        """Stop every idle worker (a worker busy with a query stops when it is handed back)."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.kill()

    # -- queries ---------------------------------------------------------------------------
    def run(self, sql: str, as_of: AsOf | None = None, *, max_rows: int | None = None,
            timeout: float | None = None) -> SqlResult:
        """Check and run one query; see the module's docstring for what bounds it."""
        as_of = as_of or AsOf()
        max_rows = int(max_rows or self.settings.sql_max_rows)
        timeout = float(timeout or self.settings.sql_timeout)
        checked = check_query(sql, "delta-rs")
        if as_of.version is not None and as_of.table not in checked.tables:
            raise SettingsError(f"the query does not read {as_of.table}, the table picked for 'as of version'")
        self._check_tables_exist(checked.tables)
        request = {"sql": checked.sql, "max_rows": max_rows, "memory_limit": self.memory_limit,
                   "options": self._options,
                   "tables": [{"name": n, "uri": self.settings.table_uri(n), **as_of.spec(n)} for n in checked.tables]}
        started = time.monotonic()
        deadline = started + timeout
        worker = self._take(timeout)
        try:
            head, payload = worker.ask(request, deadline)
        except TimeoutError:
            worker.kill()
            self._give(None)
            raise QueryTimeout(f"the query ran longer than {format_duration(timeout)} (TORMENTA_SQL_TIMEOUT) and "
                               "was stopped; narrow it (a time range, a LIMIT) or raise the timeout") from None
        except (EOFError, OSError, ValueError):
            code = worker.proc.poll()
            worker.kill()
            self._give(None)
            raise QueryTooBig(f"the query's worker process ended (exit code {worker.proc.returncode if code is None else code}); "
                              "it most likely ran out of memory: narrow the query") from None
        except BaseException:
            worker.kill()
            self._give(None)
            raise
        worker.answered += 1
        self._give(worker)
        if not head.get("ok"):
            kind, message = head.get("kind"), head.get("message", "")
            if kind == "memory":
                raise QueryTooBig(f"the query needs more than {self.memory_limit}B of memory: {message}")
            if kind == "unavailable":
                raise DataUnavailable(message[:1].upper() + message[1:])
            raise QueryError(message)
        table = pa.ipc.open_stream(payload).read_all()
        return SqlResult(table, bool(head.get("truncated")), dict(head.get("versions") or {}),
                         time.monotonic() - started, checked, max_rows, as_of)

    def _check_tables_exist(self, names: tuple[str, ...]) -> None:
        from pipeline.read.readers import DeltaReader

        reader = DeltaReader(self.settings)
        missing = [n for n in names if not reader.exists(n)]
        if missing:
            raise DataUnavailable(
                f"The table{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                f"{'do' if len(missing) > 1 else 'does'} not exist yet (looked in {self.settings.table_uri(missing[0])}"
                f"{' ...' if len(missing) > 1 else ''}); start the job (`python -m pipeline job`, or `make run`) "
                "and it writes them after one processing interval")
