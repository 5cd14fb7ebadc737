"""The analysts' SQL: one read-only, bounded query over the Delta tables (issue 22).

- `check`: the statement checker (sqlglot parse tree: one SELECT/WITH over our five tables);
- `engine`: runs a checked query through delta-rs in a worker process it can kill
  (``TORMENTA_SQL_TIMEOUT``), under DataFusion's memory pool and the row cap
  (``TORMENTA_SQL_MAX_ROWS``); `worker` is that process;
- `questions`: the ready business questions of the SQL page;
- `chart`: which chart a result's shape calls for;
- `output`, `cli`: ``python -m pipeline sql --engine spark|delta-rs --format table|csv``.

Nothing here imports Streamlit; `pages/sql.py` lays it out.
"""
