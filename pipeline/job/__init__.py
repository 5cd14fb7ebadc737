"""The processing side: Spark Structured Streaming from the transactions topic to Delta.

    python -m pipeline job [--once]

`spark` builds the session, `transforms` holds the pure DataFrame functions (parse and
validate by the contract, business rule, dedupe, aggregates), `tables` the Delta table
definitions and SQL registration, `runner` wires read -> transform -> write for each query.
"""
