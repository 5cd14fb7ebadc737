"""The read side: Delta readers, dashboard figures and stack health (no Spark, no Streamlit)."""
