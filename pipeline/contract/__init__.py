"""The transactions record, defined once: fields, limits, the threshold rule, table schemas, wire encodings."""

from pipeline.contract.record import Invalid, parse_timestamp, validate

__all__ = ["Invalid", "parse_timestamp", "validate"]
