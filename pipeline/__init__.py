"""Tormenta: a real-time storm-data pipeline (Kafka 4 -> Spark Structured Streaming -> Delta).

Capture (`emulator`), processing (`job`) and the readers the dashboard uses (`read`)
live here; nothing in this package imports Streamlit.
"""

__version__ = "0.1.0"
