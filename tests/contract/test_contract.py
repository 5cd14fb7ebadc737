"""The Python reference validator against the contract cases and the shared JSON schema."""

import json
from decimal import Decimal
from pathlib import Path

import pytest

from pipeline.contract import Invalid, validate
from tests.support.cases import CASES

SHARED_SCHEMA = Path(__file__).resolve().parents[3] / "shared" / "contract" / "transaction.schema.json"


@pytest.mark.parametrize("raw,reason", CASES)
def test_validate_cases(raw, reason):
    if reason is None:
        rec = validate(raw)
        assert rec["transaction_id"] == "t1"
        assert rec["event_time"].utcoffset().total_seconds() == 0
    else:
        with pytest.raises(Invalid) as err:
            validate(raw)
        assert str(err.value) == reason


def test_offsets_normalised_to_utc():
    rec = validate(json.dumps({"transaction_id": "a", "person_id": "p", "merchant_id": "m", "amount": 1,
                               "timestamp": "2026-11-24T20:12:03+01:00"}))
    assert rec["event_time"].isoformat() == "2026-11-24T19:12:03+00:00"


def test_amount_is_exact_decimal():
    rec = validate(json.dumps({"transaction_id": "a", "person_id": "p", "merchant_id": "m", "amount": 1500.01,
                               "timestamp": "2026-11-24T20:12:03Z"}))
    assert rec["amount"] == Decimal("1500.01") and rec["amount"] > Decimal("1500")


@pytest.mark.skipif(not SHARED_SCHEMA.exists(), reason="the shared contract folder is not beside the project")
def test_required_fields_match_shared_schema():
    schema = json.loads(SHARED_SCHEMA.read_text())
    assert set(schema["required"]) == {"transaction_id", "person_id", "merchant_id", "amount", "timestamp"}
    assert schema["properties"]["channel"]["enum"] == ["pos", "online", "atm"]
