"""Prometheus metrics of every part of Tormenta (``TORMENTA_METRICS_PORT`` and up, loopback only).

Where each part serves: `ports` (job +0, live +1, emulator +2, app +3, run +4, broker node i
+10+i-1). How: `serve` (prometheus_client's HTTP server on 127.0.0.1, one registry per part;
a taken port is one warning line, never a failure). What: `job`, `emulator`, `live`, `app`
(pages/common.py times the pages) and `broker` (the JMX exporter java agent, rules in
monitoring/kafka-jmx.yaml).

NOTE on names that differ from the first plan, because `promtool check metrics` (which
every endpoint must pass) refuses the planned ones:

- ``kafka_controller_active_controller_count`` -> ``kafka_controller_active_controllers``
  (promtool: a non-histogram/summary metric must not end in ``_count``);
- ``kafka_network_request_total_time_ms{request,quantile}`` ->
  ``kafka_network_request_total_time_seconds{request,percentile}`` with percentile "50",
  "95", "99" (promtool: no abbreviated unit ``_ms``, base units; and a ``quantile`` label is
  only allowed on a summary, which the JMX exporter cannot emit).

Every other series has the planned name. Extra: ``tormenta_job_last_progress_timestamp_seconds{query}``
(the query's last trigger, idle ones included: the query is alive even when no data comes).
"""
