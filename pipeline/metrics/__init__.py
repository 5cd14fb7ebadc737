"""Prometheus metrics of every part of Tormenta (``TORMENTA_METRICS_PORT`` and up, loopback only)."""
