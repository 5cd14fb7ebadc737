"""The transactions contract, in Tormenta's own code.

One Kafka message = one UTF-8 JSON object; key = ``person_id`` as UTF-8. Required fields:
transaction_id, person_id, merchant_id (strings of 1..64 characters), amount (a JSON
number, 0 < amount <= 10,000,000, at most 2 decimals) and timestamp (ISO-8601 with an
explicit offset or Z). Optional: currency (3 upper-case letters, default USD),
merchant_category, country (2 upper-case letters), channel (pos, online or atm); an
optional field of the wrong type or format is treated as absent. Unknown extra fields are
allowed and ignored.

`validate()` is the reference implementation used by the emulator's file replay and by
the tests; the Spark job implements the same rules with column expressions
(`pipeline.job.transforms`) and the tests check that both agree.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

REQUIRED_STRINGS = ("transaction_id", "person_id", "merchant_id")
MAX_ID_LENGTH = 64
MAX_AMOUNT = Decimal("10000000")
CHANNELS = ("pos", "online", "atm")
DEFAULT_CURRENCY = "USD"
# ISO-8601 date-time with a mandatory offset (Z or +hh:mm / -hh:mm / +hhmm).
TIMESTAMP_RE = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?([Zz]|[+-]\d{2}:?\d{2})$"
)
CURRENCY_RE = re.compile(r"^[A-Z]{3}$")
COUNTRY_RE = re.compile(r"^[A-Z]{2}$")


class Invalid(ValueError):
    """A message that breaks the contract; the text is the quarantine reason."""


def parse_timestamp(text: str) -> datetime:
    """Contract timestamp -> aware UTC datetime (raises Invalid)."""
    if not isinstance(text, str) or not TIMESTAMP_RE.match(text):
        raise Invalid("timestamp is not ISO-8601 with an offset or Z")
    t = text.replace("z", "Z").replace("t", "T")
    if t.endswith("Z"):
        t = t[:-1] + "+00:00"
    m = re.match(r"^(.*?)(\.\d+)?([+-]\d{2}:?\d{2})$", t)
    base, frac, off = m.group(1), m.group(2) or "", m.group(3)
    if ":" not in off:
        off = off[:3] + ":" + off[3:]
    frac = (frac + "000000")[:7] if frac else ""
    try:
        return datetime.fromisoformat(base + frac + off).astimezone(UTC)
    except ValueError:
        raise Invalid("timestamp is not a valid date-time") from None


def validate(value: bytes | str) -> dict[str, Any]:
    """Parse and validate one message value; returns the normalised record or raises Invalid."""
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise Invalid("value is not UTF-8") from None
    try:
        obj = json.loads(value, parse_float=Decimal, parse_int=Decimal,
                         parse_constant=lambda c: Decimal(c))
    except (ValueError, RecursionError):
        raise Invalid("value is not JSON") from None
    if not isinstance(obj, dict):
        raise Invalid("value is not a JSON object")
    for name in (*REQUIRED_STRINGS, "amount", "timestamp"):
        if name not in obj or obj[name] is None:
            raise Invalid(f"missing required field {name}")
    for name in REQUIRED_STRINGS:
        v = obj[name]
        if not isinstance(v, str):
            raise Invalid(f"{name} is not a string")
        if not 1 <= len(v) <= MAX_ID_LENGTH:
            raise Invalid(f"{name} must be 1..{MAX_ID_LENGTH} characters")
    amount = obj["amount"]
    if not isinstance(amount, Decimal) or isinstance(amount, bool):
        raise Invalid("amount is not a number")
    # A JSON number beyond the double range (1e400) is infinite for every consumer but Python.
    if not amount.is_finite() or not math.isfinite(float(amount)):
        raise Invalid("amount is not a finite number")
    if amount <= 0:
        raise Invalid("amount must be greater than 0")
    if amount > MAX_AMOUNT:
        raise Invalid("amount exceeds 10,000,000")
    if amount != amount.quantize(Decimal("0.01"), rounding="ROUND_DOWN"):
        raise Invalid("amount has more than 2 decimals")
    if not isinstance(obj["timestamp"], str):
        raise Invalid("timestamp is not a string")
    event_time = parse_timestamp(obj["timestamp"])
    # Optional fields never cost a transaction: a value of the wrong type or format is
    # treated as absent (currency then falls back to its default).
    currency = _optional_str(obj, "currency", CURRENCY_RE) or DEFAULT_CURRENCY
    channel = _optional_str(obj, "channel")
    return {
        "transaction_id": obj["transaction_id"],
        "person_id": obj["person_id"],
        "merchant_id": obj["merchant_id"],
        "amount": amount.quantize(Decimal("0.01")),
        "currency": currency,
        "event_time": event_time,
        "merchant_category": _optional_str(obj, "merchant_category"),
        "country": _optional_str(obj, "country", COUNTRY_RE),
        "channel": channel if channel in CHANNELS else None,
    }


def _optional_str(obj: dict, name: str, pattern: re.Pattern | None = None) -> str | None:
    v = obj.get(name)
    if not isinstance(v, str) or (pattern is not None and not pattern.match(v)):
        return None
    return v


def is_high_value(record: dict[str, Any], threshold: Decimal) -> bool:
    return record["amount"] > threshold
