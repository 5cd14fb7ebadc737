"""The process that runs analysts' queries through delta-rs (DataFusion), one at a time.

`pipeline.sql.engine.SqlEngine` starts it as ``python -m pipeline.sql.worker`` and keeps it
warm between queries. It runs in its own process so a query can really be stopped: DataFusion
gives Python no way to interrupt a running plan, so when a query outlives its timeout the
engine kills this process and starts another one; the app, the page and other queries are
untouched. Every query also runs under DataFusion's memory pool
(``datafusion.runtime.memory_limit``: a sort, aggregation or join that needs more fails with
"Resources exhausted" instead of growing) and its result is read batch by batch up to the
row cap, so an unbounded SELECT never holds more than the cap plus one batch.

Protocol on stdin/stdout (binary): a request is a 4-byte big-endian length and JSON
``{"sql", "tables": [{"name", "uri", "version", "time"}], "options", "max_rows",
"memory_limit"}``; the answer is a 4-byte length and a JSON header (``ok``, ``versions``,
``truncated``, or ``kind`` and ``message``), then, when ok, an 8-byte length and the result
as an Arrow IPC stream. The worker ends at the end of its input.
"""

from __future__ import annotations

import json
import os
import struct
import sys
import time
from datetime import UTC, datetime
from pathlib import Path


def _read(stream, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        chunk = stream.read(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def one_line(exc: BaseException, limit: int = 600) -> str:
    """An engine error as one line: its lines joined, cut at `limit` characters."""
    text = " ".join(part.strip() for part in str(exc).splitlines() if part.strip()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def created_at(uri: str) -> float | None:
    """When a local table's first commit was written (epoch s: the commit file's time, which
    delta-rs' time travel goes by), or None for a table on object storage (not checked)."""
    if "://" in uri and not uri.startswith("file://"):
        return None
    first = Path(uri.removeprefix("file://")) / "_delta_log" / f"{0:020d}.json"
    try:
        return first.stat().st_mtime
    except OSError:
        return None


class Tables:
    """DeltaTables by location, opened once and refreshed before each query (time travel: opened fresh)."""

    def __init__(self):
        self._latest: dict[str, object] = {}

    def open(self, uri: str, options: dict | None, version: int | None, at: str | None):
        from deltalake import DeltaTable

        if version is not None:
            return DeltaTable(uri, version=int(version), storage_options=options)
        if at is not None:
            when = datetime.fromisoformat(at)
            dt = DeltaTable(uri, storage_options=options)
            dt.load_as_version(when)
            created = created_at(uri) if dt.version() == 0 else None
            stamp = (when if when.tzinfo is not None else when.replace(tzinfo=UTC)).timestamp()
            if created is not None and stamp < created - 1.0:
                # delta-rs answers version 0 for a time before the table existed
                raise ValueError(f"it was created at {datetime.fromtimestamp(created, UTC):%Y-%m-%d %H:%M:%S} UTC, "
                                 "after that time")
            return dt
        dt = self._latest.get(uri)
        if dt is None:
            dt = self._latest[uri] = DeltaTable(uri, storage_options=options)
        else:
            dt.update_incremental()
        return dt


def run(request: dict, tables: Tables) -> tuple[dict, bytes]:
    import pyarrow as pa
    from deltalake import QueryBuilder

    started = time.monotonic()
    versions: dict[str, int] = {}
    qb = QueryBuilder()
    limit = str(request.get("memory_limit") or "1G")
    pa.table(qb.execute(f"SET datafusion.runtime.memory_limit = '{limit}'").read_all())
    for t in request["tables"]:
        try:
            dt = tables.open(t["uri"], request.get("options"), t.get("version"), t.get("time"))
        except Exception as exc:  # noqa: BLE001 - a version or time the table does not have
            where = f"version {t['version']}" if t.get("version") is not None else f"time {t.get('time')}"
            if t.get("version") is None and t.get("time") is None:
                return {"ok": False, "kind": "unavailable",
                        "message": f"the {t['name']} table could not be read: {one_line(exc, 300)}"}, b""
            return {"ok": False, "kind": "as_of",
                    "message": f"the {t['name']} table has no {where}: {one_line(exc, 300)}"}, b""
        qb.register(t["name"], dt)
        versions[t["name"]] = dt.version()
    max_rows = int(request["max_rows"])
    try:
        reader = pa.RecordBatchReader.from_stream(qb.execute(request["sql"]))
        batches, rows, truncated = [], 0, False
        for batch in reader:
            if rows + batch.num_rows > max_rows:
                batches.append(batch.slice(0, max_rows - rows))
                truncated = True
                break
            batches.append(batch)
            rows += batch.num_rows
        result = pa.Table.from_batches(batches, schema=reader.schema)
        del reader  # dropping the stream stops the plan: nothing past the cap is computed
    except Exception as exc:  # noqa: BLE001 - DataFusion's own message, one line
        message = one_line(exc)
        kind = "memory" if "Resources exhausted" in message or "Not enough memory" in message else "query"
        return {"ok": False, "kind": kind, "message": message}, b""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, result.schema) as writer:
        writer.write_table(result)
    header = {"ok": True, "versions": versions, "truncated": truncated, "rows": result.num_rows,
              "elapsed_s": round(time.monotonic() - started, 4)}
    return header, sink.getvalue().to_pybytes()


def main() -> None:
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # a stray print must never corrupt the protocol
    tables = Tables()
    while True:
        size = _read(stdin, 4)
        if size is None:
            break
        body = _read(stdin, struct.unpack(">I", size)[0])
        if body is None:
            break
        try:
            header, payload = run(json.loads(body), tables)
        except Exception as exc:  # noqa: BLE001 - the engine turns it into one line
            header, payload = {"ok": False, "kind": "query", "message": one_line(exc)}, b""
        head = json.dumps(header).encode()
        stdout.write(struct.pack(">I", len(head)) + head)
        if header.get("ok"):
            stdout.write(struct.pack(">Q", len(payload)) + payload)
        stdout.flush()
    # Leave without running interpreter teardown (delta-rs's runtime threads; see readers.py).
    stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
