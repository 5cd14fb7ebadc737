"""Closed-loop volumetric test ("Will it hold at Christmas?").

`python -m pipeline loadtest --profile christmas` drives the real storm emulator through a
plan (warm-up, ramp, hold at the peak, steps beyond the peak) while the real Spark job
runs on a fresh topic and data folder, samples every second, judges each step (holds /
degrades / breaks), reconciles what was sent with the Delta tables by transaction id and
writes a self-contained HTML report. See docs/LOADTEST.md.

- `options`: the run's options, one field per CLI flag,
- `plan`: the plans and their scaling,
- `sampling`: what is measured each second (rates, offsets, lag, processes),
- `verdict`: the rules that turn samples and batch metrics into a verdict (pure),
- `reconcile`: sent vs Delta by id and per window (pure + a Delta read),
- `result`: the typed result of a run and its saved JSON,
- `report`: the HTML report (Jinja2 template + Plotly),
- `runner`: the orchestration of one run: broker, topic, steps, catch-up, report,
- `stack`: the run's processes (job, sampler, emulator) started in order and stopped,
- `progress`: the run's phase and events, written to ``progress.json`` for the page,
- `freshness`: event time to visibility in Delta, per row, step and batch,
- `assemble`: the run's result from what it left behind (verdicts, reconciliation, facts),
- `runs`: the registry of run folders, and starting/stopping a run in the background,
- `cli`: ``loadtest`` and ``capacity`` sub-commands.
"""

from pipeline.errors import TormentaError


class LoadTestError(TormentaError):
    """A load test could not start or run, or its saved files cannot be read."""
