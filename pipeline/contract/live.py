"""The live lane's record on the live topic: what `python -m pipeline live` writes and the
Live page's tail reads.

Key: the transaction_id. Value: a JSON object with the high-value row's record columns
(`RECORD_COLUMNS`: transaction_id, person_id, merchant_id, amount, event_time, ...), the
input record's Kafka coordinates, and `source_timestamp`: the Kafka timestamp of the input
record in epoch milliseconds. The live record's own Kafka timestamp is the moment the lane
wrote it, so "event -> live topic" latency is (receive time - source_timestamp).
"""

from __future__ import annotations

from pipeline.contract.fields import KAFKA_OFFSET, KAFKA_PARTITION, TRANSACTION_ID
from pipeline.contract.tables import RECORD_COLUMNS

LIVE_QUERY = "live"  # the Spark query's name and its checkpoint's folder
SOURCE_TIMESTAMP = "source_timestamp"
LIVE_KEY = TRANSACTION_ID
LIVE_FIELDS = (*RECORD_COLUMNS, KAFKA_PARTITION, KAFKA_OFFSET, SOURCE_TIMESTAMP)
# event_time keeps its microseconds (Spark's JSON default writes milliseconds), in UTC.
LIVE_TIMESTAMP_FORMAT = "yyyy-MM-dd'T'HH:mm:ss.SSSSSSXXX"
