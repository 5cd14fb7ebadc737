"""The names of the wire formats a message may take on the topic.

`JSON` is one UTF-8 JSON object (see `validate`); `AVRO` is Avro binary in the Confluent
framing (see `avro`). The emulator writes either, the job reads both from one topic and
records which in the quarantine's and the decoder's `wire_format` column.
"""

JSON = "json"
AVRO = "avro"
WIRE_FORMATS = (JSON, AVRO)
