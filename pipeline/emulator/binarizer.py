"""Binarizers: records -> wire bytes, in the contract's JSON or in Avro (Confluent framing).

Two wire formats, chosen by ``settings.wire_format`` / ``emulate --format``:

- `JsonBinarizer`: the contract's UTF-8 JSON;
- `AvroBinarizer`: ``0x00`` + 4-byte big-endian schema id + the Avro binary body of
  `pipeline.contract.avro.SCHEMA_JSON` (strings, decimal(18,2) bytes amount,
  timestamp-micros long, optional strings as ``["null", "string"]`` unions).

The key is always ``person_id`` as UTF-8. Both binarizers have two paths. `encode()` turns
any batch of contract dicts into messages (the general path, for replays and real
feeds). `templates()` serves the emulator's hot path: every sample is encoded once into
constant byte segments, and per message only the transaction_id and the chunk's
timestamp are spliced in (the Avro lengths and the timestamp by a hand-written zigzag
varint, checked byte for byte against fastavro in the unit tests).

Each binarizer also knows how to damage or re-stamp one of its messages, for the fault
injector (`pipeline.emulator.faults`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from pipeline.contract import Invalid, is_high_value, parse_timestamp
from pipeline.contract.avro import AMOUNT_PRECISION, HEADER_SIZE, SCHEMA_ID, SCHEMAS, header, is_framed
from pipeline.contract.fields import (
    AMOUNT,
    AMOUNT_SCALE,
    DEFAULT_THRESHOLD,
    FIELDS,
    PERSON_ID,
    TIMESTAMP,
    TRANSACTION_ID,
)
from pipeline.contract.wire import AVRO, JSON, WIRE_FORMATS

# TRANSACTION_ID and TIMESTAMP are the two per-message fields.
ID_PREFIX = b'{"%s":"' % TRANSACTION_ID.encode()
_TS_PART = b'","%s":"' % TIMESTAMP.encode()
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)


@dataclass
class EncodedBatch:
    """Wire-ready messages: key bytes (or None), value bytes, and whether each is over the threshold."""

    keys: list[bytes | None] = field(default_factory=list)
    values: list[bytes] = field(default_factory=list)
    high: list[bool] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.values)


Batch = list[dict[str, Any] | bytes] | EncodedBatch


class Templates(Protocol):
    """Pre-encoded samples; `render` builds one message per sample index."""

    def render(self, id_prefix: bytes, start: int, index: list[int], now: float) -> list[bytes]:
        """Messages for samples `index`, ids ``id_prefix + str(start + k)``, event time `now` (epoch s)."""
        ...


def iso_utc(epoch: float) -> str:
    """Contract timestamp for an epoch time: 2026-11-24T19:12:03.123456Z."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def epoch_micros(epoch: float) -> int:
    """The timestamp-micros of an epoch time, rounded exactly as `iso_utc` rounds it."""
    return (datetime.fromtimestamp(epoch, UTC) - _EPOCH) // _MICRO


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=_json_default).encode


def to_json_bytes(record: dict[str, Any]) -> bytes:
    return _dumps(record).encode()


def _high(record: dict[str, Any], threshold: Decimal) -> bool:
    try:
        return is_high_value(Decimal(str(record.get(AMOUNT))), threshold)
    except (ArithmeticError, ValueError):
        return False


# ---- Avro primitives (hand-written; the unit tests hold them to fastavro) -------------------
def zigzag_varint(n: int) -> bytes:
    """An Avro int/long: zigzag, then little-endian groups of 7 bits (high bit = more)."""
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """(value, next position) of the zigzag varint at `pos`; IndexError past the end."""
    shift = z = 0
    while True:
        b = buf[pos]
        pos += 1
        z |= (b & 0x7F) << shift
        if b < 0x80:
            return (z >> 1) ^ -(z & 1), pos
        shift += 7


def avro_string(text: str) -> bytes:
    data = text.encode()
    return zigzag_varint(len(data)) + data


def avro_decimal(amount: Decimal) -> bytes:
    """decimal(18, 2) as Avro bytes: the unscaled value, big-endian two's complement.

    The byte count follows fastavro (magnitude bits + 8, so -128 takes two bytes)."""
    sign, digits, exp = amount.as_tuple()
    if not isinstance(exp, int) or len(digits) > AMOUNT_PRECISION or exp + AMOUNT_SCALE < 0:
        raise ValueError(f"amount {amount} does not fit decimal({AMOUNT_PRECISION},{AMOUNT_SCALE})")
    unscaled = int("".join(map(str, digits)) or "0") * 10 ** (exp + AMOUNT_SCALE)
    size = (unscaled.bit_length() + 8) // 8
    data = (-unscaled if sign else unscaled).to_bytes(size, "big", signed=True)
    return zigzag_varint(len(data)) + data


def _avro_field(f, value: Any) -> bytes:
    """One field of the contract record in Avro binary (ValueError/TypeError when impossible)."""
    if f.kind == "id":
        if not isinstance(value, str):
            raise TypeError(f"{f.name} is not a string")
        return avro_string(value)
    if f.kind == "amount":
        return avro_decimal(value if isinstance(value, Decimal) else Decimal(str(value)))
    if f.kind == "timestamp":
        moment = value if isinstance(value, datetime) else parse_timestamp(value)
        return zigzag_varint((moment - _EPOCH) // _MICRO)
    # Optional text: a union with null; a value of another type is sent as absent.
    return b"\x02" + avro_string(value) if isinstance(value, str) else b"\x00"


_NAMES = [f.name for f in FIELDS]
if _NAMES[0] != TRANSACTION_ID or TIMESTAMP not in _NAMES:  # what the Avro templates rely on
    raise RuntimeError("the Avro templates need transaction_id first and a timestamp field; update binarizer.py")
_TS_POS = _NAMES.index(TIMESTAMP)


def avro_body(record: dict[str, Any]) -> bytes:
    return b"".join(_avro_field(f, record.get(f.name)) for f in FIELDS)


def avro_spans(value: bytes) -> list[tuple[int, int]] | None:
    """Byte ranges of the required fields (up to the timestamp) in a framed message, or None."""
    if not is_framed(value) or len(value) <= HEADER_SIZE:
        return None
    pos, spans = HEADER_SIZE, []
    try:
        for f in FIELDS[: _TS_POS + 1]:
            start = pos
            n, pos = read_varint(value, pos)
            if f.kind != "timestamp":
                if n < 0:
                    return None
                pos += n
            spans.append((start, pos))
    except IndexError:
        return None
    return spans if pos <= len(value) else None


def transaction_id_of(value: bytes) -> str | None:
    """The transaction_id of a message of either format (None when it has none)."""
    if is_framed(value):
        spans = avro_spans(value)
        if spans is None:
            return None
        start, end = spans[0]
        _, data = read_varint(value, start)
        return value[data:end].decode(errors="replace")
    if value.startswith(ID_PREFIX):
        end = value.find(b'"', len(ID_PREFIX))
        return value[len(ID_PREFIX):end].decode() if end > 0 else None
    try:
        return str(json.loads(value)[TRANSACTION_ID])
    except (ValueError, KeyError, TypeError):
        return None


# ---- binarizers ------------------------------------------------------------------------------
class _Binarizer:
    """What both wire formats share: the general `encode()` path and the threshold flag."""

    name = ""

    def __init__(self, threshold: Decimal = DEFAULT_THRESHOLD):
        self.threshold = Decimal(threshold)

    def encode_record(self, record: dict[str, Any]) -> bytes:
        raise NotImplementedError

    def encoded_natively(self, value: bytes) -> bool:
        """False when a record could not be written in this format (then it is never "high")."""
        return True

    def encode(self, batch: Batch) -> EncodedBatch:
        """Dicts -> messages; raw bytes pass unchanged (the job validates them); an encoded batch as is."""
        if isinstance(batch, EncodedBatch):
            return batch
        out = EncodedBatch()
        for record in batch:
            if isinstance(record, (bytes, bytearray)):
                key, value, high = None, bytes(record), False
            else:
                key, value = str(record.get(PERSON_ID)).encode(), self.encode_record(record)
                high = self.encoded_natively(value) and _high(record, self.threshold)
            out.keys.append(key)
            out.values.append(value)
            out.high.append(high)
        return out


class JsonBinarizer(_Binarizer):
    """Contract JSON as UTF-8; key = person_id as UTF-8."""

    name = JSON

    def encode_record(self, record: dict[str, Any]) -> bytes:
        return to_json_bytes(record)

    def templates(self, rows: list[dict[str, Any]]) -> Templates:
        return _JsonTemplates(rows)

    @staticmethod
    def restamp(value: bytes, epoch: float) -> bytes | None:
        try:
            record = json.loads(value, parse_float=Decimal)
            parse_timestamp(record[TIMESTAMP])
        except (ValueError, KeyError, TypeError, Invalid):
            return None
        record[TIMESTAMP] = iso_utc(epoch)
        return to_json_bytes(record)

    @staticmethod
    def malformed_variants(value: bytes) -> list[bytes]:
        """Ways a JSON message can break the contract, each caught by a different job rule."""
        try:
            record = json.loads(value, parse_float=Decimal)
        except ValueError:
            return [value[: max(1, len(value) // 2)]]
        no_amount = {k: v for k, v in record.items() if k != AMOUNT}
        return [
            value[: max(1, len(value) // 2)],                    # truncated: not JSON
            to_json_bytes({**record, AMOUNT: -abs(Decimal(str(record.get(AMOUNT, 1)))) or -1}),
            to_json_bytes(no_amount),                            # missing required field
            to_json_bytes({**record, TIMESTAMP: "yesterday"}),   # unparseable timestamp
            b"\xff\xfenot utf-8",                                 # not UTF-8 at all
        ]


class AvroBinarizer(_Binarizer):
    """Avro binary in the Confluent framing (schema id `SCHEMA_ID`); key = person_id as UTF-8.

    A dict that Avro cannot represent (a missing field, an amount that is not a number)
    is sent as its contract JSON instead, for the job to quarantine like any bad message."""

    name = AVRO

    def encode_record(self, record: dict[str, Any]) -> bytes:
        try:
            return header() + avro_body(record)
        except (ValueError, TypeError, ArithmeticError, InvalidOperation, Invalid):
            return to_json_bytes(record)

    def encoded_natively(self, value: bytes) -> bool:
        return is_framed(value)

    def templates(self, rows: list[dict[str, Any]]) -> Templates:
        return _AvroTemplates(rows)

    @staticmethod
    def restamp(value: bytes, epoch: float) -> bytes | None:
        spans = avro_spans(value)
        if spans is None:
            return None
        start, end = spans[_TS_POS]
        return value[:start] + zigzag_varint(epoch_micros(epoch)) + value[end:]

    @staticmethod
    def malformed_variants(value: bytes) -> list[bytes]:
        """Ways an Avro message can break the contract: framing, body and value rules."""
        spans = avro_spans(value)
        if spans is None:
            return [value[: max(1, len(value) // 2)]]
        unknown = max(SCHEMAS) + 1000
        (id_start, id_end), amount = spans[0], spans[_NAMES.index(AMOUNT)]
        return [
            value[: HEADER_SIZE + (len(value) - HEADER_SIZE) // 2],   # truncated body
            value + b"\x00",                                          # trailing bytes
            header(unknown) + value[HEADER_SIZE:],                    # unknown schema id
            value[: amount[0]] + avro_decimal(Decimal(0)) + value[amount[1]:],  # amount 0
            value[:id_start] + avro_string("") + value[id_end:],     # empty transaction_id
        ]


BINARIZERS: dict[str, type[_Binarizer]] = {JSON: JsonBinarizer, AVRO: AvroBinarizer}
assert tuple(BINARIZERS) == WIRE_FORMATS


def make_binarizer(wire_format: str, threshold: Decimal = DEFAULT_THRESHOLD) -> JsonBinarizer | AvroBinarizer:
    try:
        return BINARIZERS[wire_format](threshold)
    except KeyError:
        raise ValueError(f"wire format {wire_format!r} is not allowed; allowed: {', '.join(WIRE_FORMATS)}") from None


# ---- templates (the emulator's hot path) -----------------------------------------------------
def _without_per_message(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in (TRANSACTION_ID, TIMESTAMP)}


class _JsonTemplates:
    """``{"transaction_id":"<id>","timestamp":"<ts>",<rest of the sample>``."""

    def __init__(self, rows: list[dict[str, Any]]):
        self.rests: list[bytes] = []  # everything after the timestamp, closing brace included
        for row in rows:
            rest = _without_per_message(row)
            amount = rest.get(AMOUNT)
            if isinstance(amount, Decimal):
                # Decimal -> float keeps the sample's value exactly for 2-decimal amounts
                # (repr of a float is the shortest text that reads back the same).
                rest[AMOUNT] = float(amount) if amount == Decimal(repr(float(amount))) else amount
            self.rests.append(to_json_bytes(rest)[1:])  # drop "{": the id and timestamp go first

    def render(self, id_prefix: bytes, start: int, index: list[int], now: float) -> list[bytes]:
        prefix = ID_PREFIX + id_prefix
        middle = _TS_PART + iso_utc(now).encode() + b'",'
        rests = self.rests
        return [b"%s%d%s%s" % (prefix, i, middle, rests[j]) for i, j in zip(range(start, start + len(index)), index)]


def _digit_runs(start: int, stop: int):
    """[lo, hi) runs of counters with the same number of decimal digits."""
    lo = start
    while lo < stop:
        hi = min(stop, 10 ** len(str(lo)))
        yield lo, hi
        lo = hi


class _AvroTemplates:
    """header + len(id) + id + <fields between id and timestamp> + timestamp + <fields after>."""

    def __init__(self, rows: list[dict[str, Any]]):
        self.mids: list[bytes] = []
        self.tails: list[bytes] = []
        for row in rows:
            parts = [_avro_field(f, row.get(f.name)) for f in FIELDS[1:] if f.name != TIMESTAMP]
            self.mids.append(b"".join(parts[: _TS_POS - 1]))
            self.tails.append(b"".join(parts[_TS_POS - 1:]))

    def render(self, id_prefix: bytes, start: int, index: list[int], now: float) -> list[bytes]:
        ts = zigzag_varint(epoch_micros(now))
        mids, tails, frame = self.mids, self.tails, header(SCHEMA_ID)
        out: list[bytes] = []
        for lo, hi in _digit_runs(start, start + len(index)):
            # The id's length prefix only changes when the counter gains a digit.
            head = frame + zigzag_varint(len(id_prefix) + len(str(lo))) + id_prefix
            out += [b"%s%d%s%s%s" % (head, i, mids[j], ts, tails[j])
                    for i, j in zip(range(lo, hi), index[lo - start:hi - start])]
        return out
