"""The Spark expressions (`pipeline.contract.spark`) agree with the Python validator on every
contract case, in both wire formats, from the project's own copy of the cases."""

from datetime import UTC

import pytest

from pipeline.contract import Invalid, validate
from pipeline.contract.fields import RECORD_COLUMNS
from tests.support.cases import AVRO_CASES, CASES, kafka_rows

pytestmark = pytest.mark.integration


def reference(raw):
    try:
        rec = validate(raw)
    except Invalid as exc:
        return str(exc), None
    rec = dict(rec, event_time=rec["event_time"].astimezone(UTC).replace(tzinfo=None))
    return None, tuple(rec[c] for c in RECORD_COLUMNS)


@pytest.mark.parametrize("name,cases", [("json", CASES), ("avro", AVRO_CASES)])
def test_spark_and_python_agree_on_every_case(spark_session, name, cases):
    from pipeline.contract.spark import decode_messages

    rows = decode_messages(kafka_rows(spark_session, [raw for raw, _ in cases])).orderBy("kafka_offset").collect()
    assert len(rows) == len(cases)
    for (raw, expected_reason), row in zip(cases, rows, strict=True):
        py_reason, py_record = reference(raw)
        assert py_reason == expected_reason, raw  # the Python validator meets the case
        assert row["reason"] == expected_reason, raw  # and so does Spark
        assert row["wire_format"] == name
        assert bytes(row["raw_bytes"]) == (raw.encode() if isinstance(raw, str) else raw)
        if expected_reason is None:
            assert tuple(row[c] for c in RECORD_COLUMNS) == py_record, raw
