"""Read the job's Delta tables for the dashboard, with delta-rs (`deltalake`), never Spark.

Every read is bounded: it names the columns it needs (projection), prunes files by
partition (``event_date``) and by per-file min/max statistics (``file_pruning_predicate``),
and filters rows with a pyarrow expression so row groups are skipped too. No page ever
loads a whole table: the high-value table may hold tens of millions of rows.

``sales_agg`` rows are *partial* per micro-batch: one window can have several rows (one
per batch that saw it), so every figure SUMs over rows grouped by ``window_start``.

    reader = DeltaReader(settings)
    reader.sales_series(start, end, bucket_s=60)
    reader.high_value_page(HighValueQuery(start=..., end=...))

A missing table raises `DataUnavailable` with the command that creates it.

Every read goes through `_sql` (delta-rs's DataFusion), which returns a fully materialised
table. No pyarrow dataset or scanner is ever made here: with the pinned deltalake/pyarrow,
a process that scanned a table through ``to_pyarrow_dataset``/``to_pyarrow_table`` could
abort at interpreter exit (``terminate called without an active exception``, exit 134;
delta-rs #2184, arrow #34314). `tests/read/test_clean_exit.py` runs a reading process 20
times and checks every exit code.
"""

from __future__ import annotations

import io
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.contract.fields import (
    AMOUNT,
    COUNTRY,
    EVENT_TIME,
    INGEST_TIME,
    MERCHANT_CATEGORY,
    MERCHANT_ID,
    PERSON_ID,
    TRANSACTION_ID,
)
from pipeline.contract.tables import (
    BATCH_METRICS,
    HIGH_VALUE,
    HIGH_VALUE_QUERY,
    QUARANTINE,
    RECORD_COLUMNS,
    SALES_AGG,
    SALES_HOURLY,
    TABLES,
    columns,
)
from pipeline.errors import DataUnavailable, SettingsError
from pipeline.read.windows import complete_until, mark_complete
from pipeline.settings import Settings

TABLE_LABELS = {
    HIGH_VALUE: "high-value transactions",
    QUARANTINE: "quarantine",
    SALES_AGG: "sales aggregates",
    SALES_HOURLY: "hourly sales summary",
    BATCH_METRICS: "batch metrics",
}
# The record's columns (event time first, as the Explorer shows them) and when the job processed the row.
HIGH_VALUE_COLUMNS = (EVENT_TIME, *(c for c in RECORD_COLUMNS if c != EVENT_TIME), "processing_time")
assert set(HIGH_VALUE_COLUMNS) <= set(columns(HIGH_VALUE))
# Every metrics column but the query name, which the read filters on.
METRICS_COLUMNS = tuple(c for c in columns(BATCH_METRICS) if c != "query")
SORTABLE = (EVENT_TIME, AMOUNT, PERSON_ID, MERCHANT_ID, MERCHANT_CATEGORY, COUNTRY)
PAGE_SIZES = (25, 50, 100, 200)
_NON_NULL_SORT_KEYS = (AMOUNT, EVENT_TIME)  # required by the contract: the page bound applies
MAX_RANGE = timedelta(days=31)
CSV_MAX_ROWS = 100_000
MAX_POINTS = 5_000
DIMENSIONS = {"category": MERCHANT_CATEGORY, "country": COUNTRY}
_REFRESH_S = 1.0  # re-list the Delta log at most this often per table
# The quarantine's columns as the Explorer lists them: arrival and reason first, raw bytes left out
# (raw_value shows them), like the topic, ingest time and batch id that say nothing to a reader.
_QUARANTINE_FIRST = ("arrival_time", "reason", "wire_format")
QUARANTINE_COLUMNS = (*_QUARANTINE_FIRST, *(c for c in columns(QUARANTINE) if c not in
                                           (*_QUARANTINE_FIRST, "raw_bytes", "topic", INGEST_TIME, "batch_id")))


def utcnow() -> datetime:
    return datetime.now(UTC)


def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


# ---- query objects (validated: every input is bounded) ---------------------------------
@dataclass(frozen=True)
class HighValueQuery:
    """Filters, sort and page of the Explorer's high-value view. Times are UTC."""

    start: datetime
    end: datetime
    min_amount: Decimal | None = None
    max_amount: Decimal | None = None
    person_id: str = ""
    merchant_id: str = ""
    categories: tuple[str, ...] = ()
    sort_by: str = EVENT_TIME
    descending: bool = True
    page: int = 1
    page_size: int = 50

    def validated(self) -> HighValueQuery:
        start, end = _utc(self.start), _utc(self.end)
        if end <= start:
            raise SettingsError("the time range is empty: 'to' must be after 'from'")
        if end - start > MAX_RANGE:
            raise SettingsError(f"the time range is {(end - start).days} days; at most {MAX_RANGE.days} days at a time")
        for name in ("min_amount", "max_amount"):
            v = getattr(self, name)
            if v is not None and (not Decimal(v).is_finite() or Decimal(v) < 0):
                raise SettingsError(f"{name.replace('_', ' ')} must be an amount >= 0")
        if self.min_amount is not None and self.max_amount is not None and self.min_amount > self.max_amount:
            raise SettingsError("the minimum amount is larger than the maximum amount")
        if self.sort_by not in SORTABLE:
            raise SettingsError(f"cannot sort by {self.sort_by!r}; allowed: {', '.join(SORTABLE)}")
        if self.page_size not in PAGE_SIZES:
            raise SettingsError(f"page size must be one of {PAGE_SIZES}")
        if not 1 <= self.page <= 1_000_000:
            raise SettingsError("page must be a whole number >= 1")
        for name in ("person_id", "merchant_id"):  # attributes of this query object
            if len(getattr(self, name)) > 128:
                raise SettingsError(f"{name} is longer than 128 characters")
        return replace(self, start=start, end=end, person_id=self.person_id.strip(),
                       merchant_id=self.merchant_id.strip())


@dataclass
class HighValuePage:
    rows: pd.DataFrame
    total: int          # rows matching the filters
    page: int
    pages: int
    version: int        # Delta version read


@dataclass
class SalesSeries:
    frame: pd.DataFrame  # window_start, sales_count, sales_amount, high_value_count, high_value_amount, high_value_share
    bucket_s: int
    coarsened: bool = False  # the requested bucket would have drawn more than MAX_POINTS
    complete_until: datetime | None = None  # buckets ending later are still filling (frame["complete"])


@dataclass
class TableInfo:
    name: str
    version: int
    rows: int            # from file statistics, no scan
    files: int
    newest: datetime | None = None
    extra: dict = field(default_factory=dict)


def storage_options(settings: Settings) -> dict[str, str] | None:
    """delta-rs options for tables on object storage (None on local disk); holds the keys: never log it.

    The dashboard only reads, so no locking or conditional-put option is needed here."""
    if not settings.on_object_storage:
        return None
    access, secret = settings.storage_keys()
    endpoint = settings.storage_endpoint or f"https://s3.{settings.storage_region}.amazonaws.com"
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_REGION": settings.storage_region,
        "AWS_ACCESS_KEY_ID": access,
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_ALLOW_HTTP": str(endpoint.startswith("http://")).lower(),
        "AWS_VIRTUAL_HOSTED_STYLE_REQUEST": str(not settings.storage_path_style).lower(),
    }


# ---- the reader ----------------------------------------------------------------------
class DeltaReader:
    """Opens each Delta table once and refreshes it incrementally; thread-safe for the app."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._tables: dict[str, tuple[object, float]] = {}
        self._lock = threading.Lock()
        self._options = storage_options(settings)

    # -- opening ------------------------------------------------------------------------
    def path(self, name: str) -> str:
        return self.settings.table_uri(name)

    def exists(self, name: str) -> bool:
        if self._options is None:
            return (Path(self.path(name)) / "_delta_log").is_dir()
        from deltalake import DeltaTable

        try:
            return DeltaTable.is_deltatable(self.path(name), storage_options=self._options)
        except Exception as exc:  # noqa: BLE001 - unreachable storage: say so, never show the keys
            raise DataUnavailable(f"The object storage at {self.settings.storage_uri} could not be read: "
                                  f"{type(exc).__name__}. Check TORMENTA_STORAGE_ENDPOINT and the keys.") from None

    def _open(self, name: str, version: int | None = None):
        from deltalake import DeltaTable

        return DeltaTable(self.path(name), version=version, storage_options=self._options)

    def _missing(self, name: str) -> DataUnavailable:
        return DataUnavailable(
            f"The {TABLE_LABELS.get(name, name)} table does not exist yet (looked in {self.path(name)}). "
            "Start the streaming job with `python -m pipeline job` (or everything with `make run`); "
            "it creates the tables and writes the first rows after one processing interval."
        )

    def table(self, name: str, as_of: int | datetime | None = None):
        """The DeltaTable, fresh (at most _REFRESH_S old), or as of a version / time."""
        from deltalake.exceptions import TableNotFoundError

        if not self.exists(name):
            raise self._missing(name)
        try:
            if as_of is not None:
                if isinstance(as_of, int):
                    return self._open(name, version=as_of)
                dt = self._open(name)
                dt.load_as_version(_utc(as_of))
                return dt
            with self._lock:
                cached = self._tables.get(name)
                now = time.monotonic()
                if cached is None:
                    dt = self._open(name)
                    self._tables[name] = (dt, now)
                    return dt
                dt, seen = cached
                if now - seen > _REFRESH_S:
                    dt.update_incremental()
                    self._tables[name] = (dt, now)
                return dt
        except TableNotFoundError:
            raise self._missing(name) from None
        except (ValueError, OSError, Exception) as exc:
            if isinstance(exc, DataUnavailable):
                raise
            if as_of is not None:
                raise DataUnavailable(
                    f"The {TABLE_LABELS.get(name, name)} table has no version at {as_of!s}: "
                    f"{str(exc).splitlines()[0][:200]}. Pick a version listed in the history."
                ) from None
            raise DataUnavailable(
                f"The {TABLE_LABELS.get(name, name)} table could not be read: {str(exc).splitlines()[0][:200]}"
            ) from None

    @staticmethod
    def _select(dt, table: str, wanted: tuple[str, ...]) -> str:
        """A select list of `wanted`; a column an older table lacks reads as a typed NULL."""
        present = {f.name for f in dt.schema().fields}
        types = dict(TABLES[table])
        return ", ".join(c if c in present else f"CAST(NULL AS {types[c]}) AS {c}" for c in wanted)

    # -- table facts (metadata only, no scan) ---------------------------------------------
    def info(self, name: str, time_column: str | None = None) -> TableInfo:
        dt = self.table(name)
        cols = ["num_records"] + ([f"max.{time_column}"] if time_column else [])
        actions = dt.get_add_actions(flatten=True)
        if not isinstance(actions, pa.Table):
            actions = pa.table(actions)
        names = set(actions.column_names)
        rows = int(pc.sum(actions["num_records"]).as_py() or 0) if "num_records" in names else 0
        newest = None
        if time_column and cols[1] in names and actions.num_rows:
            m = pc.max(actions[cols[1]]).as_py()
            newest = _utc(m) if isinstance(m, datetime) else None
        return TableInfo(name, dt.version(), rows, actions.num_rows, newest)

    def history(self, name: str, limit: int = 50) -> pd.DataFrame:
        """Versions with their commit time (newest first), for the "as of" picker."""
        dt = self.table(name)
        rows = []
        for h in dt.history(limit):
            ts = h.get("timestamp")
            rows.append({"version": int(h.get("version", -1)),
                         "time": datetime.fromtimestamp(ts / 1000, UTC) if ts else None,
                         "operation": h.get("operation", "")})
        return pd.DataFrame(rows, columns=["version", "time", "operation"])

    # -- SQL through delta-rs (DataFusion: partition, file, row-group and page pruning, top-k) ----
    def _sql(self, sql: str, **tables) -> pa.Table:
        return run_sql(sql, **tables)

    # -- sales aggregates ---------------------------------------------------------------
    def complete_until(self, now: datetime | None = None) -> datetime:
        """Windows ending at or before this instant are complete (see `pipeline.read.windows`)."""
        try:
            last = self.last_batch()
        except DataUnavailable:
            last = None
        return complete_until(_utc(now or utcnow()), last.get("trigger_time") if last else None)

    @staticmethod
    def _window_where(start: datetime, end: datetime) -> str:
        return f"window_start >= {_lit_ts(start)} AND window_start < {_lit_ts(end)}"

    def sales_series(self, start: datetime, end: datetime, bucket_s: int = 60,
                     now: datetime | None = None) -> SalesSeries:
        """Sales per time bucket (sum of the partial rows), at most MAX_POINTS buckets.

        The frame's `complete` column says which buckets are finished; the newest one is
        usually still filling and must not be read as a drop in sales."""
        start, end = _utc(start), _utc(end)
        if end <= start:
            raise SettingsError("the time range is empty")
        bucket_s = max(int(bucket_s), int(self.settings.agg_window))
        coarsened = False
        span = (end - start).total_seconds()
        while span / bucket_s > MAX_POINTS:
            bucket_s *= 2
            coarsened = True
        t = self._sql(
            f"SELECT date_bin(INTERVAL '{bucket_s} seconds', window_start, TIMESTAMP '1970-01-01T00:00:00Z') AS window_start,"
            " sum(sales_count) AS sales_count, sum(CAST(sales_amount AS DOUBLE)) AS sales_amount,"
            " sum(high_value_count) AS high_value_count, sum(CAST(high_value_amount AS DOUBLE)) AS high_value_amount"
            f" FROM agg WHERE {self._window_where(start, end)} GROUP BY 1 ORDER BY 1",
            agg=self.table(SALES_AGG))
        cutoff = self.complete_until(now)
        if t.num_rows == 0:
            return SalesSeries(mark_complete(_empty_series(), bucket_s, cutoff), bucket_s, coarsened, cutoff)
        df = t.to_pandas()
        df["high_value_share"] = (df["high_value_count"] / df["sales_count"].where(df["sales_count"] > 0)).fillna(0.0)
        return SalesSeries(mark_complete(df.reset_index(drop=True), bucket_s, cutoff), bucket_s, coarsened, cutoff)

    def latest_complete_window(self, now: datetime | None = None) -> dict | None:
        """The newest *complete* aggregate window: start, end, sales count and amount (partial rows summed).

        The window still filling is never returned: its figures would read as a drop."""
        cutoff = self.complete_until(now)
        dt = self.table(SALES_AGG)
        width = timedelta(seconds=self.settings.agg_window)
        for back in (2 * width, timedelta(days=2), MAX_RANGE):
            t = self._sql(
                "SELECT window_start, max(window_end) AS window_end, sum(sales_count) AS sales_count,"
                " sum(CAST(sales_amount AS DOUBLE)) AS sales_amount, sum(high_value_count) AS high_value_count"
                f" FROM agg WHERE {self._window_where(cutoff - back, cutoff)} AND window_end <= {_lit_ts(cutoff)}"
                " GROUP BY window_start ORDER BY window_start DESC LIMIT 1", agg=dt)
            if t.num_rows:
                row = t.to_pylist()[0]
                return {"window_start": _utc(row["window_start"]), "window_end": _utc(row["window_end"]),
                        "sales_count": int(row["sales_count"] or 0), "sales_amount": float(row["sales_amount"] or 0.0),
                        "high_value_count": int(row["high_value_count"] or 0)}
        return None

    def top_dimension(self, dimension: str, start: datetime, end: datetime, n: int = 10) -> pd.DataFrame:
        """Top categories or countries by sales amount in the range (from the aggregates)."""
        if dimension not in DIMENSIONS:
            raise SettingsError(f"unknown dimension {dimension!r}; allowed: {', '.join(DIMENSIONS)}")
        _check_top(n)
        col = DIMENSIONS[dimension]
        t = self._sql(
            f"SELECT {col} AS {dimension}, sum(CAST(sales_amount AS DOUBLE)) AS amount, sum(sales_count) AS count"
            f" FROM agg WHERE {self._window_where(_utc(start), _utc(end))} GROUP BY 1 ORDER BY amount DESC LIMIT {n}",
            agg=self.table(SALES_AGG))
        return _top_frame(t, dimension)

    def top_merchants(self, start: datetime, end: datetime, n: int = 10) -> pd.DataFrame:
        """Top merchants by high-value amount (the aggregates carry no merchant, the high-value table does)."""
        _check_top(n)
        q = HighValueQuery(start=_utc(start), end=_utc(end)).validated()
        t = self._sql(
            f"SELECT {MERCHANT_ID} AS merchant, sum(CAST({AMOUNT} AS DOUBLE)) AS amount, count(*) AS count"
            f" FROM hv WHERE {_hv_where(q)} GROUP BY 1 ORDER BY amount DESC LIMIT {n}", hv=self.table(HIGH_VALUE))
        return _top_frame(t, "merchant")

    # -- high-value explorer ------------------------------------------------------------
    def _page_sql(self, q: HighValueQuery, limit: int, offset: int, extra_where: str = "") -> str:
        order = "DESC" if q.descending else "ASC"
        tie = "" if q.sort_by == TRANSACTION_ID else f", {TRANSACTION_ID} ASC"
        return (f"SELECT {', '.join(HIGH_VALUE_COLUMNS)} FROM hv WHERE {_hv_where(q)}{extra_where}"
                f" ORDER BY {q.sort_by} {order}{tie} LIMIT {int(limit)} OFFSET {int(offset)}")

    def _page_rows(self, q: HighValueQuery, dt) -> pa.Table:
        """The rows of one page, in two reads when the sort key is never NULL.

        A top-k over millions of rows costs what reading its columns costs. So the first
        read takes only the sort key of the rows up to the end of the page; its last value
        b bounds the page: every row of it has key >= b (descending) or <= b (ascending).
        The second read adds that bound, which lets the scan skip row groups by their
        statistics and keeps few rows for the sort. Ties at b stay in, so the result is
        exactly that of the one-read query (the tests compare them page by page).
        """
        limit, offset = q.page_size, (q.page - 1) * q.page_size
        if q.sort_by not in _NON_NULL_SORT_KEYS:
            return self._sql(self._page_sql(q, limit, offset), hv=dt)
        order = "DESC" if q.descending else "ASC"
        keys = self._sql(f"SELECT {q.sort_by} AS k FROM hv WHERE {_hv_where(q)} ORDER BY k {order} "
                         f"LIMIT {int(offset + limit)}", hv=dt).column("k")
        if len(keys) == 0:
            return self._sql(self._page_sql(q, limit, offset), hv=dt)
        bound = keys[-1].as_py()
        lit = _lit_ts(bound) if q.sort_by == EVENT_TIME else _lit_amount(bound)
        extra = f" AND {q.sort_by} {'>=' if q.descending else '<='} {lit}"
        return self._sql(self._page_sql(q, limit, offset, extra), hv=dt)

    def high_value_page(self, q: HighValueQuery, as_of: int | datetime | None = None) -> HighValuePage:
        """One page of the filtered, sorted high-value rows and the number of matches.

        DataFusion (inside delta-rs) prunes partitions, files, row groups and pages, and sorts
        with a top-k, so a page costs about the same on 50 million rows as on 50 thousand.
        """
        q = q.validated()
        dt = self.table(HIGH_VALUE, as_of)
        total = int(self._sql(f"SELECT count(*) AS n FROM hv WHERE {_hv_where(q)}", hv=dt).column("n")[0].as_py())
        pages = max(1, -(-total // q.page_size))
        if q.page > pages:
            raise SettingsError(f"page {q.page} does not exist; the filters match {pages} page(s)")
        return HighValuePage(_to_frame(self._page_rows(q, dt)), total, q.page, pages, dt.version())

    def high_value_csv(self, q: HighValueQuery, as_of: int | datetime | None = None,
                       max_rows: int = CSV_MAX_ROWS) -> bytes:
        """The filtered rows in sort order as CSV (at most max_rows; the page says so)."""
        q = q.validated()
        rows = self._sql(self._page_sql(q, max_rows, 0), hv=self.table(HIGH_VALUE, as_of))
        buf = io.StringIO()
        _to_frame(rows).to_csv(buf, index=False)
        return buf.getvalue().encode()

    def categories(self, start: datetime, end: datetime) -> list[str]:
        """Category names seen in the aggregates of the range (for the filter choices)."""
        try:
            t = self._sql(f"SELECT DISTINCT {MERCHANT_CATEGORY} AS c FROM agg"
                          f" WHERE {self._window_where(_utc(start), _utc(end))}", agg=self.table(SALES_AGG))
        except DataUnavailable:
            return []
        return sorted(v for v in t.column("c").to_pylist() if v)

    # -- quarantine ----------------------------------------------------------------------
    def quarantine(self, start: datetime, end: datetime, reason: str = "", limit: int = 200) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(reason counts, newest rows up to limit) of quarantined messages that arrived in the range."""
        if not 1 <= limit <= 5000:
            raise SettingsError("limit must be 1..5000 rows")
        dt = self.table(QUARANTINE)
        where = f"arrival_time >= {_lit_ts(start)} AND arrival_time < {_lit_ts(end)}"
        counts = self._sql(f"SELECT reason, count(*) AS messages FROM q WHERE {where}"
                           " GROUP BY reason ORDER BY messages DESC, reason", q=dt).to_pandas()
        if reason:
            where += f" AND reason = {_lit_str(reason)}"
        cols = self._select(dt, QUARANTINE, QUARANTINE_COLUMNS)
        rows = self._sql(f"SELECT {cols} FROM q WHERE {where} ORDER BY arrival_time DESC LIMIT {int(limit)}", q=dt)
        df = rows.to_pandas()
        if len(df):
            df["raw_value"] = df["raw_value"].astype("string").str.slice(0, 300)
        return counts, df

    # -- batch metrics -------------------------------------------------------------------
    def batch_metrics(self, start: datetime, end: datetime | None = None,
                      query: str = HIGH_VALUE_QUERY) -> pd.DataFrame:
        """One row per micro-batch of the query in the range, oldest first."""
        return self._metrics(start, end or utcnow() + timedelta(minutes=1), query, MAX_POINTS)

    def _metrics(self, start: datetime, end: datetime, query: str, limit: int) -> pd.DataFrame:
        """The newest `limit` metrics rows of the query in [start, end), oldest first.

        Columns added after the first release (duplicates_dropped, avro_rows) read as NULL
        on a table written before them."""
        dt = self.table(BATCH_METRICS)
        t = self._sql(f"SELECT {self._select(dt, BATCH_METRICS, METRICS_COLUMNS)} FROM m"
                      f" WHERE trigger_time >= {_lit_ts(start)} AND trigger_time < {_lit_ts(end)}"
                      f" AND query = {_lit_str(query)} ORDER BY trigger_time DESC LIMIT {int(limit)}", m=dt)
        return t.to_pandas().iloc[::-1].reset_index(drop=True)

    def last_batch(self, query: str = HIGH_VALUE_QUERY) -> dict | None:
        """The newest metrics row of the query (file statistics find it without a scan)."""
        info = self.info(BATCH_METRICS, "trigger_time")
        if info.rows == 0 or info.newest is None:
            return None
        for back in (timedelta(hours=1), timedelta(days=2), timedelta(days=400)):
            df = self._metrics(info.newest - back, info.newest + timedelta(seconds=1), query, 1)
            if len(df):
                return df.iloc[-1].to_dict()
        return None


# ---- helpers ---------------------------------------------------------------------------
def run_sql(sql: str, **tables) -> pa.Table:
    """SQL over Delta tables through delta-rs, fully materialised: nothing of the scan
    outlives this call, which keeps a process that read tables from aborting at exit."""
    from deltalake import QueryBuilder

    qb = QueryBuilder()
    for name, dt in tables.items():
        qb.register(name, dt)
    stream = qb.execute(sql)
    try:
        return pa.table(stream.read_all())
    finally:
        del stream


def read_columns(path: str | Path, cols: list[str] | tuple[str, ...]) -> pa.Table:
    """Every row of some columns of a Delta table, through the same guarded path."""
    from deltalake import DeltaTable

    return run_sql(f"SELECT {', '.join(cols)} FROM t", t=DeltaTable(str(path)))


def _lit_ts(ts: datetime) -> str:
    return f"TIMESTAMP '{_utc(ts):%Y-%m-%dT%H:%M:%S.%f}Z'"


def _lit_str(value: str) -> str:
    """A SQL string literal; quotes doubled, control characters refused (values come from users)."""
    if any(ord(ch) < 32 for ch in value):
        raise SettingsError("text filters must not contain control characters")
    return "'" + value.replace("'", "''") + "'"


def _lit_amount(value: Decimal) -> str:
    return f"CAST('{Decimal(value).quantize(Decimal('0.01'))}' AS DECIMAL(18,2))"


def _hv_where(q: HighValueQuery) -> str:
    """WHERE clause of a validated query: partition range first so DataFusion prunes by event_date."""
    parts = [f"event_date BETWEEN DATE '{q.start.date()}' AND DATE '{q.end.date()}'",
             f"{EVENT_TIME} >= {_lit_ts(q.start)}", f"{EVENT_TIME} < {_lit_ts(q.end)}"]
    if q.min_amount is not None:
        parts.append(f"{AMOUNT} >= {_lit_amount(q.min_amount)}")
    if q.max_amount is not None:
        parts.append(f"{AMOUNT} <= {_lit_amount(q.max_amount)}")
    if q.person_id:
        parts.append(f"{PERSON_ID} = {_lit_str(q.person_id)}")
    if q.merchant_id:
        parts.append(f"{MERCHANT_ID} = {_lit_str(q.merchant_id)}")
    if q.categories:
        parts.append(f"{MERCHANT_CATEGORY} IN ({', '.join(_lit_str(c) for c in q.categories)})")
    return " AND ".join(parts)


def _check_top(n: int) -> None:
    if not isinstance(n, int) or not 1 <= n <= 100:
        raise SettingsError("top N must be 1..100")


def _top_frame(t: pa.Table, label: str) -> pd.DataFrame:
    df = t.to_pandas()
    if df.empty:
        return pd.DataFrame({label: pd.Series([], dtype="string"), "amount": pd.Series([], dtype="float64"),
                             "count": pd.Series([], dtype="int64")})
    df[label] = df[label].fillna("(unknown)")
    return df[[label, "amount", "count"]].reset_index(drop=True)


def _empty_series() -> pd.DataFrame:
    return pd.DataFrame({"window_start": pd.Series([], dtype="datetime64[ns, UTC]"),
                         "sales_count": pd.Series([], dtype="int64"),
                         "sales_amount": pd.Series([], dtype="float64"),
                         "high_value_count": pd.Series([], dtype="int64"),
                         "high_value_amount": pd.Series([], dtype="float64"),
                         "high_value_share": pd.Series([], dtype="float64")})


def _to_frame(t: pa.Table) -> pd.DataFrame:
    df = t.to_pandas()
    if AMOUNT in df:
        df[AMOUNT] = df[AMOUNT].astype("float64")
    return df
