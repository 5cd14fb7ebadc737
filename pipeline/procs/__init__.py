"""Child processes the product runs, in one place: start, watch, stop; and the JVM they need.

- `child`: `Child`, one child process with its command, environment and log file, started in
  its own process group; `start()`, `poll()`, `stop()`, its exit code and uptime, and
  `start()` again after it ended (what a supervisor that restarts dead children needs), and
  `product_env`, the environment of a long-running part (glibc's arenas capped),
- `group`: `stop_group`, stop a child and everything it started (its process group), and
  `signal_reaches`, whether a pid or a group still exists,
- `supervise`: the restart policy (backoff, crash loop) and the supervisor loop of
  ``python -m pipeline run``, its ``parts.json`` and its ``tormenta_part_*`` metrics,
- `jvm`: Java's version and the locally cached Maven jars the broker and Spark run with.

Used by ``python -m pipeline run`` (`pipeline.runall`), the load test (its job and emulator,
and the background run the page starts) and the tests that start the app.
"""
