"""The load-test report: one self-contained HTML file (Plotly inlined once, no network).

`build_report(result, samples)` returns the HTML text; `write_report(run_dir, ...)` saves
``report.html`` and ``samples.json`` next to ``result.json``. The report holds the answer
(maximum sustainable rate, limiting stage), the verdict table with the rules, the
reconciliation, a chart of every sampled series (steps shaded by verdict), the settings
and the machine facts. ``python -m pipeline loadtest report RUN_ID`` rebuilds it from the
saved files.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio

VERDICT_COLOURS = {"holds": "#2b8a3e", "degrades": "#f08c00", "breaks": "#c92a2a"}
PROCESS_COLOURS = {"emulator": "#1c7ed6", "broker": "#7048e8", "job": "#e8590c", "loadtest": "#868e96",
                   "machine": "#212529"}
MAX_POINTS = 5000


def _esc(x: Any) -> str:
    return html.escape("" if x is None else str(x))


def _num(x: Any, fmt: str = "{:,.0f}", none: str = "–") -> str:
    if x is None:
        return none
    try:
        return fmt.format(x)
    except (TypeError, ValueError):
        return _esc(x)


def _thin(samples: list[dict], limit: int = MAX_POINTS) -> list[dict]:
    if len(samples) <= limit:
        return samples
    step = len(samples) / limit
    return [samples[int(i * step)] for i in range(limit)]


def _series(samples: list[dict], key: str, t0: float, scale: float = 1.0):
    xs, ys = [], []
    for s in samples:
        v = s.get(key)
        xs.append(round(s["t"] - t0, 2))
        ys.append(None if v is None else v * scale)
    return xs, ys


def _shade(fig: go.Figure, result: dict[str, Any], t0: float) -> None:
    verdicts = {s["index"]: s.get("verdict") for s in result.get("steps", [])}
    for w in result.get("windows", []):
        colour = VERDICT_COLOURS.get(verdicts.get(w["index"]), "#adb5bd")
        fig.add_vrect(x0=w["start"] - t0, x1=w["end"] - t0, fillcolor=colour, opacity=0.07, line_width=0,
                      annotation_text=w["label"], annotation_position="top left",
                      annotation_font_size=10, annotation_font_color=colour)


def _fig(title: str, yaxis: str, result: dict, t0: float, height: int = 320) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(title=title, xaxis_title="seconds since the first sample", yaxis_title=yaxis, height=height,
                      margin=dict(l=60, r=20, t=50, b=40), legend=dict(orientation="h", y=-0.25),
                      template="plotly_white")
    _shade(fig, result, t0)
    return fig


def figures(result: dict[str, Any], samples: list[dict]) -> list[tuple[str, go.Figure]]:
    """(id, figure) for every chart of the report; also used by the page."""
    samples = _thin(samples)
    t0 = float(result.get("t0") or (samples[0]["t"] if samples else 0.0))
    trigger = float(result.get("plan", {}).get("trigger_s") or 0)
    figs: list[tuple[str, go.Figure]] = []

    f = _fig("Produce rate: target vs achieved", "transactions per second", result, t0)
    for key, name, dash in (("target_rate", "target (plan)", "dash"), ("achieved_rate", "achieved (sent)", None),
                            ("delivered_rate", "delivered (acked)", "dot")):
        x, y = _series(samples, key, t0)
        f.add_trace(go.Scatter(x=x, y=y, name=name, mode="lines", line=dict(dash=dash)))
    figs.append(("rates", f))

    f = _fig("Delivery latency (producer → broker ack)", "milliseconds", result, t0)
    for key, name in (("latency_p50_ms", "p50"), ("latency_p99_ms", "p99")):
        x, y = _series(samples, key, t0)
        f.add_trace(go.Scatter(x=x, y=y, name=name, mode="lines"))
    x, y = _series(samples, "queue_depth", t0)
    f.add_trace(go.Scatter(x=x, y=y, name="producer queue (messages)", mode="lines", yaxis="y2",
                           line=dict(color="#adb5bd")))
    f.update_layout(yaxis2=dict(title="queued messages", overlaying="y", side="right", showgrid=False))
    figs.append(("latency", f))

    f = _fig("Broker log end vs job committed offsets", "records (all partitions)", result, t0)
    for key, name in (("log_end", "broker log-end offsets"), ("job_offset", "job committed offsets"),
                      ("job_inflight", "job batch in flight (end offsets)")):
        x, y = _series(samples, key, t0)
        f.add_trace(go.Scatter(x=x, y=y, name=name, mode="lines", line_shape="hv" if key != "log_end" else None))
    figs.append(("offsets", f))

    f = _fig("Lag in records (log end − committed)", "records", result, t0, height=280)
    x, y = _series(samples, "lag_records", t0)
    f.add_trace(go.Scatter(x=x, y=y, name="lag (records)", mode="lines", line=dict(color="#e8590c")))
    figs.append(("lag_records", f))

    f = _fig("Lag in seconds (age of the oldest unprocessed record)", "seconds", result, t0, height=280)
    x, y = _series(samples, "lag_s", t0)
    f.add_trace(go.Scatter(x=x, y=y, name="lag (s)", mode="lines", line=dict(color="#c92a2a")))
    if trigger:
        f.add_hline(y=trigger, line_dash="dash", line_color="#868e96", annotation_text="trigger")
    figs.append(("lag_seconds", f))

    batches = result.get("batches") or []
    f = _fig("Micro-batch duration vs trigger interval", "seconds", result, t0)
    if batches:
        f.add_trace(go.Bar(x=[b["trigger_time"] - t0 for b in batches], y=[b["duration_s"] for b in batches],
                           name="batch duration", marker_color=["#c92a2a" if b["duration_s"] > trigger else "#3b5bdb"
                                                                for b in batches],
                           customdata=[b["batch_id"] for b in batches],
                           hovertemplate="batch %{customdata}: %{y:.2f} s<extra></extra>"))
    if trigger:
        f.add_hline(y=trigger, line_dash="dash", line_color="#c92a2a", annotation_text=f"trigger {trigger:g} s")
    figs.append(("batch_duration", f))

    f = _fig("Rows per micro-batch", "records", result, t0, height=280)
    if batches:
        f.add_trace(go.Bar(x=[b["trigger_time"] - t0 for b in batches], y=[b["input_rows"] for b in batches],
                           name="input rows", marker_color="#2b8a3e"))
    figs.append(("batch_rows", f))

    f = _fig("End-to-end freshness per batch (event time → row visible in Delta)", "seconds", result, t0)
    bf = result.get("batch_freshness") or []
    for key, name in (("p50", "p50"), ("p95", "p95"), ("max", "max")):
        f.add_trace(go.Scatter(x=[(b["visible_at"] or t0) - t0 for b in bf], y=[b[key] for b in bf], name=name,
                               mode="lines+markers"))
    figs.append(("freshness", f))

    steps = result.get("steps") or []
    f = go.Figure()
    for key in ("p50", "p95", "max"):
        f.add_trace(go.Bar(x=[s["label"] for s in steps], y=[(s.get("freshness") or {}).get(key) for s in steps],
                           name=key))
    f.update_layout(title="Freshness per step (rows by event time)", yaxis_title="seconds", barmode="group",
                    height=320, margin=dict(l=60, r=20, t=50, b=40), template="plotly_white")
    figs.append(("freshness_steps", f))

    n_cores = (result.get("machine") or {}).get("logical_cores") or 1
    f = _fig("CPU per process", "cores busy", result, t0)
    for who in ("emulator", "broker", "job", "loadtest", "machine"):
        scale = n_cores / 100 if who == "machine" else 1 / 100
        x, y = _series(samples, f"cpu_{who}", t0, scale)
        name = "whole machine" if who == "machine" else who + (" (python + Spark JVM)" if who == "job" else "")
        f.add_trace(go.Scatter(x=x, y=y, name=name, mode="lines",
                               line=dict(color=PROCESS_COLOURS[who], dash="dot" if who == "machine" else None)))
    f.add_hline(y=n_cores, line_dash="dash", line_color="#c92a2a", annotation_text=f"{n_cores} cores")
    figs.append(("cpu", f))

    f = _fig("Memory per process (resident)", "MB", result, t0)
    for who in ("emulator", "broker", "job", "loadtest"):
        x, y = _series(samples, f"mem_{who}_mb", t0)
        f.add_trace(go.Scatter(x=x, y=y, name=who, mode="lines", line=dict(color=PROCESS_COLOURS[who])))
    figs.append(("memory", f))

    windows = (result.get("reconciliation") or {}).get("windows") or []
    f = go.Figure()
    if windows:
        xs = [w["minute"][11:16] for w in windows]
        f.add_trace(go.Bar(x=xs, y=[w["over_threshold"] for w in windows], name="over threshold, sent (emulator)"))
        f.add_trace(go.Bar(x=xs, y=[w["in_delta"] for w in windows], name="in Delta high_value"))
    f.update_layout(title="Reconciliation per minute of event time", yaxis_title="high-value transactions",
                    xaxis_title="minute (UTC)", barmode="group", height=320, margin=dict(l=60, r=20, t=50, b=40),
                    template="plotly_white")
    figs.append(("reconciliation", f))
    return figs


def _table(headers: list[str], rows: list[list[str]], cls: str = "") -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def verdict_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The verdict table as plain rows (also shown on the page)."""
    rows = []
    for s in result.get("steps") or []:
        fr = s.get("freshness") or {}
        rows.append({
            "step": s["label"], "verdict": s["verdict"], "target tx/s": round(s["target_rate"]),
            "achieved tx/s": None if s.get("achieved_rate") is None else round(s["achieved_rate"]),
            "producer %": None if s.get("producer_ratio") is None else round(100 * s["producer_ratio"], 1),
            "batches": s["batches"], "max batch s": s.get("batch_max_s"),
            "lag max s": None if s.get("lag_s_max") is None else round(s["lag_s_max"], 1),
            "lag growth s/s": None if s.get("lag_slope") is None else round(s["lag_slope"], 3),
            "freshness p50 s": fr.get("p50"), "freshness p95 s": fr.get("p95"), "freshness max s": fr.get("max"),
            "CPU emulator %": s["cpu"].get("emulator"), "CPU broker %": s["cpu"].get("broker"),
            "CPU job %": s["cpu"].get("job"), "CPU machine %": s["cpu"].get("machine"),
            "limiting stage": s.get("limiting_stage") or "", "why": "; ".join(s.get("reasons") or []),
        })
    return rows


def build_report(result: dict[str, Any], samples: list[dict]) -> str:
    summary = result.get("summary") or {}
    rec = result.get("reconciliation") or {}
    plan = result.get("plan") or {}
    figs = figures(result, samples)
    charts = []
    for i, (fid, fig) in enumerate(figs):
        charts.append(f'<div class="chart" id="chart-{fid}">'
                      + pio.to_html(fig, include_plotlyjs=(i == 0), full_html=False, div_id=f"plot-{fid}",
                                    config={"displaylogo": False, "responsive": True})
                      + "</div>")
    vrows = verdict_rows(result)
    headers = list(vrows[0].keys()) if vrows else ["step"]
    table_rows = []
    for r in vrows:
        cells = []
        for k in headers:
            v = r[k]
            if k == "verdict":
                cells.append(f'<span class="v v-{_esc(v)}">{_esc(v)}</span>')
            elif isinstance(v, float):
                cells.append(_num(v, "{:,.2f}"))
            elif isinstance(v, int):
                cells.append(_num(v))
            else:
                cells.append(_esc(v) if v is not None else "–")
        table_rows.append(cells)
    msr = summary.get("max_sustainable_rate")
    ok = rec.get("ok")
    rec_text = (f"{_num(rec.get('expected'))} sent over the threshold, {_num(rec.get('actual_unique'))} in Delta — "
                f"lost {_num(rec.get('lost'))}, duplicated {_num(rec.get('duplicated'))}, "
                f"unexpected {_num(rec.get('unexpected'))}")
    examples = ""
    for key in ("lost_examples", "duplicated_examples", "unexpected_examples"):
        if rec.get(key):
            examples += f"<p><b>{_esc(key.replace('_', ' '))}:</b> <code>{_esc(', '.join(rec[key]))}</code></p>"
    totals = rec.get("totals") or {}
    windows = rec.get("windows") or []
    win_rows = [[_esc(w["minute"]), _num(w.get("sent")), _num(w.get("over_threshold")), _num(w.get("in_delta")),
                 _num(w.get("difference"), "{:+,}")] for w in windows]
    settings_rows = [[_esc(k), _esc(v)] for k, v in (result.get("settings") or {}).items()]
    settings_rows += [[_esc("topic"), _esc(json.dumps(result.get("topic")))]]
    machine_rows = [[_esc(k), _esc(v)] for k, v in (result.get("machine") or {}).items()]
    plan_rows = [[_esc(s["label"]), _esc(s["kind"]), _num(s["rate"]), _num(s["duration_s"], "{:g} s")]
                 for s in plan.get("steps", [])]
    run_rows = [[_esc(w["label"]), _num(w["end"] - w["start"], "{:.1f} s"), "yes" if w.get("complete") else "no (stopped)"]
                for w in result.get("windows") or []]
    rules = "".join(f"<li><b>{_esc(k)}</b>: {_esc(v)}</li>" for k, v in result.get("rules") or [])
    events = "".join(f"<li><code>{_esc(round(e['t'] - float(result.get('t0') or e['t']), 1))} s</code> "
                     f"{_esc(e['text'])}</li>" for e in result.get("events") or [])
    fresh = result.get("freshness_all") or {}
    emu = result.get("emulator") or {}
    stage = summary.get("limiting_stage") or "none (ceiling reached)"
    state_note = "" if result.get("state") == "done" else (
        f'<p class="warn">Run state: <b>{_esc(result.get("state"))}</b> {_esc(result.get("error") or "")}</p>')
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Tormenta load test {_esc(result.get('run_id'))} — {_esc(plan.get('name'))}</title>
<style>
body {{ font-family: system-ui, -apple-system, Segoe UI, sans-serif; margin: 24px 40px; color: #212529; }}
h1 {{ margin-bottom: 4px; }} .sub {{ color: #868e96; margin-top: 0; }}
.cards {{ display: flex; gap: 16px; flex-wrap: wrap; margin: 16px 0; }}
.card {{ border: 1px solid #dee2e6; border-radius: 8px; padding: 12px 18px; min-width: 200px; }}
.card .k {{ color: #868e96; font-size: 13px; }} .card .val {{ font-size: 26px; font-weight: 600; }}
table {{ border-collapse: collapse; margin: 8px 0 20px; font-size: 13px; }}
th, td {{ border: 1px solid #dee2e6; padding: 4px 8px; text-align: left; vertical-align: top; }}
th {{ background: #f1f3f5; }} table.verdicts td:last-child {{ min-width: 320px; }}
.v {{ padding: 2px 8px; border-radius: 10px; color: white; font-weight: 600; }}
.v-holds {{ background: #2b8a3e; }} .v-degrades {{ background: #f08c00; }} .v-breaks {{ background: #c92a2a; }}
.ok {{ color: #2b8a3e; font-weight: 600; }} .bad {{ color: #c92a2a; font-weight: 600; }}
.warn {{ background: #fff4e6; padding: 8px; border-radius: 6px; }}
.answer {{ font-size: 18px; background: #f8f9fa; padding: 12px; border-left: 4px solid #3b5bdb; }}
.chart {{ margin-bottom: 12px; }}
</style></head><body>
<h1>Will it hold at Christmas? — load test report</h1>
<p class="sub">Run <code>{_esc(result.get('run_id'))}</code>, plan <b>{_esc(plan.get('name'))}</b>
(scale {_esc(plan.get('scale'))}, trigger {_esc(plan.get('trigger_s'))} s), {_esc(result.get('started'))} →
{_esc(result.get('finished'))} UTC, on {_esc((result.get('machine') or {}).get('logical_cores'))} cores.</p>
{state_note}
<p class="answer" id="answer">{_esc(summary.get('answer'))}</p>
<div class="cards">
 <div class="card"><div class="k">Maximum sustainable rate</div><div class="val" id="max-rate">{_num(msr) + ' tx/s' if msr is not None else 'none (no step held)'}</div></div>
 <div class="card"><div class="k">Limiting stage</div><div class="val" id="limiting-stage">{_esc(stage)}</div></div>
 <div class="card"><div class="k">At the peak ({_num(summary.get('peak_rate'))} tx/s)</div>
   <div class="val"><span class="v v-{_esc(summary.get('peak_verdict'))}">{_esc(summary.get('peak_verdict') or 'not reached')}</span></div></div>
 <div class="card"><div class="k">Reconciliation</div><div class="val {'ok' if ok else 'bad'}" id="reconciliation-verdict">
   {'0 lost / 0 duplicated' if ok else f"{_num(rec.get('lost'))} lost / {_num(rec.get('duplicated'))} duplicated"}</div></div>
 <div class="card"><div class="k">Freshness p50 / p95 / max (all rows)</div>
   <div class="val">{_num(fresh.get('p50'), '{:.1f}')} / {_num(fresh.get('p95'), '{:.1f}')} / {_num(fresh.get('max'), '{:.1f}')} s</div></div>
</div>
<p><b>Why:</b> {_esc(summary.get('why') or 'every step held up to the ceiling')}</p>

<h2>Verdict per step</h2>
{_table(headers, table_rows, "verdicts")}
<h3>Rules</h3><ul>{rules}</ul>

<h2>Reconciliation</h2>
<p class="{'ok' if ok else 'bad'}">{rec_text}.</p>
<p>{_esc(rec.get('note') or '')}</p>
{examples}
{_table(["along the pipe", "count"], [[_esc(k), _num(v)] for k, v in totals.items()])}
{_table(["minute (UTC)", "sent (all)", "over threshold (emulator)", "in Delta", "difference"], win_rows)}
<p>Emulator: sent {_num(emu.get('sent'))}, delivered {_num(emu.get('delivered'))}, failed {_num(emu.get('failed'))},
achieved {_num(emu.get('achieved_rate'))} tx/s over {_num(emu.get('duration_s'), '{:.1f}')} s, latency p50/p99
{_num(emu.get('latency_p50_ms'), '{:.1f}')}/{_num(emu.get('latency_p99_ms'), '{:.1f}')} ms.</p>

<h2>Charts</h2>
{''.join(charts)}

<h2>Plan</h2>
{_table(["step", "kind", "rate tx/s", "planned"], plan_rows)}
{_table(["step", "ran for", "complete"], run_rows)}
<h2>Settings</h2>
{_table(["setting", "value"], settings_rows)}
<h2>Machine</h2>
{_table(["fact", "value"], machine_rows)}
<h2>Events</h2><ul>{events}</ul>
</body></html>
"""


def write_report(run_dir: Path, result: dict[str, Any], samples: list[dict]) -> Path:
    """Save result.json, samples.json and report.html in `run_dir`; returns the report path."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "samples.json").write_text(json.dumps(samples, default=str))
    (run_dir / "result.json").write_text(json.dumps(result, default=str, indent=1))
    path = run_dir / "report.html"
    path.write_text(build_report(result, samples), encoding="utf-8")
    return path


def rebuild(run_dir: Path) -> Path:
    """Rewrite a run's report from its saved files; the summary is recomputed from the saved step
    stats, so a run judged by an older release gets the current wording."""
    from pipeline.loadtest.verdict import StepStats, summarise

    result = json.loads((run_dir / "result.json").read_text())
    plan = result.get("plan") or {}
    if result.get("steps"):
        stats = [StepStats(**s) for s in result["steps"]]
        result["summary"] = summarise(stats, plan.get("peak_rate", 0.0), plan.get("ceiling", 0.0)).as_dict()
    samples = json.loads((run_dir / "samples.json").read_text())
    return write_report(run_dir, result, samples)
