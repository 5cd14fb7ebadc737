"""Contract cases shared by the Python-validator and Spark-parser tests: (raw value, reason or None),
and `kafka_rows`, which puts raw values in a DataFrame shaped like the Kafka source's."""

import json
from datetime import datetime

TS = "2026-11-24T19:12:03.123456Z"


def kafka_rows(spark, values, start_offset=0):
    """A DataFrame of `values` (str or bytes) as Spark's Kafka source reads them: partition 0 of
    topic "tx", consecutive offsets from `start_offset`, key b"k"."""
    rows = [(b"k", v.encode() if isinstance(v, str) else v, "tx", 0, start_offset + i, datetime(2026, 11, 24, 19, 0))
            for i, v in enumerate(values)]
    return spark.createDataFrame(rows, "key binary, value binary, topic string, partition int, offset long, "
                                       "timestamp timestamp")


def _tx(**kw):
    base = {"transaction_id": "t1", "person_id": "P1", "merchant_id": "M1", "amount": 10.5, "timestamp": TS}
    base.update(kw)
    return json.dumps({k: v for k, v in base.items() if v is not ...})


CASES = [
    (_tx(), None),
    (_tx(amount=1500.00), None),
    (_tx(amount=1500.01), None),
    (_tx(amount=2000), None),
    (_tx(timestamp="2026-11-24T20:12:03+01:00"), None),
    (_tx(timestamp="2026-11-24T20:12:03+0100"), None),
    (_tx(currency="EUR", country="ES", channel="online", merchant_category="travel", extra={"x": 1}), None),
    (_tx(currency="euro", country=5, channel="fax"), None),  # bad optional fields are treated as absent
    # Pretty-printed JSON misses the fast path's compact checks but is valid all the same.
    (json.dumps(json.loads(_tx(amount=1600)), indent=2), None),
    ('{"transaction_id": "t1", "person_id": "P1", "merchant_id": "M1", "amount": "1600", "timestamp": "' + TS + '"}',
     "amount is not a number"),
    ('{"transaction_id":"t1","person_id":"P1","merchant_id":"M1","amount":1.6e3,"timestamp":"' + TS + '"}', None),
    ("not json at all", "value is not JSON"),
    ('{"transaction_id":"t1","person_id":"P1"', "value is not JSON"),
    ("[1, 2, 3]", "value is not a JSON object"),
    ('"just a string"', "value is not a JSON object"),
    (_tx(transaction_id=...), "missing required field transaction_id"),
    (_tx(amount=None), "missing required field amount"),
    (_tx(timestamp=...), "missing required field timestamp"),
    (_tx(person_id=42), "person_id is not a string"),
    (_tx(merchant_id=""), "merchant_id must be 1..64 characters"),
    (_tx(transaction_id="x" * 65), "transaction_id must be 1..64 characters"),
    (_tx(amount="1600"), "amount is not a number"),
    (_tx(amount=True), "amount is not a number"),
    (_tx(amount=0), "amount must be greater than 0"),
    (_tx(amount=-3.5), "amount must be greater than 0"),
    ('{"transaction_id":"t1","person_id":"P1","merchant_id":"M1","amount":1e400,"timestamp":"' + TS + '"}',
     "amount is not a finite number"),
    (_tx(amount=10000000.01), "amount exceeds 10,000,000"),
    (_tx(amount=1500.001), "amount has more than 2 decimals"),
    (_tx(timestamp=1732475523), "timestamp is not a string"),
    (_tx(timestamp="2026-11-24T19:12:03"), "timestamp is not ISO-8601 with an offset or Z"),
    (_tx(timestamp="yesterday"), "timestamp is not ISO-8601 with an offset or Z"),
    (_tx(timestamp="2026-13-24T19:12:03Z"), "timestamp is not a valid date-time"),
]

_C = '{"transaction_id":"t1","person_id":"P1","merchant_id":"M1","timestamp":"' + TS + '",'
CASES += [
    (_C + '"amount":false}', "amount is not a number"),
    (_C + '"amount":[1600]}', "amount is not a number"),
    (_C + '"amount":{"value":1600}}', "amount is not a number"),
    (_C + '"amount":"1600.5"}', "amount is not a number"),
    ('{"meta":{"amount":5},' + _C[1:] + '"amount":"1600"}', "amount is not a number"),
    ('{"transaction_id":"t1","person_id":"P1","merchant_id":"M1","amount":16,"timestamp":{"t":"' + TS + '"}}',
     "timestamp is not a string"),
    ('{"transaction_id":"t1","person_id":"P1","merchant_id":"M1","amount":16,"timestamp":20261124}',
     "timestamp is not a string"),
    ('{"transaction_id":["t1"],"person_id":"P1","merchant_id":"M1","amount":16,"timestamp":"' + TS + '"}',
     "transaction_id is not a string"),
]
# Every object case again, written compactly as the emulator and most producers write it:
# the job's fast path must reach the same verdict as its strict fallback.
CASES += [(raw.replace('", "', '","').replace('": ', '":').replace(', "', ',"'), reason)
          for raw, reason in list(CASES) if raw.startswith('{"') and ": " in raw]


def _avro_cases():
    """Avro messages in the Confluent framing: every valid JSON case re-encoded, plus the
    ways a binary message can break the contract."""
    from datetime import UTC, datetime
    from decimal import Decimal

    from pipeline.contract import avro, validate

    def rec(**kw):
        base = {"transaction_id": "t1", "person_id": "P1", "merchant_id": "M1", "amount": Decimal("10.50"),
                "timestamp": datetime(2026, 11, 24, 19, 12, 3, 123456, tzinfo=UTC)}
        base.update(kw)
        return base

    good = avro.encode_reference(rec())
    cases = []
    for raw, reason in CASES:
        if reason is None:
            r = validate(raw)
            cases.append((avro.encode_reference({**r, "timestamp": r["event_time"]}), None))
    cases += [
        (avro.encode_reference(rec(amount=Decimal("1500.00"))), None),
        (avro.encode_reference(rec(amount=Decimal("1500.01"))), None),
        (avro.encode_reference(rec(amount=Decimal("10000000.00"))), None),
        (avro.encode_reference(rec(currency="euro", country="ESP", channel="fax")), None),
        # byte-size edges of the encoding: decimal bytes (127/128, 32767/32768 cents),
        # multi-byte UTF-8 ids and present optional strings, early and late timestamps
        *((avro.encode_reference(rec(amount=Decimal(a))), None)
          for a in ("0.01", "1.27", "1.28", "327.67", "327.68", "83886.07", "83886.08")),
        (avro.encode_reference(rec(transaction_id="tx-ñ-東京-" + "é" * 50, merchant_category="électronique",
                                   country="ES", currency="EUR", channel="pos")), None),
        (avro.encode_reference(rec(timestamp=datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC))), None),
        (avro.encode_reference(rec(timestamp=datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC))), None),
        (avro.encode_reference(rec(timestamp=datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC))), None),
        (good[:3], "avro message shorter than its 5-byte header"),
        (b"\x00", "avro message shorter than its 5-byte header"),
        (b"\x00\x00\x00\x00\x07" + good[5:], "unknown avro schema id 7"),
        (good[:-4], "avro body does not decode"),
        (good[:5], "avro body does not decode"),
        (good + b"\x00\x01", "avro body has trailing bytes"),
        (avro.encode_reference(rec(transaction_id="")), "transaction_id must be 1..64 characters"),
        (avro.encode_reference(rec(merchant_id="m" * 65)), "merchant_id must be 1..64 characters"),
        (avro.encode_reference(rec(amount=Decimal("0.00"))), "amount must be greater than 0"),
        (avro.encode_reference(rec(amount=Decimal("-3.50"))), "amount must be greater than 0"),
        (avro.encode_reference(rec(amount=Decimal("10000000.01"))), "amount exceeds 10,000,000"),
    ]
    return cases


AVRO_CASES = _avro_cases()
