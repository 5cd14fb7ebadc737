"""The binary wire format: Avro binary in the Confluent framing.

A message is ``0x00`` (magic byte), a 4-byte big-endian schema id, then the Avro binary
body of the record. The schema is declared here from `fields` and registered under id
``SCHEMA_ID`` (version 1); ``transaction.avsc`` beside this module is the same schema as a
file (a test keeps them equal), so a schema registry that serves it under that id lets
standard Kafka tooling (kafka-avro-console-consumer and the like) read the topic.

Types: the event time is ``timestamp-micros`` (UTC), the amount a ``decimal`` with scale
2 (bytes), so 1500.00 and 1500.01 stay exact. The optional fields are unions with null.
The Python side (`decode`, `validate_avro`) is the reference the Spark decoder
(`pipeline.contract.spark`) is tested against; the emulator's fast encoder is checked
byte for byte against fastavro.
"""

from __future__ import annotations

import json
from typing import Any

from pipeline.contract.errors import Invalid
from pipeline.contract.fields import AMOUNT_SCALE, FIELDS

MAGIC = 0
SCHEMA_ID = 1
HEADER_SIZE = 5
AMOUNT_PRECISION = 18


def _avro_type(field) -> Any:
    if field.kind == "id":
        return "string"
    if field.kind == "amount":
        return {"type": "bytes", "logicalType": "decimal", "precision": AMOUNT_PRECISION, "scale": AMOUNT_SCALE}
    if field.kind == "timestamp":
        return {"type": "long", "logicalType": "timestamp-micros"}
    return ["null", "string"]


def schema() -> dict[str, Any]:
    """The Avro schema (as a dict) of schema id `SCHEMA_ID`."""
    out = []
    for f in FIELDS:
        entry: dict[str, Any] = {"name": f.name, "type": _avro_type(f)}
        if not f.required:
            entry["default"] = None
        out.append(entry)
    return {"type": "record", "name": "Transaction", "namespace": "tormenta.v1", "fields": out}


SCHEMA_JSON = json.dumps(schema(), separators=(",", ":"))
SCHEMAS = {SCHEMA_ID: SCHEMA_JSON}  # every schema id the job can read


def header(schema_id: int = SCHEMA_ID) -> bytes:
    return bytes([MAGIC]) + schema_id.to_bytes(4, "big")


def is_framed(value: bytes) -> bool:
    """True when a message value is in the binary framing (first byte 0); JSON starts otherwise."""
    return bool(value) and value[0] == MAGIC


def encode_reference(record: dict[str, Any], schema_id: int = SCHEMA_ID) -> bytes:
    """One framed message by fastavro (the reference encoder; slow, for tests and tools).

    record: wire field names; ``timestamp`` an aware datetime, ``amount`` a Decimal."""
    import io

    import fastavro

    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, _parsed_schema(), {f.name: record.get(f.name) for f in FIELDS})
    return header(schema_id) + buf.getvalue()


def decode(value: bytes) -> dict[str, Any]:
    """Framed Avro message -> dict of wire fields (raises `Invalid` with the quarantine reason)."""
    import io

    import fastavro

    if len(value) < HEADER_SIZE:
        raise Invalid("avro message shorter than its 5-byte header")
    schema_id = int.from_bytes(value[1:HEADER_SIZE], "big")
    if schema_id not in SCHEMAS:
        raise Invalid(f"unknown avro schema id {schema_id}")
    buf = io.BytesIO(value[HEADER_SIZE:])
    try:
        record = fastavro.schemaless_reader(buf, _parsed_schema(), None)
    except Exception:  # noqa: BLE001 - any decoding failure is the same quarantine reason
        raise Invalid("avro body does not decode") from None
    if buf.tell() != len(value) - HEADER_SIZE:
        raise Invalid("avro body has trailing bytes")
    return record


_PARSED: list = []


def _parsed_schema():
    import fastavro

    if not _PARSED:
        _PARSED.append(fastavro.parse_schema(schema()))
    return _PARSED[0]
