"""The reference validator of a JSON message (Python), built on `pipeline.contract.fields`.

One Kafka message = one UTF-8 JSON object; key = ``person_id`` as UTF-8 (see `fields`
for the rules). Unknown extra fields are allowed and ignored. `validate()` is used by the
emulator's file replay and by the tests; the Spark job implements the same rules with
column expressions (`pipeline.contract.spark`) and a test checks that both agree on
every contract case.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from pipeline.contract.avro import decode, is_framed
from pipeline.contract.errors import Invalid
from pipeline.contract.fields import (
    AMOUNT_SCALE,
    CHANNELS,
    COUNTRY_RE,
    CURRENCY_RE,
    DEFAULT_CURRENCY,
    ID_FIELDS,
    MAX_AMOUNT,
    MAX_ID_LENGTH,
    REQUIRED_FIELDS,
    TIMESTAMP_RE,
)

_QUANTUM = Decimal(1).scaleb(-AMOUNT_SCALE)


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
    """Parse and validate one message value (JSON, or Avro in the Confluent framing).

    Returns the normalised record (`fields.RECORD_COLUMNS`) or raises Invalid."""
    if isinstance(value, (bytes, bytearray)) and is_framed(value):
        return _checked(decode(bytes(value)), avro=True)
    if isinstance(value, (bytes, bytearray)):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise Invalid("value is not UTF-8") from None
    try:
        obj = json.loads(value, parse_float=Decimal, parse_int=Decimal,
                         parse_constant=lambda c: Decimal(c))
    except (ValueError, RecursionError):
        raise Invalid("value is not JSON") from None
    if not isinstance(obj, dict):
        raise Invalid("value is not a JSON object")
    return _checked(obj, avro=False)


def _checked(obj: dict[str, Any], *, avro: bool) -> dict[str, Any]:
    """The contract's value rules, shared by both wire formats (Avro already fixes the types)."""
    for name in REQUIRED_FIELDS:
        if name not in obj or obj[name] is None:
            raise Invalid(f"missing required field {name}")
    for name in ID_FIELDS:
        v = obj[name]
        if not isinstance(v, str):
            raise Invalid(f"{name} is not a string")
        if not 1 <= len(v) <= MAX_ID_LENGTH:
            raise Invalid(f"{name} must be 1..{MAX_ID_LENGTH} characters")
    amount = _checked_amount(obj["amount"])
    if avro:
        event_time = obj["timestamp"].astimezone(UTC)
    elif not isinstance(obj["timestamp"], str):
        raise Invalid("timestamp is not a string")
    else:
        event_time = parse_timestamp(obj["timestamp"])
    # Optional fields never cost a transaction: a value of the wrong type or format is
    # treated as absent (currency then falls back to its default).
    currency = _optional_str(obj, "currency", CURRENCY_RE) or DEFAULT_CURRENCY
    channel = _optional_str(obj, "channel")
    return {
        "transaction_id": obj["transaction_id"],
        "person_id": obj["person_id"],
        "merchant_id": obj["merchant_id"],
        "amount": amount.quantize(_QUANTUM),
        "currency": currency,
        "event_time": event_time,
        "merchant_category": _optional_str(obj, "merchant_category"),
        "country": _optional_str(obj, "country", COUNTRY_RE),
        "channel": channel if channel in CHANNELS else None,
    }


def _checked_amount(amount: Any) -> Decimal:
    if not isinstance(amount, Decimal) or isinstance(amount, bool):
        raise Invalid("amount is not a number")
    # A JSON number beyond the double range (1e400) is infinite for every consumer but Python.
    if not amount.is_finite() or not math.isfinite(float(amount)):
        raise Invalid("amount is not a finite number")
    if amount <= 0:
        raise Invalid("amount must be greater than 0")
    if amount > MAX_AMOUNT:
        raise Invalid(f"amount exceeds {MAX_AMOUNT:,}")
    if amount != amount.quantize(_QUANTUM, rounding="ROUND_DOWN"):
        raise Invalid(f"amount has more than {AMOUNT_SCALE} decimals")
    return amount


def _optional_str(obj: dict, name: str, pattern: re.Pattern | None = None) -> str | None:
    v = obj.get(name)
    if not isinstance(v, str) or (pattern is not None and not pattern.match(v)):
        return None
    return v
