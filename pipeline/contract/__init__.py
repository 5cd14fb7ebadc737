"""The transactions record, defined once.

- `fields`: the fields, their types and limits, and the threshold rule;
- `validate`: the reference validator of a message (JSON or Avro);
- `avro`: the binary wire format (Avro in the Confluent framing);
- `tables`: the names of the Delta tables and the job's queries, and every table's columns;
- `wire`: the names of the wire formats (json, avro);
- `spark`: the same rules as Spark column expressions (imports pyspark; import it explicitly).
"""

from pipeline.contract.errors import Invalid
from pipeline.contract.fields import DEFAULT_THRESHOLD, FIELDS, is_high_value
from pipeline.contract.validate import parse_timestamp, validate

__all__ = ["DEFAULT_THRESHOLD", "FIELDS", "Invalid", "is_high_value", "parse_timestamp", "validate"]
