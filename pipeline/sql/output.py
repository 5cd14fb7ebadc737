"""A query's result as text: CSV or an aligned table, the same for both engines.

Both engines hand over a pyarrow table, and every cell is written by `cell()`: timestamps in
UTC as ``YYYY-MM-DD HH:MM:SS[.ffffff]+00:00``, floats as Python's shortest repr, decimals
exactly, NULL as an empty field. So ``sql --engine delta-rs --format csv`` and
``sql --engine spark --format csv`` print the same text for the same rows (up to the last
digits of a floating-point sum, which the engines add in different orders).
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime
from decimal import Decimal

import pyarrow as pa


def cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return (value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)).isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def rows(table: pa.Table) -> list[list[str]]:
    return [[cell(v) for v in row.values()] for row in table.to_pylist()]


def to_csv(table: pa.Table) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(table.column_names)
    writer.writerows(rows(table))
    return buf.getvalue()


def to_text(table: pa.Table, max_width: int = 60) -> str:
    """An aligned table (like Spark's show), cells cut at max_width characters."""
    body = [[c if len(c) <= max_width else c[: max_width - 1] + "…" for c in r] for r in rows(table)]
    head = list(table.column_names)
    widths = [max([len(h), *(len(r[i]) for r in body)]) for i, h in enumerate(head)]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    out = [line, "| " + " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + " |", line]
    out += ["| " + " | ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in body]
    out.append(line)
    return "\n".join(out)
