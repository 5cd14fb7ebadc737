"""Which aggregate window is complete, and which one is still filling.

The rule (the Live sales charts and the Overview's "last window" figures both use it):

    A window [start, end) is complete when its end is at or before the *cutoff*, and
    cutoff = min(now, trigger time of the job's newest batch) when the job has run a batch,
    cutoff = now otherwise.

Why both: the clock alone says no more events *belong* to the window once it has ended,
but the job only counts them once a batch has read them. A batch that starts at T reads
the topic up to its log end at T, so every record sent before T is in the tables after
it; a window that ended before T therefore holds every on-time record. A window that
ended after the newest batch started may still gain rows, so it is drawn as partial.
Late events (sent long after their event time) can still add to a complete window; the
job never drops them, and the figures move a little then.

    cutoff = complete_until(now, last_batch_trigger_time)
    is_complete(window_end, cutoff)
    mark_complete(frame, bucket_s, cutoff)  # adds a boolean "complete" column
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd


def _utc(ts) -> datetime:
    if isinstance(ts, pd.Timestamp):
        ts = ts.to_pydatetime()
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def complete_until(now: datetime, processed_until: datetime | None = None) -> datetime:
    """The cutoff: windows ending at or before it are complete (see the module docstring)."""
    now = _utc(now)
    if processed_until is None or (isinstance(processed_until, float) and processed_until != processed_until):
        return now
    return min(now, _utc(processed_until))


def is_complete(window_end: datetime, cutoff: datetime) -> bool:
    """A window is complete when it ends at or before the cutoff."""
    return _utc(window_end) <= _utc(cutoff)


def mark_complete(frame: pd.DataFrame, bucket_s: int, cutoff: datetime) -> pd.DataFrame:
    """The frame (one row per `window_start`, windows `bucket_s` wide) with a boolean `complete` column."""
    out = frame.copy()
    if out.empty:
        out["complete"] = pd.Series([], dtype="bool")
        return out
    ends = pd.to_datetime(out["window_start"], utc=True) + timedelta(seconds=int(bucket_s))
    out["complete"] = (ends <= pd.Timestamp(_utc(cutoff))).to_numpy()
    return out


def partial_note(frame: pd.DataFrame) -> str | None:
    """One sentence for the chart when its newest window(s) are still filling, else None."""
    if frame.empty or "complete" not in frame or frame["complete"].all():
        return None
    first = pd.Timestamp(frame.loc[~frame["complete"], "window_start"].min())
    return (f"The window from {first:%H:%M} UTC is still filling: it is drawn hatched and faded, and its "
            "figures will grow until the job has processed past its end. It is not a drop in sales.")
