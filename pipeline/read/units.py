"""Big figures in compact units, so a metric box never cuts them: 4,845,686,530.12 -> '4.85 B'.

    compact(4_845_686_530.12)   # '4.85 B'
    compact(4_000_000)          # '4.0 M'
    compact(12_345)             # '12.3 k'
    compact(950)                # '950'
    compact(None)               # '–'

Three significant digits (at least one decimal after a unit), units k, M, B (billion) and T;
a value that rounds up to the next unit takes it (999,960 -> '1.0 M'). Below 1,000 the value
is shown with `small_decimals` decimals (0 by default: counts).
"""

from __future__ import annotations

import math

UNITS = ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k"))
MISSING = "–"


def _three_digits(r: float) -> str:
    """r (already rounded to three significant digits, 1 <= r < 1000) with at least one decimal under 10."""
    if r >= 100:
        return f"{r:.0f}"
    if r >= 10:
        return f"{r:.1f}"
    text = f"{r:.2f}"
    return text[:-1] if text.endswith("0") else text


def compact(value, small_decimals: int = 0) -> str:
    """A number in compact units; None or NaN -> '–'."""
    if value is None:
        return MISSING
    try:
        x = float(value)
    except (TypeError, ValueError):
        return MISSING
    if math.isnan(x):
        return MISSING
    if math.isinf(x):
        return "∞" if x > 0 else "-∞"
    sign = "-" if x < 0 else ""
    a = abs(x)
    for i, (size, unit) in enumerate(UNITS):
        if a >= size:
            r = float(f"{a / size:.3g}")
            if r >= 1000 and i > 0:  # 999,960 -> 1.0 M, not 1000 k
                return f"{sign}{_three_digits(r / 1000)} {UNITS[i - 1][1]}"
            return f"{sign}{r:.0f} {unit}" if r >= 1000 else f"{sign}{_three_digits(r)} {unit}"
    if round(a, small_decimals) >= 1000:
        return f"{sign}1.0 k"
    return f"{sign}{a:,.{small_decimals}f}"
