"""The fields of a transaction, their types and limits, and the business threshold rule.

This module is the one place where the record is declared. The Python validator
(`validate`), the Spark column expressions (`spark`), the Avro schema (`avro`), the Delta
schemas (`tables`), the emulator and the tests all derive from it.

Contract summary: transaction_id, person_id and merchant_id are strings of 1..64
characters; amount is a number with 0 < amount <= 10,000,000 and at most 2 decimals;
timestamp is ISO-8601 with an explicit offset or Z. Optional: currency (3 upper-case
letters, default USD), merchant_category, country (2 upper-case letters), channel (pos,
online or atm). An optional field of the wrong type or format counts as absent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

MAX_ID_LENGTH = 64
MAX_AMOUNT = Decimal("10000000")
AMOUNT_SCALE = 2  # decimals allowed on the wire and kept in the tables
AMOUNT_SQL_TYPE = "decimal(18,2)"
SUM_SQL_TYPE = "decimal(28,2)"  # sums of amounts in the aggregate tables
DEFAULT_THRESHOLD = Decimal("1500")
DEFAULT_CURRENCY = "USD"
CHANNELS = ("pos", "online", "atm")
# ISO-8601 date-time with a mandatory offset (Z or +hh:mm / -hh:mm / +hhmm).
TIMESTAMP_PATTERN = r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?([Zz]|[+-]\d{2}:?\d{2})$"
CURRENCY_PATTERN = r"^[A-Z]{3}$"
COUNTRY_PATTERN = r"^[A-Z]{2}$"
TIMESTAMP_RE = re.compile(TIMESTAMP_PATTERN)
CURRENCY_RE = re.compile(CURRENCY_PATTERN)
COUNTRY_RE = re.compile(COUNTRY_PATTERN)


@dataclass(frozen=True)
class Field:
    """One field of the wire record: its name, kind and the rule that makes it valid.

    kind: "id" (required string of 1..64 characters), "amount", "timestamp", or "text"
    (optional string, kept only when it matches `pattern` / is one of `allowed`).
    column: the name of the normalised column (the wire `timestamp` becomes `event_time`).
    """

    name: str
    kind: str
    column: str
    sql_type: str
    pattern: str | None = None
    allowed: tuple[str, ...] = ()
    default: str | None = None

    @property
    def required(self) -> bool:
        return self.kind != "text"


FIELDS: tuple[Field, ...] = (
    Field("transaction_id", "id", "transaction_id", "STRING"),
    Field("person_id", "id", "person_id", "STRING"),
    Field("merchant_id", "id", "merchant_id", "STRING"),
    Field("amount", "amount", "amount", AMOUNT_SQL_TYPE.upper()),
    Field("timestamp", "timestamp", "event_time", "TIMESTAMP", pattern=TIMESTAMP_PATTERN),
    Field("currency", "text", "currency", "STRING", pattern=CURRENCY_PATTERN, default=DEFAULT_CURRENCY),
    Field("merchant_category", "text", "merchant_category", "STRING"),
    Field("country", "text", "country", "STRING", pattern=COUNTRY_PATTERN),
    Field("channel", "text", "channel", "STRING", allowed=CHANNELS),
)
BY_NAME = {f.name: f for f in FIELDS}
ID_FIELDS = tuple(f.name for f in FIELDS if f.kind == "id")
REQUIRED_FIELDS = tuple(f.name for f in FIELDS if f.required)
OPTIONAL_FIELDS = tuple(f for f in FIELDS if not f.required)
# The normalised record, in column order (what the validator returns and the tables hold).
RECORD_COLUMNS = tuple(f.column for f in FIELDS)
# Kafka coordinates kept with every output row.
KAFKA_COLUMNS = ("kafka_partition", "kafka_offset", "ingest_time")

# Every column name as a constant, unpacked from FIELDS / KAFKA_COLUMNS so it cannot drift.
(TRANSACTION_ID, PERSON_ID, MERCHANT_ID, AMOUNT, EVENT_TIME, CURRENCY, MERCHANT_CATEGORY, COUNTRY,
 CHANNEL) = RECORD_COLUMNS
KAFKA_PARTITION, KAFKA_OFFSET, INGEST_TIME = KAFKA_COLUMNS
TIMESTAMP = next(f.name for f in FIELDS if f.column == EVENT_TIME)  # the wire name of EVENT_TIME


def is_high_value(amount: Decimal, threshold: Decimal = DEFAULT_THRESHOLD) -> bool:
    """The business rule: a sale is high-value when its amount is strictly above the threshold.

    Exact decimals: 1500.00 is not high-value, 1500.01 is. The Spark side uses
    `pipeline.contract.spark.high_value_condition`, built on the same comparison."""
    return Decimal(amount) > Decimal(threshold)
