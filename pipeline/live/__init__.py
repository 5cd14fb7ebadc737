"""The live lane (`python -m pipeline live`, Spark Real-time Mode) and the tail its readers share."""
