"""Delta's settled high-value counts per minute, for the Live page's provisional-vs-settled table.

The live lane and the micro-batch job both see each transaction's Kafka timestamp (the
lane's `source_timestamp`, the table's `ingest_time`), so both are counted by the minute of
that timestamp. High_value is read with delta-rs (never Spark), bounded by the ingest
time range (per-file statistics prune the files).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pipeline.contract.fields import INGEST_TIME
from pipeline.contract.tables import HIGH_VALUE
from pipeline.read.readers import DeltaReader, run_sql


def settled_per_minute(reader: DeltaReader, start: datetime, end: datetime) -> dict[datetime, int]:
    """{minute start (UTC): high-value rows in Delta whose ingest_time falls in that minute}, start <= t < end.

    A missing table is `DataUnavailable` (the page shows it as "no data yet")."""
    lo, hi = (t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ") for t in (start, end))
    t = run_sql(f"SELECT date_trunc('minute', {INGEST_TIME}) AS minute, count(*) AS n FROM hv "
                f"WHERE {INGEST_TIME} >= TIMESTAMP '{lo}' AND {INGEST_TIME} < TIMESTAMP '{hi}' GROUP BY 1",
                hv=reader.table(HIGH_VALUE))
    out = {}
    for minute, n in zip(t.column("minute").to_pylist(), t.column("n").to_pylist()):
        m = minute if minute.tzinfo else minute.replace(tzinfo=UTC)
        out[m.astimezone(UTC)] = int(n)
    return out


def minutes_span(now_ms: int, minutes: int) -> tuple[datetime, datetime]:
    """[start, end) of the last `minutes` complete minutes before `now_ms`."""
    end = datetime.fromtimestamp(now_ms // 60_000 * 60, UTC)
    return end - timedelta(minutes=minutes), end
