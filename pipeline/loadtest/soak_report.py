"""The soak's report: one self-contained HTML file (``templates/soak.html.j2``, Plotly inlined once).

A chart per measure over time (memory, CPU, file descriptors and threads per part; disk;
Delta files per table; streaming state; records behind; oldest unprocessed record; batch
duration and size; freshness per batch; restarts), each with the kills marked and the
outage shaded; the verdict table; the reconciliation; the kills with their recovery times;
the outage's figures; the browser's visits; the events.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import plotly.graph_objects as go
import plotly.io as pio
from markupsafe import Markup

from pipeline.loadtest.report import LAYOUT, _thin

KILL_COLOUR, OUTAGE_COLOUR = "#c92a2a", "#f08c00"


class SoakCharts:
    def __init__(self, result: dict[str, Any], samples: list[dict[str, Any]]):
        self.r, self.samples = result, _thin(samples)
        self.t0 = float(result.get("t0") or (samples[0]["t"] if samples else 0.0))

    def minutes(self, t: float) -> float:
        return round((t - self.t0) / 60.0, 3)

    def fig(self, title: str, yaxis: str) -> go.Figure:
        fig = go.Figure()
        fig.update_layout(title=title, xaxis_title="minutes since the start", yaxis_title=yaxis, height=320,
                          legend=dict(orientation="h", y=-0.25), **LAYOUT)
        for k in self.r.get("kills", []):
            if k.get("at"):
                fig.add_vline(x=self.minutes(k["at"]), line_color=KILL_COLOUR, line_dash="dot",
                              annotation_text=f"kill {k['part']}", annotation_font_size=10,
                              annotation_font_color=KILL_COLOUR)
        if self.r.get("t_end"):
            fig.add_vline(x=self.minutes(self.r["t_end"]), line_color="#868e96", line_dash="dash",
                          annotation_text="end of the steady load", annotation_font_size=10)
        o = self.r.get("outage") or {}
        if o.get("started_at"):
            fig.add_vrect(x0=self.minutes(o["started_at"]), x1=self.minutes(o.get("back_at") or o["started_at"] + o["seconds"]),
                          fillcolor=OUTAGE_COLOUR, opacity=0.1, line_width=0, annotation_text="job outage",
                          annotation_position="top left", annotation_font_size=10)
        return fig

    def keys(self, prefix: str, suffix: str = "") -> list[str]:
        return sorted({k for s in self.samples for k in s if k.startswith(prefix) and k.endswith(suffix)})

    def series_chart(self, title: str, yaxis: str, keys: list[str], label=lambda k: k) -> go.Figure:
        fig = self.fig(title, yaxis)
        xs = [self.minutes(s["t"]) for s in self.samples]
        for k in keys:
            fig.add_trace(go.Scatter(x=xs, y=[s.get(k) for s in self.samples], name=label(k), mode="lines"))
        return fig

    def batches(self) -> go.Figure:
        fig = self.fig("Micro-batch duration and size", "seconds")
        bs = self.r.get("batches") or []
        xs = [self.minutes(float(b["trigger_time"])) for b in bs]
        fig.add_trace(go.Scatter(x=xs, y=[b.get("duration_s") for b in bs], name="duration (s)", mode="lines+markers"))
        fig.add_trace(go.Scatter(x=xs, y=[b.get("input_rows") for b in bs], name="records", mode="lines", yaxis="y2"))
        trig = (self.r.get("options") or {}).get("trigger_s")
        if trig:
            fig.add_hline(y=float(trig), line_dash="dash", annotation_text="trigger interval")
        fig.update_layout(yaxis2=dict(title="records", overlaying="y", side="right"))
        return fig

    def freshness(self) -> go.Figure:
        fig = self.fig("Freshness per batch (event time to visible in Delta)", "seconds")
        rows = self.r.get("batch_freshness") or []
        xs = [self.minutes(b["visible_at"]) for b in rows if b.get("visible_at")]
        for q in ("p50", "p95"):
            fig.add_trace(go.Scatter(x=xs, y=[b.get(q) for b in rows if b.get("visible_at")], name=q, mode="lines"))
        return fig

    def all(self) -> list[tuple[str, go.Figure]]:
        part = lambda k: k.split("_", 1)[1].rsplit("_mb", 1)[0]  # noqa: E731 - a label function
        c = self.series_chart
        return [
            ("pss", c("Memory per part (PSS of its process group) and in total", "MiB",
                      self.keys("pss_", "_mb") + ["mem_total_mb"], part)),
            ("rss", c("Resident memory per part (RSS summed over its process group; a JVM alone)", "MiB",
                      self.keys("rss_", "_mb"), part)),
            ("cpu", c("CPU per part (% of one core)", "%", self.keys("cpu_"), part)),
            ("host", c("The machine's CPU (% of one core): busy, stolen by the hypervisor, busy outside the parts",
                       "%", ["host_cpu", "host_steal", "host_other", "host_irq", "host_iowait"], lambda k: k[5:])),
            ("others", c("Busy outside the parts, by process name (% of one core)", "%", self.keys("other_"),
                         lambda k: k[6:])),
            ("gc", c("Time in garbage-collection pauses per JVM (% of the interval)", "%", self.keys("gc_"),
                     lambda k: k[3:])),
            ("heap", c("Old generation of each JVM's heap (what survives collections)", "MiB",
                       self.keys("heap_old_", "_mb"), lambda k: k[9:-3])),
            ("jit", c("Time in the JIT compiler per JVM (% of the interval)", "%", self.keys("jit_"),
                      lambda k: k[4:])),
            ("classes", c("Loaded classes per JVM (generated code that is never unloaded grows here)", "classes",
                          self.keys("classes_"), lambda k: k[8:])),
            ("fds", c("Open file descriptors per part", "fds", self.keys("fds_"), part)),
            ("threads", c("Threads per part", "threads", self.keys("threads_"), part)),
            ("disk", c("Disk of the data folder", "MiB", ["disk_broker_mb", "disk_delta_mb", "disk_checkpoints_mb",
                                                             "disk_total_mb"], lambda k: k[5:-3])),
            ("files", c("Active data files per Delta table", "files", self.keys("files_"), lambda k: k[6:])),
            ("state", c("Streaming state of the job (dedupe)", "MiB / rows", ["state_mb", "state_rows"])),
            ("behind", c("Records behind latest", "records", ["lag_records"])),
            ("oldest", c("Age of the oldest unprocessed record", "seconds", ["lag_s"])),
            ("batches", self.batches()),
            ("freshness", self.freshness()),
            ("restarts", c("Restarts per part (supervisor)", "restarts", self.keys("restarts_"), lambda k: k[9:])),
        ]


def _charts(result: dict[str, Any], samples: list[dict[str, Any]]) -> list[tuple[str, Markup]]:
    return [(fid, Markup(pio.to_html(fig, include_plotlyjs=(i == 0), full_html=False, div_id=f"plot-{fid}",
                                     config={"displaylogo": False, "responsive": True})))
            for i, (fid, fig) in enumerate(SoakCharts(result, samples).all())]


def _secs(v: Any) -> str:
    return "–" if v is None else f"{float(v):,.1f} s"


def kill_rows(result: dict[str, Any]) -> list[list[str]]:
    t0 = float(result.get("t0") or 0)
    return [[k["part"], f"{(k['at'] - t0) / 60:.1f} min" if k.get("at") else f"planned {k['planned_s']:.0f} s",
             str(k.get("pid") or "–"), str(k.get("new_pid") or "–"), _secs(k.get("back_s")), _secs(k.get("healthy_s")),
             k.get("problem") or "recovered"] for k in result.get("kills", [])]


@cache
def _template() -> jinja2.Template:
    env = jinja2.Environment(loader=jinja2.PackageLoader("pipeline.loadtest", "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return env.get_template("soak.html.j2")


def build_report(result: dict[str, Any], samples: list[dict[str, Any]], events: list[dict[str, Any]]) -> str:
    t0 = float(result.get("t0") or result.get("started") or 0)
    return _template().render(
        r=result, criteria=result.get("criteria", []), kills=kill_rows(result), charts=_charts(result, samples),
        rec=result.get("reconciliation") or {}, sales=result.get("sales_agg") or {},
        outage=result.get("outage") or {}, browser=result.get("browser") or {},
        options=json.dumps(result.get("options", {}), indent=1),
        events=[(f"{(e['t'] - t0) / 60:.1f} min" if t0 else "", e["text"]) for e in events])


def write_report(folder: Path, result: dict[str, Any], samples: list[dict[str, Any]], events: list[dict[str, Any]]) -> Path:
    path = folder / "report.html"
    path.write_text(build_report(result, samples, events), encoding="utf-8")
    return path


def rebuild(folder: Path) -> Path:
    """Rewrite a soak's report from its result.json and samples.json (``loadtest --report RUN_ID``)."""
    result = json.loads((folder / "result.json").read_text())
    samples = json.loads((folder / "samples.json").read_text())
    return write_report(folder, result, samples, result.get("events", []))
