"""Generate the sample transactions the storm emulator draws from.

    python samples/generate_samples.py [--seed 20261124] [--count 100000] [--out samples/transactions.jsonl.gz]

The output is reproducible byte for byte from the seed: only Python's own `random`
(Mersenne Twister, stable across versions for these calls) is used, keys are written in
a fixed order and the gzip header carries no time stamp or file name.

What makes the data realistic enough for rehearsals:
- persons with skewed activity (a Zipf-like law: a few cardholders pay very often);
- merchants with a category, a country and a channel mix;
- amounts from a per-category lognormal with a long tail, so that roughly 5% of all
  transactions exceed 1500 (the business threshold), mostly in travel, electronics and
  jewelry;
- event times spread over one day with a daily curve (quiet nights, evening peak).
"""

from __future__ import annotations

import argparse
import bisect
import gzip
import io
import json
import math
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

# category: (lognormal mu, sigma, share of merchants)
CATEGORIES = {
    "grocery": (3.6, 0.8, 0.20),
    "fuel": (3.9, 0.5, 0.10),
    "restaurants": (3.7, 0.7, 0.16),
    "fashion": (4.6, 0.9, 0.12),
    "health": (4.2, 1.0, 0.08),
    "home": (5.3, 1.1, 0.09),
    "entertainment": (4.1, 0.9, 0.08),
    "electronics": (6.3, 1.1, 0.08),
    "travel": (6.6, 1.0, 0.06),
    "jewelry": (6.6, 1.2, 0.03),
}
COUNTRIES = {"US": ("USD", 0.34), "GB": ("GBP", 0.10), "ES": ("EUR", 0.12), "FR": ("EUR", 0.09),
             "DE": ("EUR", 0.10), "MX": ("MXN", 0.08), "BR": ("BRL", 0.07), "CA": ("CAD", 0.10)}
CHANNELS = (("pos", 0.70), ("online", 0.25), ("atm", 0.05))
DAY_START = datetime(2026, 11, 24, tzinfo=timezone.utc)
# Relative activity per hour of day: quiet nights, a lunch bump and an evening peak.
HOURLY = [2, 1, 1, 1, 1, 2, 4, 6, 8, 9, 10, 11, 13, 12, 10, 10, 11, 13, 15, 16, 14, 10, 6, 4]


def _cumulative(weights):
    total, out = 0.0, []
    for w in weights:
        total += w
        out.append(total)
    return out, total


def _pick(rng, items, cum, total):
    return items[bisect.bisect(cum, rng.random() * total)]


def generate(seed: int, count: int) -> list[dict]:
    rng = random.Random(seed)
    persons = [f"P{n:07d}" for n in range(1, 20001)]
    # Zipf-like activity: weight 1/rank^0.7.
    p_cum, p_total = _cumulative([1.0 / (r ** 0.7) for r in range(1, len(persons) + 1)])
    cat_names = list(CATEGORIES)
    c_cum, c_total = _cumulative([CATEGORIES[c][2] for c in cat_names])
    country_names = list(COUNTRIES)
    k_cum, k_total = _cumulative([COUNTRIES[k][1] for k in country_names])
    ch_names = [c for c, _ in CHANNELS]
    ch_cum, ch_total = _cumulative([w for _, w in CHANNELS])
    merchants = []
    for n in range(1, 2001):
        category = _pick(rng, cat_names, c_cum, c_total)
        country = _pick(rng, country_names, k_cum, k_total)
        merchants.append((f"M{n:05d}", category, country))
    m_cum, m_total = _cumulative([1.0 / (r ** 0.7) for r in range(1, len(merchants) + 1)])
    h_cum, h_total = _cumulative(HOURLY)

    rows = []
    for i in range(1, count + 1):
        merchant_id, category, country = _pick(rng, merchants, m_cum, m_total)
        mu, sigma, _ = CATEGORIES[category]
        amount = round(min(math.exp(rng.gauss(mu, sigma)), 250000.0), 2)
        amount = max(amount, 0.5)
        hour = bisect.bisect(h_cum, rng.random() * h_total)
        at = DAY_START + timedelta(hours=hour, seconds=rng.random() * 3600)
        channel = _pick(rng, ch_names, ch_cum, ch_total)
        if channel == "atm":
            amount = float(rng.choice((20, 40, 50, 60, 80, 100, 200, 300, 400, 500)))
        rows.append({
            "transaction_id": f"S{seed}-{i:06d}",
            "person_id": _pick(rng, persons, p_cum, p_total),
            "merchant_id": merchant_id,
            "amount": amount,
            "currency": COUNTRIES[country][0],
            "timestamp": at.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z",
            "merchant_category": category,
            "country": country,
            "channel": channel,
        })
    rows.sort(key=lambda r: r["timestamp"])
    return rows


def write(rows: list[dict], out: Path) -> None:
    buf = io.BytesIO()
    # mtime=0 and no file name in the header keep the file identical across runs.
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as gz:
        for row in rows:
            gz.write(json.dumps(row, separators=(",", ":")).encode() + b"\n")
    out.write_bytes(buf.getvalue())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=20261124)
    ap.add_argument("--count", type=int, default=100_000)
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("transactions.jsonl.gz"))
    args = ap.parse_args(argv)
    if args.count <= 0:
        ap.error("--count must be positive")
    rows = generate(args.seed, args.count)
    write(rows, args.out)
    high = sum(r["amount"] > 1500 for r in rows)
    print(f"wrote {len(rows)} transactions to {args.out} ({high / len(rows):.1%} over 1500)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
