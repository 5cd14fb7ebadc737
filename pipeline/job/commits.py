"""Idempotent Delta appends for a streaming query's outputs, at the cost of one check per restart.

Spark replays a micro-batch after a crash, so a batch's append may reach a table twice.
Delta's own guard (``txnAppId``/``txnVersion``) asks the table snapshot for its
transaction versions, and Delta 4.4 answers that with a full state reconstruction: a
Spark job over the checkpoint and the recent commit files, on every append (0.4-1.0 s
per table per batch on two cores, docs/PERFORMANCE.md).

Only a batch that the checkpoint's offset log already held when the query started can be
a replay (``runner.last_planned_batch``: Spark re-runs the last planned batch whose commit
it did not record); every later batch has offsets nobody planned before. So each append carries a marker in its
commit (``userMetadata`` = ``<app>:<batch id>``), and only for a batch that may be a
replay are the table's recent commits read for the newest marker of the app, once per
table. A batch at or below that marker is already in the table and is skipped. That
append also carries ``txnAppId``/``txnVersion``, so a table last written by a version of
the job that only set those is still guarded by Delta.
"""

from __future__ import annotations

import logging

from pipeline.contract.tables import BATCH_METRICS

log = logging.getLogger(__name__)
HISTORY_DEPTHS = (20, 500, None)  # commits read back for the newest marker (None: all)
# Output names that earlier releases marked commits with: the batch_metrics commits said
# "metrics" until the table names got one home. Markers persist in the tables, so a table
# written then is still recognised after an upgrade (a replayed batch is not written twice).
FORMER_NAMES = {BATCH_METRICS: "metrics"}


def marker(app_id: str, batch_id: int) -> str:
    return f"{app_id}:{batch_id}"


def marked_batch(user_metadata: str | None, app_id: str) -> int | None:
    """The batch id of a commit's marker when it is `app_id`'s, else None."""
    if not user_metadata or not user_metadata.startswith(app_id + ":"):
        return None
    tail = user_metadata[len(app_id) + 1:]
    return int(tail) if tail.isdigit() else None


def newest_marked(commits, *app_ids: str) -> int | None:
    """The newest batch id any of `app_ids` marked in (version, userMetadata) pairs, any order."""
    found = [(v, b) for v, meta in commits for app_id in app_ids if (b := marked_batch(meta, app_id)) is not None]
    return max(found)[1] if found else None


def former_app_ids(app_id: str) -> tuple[str, ...]:
    """The ids the same output's markers carried in earlier releases (`FORMER_NAMES`)."""
    return tuple(app_id[:-len(name)] + old for name, old in FORMER_NAMES.items() if app_id.endswith(f"-{name}"))


class OnceAppender:
    """Appends one query's batches to its tables, each batch at most once per table.

    `replayable_upto`: the newest batch id in the query's offset log when it started (-1
    for a new checkpoint); only batches up to it may already be in a table. None (not
    known): the first batch written to each table is checked."""

    def __init__(self, app: str, replayable_upto: int | None = None):
        self.app = app
        self.replayable_upto = replayable_upto
        self.last_written: dict[str, int] = {}  # table path -> newest batch known in it (checked once)

    def append(self, df, path: str, name: str, batch_id: int) -> bool:
        """Append `df` to the Delta table at `path` as batch `batch_id` of output `name`.
        False when that batch was already in the table (a replay after a crash)."""
        app_id = f"{self.app}-{name}"
        maybe_replay = self.replayable_upto is None or batch_id <= self.replayable_upto
        first = maybe_replay and path not in self.last_written
        if first:
            self.last_written[path] = self._newest_in_table(df.sparkSession, path, app_id)
        if batch_id <= self.last_written.get(path, -1):
            log.info("batch %d of %s is already in %s (a replay after a crash): not written again",
                     batch_id, app_id, name)
            return False
        writer = df.write.format("delta").mode("append").option("userMetadata", marker(app_id, batch_id))
        if first:  # a table last written before the markers existed: Delta's own guard
            writer = writer.option("txnAppId", app_id).option("txnVersion", batch_id)
        writer.save(path)
        self.last_written[path] = batch_id
        return True

    @staticmethod
    def _newest_in_table(spark, path: str, app_id: str) -> int:
        from delta.tables import DeltaTable

        if not DeltaTable.isDeltaTable(spark, path):
            return -1
        table = DeltaTable.forPath(spark, path)
        for depth in HISTORY_DEPTHS:
            history = table.history(depth) if depth else table.history()
            rows = [(r["version"], r["userMetadata"]) for r in history.select("version", "userMetadata").collect()]
            newest = newest_marked(rows, app_id, *former_app_ids(app_id))
            if newest is not None:
                return newest
            if depth is not None and len(rows) < depth:
                break  # the whole history was read
        return -1

