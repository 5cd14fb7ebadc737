"""Which chart a query result calls for, from its shape alone.

- a time column and number columns -> **lines** over time (x = the first time column, y = up to
  `MAX_SERIES` number columns; with one text column of at most `MAX_COLORS` values and one
  number, one line per value of that column: "reasons per hour");
- a text column and a number column -> **bars** (x = the first text column, y = the first
  number column; at most `MAX_BARS` bars, in the result's order);
- anything else (no rows, no number, a single value) -> no chart, with the reason.

Columns named like identifiers (``*_id``, ``id``, ``batch_id``) are not plotted as numbers:
they label rows, they do not measure anything. The page draws the spec with plotly.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

MAX_SERIES = 3
MAX_COLORS = 20
MAX_BARS = 50


@dataclass(frozen=True)
class ChartSpec:
    kind: str                   # "line", "bar" or "none"
    x: str | None = None
    y: tuple[str, ...] = ()
    color: str | None = None
    reason: str = ""            # why there is no chart (kind "none")


def _is_time(s: pd.Series) -> bool:
    if pd.api.types.is_datetime64_any_dtype(s):
        return True
    if s.dtype == object:
        sample = s.dropna().head(20)
        import datetime as _dt

        return len(sample) > 0 and all(isinstance(v, _dt.date) for v in sample)
    return False


def _is_number(name: str, s: pd.Series) -> bool:
    lowered = name.lower()
    if lowered == "id" or lowered.endswith("_id") or lowered.endswith("_offset") or lowered.endswith("_partition"):
        return False
    return pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)


def _is_text(s: pd.Series) -> bool:
    return (pd.api.types.is_string_dtype(s) or s.dtype == object) and not _is_time(s)


def choose_chart(df: pd.DataFrame) -> ChartSpec:
    if df is None or df.empty:
        return ChartSpec("none", reason="no rows to draw")
    times = [c for c in df.columns if _is_time(df[c])]
    numbers = [c for c in df.columns if c not in times and _is_number(str(c), df[c])]
    texts = [c for c in df.columns if c not in times and c not in numbers and _is_text(df[c])]
    if not numbers:
        return ChartSpec("none", reason="the result has no number column to draw")
    if times:
        x = times[0]
        if texts and len(numbers) >= 1 and df[texts[0]].nunique(dropna=False) <= MAX_COLORS \
                and df[texts[0]].nunique(dropna=False) > 1:
            return ChartSpec("line", x, (numbers[0],), texts[0])
        return ChartSpec("line", x, tuple(numbers[:MAX_SERIES]))
    if texts:
        return ChartSpec("bar", texts[0], (numbers[0],))
    return ChartSpec("none", reason="the result has no time or text column to draw the numbers against")


def chart_frame(df: pd.DataFrame, spec: ChartSpec) -> pd.DataFrame:
    """The rows the chart draws: lines sorted by time; bars cut at MAX_BARS (result order kept)."""
    if spec.kind == "line":
        return df.sort_values(spec.x, kind="stable")
    if spec.kind == "bar":
        return df.head(MAX_BARS)
    return df.iloc[0:0]
