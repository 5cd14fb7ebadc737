"""Prometheus and Alertmanager for a Tormenta run: generated configuration, commands, HTTP client.

`config` writes ``<data_dir>/monitoring/prometheus.yml`` and ``alertmanager.yml`` (every part and
every broker node scraped on loopback, the project's rules in ``monitoring/alerts.yaml``),
`stack` gives `python -m pipeline run` the two command lines, and `client` reads the alerts and
series back for the dashboard.
"""
