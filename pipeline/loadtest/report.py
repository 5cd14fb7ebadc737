"""The load-test report: one self-contained HTML file (Plotly inlined once, no network).

`build_report(result, samples)` renders ``templates/report.html.j2`` (Jinja2, autoescaped:
every value from a run is escaped; only Plotly's own chart HTML is marked safe) and
returns the text; `write_report(run_dir, ...)` saves ``report.html``, ``samples.json`` and
``result.json``. The report holds the answer (maximum sustainable rate, limiting stage),
the verdict table with the rules, the reconciliation, a chart of every sampled series
(steps shaded by verdict), the settings and the machine facts.
``python -m pipeline loadtest --report RUN_ID`` rebuilds it from the saved files.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import plotly.graph_objects as go
import plotly.io as pio
from markupsafe import Markup

from pipeline.contract.tables import HIGH_VALUE
from pipeline.loadtest.alerts import alert_rows, step_cell
from pipeline.loadtest.result import LoadTestResult
from pipeline.loadtest.verdict import summarise

VERDICT_COLOURS = {"holds": "#2b8a3e", "degrades": "#f08c00", "breaks": "#c92a2a"}
PROCESS_COLOURS = {"emulator": "#1c7ed6", "broker": "#7048e8", "job": "#e8590c", "loadtest": "#868e96",
                   "machine": "#212529"}
MAX_POINTS = 5000
LAYOUT = dict(margin=dict(l=60, r=20, t=50, b=40), template="plotly_white")


def _num(x: Any, fmt: str = "{:,.0f}", none: str = "–") -> str:
    if x is None:
        return none
    try:
        return fmt.format(x)
    except (TypeError, ValueError):
        return str(x)


def _thin(samples: list[dict], limit: int = MAX_POINTS) -> list[dict]:
    if len(samples) <= limit:
        return samples
    step = len(samples) / limit
    return [samples[int(i * step)] for i in range(limit)]


# ---- charts -------------------------------------------------------------------------------------
class _Charts:
    """The series of one run, and one method per chart."""

    def __init__(self, result: LoadTestResult, samples: list[dict]):
        self.result = result
        self.samples = _thin(samples)
        self.t0 = float(result.t0 or (self.samples[0]["t"] if self.samples else 0.0))
        self.trigger = float(result.plan.trigger_s or 0)

    def series(self, key: str, scale: float = 1.0) -> tuple[list[float], list[float | None]]:
        xs = [round(s["t"] - self.t0, 2) for s in self.samples]
        return xs, [None if s.get(key) is None else s[key] * scale for s in self.samples]

    def fig(self, title: str, yaxis: str, height: int = 320) -> go.Figure:
        """A time chart with every step shaded by its verdict."""
        fig = go.Figure()
        fig.update_layout(title=title, xaxis_title="seconds since the first sample", yaxis_title=yaxis,
                          height=height, legend=dict(orientation="h", y=-0.25), **LAYOUT)
        verdicts = {s.index: s.verdict for s in self.result.steps}
        for w in self.result.windows:
            colour = VERDICT_COLOURS.get(verdicts.get(w.index, ""), "#adb5bd")
            fig.add_vrect(x0=w.start - self.t0, x1=w.end - self.t0, fillcolor=colour, opacity=0.07, line_width=0,
                          annotation_text=w.label, annotation_position="top left",
                          annotation_font_size=10, annotation_font_color=colour)
        return fig

    def lines(self, fig: go.Figure, keys: tuple[tuple[str, str], ...], **line: Any) -> go.Figure:
        for key, name in keys:
            x, y = self.series(key)
            fig.add_trace(go.Scatter(x=x, y=y, name=name, mode="lines", **line))
        return fig

    def rates(self) -> go.Figure:
        f = self.fig("Produce rate: target vs achieved", "transactions per second")
        for key, name, dash in (("target_rate", "target (plan)", "dash"), ("achieved_rate", "achieved (sent)", None),
                                ("delivered_rate", "delivered (acked)", "dot")):
            self.lines(f, ((key, name),), line=dict(dash=dash))
        return f

    def latency(self) -> go.Figure:
        f = self.lines(self.fig("Delivery latency (producer → broker ack)", "milliseconds"),
                       (("latency_p50_ms", "p50"), ("latency_p99_ms", "p99")))
        self.lines(f, (("queue_depth", "producer queue (messages)"),), yaxis="y2", line=dict(color="#adb5bd"))
        f.update_layout(yaxis2=dict(title="queued messages", overlaying="y", side="right", showgrid=False))
        return f

    def offsets(self) -> go.Figure:
        f = self.lines(self.fig("Broker log end vs job committed offsets", "records (all partitions)"),
                       (("log_end", "broker log-end offsets"),))
        return self.lines(f, (("job_offset", "job committed offsets"),
                              ("job_inflight", "job batch in flight (end offsets)")), line_shape="hv")

    def lag_records(self) -> go.Figure:
        return self.lines(self.fig("Lag in records (log end − committed)", "records", height=280),
                          (("lag_records", "lag (records)"),), line=dict(color="#e8590c"))

    def lag_seconds(self) -> go.Figure:
        f = self.lines(self.fig("Lag in seconds (age of the oldest unprocessed record)", "seconds", height=280),
                       (("lag_s", "lag (s)"),), line=dict(color="#c92a2a"))
        if self.trigger:
            f.add_hline(y=self.trigger, line_dash="dash", line_color="#868e96", annotation_text="trigger")
        return f

    def batch_duration(self) -> go.Figure:
        f = self.fig("Micro-batch duration vs trigger interval", "seconds")
        batches = self.result.batches
        if batches:
            f.add_trace(go.Bar(x=[b["trigger_time"] - self.t0 for b in batches], y=[b["duration_s"] for b in batches],
                               name="batch duration", customdata=[b["batch_id"] for b in batches],
                               marker_color=["#c92a2a" if b["duration_s"] > self.trigger else "#3b5bdb"
                                             for b in batches],
                               hovertemplate="batch %{customdata}: %{y:.2f} s<extra></extra>"))
        if self.trigger:
            f.add_hline(y=self.trigger, line_dash="dash", line_color="#c92a2a",
                        annotation_text=f"trigger {self.trigger:g} s")
        return f

    def batch_rows(self) -> go.Figure:
        f = self.fig("Rows per micro-batch", "records", height=280)
        if self.result.batches:
            f.add_trace(go.Bar(x=[b["trigger_time"] - self.t0 for b in self.result.batches],
                               y=[b["input_rows"] for b in self.result.batches], name="input rows",
                               marker_color="#2b8a3e"))
        return f

    def freshness(self) -> go.Figure:
        f = self.fig("End-to-end freshness per batch (event time → row visible in Delta)", "seconds")
        bf = self.result.batch_freshness
        for key in ("p50", "p95", "max"):
            f.add_trace(go.Scatter(x=[(b["visible_at"] or self.t0) - self.t0 for b in bf], y=[b[key] for b in bf],
                                   name=key, mode="lines+markers"))
        return f

    def freshness_steps(self) -> go.Figure:
        f = go.Figure()
        for key in ("p50", "p95", "max"):
            f.add_trace(go.Bar(x=[s.label for s in self.result.steps],
                               y=[(s.freshness or {}).get(key) for s in self.result.steps], name=key))
        f.update_layout(title="Freshness per step (rows by event time)", yaxis_title="seconds", barmode="group",
                        height=320, **LAYOUT)
        return f

    def cpu(self) -> go.Figure:
        n_cores = self.result.machine.get("logical_cores") or 1
        f = self.fig("CPU per process", "cores busy")
        for who in ("emulator", "broker", "job", "loadtest", "machine"):
            x, y = self.series(f"cpu_{who}", n_cores / 100 if who == "machine" else 1 / 100)
            name = "whole machine" if who == "machine" else who + (" (python + Spark JVM)" if who == "job" else "")
            f.add_trace(go.Scatter(x=x, y=y, name=name, mode="lines",
                                   line=dict(color=PROCESS_COLOURS[who], dash="dot" if who == "machine" else None)))
        f.add_hline(y=n_cores, line_dash="dash", line_color="#c92a2a", annotation_text=f"{n_cores} cores")
        return f

    def memory(self) -> go.Figure:
        f = self.fig("Memory per process (resident)", "MB")
        for who in ("emulator", "broker", "job", "loadtest"):
            self.lines(f, ((f"mem_{who}_mb", who),), line=dict(color=PROCESS_COLOURS[who]))
        return f

    def reconciliation(self) -> go.Figure:
        windows = self.result.reconciliation.windows
        f = go.Figure()
        if windows:
            xs = [w["minute"][11:16] for w in windows]
            f.add_trace(go.Bar(x=xs, y=[w["over_threshold"] for w in windows], name="over threshold, sent (emulator)"))
            f.add_trace(go.Bar(x=xs, y=[w["in_delta"] for w in windows], name=f"in Delta {HIGH_VALUE}"))
        f.update_layout(title="Reconciliation per minute of event time", yaxis_title="high-value transactions",
                        xaxis_title="minute (UTC)", barmode="group", height=320, **LAYOUT)
        return f


CHARTS: tuple[str, ...] = ("rates", "latency", "offsets", "lag_records", "lag_seconds", "batch_duration",
                           "batch_rows", "freshness", "freshness_steps", "cpu", "memory", "reconciliation")


def figures(result: LoadTestResult, samples: list[dict]) -> list[tuple[str, go.Figure]]:
    """(id, figure) for every chart of the report; also used by the page."""
    charts = _Charts(result, samples)
    draw: dict[str, Callable[[], go.Figure]] = {name: getattr(charts, name) for name in CHARTS}
    return [(name, draw[name]()) for name in CHARTS]


# ---- the page's and the report's tables -------------------------------------------------------------
def verdict_rows(result: LoadTestResult) -> list[dict[str, Any]]:
    """The verdict table as plain rows (also shown on the page)."""
    rows = []
    for s in result.steps:
        fr = s.freshness or {}
        rows.append({
            "step": s.label, "verdict": s.verdict, "target tx/s": round(s.target_rate),
            "achieved tx/s": None if s.achieved_rate is None else round(s.achieved_rate),
            "producer %": None if s.producer_ratio is None else round(100 * s.producer_ratio, 1),
            "batches": s.batches, "max batch s": s.batch_max_s,
            "lag max s": None if s.lag_s_max is None else round(s.lag_s_max, 1),
            "lag growth s/s": None if s.lag_slope is None else round(s.lag_slope, 3),
            "freshness p50 s": fr.get("p50"), "freshness p95 s": fr.get("p95"), "freshness max s": fr.get("max"),
            "CPU emulator %": s.cpu.get("emulator"), "CPU broker %": s.cpu.get("broker"),
            "CPU job %": s.cpu.get("job"), "CPU machine %": s.cpu.get("machine"),
            "limiting stage": s.limiting_stage or "", "alerts": step_cell(result.alerts, s.label),
            "why": "; ".join(s.reasons),
        })
    return rows


def _cell(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return "–" if v is None else str(v)
    if isinstance(v, float):
        return _num(v, "{:,.2f}")
    return _num(v) if isinstance(v, int) else str(v)


def _headline(result: LoadTestResult) -> dict[str, Any]:
    """The answer cards at the top."""
    s, rec, fresh = result.summary, result.reconciliation, result.freshness_all
    msr = s.max_sustainable_rate
    return {"max_rate": f"{_num(msr)} tx/s" if msr is not None else "none (no step held)",
            "stage": s.limiting_stage or "none (ceiling reached)", "peak_rate": _num(s.peak_rate),
            "peak_verdict": s.peak_verdict, "rec_ok": rec.ok,
            "rec_card": "0 lost / 0 duplicated" if rec.ok else f"{_num(rec.lost)} lost / {_num(rec.duplicated)} duplicated",
            "fresh": " / ".join(_num(fresh.get(k), "{:.1f}") for k in ("p50", "p95", "max")),
            "why": s.why or "every step held up to the ceiling"}


def _reconciliation_view(result: LoadTestResult) -> dict[str, Any]:
    rec = result.reconciliation
    examples = [(key.replace("_", " "), ", ".join(getattr(rec, key)))
                for key in ("lost_examples", "duplicated_examples", "unexpected_examples") if getattr(rec, key)]
    text = (f"{_num(rec.expected)} sent over the threshold, {_num(rec.actual_unique)} in Delta — lost {_num(rec.lost)}, "
            f"duplicated {_num(rec.duplicated)}, unexpected {_num(rec.unexpected)}")
    windows = [[w["minute"], _num(w.get("sent")), _num(w.get("over_threshold")), _num(w.get("in_delta")),
                _num(w.get("difference"), "{:+,}")] for w in rec.windows]
    return {"ok": rec.ok, "text": text, "note": rec.note, "examples": examples, "windows": windows,
            "totals": [[k, _num(v)] for k, v in rec.totals.items()]}


def _outage_view(result: LoadTestResult) -> list[list[str]]:
    """--kill-broker-at: which node went down in which step, and for how long (empty without one)."""
    o = result.broker_outage
    if not o:
        return []
    t0 = float(result.t0 or o.get("killed_at") or 0.0)
    rows = [["node killed", f"node {o.get('node')} (pid {o.get('pid')})"],
            ["in step", f"{o.get('step_number')}: {o.get('step')}"],
            ["killed at", _num(o.get("killed_at", t0) - t0, "{:.1f} s")]]
    if o.get("restart_error"):
        return rows + [["restart", f"failed: {o['restart_error']}"]]
    return rows + [["back at", _num(o.get("back_at", t0) - t0, "{:.1f} s")],
                   ["down interval", _num(o.get("down_s"), "{:.1f} s")],
                   ["restart took", _num(o.get("restart_s"), "{:.1f} s")]]


def _fact_tables(result: LoadTestResult) -> dict[str, list[list[str]]]:
    """Plan, steps as run, settings, machine, events: rows of text."""
    t0 = float(result.t0 or 0.0)
    return {
        "plan": [[s.label, s.kind, _num(s.rate), _num(s.duration_s, "{:g} s")] for s in result.plan.steps],
        "ran": [[w.label, _num(w.end - w.start, "{:.1f} s"), "yes" if w.complete else "no (stopped)"]
                for w in result.windows],
        "settings": [[k, str(v)] for k, v in result.settings.items()]
        + [["topic", json.dumps(result.to_dict()["topic"])]],
        "machine": [[k, str(v)] for k, v in result.machine.items()],
        "events": [[f"{round(e['t'] - (t0 or e['t']), 1)} s", e["text"]] for e in result.events],
    }


def _chart_html(result: LoadTestResult, samples: list[dict]) -> list[tuple[str, Markup]]:
    """Every chart as HTML; plotly.js inlined with the first one only."""
    return [(fid, Markup(pio.to_html(fig, include_plotlyjs=(i == 0), full_html=False, div_id=f"plot-{fid}",
                                     config={"displaylogo": False, "responsive": True})))
            for i, (fid, fig) in enumerate(figures(result, samples))]


def _live_rows(result: LoadTestResult) -> list[tuple]:
    """The live lane's latency per step as table rows (empty without a lane)."""
    return [(s["step"], _num(s.get("rate")), s.get("n", 0), *(_num(s.get(q), "{:,.0f}") for q in ("p50", "p95", "p99")))
            for s in (result.live or {}).get("steps", [])]


@cache
def _template() -> jinja2.Template:
    env = jinja2.Environment(loader=jinja2.PackageLoader("pipeline.loadtest", "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["cell"] = _cell
    return env.get_template("report.html.j2")


def build_report(result: LoadTestResult, samples: list[dict]) -> str:
    rows = verdict_rows(result)
    return _template().render(
        r=result, head=_headline(result), headers=list(rows[0]) if rows else ["step"], verdicts=rows,
        rec=_reconciliation_view(result), outage=_outage_view(result), facts=_fact_tables(result), charts=_chart_html(result, samples),
        emu=result.emulator, num=_num, live_rows=_live_rows(result),
        alert_rows=alert_rows(result.alerts, result.t0))


def write_report(run_dir: Path, result: LoadTestResult, samples: list[dict]) -> Path:
    """Save result.json, samples.json and report.html in `run_dir`; returns the report path."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "samples.json").write_text(json.dumps(samples, default=str))
    result.save(run_dir / "result.json")
    path = run_dir / "report.html"
    path.write_text(build_report(result, samples), encoding="utf-8")
    return path


def rebuild(run_dir: Path) -> Path:
    """Rewrite a run's report from its saved files; the summary is recomputed from the saved step
    stats, so a run judged by an older release gets the current wording."""
    result = LoadTestResult.load(run_dir / "result.json")
    if result.steps:
        facts = result.settings or {}
        result.summary = summarise(result.steps, result.plan.peak_rate, result.plan.ceiling,
                                   trigger_s=result.plan.trigger_s, dedupe_window_s=facts.get("dedup_window_s"),
                                   cores=facts.get("job_cores"))
    samples = json.loads((run_dir / "samples.json").read_text())
    return write_report(run_dir, result, samples)
